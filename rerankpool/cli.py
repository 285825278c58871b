"""The ``rerankpool`` command: up, broker, worker, http, rerank, stats, models (and bench, keys)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Sequence

logger = logging.getLogger("rerankpool")

DEFAULT_FRONTEND = "tcp://127.0.0.1:5555"
DEFAULT_BACKEND = "tcp://127.0.0.1:5556"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def broker_flags() -> argparse.ArgumentParser:
    from rerankpool.broker.batching import DEFAULT_BUCKET_EDGES, PACKED_LIMITS, PADDED_LIMITS, BatchingConfig
    from rerankpool.protocol import Limits

    b, lim = BatchingConfig(), Limits()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("broker")
    g.add_argument("--frontend", default=DEFAULT_FRONTEND, help="where clients connect (ROUTER bind)")
    g.add_argument("--backend", default=DEFAULT_BACKEND, help="where workers connect (ROUTER bind)")
    g.add_argument("--max-batch", type=int, default=b.max_batch,
                   help=f"pairs per batch at most (default: {PADDED_LIMITS[0]}, or {PACKED_LIMITS[0]} while every "
                        "worker packs its tokens)")
    g.add_argument("--max-batch-tokens", type=int, default=b.max_batch_tokens,
                   help=f"estimated tokens per batch at most, as the workers pay for them: padded (edge x pairs) or "
                        f"packed (their sum) (default: {PADDED_LIMITS[1]}, or {PACKED_LIMITS[1]} packed)")
    g.add_argument("--batch-timeout-ms", type=float, default=b.timeout_ms,
                   help="longest a partial batch waits for more pairs while every worker is busy")
    g.add_argument("--bucket-edges", type=_ints, default=DEFAULT_BUCKET_EDGES,
                   help="upper token lengths of the length buckets, comma-separated")
    g.add_argument("--split-min", type=int, default=b.split_min,
                   help="idle workers share a small queue, each taking at least this many pairs "
                        "but the last (0: never split)")
    g.add_argument("--request-timeout-ms", type=int, default=30_000, help="deadline of requests that name none")
    g.add_argument("--max-queued-pairs", type=int, default=200_000,
                   help="queue bound; beyond it requests get an 'overloaded' error at once")
    g.add_argument("--max-docs", type=int, default=lim.max_docs, help="docs per request at most")
    g.add_argument("--max-doc-chars", type=int, default=lim.max_doc_chars)
    g.add_argument("--max-message-bytes", type=int, default=lim.max_message_bytes)
    return p


def liveness_flags() -> argparse.ArgumentParser:
    """Heartbeats: broker and workers must agree on these."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("heartbeats")
    g.add_argument("--heartbeat-interval-s", type=float, default=1.0, help="seconds between heartbeats, both ways")
    g.add_argument("--liveness", type=int, default=3, help="missed heartbeats before a peer is declared dead")
    return p


def worker_flags(connect: bool) -> argparse.ArgumentParser:
    from rerankpool.models import DEFAULT_MODEL
    from rerankpool.worker.device.server import DEFAULT_PASS_TOKENS

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("worker")
    if connect:
        g.add_argument("--connect", default=DEFAULT_BACKEND, help="the broker's backend endpoint")
    g.add_argument("-n", "--workers", type=int, default=1, help="worker processes to start")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help="built-in name (see `rerankpool models`), local directory, or Hugging Face id")
    g.add_argument("--engine", default="torch", help="model runtime: torch, onnx, mlx, null (no model)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps")
    g.add_argument("--devices", default=None,
                   help="spread workers over CUDA devices round robin, e.g. 0,1 (overrides --device)")
    g.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16", "int8"))
    g.add_argument("--max-length", type=int, default=512, help="truncate pairs to this many tokens")
    g.add_argument("--capacity", type=int, default=2, help="batches in flight per worker (>= 2)")
    g.add_argument("--threads", type=int, default=None,
                   help="intra-op threads per worker (default on CPU: cores / workers)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile / mx.compile the forward pass (torch, packed: fuses each residual add "
                        "with its LayerNorm; seconds to a minute more at start)")
    g.add_argument("--packed", action=argparse.BooleanOptionalAction, default=None,
                   help="torch, BERT models: run packed tokens with no padding (default: on for CUDA)")
    g.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="packed on CUDA: run small batches eager instead of replaying CUDA graphs")
    g.add_argument("--no-fast-tokenizer", dest="fast_tokenizer", action="store_false",
                   help="tokenize with tokenizers only, not flash-tokenizer (same ids; for comparison)")
    g.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the warm-up passes at start")
    g.add_argument("--device-process", action=argparse.BooleanOptionalAction, default=None,
                   help="one process per device runs the model; the workers tokenize and hand it their batches "
                        "(one CUDA context per GPU; batches that arrive together run as one pass; "
                        "default: on for the torch engine on CUDA)")
    g.add_argument("--pass-tokens", type=int, default=DEFAULT_PASS_TOKENS,
                   help="--device-process: tokens per merged forward pass at most")
    return p


