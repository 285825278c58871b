"""The raw data of a throughput sweep, kept as plain dataclasses.

The sweep driver fills these in; reports, plots and comparisons only read
them. Everything round-trips through JSON so a report can be regenerated
from the raw data long after the run (``SweepResult.to_json``/``from_json``);
a path ending in ``.gz`` is written and read gzip-compressed.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerankpool.protocol import BatchEvent  # one shape of a batch's cost, as the broker's stats stream it

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "RequestSample",
    "BatchEvent",
    "ConfigResult",
    "BaselineResult",
    "SweepResult",
]

#: Written into every JSON file so a reader can refuse what it does not know.
FORMAT = "rerankpool-sweep/1"


@dataclass
class RequestSample:
    """One client request as the client saw it (times from ``time.monotonic()``)."""

    start_s: float
    end_s: float
    pairs: int
    ok: bool
    error: str | None = None
    model: str | None = None  # the model the request named (runs of several models)

    @property
    def latency_ms(self) -> float:
        """Client-observed request time: send to full reply."""
        return (self.end_s - self.start_s) * 1000.0

    @property
    def throughput_pairs_per_s(self) -> float:
        """Per-request throughput, pairs / latency; 0.0 when the latency is not positive.

        This is one client's view of one request, not the pool's rate: with
        several clients in flight the aggregate is higher (see
        ``ConfigResult.aggregate_pairs_per_s``).
        """
        seconds = self.end_s - self.start_s
        return self.pairs / seconds if seconds > 0 else 0.0


@dataclass
class ConfigResult:
    """One point of the sweep: a client batch size at a client concurrency."""

    batch: int
    concurrency: int
    engine: str
    workers: int
    pairs: int
    wall_s: float
    requests: list[RequestSample] = field(default_factory=list)
    batch_events: list[BatchEvent] = field(default_factory=list)
    #: Time-series rows from the probes (``t``, ``elapsed_s``, ``system.cpu_pct``,
    #: ``gpu.0.util_pct``, ``pool.queue_pairs``...); any key may be absent.
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def aggregate_pairs_per_s(self) -> float:
        """All clients together: pairs scored / wall time of the config."""
        return self.pairs / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok_requests(self) -> list[RequestSample]:
        """Requests that got a reply; latency statistics use only these."""
        return [r for r in self.requests if r.ok]

    @property
    def failed_requests(self) -> int:
        return sum(1 for r in self.requests if not r.ok)

    @property
    def label(self) -> str:
        return f"batch={self.batch}, conc={self.concurrency}"


@dataclass
class BaselineResult:
    """A reference point measured in the same run, e.g. in-process ``CrossEncoder.predict``."""

    name: str
    pairs: int
    wall_s: float
    batch_size: int
    note: str = ""

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class SweepResult:
    """Everything one ``rerankpool bench`` run measured, plus where and how."""

    name: str
    title: str
    description: str
    timestamp: str
    model: str
    model_label: str
    #: False when the model is a compute stand-in whose scores mean nothing.
    real_scores: bool
    engine: str
    device: str
    dtype: str
    #: max_batch, max_batch_tokens, timeout_ms, bucket_edges (any may be missing).
    batching: dict[str, Any] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    software: dict[str, Any] = field(default_factory=dict)
    #: What the pairs were, in words (e.g. "SQuAD v1.1 dev, real question/passage pairs").
    data: str = ""
    #: The extra worker flags the pool ran with (e.g. "--threads 8 --device-process").
    worker_flags: str = ""
    #: The extra broker flags, as given (batching flags are also parsed into ``batching``).
    broker_flags: str = ""
    configs: list[ConfigResult] = field(default_factory=list)
    baselines: list[BaselineResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SweepResult:
        fmt = raw.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"unsupported sweep format {fmt!r}; this reader knows {FORMAT!r}")
        top = _known(cls, raw)
        top["configs"] = [_config_from_dict(c) for c in raw.get("configs", [])]
        top["baselines"] = [BaselineResult(**_known(BaselineResult, b)) for b in raw.get("baselines", [])]
        return cls(**top)

    def to_json(self, path: str | Path) -> Path:
        """Write the raw data (gzip-compressed if ``path`` ends in ``.gz``); returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1)
        if path.name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8")
        log.info("wrote sweep data to %s", path)
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> SweepResult:
        """Read a sweep's raw data: ``NAME.json``, or ``NAME.json.gz`` as the committed results keep it."""
        path = Path(path)
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return cls.from_dict(json.load(fh))
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _config_from_dict(raw: dict[str, Any]) -> ConfigResult:
    fields = _known(ConfigResult, raw)
    fields["requests"] = [RequestSample(**_known(RequestSample, r)) for r in raw.get("requests", [])]
    fields["batch_events"] = [BatchEvent.from_dict(b) for b in raw.get("batch_events", [])]
    fields["samples"] = [dict(s) for s in raw.get("samples", [])]
    return ConfigResult(**fields)


def _known(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``raw`` that ``cls`` has fields for; newer files with extra keys still load."""
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(raw) - names - {"format"}
    if extra:
        log.debug("ignoring unknown %s keys: %s", cls.__name__, sorted(extra))
    return {k: v for k, v in raw.items() if k in names}
