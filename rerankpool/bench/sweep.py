"""``rerankpool bench``: sweep batch size x concurrency x engine x workers against a real pool.

For each engine and worker count it starts a pool (or uses ``--connect``), and for
each (batch, concurrency) it warms up, then drives the pool with closed-loop clients
while a sampler records CPU, GPU and pool counters and the broker streams per-batch
events. ``--baseline`` first times ``CrossEncoder.predict`` in-process on the same
pairs, so every figure in the report has its side-by-side reference from the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from rerankpool.bench import environment
from rerankpool.bench.baseline import load_reference, run_reference
from rerankpool.bench.datasets import DATASETS, load_squad, pair_stream, rerank_workload, synthetic_pairs
from rerankpool.bench.load import BenchRequest, HttpTarget, load_processes, run_load
from rerankpool.bench.results import BaselineResult, BatchEvent, ConfigResult, SweepResult
from rerankpool.client import Client
from rerankpool.launch import LocalPool
from rerankpool.models import resolve_model
from rerankpool.stats import MetalProbe, NvmlProbe, ProcessProbe, Sampler

logger = logging.getLogger(__name__)


@dataclass
class SweepConfig:
    name: str
    out_dir: Path
    model: str = "ms-marco-MiniLM-L-12-v2"
    more_models: list[str] = field(default_factory=list)  # served beside `model`; requests alternate among all
    separate_pools: bool = False  # several models: then also a pool per model (same workers and load), side by side
    engines: list[str] = field(default_factory=lambda: ["torch"])  # "engine[:dtype]", e.g. onnx:int8
    workers: list[int] = field(default_factory=lambda: [1])
    batches: list[int] = field(default_factory=lambda: [32])
    concurrency: list[int] = field(default_factory=lambda: [1])
    pairs: int = 2000
    dataset: str = "squad-dev"
    queries: int = 50  # squad-rerank: queries, each with `candidates` docs (gold + others)
    candidates: int = 20
    repeat: int = 1  # squad-rerank: times the workload is sent per config
    synthetic_words: tuple[int, int] = (40, 200)
    device: str = "cpu"
    connect: str | None = None
    baseline: bool = False
    baseline_batch_size: int = 32
    baseline_dtype: str = "float32"  # what CrossEncoder loads by default
    ceilings: bool = False  # also measure the tokenizer, forward-pass and compute ceilings on the same pairs
    ceiling_dtype: str | None = None  # forward and compute ceilings' dtype (None: float16 on CUDA, else float32)
    sample_interval_s: float = 0.25
    warmup_requests: int = 4
    load_processes: int | None = None  # processes for the clients (None: by concurrency, see load.py)
    broker_args: list[str] = field(default_factory=list)
    worker_args: list[str] = field(default_factory=list)
    http: bool = False  # also drive the pool through its HTTP gateway, config by config, in the same run
    http_processes: int = 1  # gateway processes for --http
    external: list[tuple[str, str]] = field(default_factory=list)  # (name, URL) of other servers' HTTP APIs
    title: str = "rerankpool throughput sweep"
    description: str = "batch size x concurrency x engine sweep through the pool"


def parse_engine(spec: str) -> tuple[str, str]:
    engine, _, dtype = spec.partition(":")
    return engine, dtype or "float32"


# -- workloads ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _squad():
    return load_squad()


def build_requests(config: SweepConfig, batch: int) -> tuple[list[BenchRequest], str]:
    """The requests of one config and a description of the data."""
    if config.dataset == "squad-rerank":
        data = _squad()
        items = rerank_workload(data, config.queries, config.candidates)
        reqs = [BenchRequest(tuple((it.query, d) for d in it.docs), rerank=True) for it in items] * config.repeat
        return _spread(config, reqs), (f"{data.describe()}; {config.queries} queries x {config.candidates} "
                                       f"candidates (gold + {config.candidates - 1} from other articles), "
                                       f"x{config.repeat}")
    if config.dataset == "squad-dev":
        data = _squad()
        pairs = pair_stream(data, config.pairs)
        desc = f"{data.describe()}; {config.pairs} (question, passage) pairs"
    elif config.dataset == "synthetic":
        pairs = list(synthetic_pairs(config.pairs, doc_words=config.synthetic_words))
        desc = f"synthetic pairs, doc words uniform in {config.synthetic_words}; {config.pairs} pairs"
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}; choose one of {', '.join(DATASETS)}")
    return _spread(config, [BenchRequest(tuple(pairs[i : i + batch])) for i in range(0, len(pairs), batch)]), desc


def _spread(config: SweepConfig, requests: list[BenchRequest]) -> list[BenchRequest]:
    """With several models, the requests name them in turn (so each model gets the same load)."""
    models = [config.model, *config.more_models]
    if len(models) == 1:
        return requests
    return [dataclasses.replace(r, model=models[i % len(models)]) for i, r in enumerate(requests)]


def all_pairs(requests: list[BenchRequest]) -> list[tuple[str, str]]:
    return [pair for req in requests for pair in req.pairs]


# -- pool side ----------------------------------------------------------------------------


class PoolWatcher:
    """The sampler's view of the pool: flat counters per tick, and the batch events it streams."""

    def __init__(self, address: str) -> None:
        self._client = Client(address, timeout=5.0, retries=0)
        self.cursor = self._client.stats()["last_event"]
        self.events: list[BatchEvent] = []
        self._last: tuple[float, int] | None = None

    def __call__(self) -> dict[str, Any]:
        stats = self._client.stats(events_since=self.cursor)
        for event in stats.pop("events", []):
            self.cursor = max(self.cursor, event["seq"])
            self.events.append(BatchEvent.from_dict(event))
        row: dict[str, Any] = {
            "pool.queue_pairs": stats["queue_pairs"],
            "pool.batches_in_flight": stats["batches_in_flight"],
            "pool.requests_in_flight": stats["requests_in_flight"],
            "pool.pairs_per_s": stats["pairs_per_s"],
        }
        for i, worker in enumerate(stats["workers"]):
            for key, value in worker.get("memory", {}).items():
                row[f"worker.worker-{i}.{key}"] = value
        return row

    def close(self) -> None:
        self._client.close()


