"""Named bench runs: ``bench/scenarios/NAME.toml`` holds the options of one ``rerankpool bench`` run.

The keys are the bench's flags, with ``_`` for ``-``, and take TOML's own types::

    title = "2-core CPU: L6 stand-in, 32-pair requests, 4 clients"
    model = "minilm-l6-standin"
    dataset = "squad-dev"
    pairs = 640
    batch = 32                     # or a list: [32, 64]
    concurrency = [1, 4]
    engine = ["torch", "onnx:int8"]
    baseline = true
    broker_args = "--max-batch 256 --bucket-edges 512"   # the flag's words, as one string or a list
    external = { "infinity-0.0.78" = "http://127.0.0.1:7997" }

``rerankpool bench --scenario NAME`` takes them as its defaults, so the flags given on the
command line win, and writes to ``bench/results/NAME`` unless ``--out`` (or ``out``) says
otherwise. This module only reads and checks the files; it starts nothing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from rerankpool.bench.datasets import DATASETS

SCENARIO_DIR = Path("bench/scenarios")
RESULTS_DIR = Path("bench/results")


class ScenarioError(ValueError):
    """A scenario that cannot be found or read; the message names the file."""


# -- the keys: each turns a TOML value into what the bench's flag parses to ----------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any) -> int:
    if not _is_int(value):
        raise ValueError("expected an integer")
    return value


def _ints(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(_is_int(x) for x in items):
        raise ValueError("expected an integer or a list of integers")
    return tuple(items)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _strs(value: Any) -> list[str]:
    """A list of strings, or one string of comma-separated items (as ``--engine torch,onnx:int8``)."""
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError("expected a string or a list of strings")
    return list(value)


def _words(value: Any) -> list[str]:
    """Flags passed on to the pool: one string, split on blanks, or a list of words."""
    if isinstance(value, str):
        return value.split()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError("expected a string of flags or a list of words")
    return list(value)


def _range(value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(x) for x in value)):
        raise ValueError("expected [LO, HI]")
    return value[0], value[1]


def _dataset(value: Any) -> str:
    if value not in DATASETS:
        raise ValueError(f"expected one of {', '.join(DATASETS)}")
    return value


def _named_urls(value: Any) -> list[tuple[str, str]]:
    """A table NAME = URL (``--external NAME=URL``, repeated)."""
    if not isinstance(value, dict) or not all(isinstance(u, str) and u.startswith("http") for u in value.values()):
        raise ValueError('expected a table of NAME = "http://HOST:PORT"')
    return list(value.items())


# The bench's flags (argparse dests) a scenario may set; --render, --scenario and --list-scenarios are not runs.
KEYS: dict[str, Callable[[Any], Any]] = {
    "out": _str, "model": _str, "models": _strs, "separate_pools": _bool, "device": _str, "connect": _str,
    "compare": _str,
    "title": _str, "description": _str,
    "dataset": _dataset, "pairs": _int, "queries": _int, "candidates": _int, "repeat": _int,
    "synthetic_words": _range,
    "batch": _ints, "concurrency": _ints, "workers": _ints, "engine": _strs,
    "baseline": _bool, "baseline_batch_size": _int, "baseline_dtype": _str, "ceilings": _bool,
    "sample_interval_s": _float, "load_processes": _int,
    "http": _bool, "http_processes": _int, "external": _named_urls,
    "broker_args": _words, "worker_args": _words,
}


# -- the files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    options: dict[str, Any]  # argparse dests -> values as the flags parse them

    @property
    def title(self) -> str:
        return self.options.get("title", self.name)

    def defaults(self) -> dict[str, Any]:
        """The bench's defaults under this scenario: its options, and --out bench/results/NAME unless it has one."""
        return {"out": str(RESULTS_DIR / self.name), **self.options}


def scenario_dirs() -> list[Path]:
    """``bench/scenarios`` under the working directory, then in the source tree this package runs from."""
    candidates = (Path.cwd() / SCENARIO_DIR, Path(__file__).resolve().parents[2] / SCENARIO_DIR)
    return list(dict.fromkeys(d.resolve() for d in candidates if d.is_dir()))


def find(ref: str, dirs: Iterable[Path] | None = None) -> Path:
    """The file of a scenario given by NAME (looked up in ``dirs``) or by path."""
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        if not path.is_file():
            raise ScenarioError(f"no scenario file {ref}")
        return path
    dirs = scenario_dirs() if dirs is None else list(dirs)
    for d in dirs:
        if (d / f"{ref}.toml").is_file():
            return d / f"{ref}.toml"
    where = ", ".join(str(d) for d in dirs) or f"{SCENARIO_DIR} (no such folder here)"
    raise ScenarioError(f"no scenario {ref!r} in {where}; `rerankpool bench --list-scenarios` lists them")


def load(ref: str, dirs: Iterable[Path] | None = None) -> Scenario:
    """Read and check a scenario: every key must be a bench option, and every value of its type."""
    path = find(ref, dirs)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    options: dict[str, Any] = {}
    for key, value in raw.items():
        dest = key.replace("-", "_")
        if dest not in KEYS:
            near = difflib.get_close_matches(dest, KEYS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; the keys are {', '.join(sorted(KEYS))}"
            raise ScenarioError(f"{path}: unknown key {key!r}{hint}")
        if dest in options:
            raise ScenarioError(f"{path}: {key!r} given twice")
        try:
            options[dest] = KEYS[dest](value)
        except ValueError as exc:
            raise ScenarioError(f"{path}: {key} = {value!r}: {exc}") from None
    return Scenario(path.stem, path, options)


def available(dirs: Iterable[Path] | None = None) -> list[Scenario]:
    """Every scenario in ``dirs``, by name; a name in an earlier folder hides the same name in a later one."""
    dirs = scenario_dirs() if dirs is None else list(dirs)
    found: dict[str, Path] = {}
    for d in dirs:
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return [load(str(found[name])) for name in sorted(found)]
