"""Start a broker and workers as real processes from Python: for tests, the bench and notebooks.

``LocalPool`` runs ``rerankpool broker`` and ``rerankpool worker -n N --model ...`` as two
child processes (exactly what a user runs from the shell), waits until every worker has
registered, and stops both on exit. ``model`` may be several ``--model`` specs (one
broker serving several models, ``NAME[,workers=N,...]``), the first being the default.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rerankpool.client import Client
from rerankpool.errors import NoReply
from rerankpool.security.client import ClientSecurity

logger = logging.getLogger(__name__)


def wait_for_workers(address: str, n: int, timeout_s: float = 180.0, security: ClientSecurity | None = None,
                     check=None) -> dict:
    """Block until the broker at ``address`` reports ``n`` live workers (it may not be listening yet); ``check``
    is called between tries, to raise if what should start it has died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:  # the broker holds the answer until n workers are live, or 1 s has passed
            with Client(address, timeout=2.0, retries=0, security=security) as client:
                pong = client.ping(wait_workers=n, timeout=1.0)
        except NoReply:
            continue  # not listening yet, or not answering yet
        if pong["workers"] >= n:
            return pong
    raise TimeoutError(f"{n} worker(s) not ready at {address} within {timeout_s:.0f} s")


@dataclass
class LocalPool:
    model: str | Sequence[str] = "ms-marco-MiniLM-L-12-v2"
    workers: int = 1  # per model, unless its spec says workers=N
    engine: str = "torch"
    device: str = "cpu"
    dtype: str = "float32"
    frontend: str | None = None  # default: an ipc:// endpoint in a private temp dir
    backend: str | None = None
    broker_args: list[str] = field(default_factory=list)  # extra flags, e.g. ["--max-batch", "8"]
    worker_args: list[str] = field(default_factory=list)
    start_timeout_s: float = 180.0
    log_dir: Path | None = None
    security: ClientSecurity | None = None  # this side's CURVE keys, if the broker requires them

    def __post_init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rerankpool-")
        tmp = Path(self._tmp.name)
        self.frontend = self.frontend or f"ipc://{tmp}/frontend"
        self.backend = self.backend or f"ipc://{tmp}/backend"
        self.log_dir = self.log_dir or tmp
        self.broker_proc: subprocess.Popen | None = None
        self.worker_proc: subprocess.Popen | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # type: ignore[operator]
        cmd = [sys.executable, "-m", "rerankpool", *args]
        logger.debug("starting %s", " ".join(cmd))
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start(self) -> "LocalPool":
        self.start_broker()
        self.start_workers()
        return self

    def start_broker(self) -> None:
        from rerankpool.worker.config import ModelSpec

        default = ["--default-model", ModelSpec.parse(self.models[0]).model]
        self.broker_proc = self._spawn(
            "broker", ["broker", "--frontend", self.frontend, "--backend", self.backend, *default, *self.broker_args]
        )

    @property
    def models(self) -> list[str]:
        """The ``--model`` specs, the default first."""
        return [self.model] if isinstance(self.model, str) else list(self.model)

    @property
    def total_workers(self) -> int:
        from rerankpool.worker.config import ModelSpec

        return sum(int(ModelSpec.parse(m).get("workers", self.workers)) for m in self.models)

    def start_workers(self) -> None:
        models = [arg for spec in self.models for arg in ("--model", spec)]
        self.worker_proc = self._spawn(
            "workers",
            ["worker", "--connect", self.backend, "-n", str(self.workers), *models, "--engine",
             self.engine, "--device", self.device, "--dtype", self.dtype, *self.worker_args],
        )
        self.wait_for_workers(self.total_workers)

    def wait_for_workers(self, n: int, timeout_s: float | None = None) -> dict:
        """Block until the broker reports ``n`` live workers; raise with the logs if a process died."""

        def alive() -> None:
            for name, proc in (("broker", self.broker_proc), ("workers", self.worker_proc)):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

        try:
            return wait_for_workers(self.frontend, n, timeout_s or self.start_timeout_s, self.security, alive)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{self.log_tail('workers')}") from None

    def client(self, **kwargs) -> Client:
        return Client(self.frontend, security=self.security, **kwargs)  # type: ignore[arg-type]

    def worker_pids(self, model: str | None = None) -> list[int]:
        """The live workers' pids (of ``model`` only, if given)."""
        with self.client(timeout=5.0) as client:
            return [w["pid"] for w in client.stats()["workers"] if model in (None, w["model"])]

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"  # type: ignore[operator]
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for proc in (self.worker_proc, self.broker_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.worker_proc, self.broker_proc):
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> "LocalPool":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