def process_roles(address: str, broker_pid: int | None) -> dict[str, int]:
    roles = {"broker": broker_pid} if broker_pid else {}
    with Client(address, timeout=5.0) as client:
        for i, worker in enumerate(client.stats()["workers"]):
            roles[f"worker-{i}"] = worker["pid"]
    return roles


def measure(
    config: SweepConfig, target: str | HttpTarget, engine: str, workers: int, batch: int, conc: int,
    pool: str | None, broker_pid: int | None,
) -> ConfigResult:
    """One config: warm up, then drive ``target`` while sampling. ``pool`` is our broker (None for another server)."""
    requests, _ = build_requests(config, batch)
    procs = config.load_processes or load_processes(conc)
    run_load(target, requests[: config.warmup_requests], conc)  # warm-up of the server, not measured
    label = f"{config.name}_{_slug(engine)}_w{workers}_b{batch}_c{conc}"
    watcher = PoolWatcher(pool) if pool is not None else None
    probes = [ProcessProbe(process_roles(pool, broker_pid) if pool is not None else {}), NvmlProbe(), MetalProbe()]
    sampler = Sampler(config.out_dir / f"{label}_timeseries.jsonl", config.sample_interval_s,
                      [p for p in probes if p.available()], watcher)
    total = sum(r.size for r in requests)
    with tqdm(total=total, unit="pair", desc=f"{engine} w={workers} batch={batch} conc={conc}", leave=False) as bar:
        with sampler:
            wall_s, samples = run_load(target, requests, conc, on_done=bar.update, processes=procs)
    events = []
    if watcher is not None:
        watcher()  # the last events; only now, the sampler thread has stopped using the watcher's socket
        watcher.close()
        events = watcher.events
    ok_pairs = sum(s.pairs for s in samples if s.ok)
    return ConfigResult(batch, conc, engine, workers, ok_pairs, wall_s, samples, events, sampler.rows())


def _slug(engine: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in engine).strip("-")


def pools(config: SweepConfig) -> Iterator[tuple[str, int, str, int | None, str | None]]:
    """Yield (engine spec, workers, address, broker pid, gateway URL or None) with a pool running for each."""
    for spec, n, address, broker_pid in _brokers(config):
        if not config.http:
            yield spec, n, address, broker_pid, None
            continue
        from rerankpool.http.config import GatewayConfig
        from rerankpool.http.serve import start_process

        gateway, url = start_process(GatewayConfig(connect=address, listen="127.0.0.1:0",
                                                   processes=config.http_processes, timeout_s=300.0), "WARNING")
        try:
            yield spec, n, address, broker_pid, url
        finally:
            gateway.terminate()
            gateway.join(timeout=30)