def http_flags(standalone: bool) -> argparse.ArgumentParser:
    """The gateway's flags: ``rerankpool http``, and ``rerankpool up --http``."""
    from rerankpool.http.config import GatewayConfig

    d = GatewayConfig()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("HTTP gateway")
    if standalone:
        g.add_argument("--connect", default=DEFAULT_FRONTEND, help="the broker's frontend (where clients connect)")
        g.add_argument("--listen", default=d.listen, help="HOST:PORT to serve HTTP on (port 0: any free port)")
        g.add_argument("--processes", type=int, default=d.processes, help="gateway processes sharing the port")
        g.add_argument("--timeout-s", type=float, default=d.timeout_s,
                       help="deadline of requests that send no x-request-timeout-ms header")
    else:
        g.add_argument("--http", default=None, metavar="HOST:PORT",
                       help="also serve the HTTP APIs (TEI, Cohere, Jina, Infinity) on HOST:PORT")
        g.add_argument("--http-processes", type=int, default=d.processes, help="gateway processes sharing the port")
    g.add_argument("--api-key", action="append", default=[], help="accept this Bearer key (repeatable)")
    g.add_argument("--api-keys-file", default=None, help="accept the keys in this file, one a line (# comments)")
    g.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="larger request bodies get 413")
    return p


def gateway_config(args: argparse.Namespace, connect: str, listen: str, processes: int, timeout_s: float,
                   security=None):
    from pathlib import Path

    from rerankpool.http.config import GatewayConfig

    keys = list(args.api_key)
    if args.api_keys_file:
        lines = Path(args.api_keys_file).read_text().splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if args.api_keys_file and not keys:
        raise SystemExit(f"--api-keys-file {args.api_keys_file} holds no key")
    if processes < 1:
        raise SystemExit("--processes must be >= 1")
    return GatewayConfig(connect=connect, listen=listen, processes=processes, api_keys=tuple(keys),
                         timeout_s=timeout_s, max_body_bytes=args.max_body_bytes, security=security)


def broker_config(args: argparse.Namespace, expect_workers: int = 0):
    from rerankpool.security.cli import server_security_from_args

    from rerankpool.broker.batching import BatchingConfig
    from rerankpool.broker.core import CoreConfig
    from rerankpool.broker.registry import LivenessConfig
    from rerankpool.broker.server import BrokerConfig
    from rerankpool.protocol import Limits

    return BrokerConfig(
        frontend=args.frontend,
        backend=args.backend,
        core=CoreConfig(
            batching=BatchingConfig(
                args.max_batch, args.max_batch_tokens, args.batch_timeout_ms, args.bucket_edges, args.split_min
            ),
            liveness=LivenessConfig(args.heartbeat_interval_s, args.liveness),
            request_timeout_ms=args.request_timeout_ms,
            max_queued_pairs=args.max_queued_pairs,
        ),
        limits=Limits(args.max_docs, args.max_doc_chars, Limits().max_query_chars, args.max_message_bytes),
        expect_workers=expect_workers,
        security=server_security_from_args(args),
    )


def worker_threads(args: argparse.Namespace, workers: int, device: str) -> int:
    """Threads per worker from parsed worker flags: --threads, else the pool's default for the device."""
    from rerankpool.worker.pool import default_threads

    return args.threads or default_threads(workers, on_cpu=not args.devices and device == "cpu")


