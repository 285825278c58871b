"""The on-disk model cache, and building into it safely from many processes at once.

``rerankpool worker -n N`` (and ``up``) starts N workers that may all resolve the same builtin at the same
moment. One of them takes an exclusive ``flock`` and builds; the others wait on the lock and
then find the finished directory. A build goes to a temp dir that is ``os.replace``d into
place, and the marker file is written last, so a directory without a valid marker (a crash
mid-build, an older format) is treated as absent and rebuilt.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ModelBuildError, ModelError

logger = logging.getLogger(__name__)

MARKER_NAME = "rerankpool-build.json"
# Bump when the layout of a built model dir changes, so old caches get rebuilt.
CACHE_FORMAT = 1


def cache_dir() -> Path:
    """``$RERANKPOOL_CACHE`` if set, else ``~/.cache/rerankpool``."""
    env = os.environ.get("RERANKPOOL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rerankpool"


def read_marker(model_dir: Path) -> dict | None:
    """The marker of a finished build, or None when the dir is absent, partial or stale."""
    try:
        marker = json.loads((model_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != CACHE_FORMAT:
        return None
    return marker


def is_built(model_dir: Path, recipe: int) -> bool:
    marker = read_marker(model_dir)
    return marker is not None and marker.get("recipe") == recipe


@contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path``; log when we have to wait for another process."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(
                "waiting for another process to finish building %s (lock %s)", what, lock_path
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def build_once(
    name: str,
    build: Callable[[Path], object],
    *,
    root: Path,
    recipe: int = 1,
) -> Path:
    """Return ``root/models/<name>``, running ``build(tmp_dir)`` first if no valid build exists."""
    models = root / "models"
    target = models / name
    if is_built(target, recipe):
        return target
    with exclusive_lock(models / f"{name}.lock", name):
        if is_built(target, recipe):  # another process built it while we waited
            return target
        logger.info("building model %s into %s (once; later starts reuse it)", name, target)
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=models))
        try:
            try:
                build(tmp)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelBuildError(
                    f"building model {name} failed ({type(exc).__name__}: {exc}); nothing was cached. "
                    "Check that the package shipping its files is the pinned version, then retry."
                ) from exc
            _make_readable(tmp)
            if target.exists():  # a partial or stale build: no one can be using it validly
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        seconds = time.perf_counter() - started
        _write_marker(
            target,
            {
                "format": CACHE_FORMAT,
                "name": name,
                "recipe": recipe,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(seconds, 2),
                "builder_pid": os.getpid(),
            },
        )
        logger.info("built model %s in %.1f s", name, seconds)
    return target


def _make_readable(model_dir: Path) -> None:
    """mkdtemp makes a 0700 dir (and some writers 0600 files); a cache must be readable."""
    os.chmod(model_dir, 0o755)
    for path in model_dir.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _write_marker(model_dir: Path, marker: dict) -> None:
    """Write the marker atomically: it is what declares the directory complete."""
    tmp = model_dir / f".{MARKER_NAME}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, model_dir / MARKER_NAME)