def _brokers(config: SweepConfig) -> Iterator[tuple[str, int, str, int | None]]:
    if config.connect:
        yield config.engines[0], config.workers[0], config.connect, None
        return
    models = [config.model, *config.more_models]
    for spec in config.engines:
        engine, dtype = parse_engine(spec)
        for n in config.workers:
            kw = dict(workers=n, engine=engine, device=config.device, dtype=dtype, broker_args=config.broker_args,
                      worker_args=config.worker_args)
            logger.info("starting a pool: %s (%s), %d worker(s) a model, %s", engine, dtype, n, ", ".join(models))
            with LocalPool(model=models if len(models) > 1 else config.model, **kw) as pool:  # type: ignore[arg-type]
                label = spec if len(models) == 1 else f"{spec}, one broker"
                yield label, n, pool.frontend, pool.broker_proc.pid  # type: ignore[union-attr]
            if config.separate_pools and len(models) > 1:
                logger.info("starting a pool per model: %s (%s), %d worker(s) each, %s", engine, dtype, n, models)
                with contextlib.ExitStack() as stack:
                    pools = {m: stack.enter_context(LocalPool(model=m, **kw)) for m in models}  # type: ignore[arg-type]
                    yield f"{spec}, a pool per model", n, {m: p.frontend for m, p in pools.items()}, None


# -- the sweep ----------------------------------------------------------------------------


def run_baselines(config: SweepConfig, model_path: Path) -> list[BaselineResult]:
    """CrossEncoder.predict (and the ceilings) on the sweep's pairs, before any pool competes for the cores."""
    from rerankpool.bench.ceilings import compute_ceiling, forward_ceilings, pool_tokenizer_ceiling, tokenizer_ceiling
    from rerankpool.flags import worker_flags, worker_threads

    requests, _ = build_requests(config, config.batches[0])
    pairs = all_pairs(requests)
    results = []
    if config.baseline:
        # One run: CrossEncoder.predict sorts its inputs by length itself (sentence-transformers 6.x),
        # so a pre-sorted run would time the same batches again.
        model = load_reference(model_path, config.device, dtype=config.baseline_dtype)
        logger.info("baseline: %s on %d pairs", type(model).__name__, len(pairs))
        results.append(run_reference(model, pairs, config.baseline_batch_size))
        del model
    if config.ceilings:
        logger.info("ceilings: tokenizers, the workers' tokenizer, forward pass and compute on %d pairs", len(pairs))
        results.append(tokenizer_ceiling(model_path / "tokenizer.json", pairs))
        on_gpu = config.device.startswith("cuda")
        wargs, _ = worker_flags(connect=False).parse_known_args(config.worker_args)
        processes = max(config.workers)
        threads = worker_threads(wargs, processes, config.device)
        results.append(pool_tokenizer_ceiling(model_path, pairs, processes, threads, config.device,
                                              fast=wargs.fast_tokenizer))
        dtype = config.ceiling_dtype or ("float16" if on_gpu else "float32")
        # Batches of 512 keep a GPU busy; on a CPU they fall out of cache, and 32 (as
        # CrossEncoder.predict uses) runs fastest.
        results += forward_ceilings(model_path, pairs, config.device, dtype, batch_size=512 if on_gpu else 32)
        results.append(compute_ceiling(model_path, pairs, config.device, dtype))
    return results


def _baselines_child(config: SweepConfig, model_path: Path, out) -> None:
    out.put(run_baselines(config, model_path))


def run_baselines_apart(config: SweepConfig, model_path: Path) -> list[BaselineResult]:
    """``run_baselines`` in a child process that exits before the pool starts.

    Loading CrossEncoder, transformers and a CUDA context into the bench process, which
    then runs the clients at low concurrency, tripled the sweeps' concurrency-1 latency
    on the H100 host (17 ms against 5.3 ms without them); a child takes all that with it.
    """
    import multiprocessing as mp

    from rerankpool.bench.children import collect

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_baselines_child, args=(config, model_path, out), name="baselines")
    child.start()
    (results,) = collect(out, [child], 1)
    return results