def worker_pool(args: argparse.Namespace, connect: str, security=None):
    from rerankpool.worker.config import WorkerConfig
    from rerankpool.worker.pool import WorkerPool, with_device_processes, worker_configs

    n = args.workers
    if n < 1:
        raise SystemExit("--workers must be >= 1")
    devices = [f"cuda:{d.strip()}" for d in args.devices.split(",")] if args.devices else None
    threads = worker_threads(args, n, args.device)
    base = WorkerConfig(
        connect=connect, model=args.model, engine=args.engine, device=args.device, dtype=args.dtype,
        max_length=args.max_length, capacity=args.capacity, threads=threads, compile=args.compile,
        packed=args.packed, cuda_graphs=args.cuda_graphs, fast_tokenizer=args.fast_tokenizer, warmup=args.warmup,
        heartbeat_interval_s=args.heartbeat_interval_s, liveness=args.liveness,
        security=security,
    )
    configs = worker_configs(base, n, devices)
    on_cuda = bool(devices) or args.device.startswith("cuda")
    if not (args.device_process if args.device_process is not None else on_cuda and args.engine == "torch"):
        return WorkerPool(configs)
    device_processes, configs = with_device_processes(configs, args.pass_tokens)
    return WorkerPool(configs, device_processes=device_processes)


def _install_drain_handlers(drain, stop) -> None:
    """First SIGINT/SIGTERM drains; a second one stops at once."""
    hits = {"n": 0}

    def handler(signum, frame):
        hits["n"] += 1
        if hits["n"] == 1:
            logger.info("%s: finishing requests in flight (again to stop now)", signal.Signals(signum).name)
            drain()
        else:
            stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_broker(args: argparse.Namespace) -> int:
    from rerankpool.broker.server import Broker

    broker = Broker(broker_config(args))
    logger.info("broker: clients at %s, workers at %s", broker.frontend_endpoint, broker.backend_endpoint)
    _install_drain_handlers(broker.drain, broker.stop)
    broker.run()
    return 0


def _local(endpoint: str) -> str:
    """The address a local worker connects to for a bound endpoint (tcp://0.0.0.0 -> 127.0.0.1)."""
    return endpoint.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://[::]:", "tcp://[::1]:")


def cmd_up(args: argparse.Namespace) -> int:
    from rerankpool.broker.server import Broker

    config = broker_config(args, expect_workers=args.workers)
    broker = Broker(config)
    logger.info("broker: clients at %s, workers at %s", broker.frontend_endpoint, broker.backend_endpoint)
    local_keys = config.security.local_client() if config.security else None
    pool = worker_pool(args, _local(broker.backend_endpoint), local_keys)

    def stop_all() -> None:
        broker.stop()

    _install_drain_handlers(broker.drain, stop_all)
    gateway = None
    if args.http:
        from rerankpool.http.serve import start_process

        gateway, _ = start_process(gateway_config(args, _local(broker.frontend_endpoint), args.http,
                                                  args.http_processes, args.request_timeout_ms / 1000.0, local_keys),
                                   args.log_level)
    pool.start()
    supervisor = threading.Thread(target=lambda: (pool.supervise(), pool.failure and broker.stop()), daemon=True)
    supervisor.start()
    try:
        broker.run()
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.join(timeout=10)
        pool.stop()
    if pool.failure:
        logger.error("%s", pool.failure)
        return 1
    logger.info("stopped")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from rerankpool.security.cli import client_security_from_args

    pool = worker_pool(args, args.connect, client_security_from_args(args))
    _install_drain_handlers(lambda: threading.Thread(target=pool.stop).start(), pool.stop)
    pool.start()
    pool.supervise()
    pool.stop()
    if pool.failure:
        logger.error("%s", pool.failure)
        return 1
    return 0


def cmd_http(args: argparse.Namespace) -> int:
    from rerankpool.http.serve import serve
    from rerankpool.security.cli import client_security_from_args

    config = gateway_config(args, args.connect, args.listen, args.processes, args.timeout_s,
                            client_security_from_args(args))
    return serve(config, args.log_level or "INFO")