def run_sweep(config: SweepConfig) -> SweepResult:
    config.out_dir.mkdir(parents=True, exist_ok=True)
    model = resolve_model(config.model)
    _, data_desc = build_requests(config, config.batches[0])
    baselines = run_baselines_apart(config, model.path) if config.baseline or config.ceilings else []
    results: list[ConfigResult] = []
    for spec, workers, address, broker_pid, http_url in pools(config):
        for batch in config.batches:
            for conc in config.concurrency:  # each transport in turn, config by config, for a side-by-side
                ours = address if isinstance(address, str) else None  # a pool per model: no one broker to watch
                results.append(measure(config, address, spec, workers, batch, conc, ours, broker_pid))
                if http_url is not None:
                    results.append(measure(config, HttpTarget(http_url), f"{spec} via HTTP", workers, batch, conc,
                                           address, broker_pid))
    for name, url in config.external:  # other servers, once our pools are down
        for batch in config.batches:
            for conc in config.concurrency:
                results.append(measure(config, HttpTarget(url, "infinity"), name, 0, batch, conc, None, None))
    for r in results:
        logger.info("%s w=%d batch=%d conc=%d: %.1f pairs/s", r.engine, r.workers, r.batch, r.concurrency,
                    r.aggregate_pairs_per_s)
    batching = _batching_from_args(config.broker_args)
    engines = sorted({parse_engine(s)[0] for s in config.engines})
    dtypes = sorted({parse_engine(s)[1] for s in config.engines})
    return SweepResult(
        name=config.name, title=config.title, description=config.description,
        timestamp=datetime.now().strftime("%Y-%m-%d %H:%M:%S"), model=model.name, model_label=model.label,
        real_scores=model.real_scores, engine=", ".join(engines), device=config.device, dtype=", ".join(dtypes),
        batching=batching, hardware=environment.hardware(), software=environment.software(), data=data_desc,
        worker_flags=" ".join(config.worker_args), broker_flags=" ".join(config.broker_args),
        configs=results, baselines=baselines,
    )


def _batching_from_args(args: list[str]) -> dict[str, Any]:
    from rerankpool.broker.batching import BatchingConfig

    defaults = BatchingConfig()
    flags = dict(zip(args[::2], args[1::2]))
    return {
        "enabled": True,
        # None: the broker's defaults for the workers' kind (padded or packed; batching.PADDED/PACKED_LIMITS)
        "max_batch": int(flags["--max-batch"]) if "--max-batch" in flags else None,
        "max_batch_tokens": int(flags["--max-batch-tokens"]) if "--max-batch-tokens" in flags else None,
        "timeout_ms": float(flags.get("--batch-timeout-ms", defaults.timeout_ms)),
        "bucket_edges": [int(x) for x in flags["--bucket-edges"].split(",")] if "--bucket-edges" in flags
        else list(defaults.bucket_edges),
        "split_min": int(flags.get("--split-min", defaults.split_min)),
    }


def write_outputs(result: SweepResult, out_dir: Path, compare_with: Path | None = None) -> list[Path]:
    """NAME.json (raw), NAME.md, NAME_timeseries.md, plots, and an optional comparison."""
    from rerankpool.bench.compare import parse_reference_report, render_comparison
    from rerankpool.bench.plots import plot_throughput_latency, plot_timeseries
    from rerankpool.bench.report import render_report, render_timeseries_report, timeseries_filename

    written = [result.to_json(out_dir / f"{result.name}.json")]
    try:
        pngs = plot_throughput_latency(result, out_dir) + plot_timeseries(result, out_dir)
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install 'rerankpool[bench]', then --render)")
        pngs = []
    report = out_dir / f"{result.name}.md"
    report.write_text(render_report(result, [p.name for p in pngs]))
    files = {f"{result.name}.json": "every request, batch event and sample of the sweep (SweepResult JSON)"}
    for path in sorted(out_dir.glob(f"{result.name}_*_timeseries.jsonl")):
        files[path.name] = "sampler rows of one config (JSON Lines)"
    ts = out_dir / timeseries_filename(result)
    ts.write_text(render_timeseries_report(result, files))
    written += [report, ts, *pngs]
    if compare_with is not None:
        comparison = out_dir / f"{result.name}_vs_{compare_with.stem}.md"
        comparison.write_text(render_comparison(result, parse_reference_report(compare_with.read_text())))
        written.append(comparison)
    return written