def cmd_rerank(args: argparse.Namespace) -> int:
    from rerankpool import Client

    from rerankpool.security.cli import client_security_from_args

    docs = args.docs or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with Client(args.connect, timeout=args.timeout, security=client_security_from_args(args)) as client:
        hits = client.rerank(args.query, docs, top_k=args.top_k, return_documents=True, activation=args.activation)
    for hit in hits:
        print(f"{hit.score:9.4f}  [{hit.index}]  {hit.document}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from rerankpool import Client

    from rerankpool.security.cli import client_security_from_args

    with Client(args.connect, timeout=args.timeout, retries=0, security=client_security_from_args(args)) as client:
        stats = client.stats()
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return 0
    skip = {"workers", "events", "queue_buckets"}
    for key in sorted(k for k in stats if k not in skip):
        print(f"{key:20s} {stats[key]}")
    print(f"{'queue_buckets':20s} {stats['queue_buckets']}")
    for w in stats["workers"]:
        print(f"  worker {w['name']}: {w['engine']} {w['device']} {w['dtype']} in_flight={w['in_flight']} "
              f"batches={w['batches_done']} pairs={w['pairs_done']} model={w['model']}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from rerankpool.models import DEFAULT_MODEL, list_builtin_models

    for model in list_builtin_models():
        mark = " (default)" if model.name == DEFAULT_MODEL else ""
        print(f"{model.name}{mark}\n    {model.description}")
    return 0


def _strs(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rerankpool.bench.results import SweepResult
    from rerankpool.bench.sweep import SweepConfig, run_sweep, write_outputs

    out = Path(args.out)
    compare = Path(args.compare) if args.compare else None

    def report(paths: list[Path]) -> int:
        for path in paths:
            print(path)
            if compare is not None and path.name.endswith(f"_vs_{compare.stem}.md"):
                print(path.read_text())  # the deltas against the reference, side by side
        return 0

    if args.render:  # regenerate the report and plots from a sweep's raw JSON
        return report(write_outputs(SweepResult.from_json(Path(args.render)), out, compare))
    config = SweepConfig(
        name=out.name, out_dir=out, model=args.model,
        engines=args.engine, workers=list(args.workers), batches=list(args.batch),
        concurrency=list(args.concurrency), pairs=args.pairs, dataset=args.dataset, queries=args.queries,
        candidates=args.candidates, repeat=args.repeat, device=args.device, connect=args.connect,
        baseline=args.baseline, baseline_batch_size=args.baseline_batch_size, ceilings=args.ceilings,
        sample_interval_s=args.sample_interval_s, broker_args=args.broker_args, worker_args=args.worker_args,
        load_processes=args.load_processes, synthetic_words=args.synthetic_words,
        http=args.http, http_processes=args.http_processes, external=args.external,
        title=args.title or out.name, description=args.description,
    )
    return report(write_outputs(run_sweep(config), config.out_dir, compare))


def _named_url(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not url.startswith("http"):
        raise argparse.ArgumentTypeError(f"expected NAME=http://HOST:PORT, got {text!r}")
    return name, url


def bench_parser(sub) -> None:
    from rerankpool.bench.sweep import DATASETS
    from rerankpool.models import DEFAULT_MODEL

    p = sub.add_parser("bench", help="sweep batch x concurrency x engine; write reports, time series and plots")
    p.add_argument("--out", required=True, help="a folder, e.g. bench/results/NAME: NAME.md, time series, plots")
    p.add_argument("--batch", type=_ints, default=(32,), help="pairs per client request, e.g. 32,48,64,96")
    p.add_argument("--concurrency", type=_ints, default=(1,), help="concurrent clients, e.g. 1,4")
    p.add_argument("--engine", type=_strs, default=["torch"], help="engines[:dtype], e.g. torch,onnx:int8,mlx")
    p.add_argument("--workers", type=_ints, default=(1,), help="worker counts, e.g. 1,2")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pairs", type=int, default=2000, help="pairs per config (squad-dev, synthetic)")
    p.add_argument("--dataset", default="squad-dev", choices=DATASETS)
    p.add_argument("--synthetic-words", type=lambda s: tuple(int(x) for x in s.split(",")), default=(40, 200),
                   metavar="LO,HI", help="synthetic: document length in words, uniform in [LO, HI]")
    p.add_argument("--queries", type=int, default=50, help="squad-rerank: queries")
    p.add_argument("--candidates", type=int, default=20, help="squad-rerank: candidates per query")
    p.add_argument("--repeat", type=int, default=1, help="squad-rerank: rounds of the workload per config")
    p.add_argument("--connect", default=None, help="use a running broker instead of starting a pool")
    p.add_argument("--baseline", action="store_true", help="also time CrossEncoder.predict on the same pairs")
    p.add_argument("--baseline-batch-size", type=int, default=32)
    p.add_argument("--ceilings", action="store_true",
                   help="also measure the tokenizer, forward-pass and compute ceilings on the same pairs")
    p.add_argument("--render", default=None, metavar="NAME.json",
                   help="only rewrite the report and plots of a finished sweep from its raw JSON")
    p.add_argument("--compare", default=None, help="a reference report to print deltas against")
    p.add_argument("--sample-interval-s", type=float, default=0.25)
    p.add_argument("--load-processes", type=int, default=None,
                   help="processes for the load-generating clients (default: one per 16 clients, at most 4)")
    p.add_argument("--http", action="store_true",
                   help="also drive each config through the pool's HTTP gateway (/pool/*), in the same run")
    p.add_argument("--http-processes", type=int, default=1, help="--http: gateway processes")
    p.add_argument("--external", type=_named_url, action="append", default=[], metavar="NAME=URL",
                   help="also drive another server's /rerank (Infinity's shape) on the same requests, after the "
                        "pool's runs; repeatable (needs --dataset squad-rerank)")
    p.add_argument("--broker-args", type=lambda s: s.split(), default=[], help='extra broker flags, quoted')
    p.add_argument("--worker-args", type=lambda s: s.split(), default=[], help='extra worker flags, quoted')
    p.add_argument("--title", default=None)
    p.add_argument("--description", default="batch size x concurrency x engine sweep through the pool")
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    from rerankpool.security.cli import client_flags, keys_parser, server_flags

    parser = argparse.ArgumentParser(prog="rerankpool", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[broker_flags(), worker_flags(connect=False), liveness_flags(), server_flags(),
                                       http_flags(standalone=False)],
                        help="run a broker and N workers (and an HTTP gateway) in the foreground")
    up.set_defaults(func=cmd_up)
    broker = sub.add_parser("broker", parents=[broker_flags(), liveness_flags(), server_flags()], help="run a broker")
    broker.set_defaults(func=cmd_broker)
    worker = sub.add_parser("worker", parents=[worker_flags(connect=True), liveness_flags(), client_flags()],
                            help="run N workers for a broker")
    worker.set_defaults(func=cmd_worker)

    http = sub.add_parser("http", parents=[http_flags(standalone=True), client_flags()],
                          help="serve the HTTP APIs (TEI, Cohere, Jina, Infinity) for a running broker")
    http.set_defaults(func=cmd_http)

    rerank = sub.add_parser("rerank", parents=[client_flags()],
                            help="rerank documents (arguments, or one per line on stdin)")
    rerank.add_argument("query")
    rerank.add_argument("docs", nargs="*")
    rerank.add_argument("--connect", default=DEFAULT_FRONTEND)
    rerank.add_argument("--top-k", type=int, default=None)
    rerank.add_argument("--activation", default="raw", choices=("raw", "sigmoid"))
    rerank.add_argument("--timeout", type=float, default=30.0)
    rerank.set_defaults(func=cmd_rerank)

    stats = sub.add_parser("stats", parents=[client_flags()], help="print a broker's live counters")
    stats.add_argument("--connect", default=DEFAULT_FRONTEND)
    stats.add_argument("--json", action="store_true")
    stats.add_argument("--timeout", type=float, default=5.0)
    stats.set_defaults(func=cmd_stats)

    models = sub.add_parser("models", help="list the offline built-in models")
    models.set_defaults(func=cmd_models)
    bench_parser(sub)
    keys_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from rerankpool.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, prefix=args.command)
    try:
        return args.func(args)
    except Exception as exc:  # the last line of defence: say what went wrong, not a traceback
        from rerankpool.errors import RerankPoolError

        if isinstance(exc, (RerankPoolError, OSError)):
            logger.error("%s", exc)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
