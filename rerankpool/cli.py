"""The ``rerankpool`` command: up, broker, worker, http, rerank, stats, models (and bench, keys)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Sequence

from rerankpool.flags import DEFAULT_FRONTEND, broker_flags, http_flags, ints, liveness_flags, worker_flags
from rerankpool.flags import worker_threads
from rerankpool.sockets import split_addresses

logger = logging.getLogger("rerankpool")


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


def default_chunking(args: argparse.Namespace):
    """The broker's ``--chunking`` flags as a ``Chunking`` (None when off); exits naming a bad setting."""
    from rerankpool.protocol import Chunking

    if args.chunking == "off":
        return None
    chunking = Chunking(args.chunking, args.chunk_window_tokens, args.chunk_overlap_tokens, args.max_windows_per_doc)
    problem = chunking.check()
    if problem:
        raise SystemExit(f"--chunking: {problem}")
    return chunking


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
            max_queued_pairs_per_model=args.max_queued_pairs_per_model,
            default_model=args.default_model,
            chunking=default_chunking(args), max_windows_per_doc=args.max_windows_per_doc,
        ),
        limits=Limits(args.max_docs, args.max_doc_chars, Limits().max_query_chars, args.max_message_bytes),
        expect_workers=expect_workers,
        security=server_security_from_args(args),
    )


def model_specs(args: argparse.Namespace) -> list:
    """The ``--model`` flags as ``ModelSpec``s (the default model when none is given)."""
    from rerankpool.models import DEFAULT_MODEL
    from rerankpool.worker.config import ModelSpec

    try:
        specs = [ModelSpec.parse(text) for text in args.model or [DEFAULT_MODEL]]
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SystemExit(f"--model names a model twice ({', '.join(names)}): give each once, with workers=N")
    return specs


def worker_pool(args: argparse.Namespace, connect: str, security=None):
    """The worker processes of every ``--model``: each model's own count, device, engine and dtype, else the
    command's flags; one device process per (device, model) where the model runs in one."""
    from rerankpool.worker.config import WorkerConfig
    from rerankpool.worker.supervisor import WorkerSupervisor, with_device_processes, worker_configs

    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    specs = model_specs(args)
    total = sum(int(s.get("workers", args.workers)) for s in specs)
    configs, device_run = [], []
    for spec in specs:
        device = str(spec.get("device", args.device))
        engine = str(spec.get("engine", args.engine))
        devices = [f"cuda:{d.strip()}" for d in args.devices.split(",")] if args.devices and "device" not in \
            spec.settings else None
        base = WorkerConfig(
            connect=connect, model=spec.name, engine=engine, device=device, dtype=str(spec.get("dtype", args.dtype)),
            max_length=int(spec.get("max-length", args.max_length)),
            capacity=args.capacity or 2 * len(split_addresses(connect)),
            threads=worker_threads(args, total, device), compile=args.compile, packed=args.packed,
            cuda_graphs=args.cuda_graphs, fast_tokenizer=args.fast_tokenizer, warmup=args.warmup,
            instruction=args.instruction, truncate=args.truncate, heartbeat_interval_s=args.heartbeat_interval_s,
            liveness=args.liveness,
            security=security,
        )
        own = worker_configs(base, int(spec.get("workers", args.workers)), devices, first=len(configs))
        on_cuda = bool(devices) or device.startswith("cuda")
        wants_device = args.device_process if args.device_process is not None else on_cuda and engine == "torch"
        configs += own
        device_run += [wants_device] * len(own)
    if not any(device_run):
        return WorkerSupervisor(configs)
    device_processes, served = with_device_processes([c for c, d in zip(configs, device_run) if d], args.pass_tokens)
    return WorkerSupervisor([c for c, d in zip(configs, device_run) if not d] + served,
                            device_processes=device_processes)


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

    specs = model_specs(args)
    args.default_model = args.default_model or specs[0].model
    config = broker_config(args, expect_workers=sum(int(s.get("workers", args.workers)) for s in specs))
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
    from rerankpool import protocol as P

    from rerankpool.security.cli import client_security_from_args

    docs = args.docs or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if args.wait:
        wait_for_pool(args.connect, args.wait, client_security_from_args(args))
    with Client(args.connect, timeout=args.timeout, security=client_security_from_args(args)) as client:
        truncation = P.Truncation(args.truncate, args.truncation_direction, args.max_tokens_per_doc)
        chunking = P.Chunking(args.chunking) if args.chunking else None
        hits = client.rerank(args.query, docs, top_k=args.top_k, return_documents=True, activation=args.activation,
                             model=args.model, truncation=truncation, chunking=chunking)
    for hit in hits:
        passage = hit.document[hit.span[0]:hit.span[1]] if hit.span and hit.document else hit.document
        print(f"{hit.score:9.4f}  [{hit.index}]  {passage}")
    return 0


def wait_for_pool(address: str, seconds: float, security=None) -> None:
    """Block until the broker at ``address`` answers with a live worker (a pool still starting), or exit."""
    import time

    from rerankpool import Client
    from rerankpool.errors import NoReply

    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            with Client(address, timeout=min(remaining, 5.0), retries=0, security=security) as client:
                if client.ping(wait_workers=1, timeout=min(remaining, 5.0))["workers"]:
                    return
        except NoReply:
            continue  # nothing listens yet
    raise SystemExit(f"no worker was ready at {address} within {seconds:.0f} s")


def cmd_stats(args: argparse.Namespace) -> int:
    from rerankpool import Client

    from rerankpool.security.cli import client_security_from_args

    with Client(args.connect, timeout=args.timeout, retries=0, security=client_security_from_args(args)) as client:
        stats = client.stats(history=True)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return 0
    skip = {"workers", "events", "models", "recent", "metrics", "limits"}
    for key in sorted(k for k in stats if k not in skip):
        print(f"{key:20s} {stats[key]}")
    r = stats["recent"]
    ms = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    print(f"{'last ' + format(r['window_s'], '.0f') + ' s':20s} {r['pairs_per_s']:.1f} pairs/s, "
          f"{r['requests_per_s']:.1f} requests/s; latency p50 {ms(r['latency_p50_ms'])}, p95 "
          f"{ms(r['latency_p95_ms'])}, p99 {ms(r['latency_p99_ms'])} ms; a batch: queue {ms(r['queue_ms'])}, "
          f"tokenize {ms(r['tokenize_ms'])}, inference {ms(r['inference_ms'])} ms")
    for m in stats["models"]:
        print(f"  model {m['name']}{' (default)' if m['default'] else ''}: workers={m['workers']} "
              f"queued={m['queued_pairs']} scored={m['pairs_scored']} buckets={m['queue_buckets']}")
    for w in stats["workers"]:
        print(f"  worker {w['name']}: {w['engine']} {w['device']} {w['dtype']} in_flight={w['in_flight']} "
              f"batches={w['batches_done']} pairs={w['pairs_done']} model={w['model']}")
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from rerankpool.security.cli import client_security_from_args
    from rerankpool.top import run_top

    return run_top(args.connect, args.interval, client_security_from_args(args))


def cmd_models(args: argparse.Namespace) -> int:
    """The offline built-ins and the families each engine serves; with --connect, what a pool serves now."""
    from rerankpool.models import DEFAULT_MODEL, list_builtin_models
    from rerankpool.models.families import list_families

    if args.connect:
        from rerankpool import Client
        from rerankpool.security.cli import client_security_from_args

        with Client(args.connect, timeout=args.timeout, retries=0, security=client_security_from_args(args)) as client:
            served = client.models(timeout=args.timeout)
        print(f"Models served at {args.connect}:" if served else f"No model is served at {args.connect} yet.")
        for m in served:
            print(f"  {m.name}{' (default)' if m.default else ''}: {m.workers} live worker(s)"
                  f"{', ' + '; '.join(m.engines) if m.engines else ''}; {m.queued_pairs} pairs queued\n"
                  f"      {m.label}")
        return 0
    print("Built-in models (offline):")
    for model in list_builtin_models():
        mark = " (default)" if model.name == DEFAULT_MODEL else ""
        print(f"  {model.name}{mark}\n      {model.description}")
    print("\nFamilies (from a checkpoint's config.json; --model takes a Hugging Face id or a local directory):")
    for row in list_families():
        builtin = f"; built-in test model: {row.builtin}" if row.builtin else ""
        print(f"  {row.family:12s} {row.title}; engines: {', '.join(row.engines)}\n"
              f"      e.g. {', '.join(row.examples)}{builtin}")
    return 0


def _strs(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rerankpool.bench.results import SweepResult
    from rerankpool.bench.scenarios import ScenarioError, available
    from rerankpool.bench.sweep import SweepConfig, run_sweep, write_outputs

    if args.list_scenarios:
        try:
            scenarios = available()
        except ScenarioError as exc:
            logger.error("%s", exc)
            return 1
        for scenario in scenarios:
            print(f"{scenario.name:32s} {scenario.title}")
        return 0
    if not args.out:
        logger.error("--out is required, or --scenario NAME (which writes to bench/results/NAME)")
        return 2
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
        name=out.name, out_dir=out, model=(args.models or [args.model])[0], more_models=(args.models or [])[1:],
        separate_pools=args.separate_pools,
        engines=args.engine, workers=list(args.workers), batches=list(args.batch),
        concurrency=list(args.concurrency), pairs=args.pairs, dataset=args.dataset, queries=args.queries,
        candidates=args.candidates, repeat=args.repeat, device=args.device, connect=args.connect,
        baseline=args.baseline, baseline_batch_size=args.baseline_batch_size, baseline_dtype=args.baseline_dtype,
        ceilings=args.ceilings,
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


def bench_parser(sub, defaults: dict | None = None) -> None:
    """``rerankpool bench``; ``defaults`` (a scenario's options) replace the flags' own defaults."""
    from rerankpool.bench.datasets import DATASETS
    from rerankpool.models import DEFAULT_MODEL

    p = sub.add_parser("bench", help="sweep batch x concurrency x engine; write reports, time series and plots")
    p.add_argument("--scenario", default=None, metavar="NAME",
                   help="run bench/scenarios/NAME.toml (or a .toml path): its keys are these flags, and the flags "
                        "given here win; --out defaults to bench/results/NAME")
    p.add_argument("--list-scenarios", action="store_true", help="print the scenarios' names and titles")
    p.add_argument("--out", default=None,
                   help="a folder, e.g. bench/results/NAME: NAME.md, time series, plots (required without --scenario)")
    p.add_argument("--batch", type=ints, default=(32,), help="pairs per client request, e.g. 32,48,64,96")
    p.add_argument("--concurrency", type=ints, default=(1,), help="concurrent clients, e.g. 1,4")
    p.add_argument("--engine", type=_strs, default=["torch"], help="engines[:dtype], e.g. torch,onnx:int8,mlx")
    p.add_argument("--workers", type=ints, default=(1,), help="worker counts, e.g. 1,2")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--models", type=_strs, default=None, metavar="A,B,...",
                   help="several models behind one broker (overrides --model; the first is the default): requests "
                        "alternate among them, and the report has a row per model")
    p.add_argument("--separate-pools", action=argparse.BooleanOptionalAction, default=False,
                   help="--models: then also one pool (broker and workers) per model, with the same workers and "
                        "load, in the same run: what sharing one broker costs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--pairs", type=int, default=2000, help="pairs per config (squad-dev, synthetic)")
    p.add_argument("--dataset", default="squad-dev", choices=DATASETS)
    p.add_argument("--synthetic-words", type=lambda s: tuple(int(x) for x in s.split(",")), default=(40, 200),
                   metavar="LO,HI", help="synthetic: document length in words, uniform in [LO, HI]")
    p.add_argument("--queries", type=int, default=50, help="squad-rerank: queries")
    p.add_argument("--candidates", type=int, default=20, help="squad-rerank: candidates per query")
    p.add_argument("--repeat", type=int, default=1, help="squad-rerank: rounds of the workload per config")
    p.add_argument("--connect", default=None, help="use a running broker instead of starting a pool")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=False,
                   help="also time CrossEncoder.predict (an LLM reranker: its model card's code) on the same pairs")
    p.add_argument("--baseline-batch-size", type=int, default=32)
    p.add_argument("--baseline-dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="the baseline's dtype (float32: what CrossEncoder loads by default)")
    p.add_argument("--ceilings", action=argparse.BooleanOptionalAction, default=False,
                   help="also measure the tokenizer, forward-pass and compute ceilings on the same pairs")
    p.add_argument("--render", default=None, metavar="NAME.json",
                   help="only rewrite the report and plots of a finished sweep from its raw JSON")
    p.add_argument("--compare", default=None, help="a reference report to print deltas against")
    p.add_argument("--sample-interval-s", type=float, default=0.25)
    p.add_argument("--load-processes", type=int, default=None,
                   help="processes for the load-generating clients (default: one per 16 clients, at most 4)")
    p.add_argument("--http", action=argparse.BooleanOptionalAction, default=False,
                   help="also drive each config through the pool's HTTP gateway (/pool/*), in the same run")
    p.add_argument("--http-processes", type=int, default=1, help="--http: gateway processes")
    p.add_argument("--external", type=_named_url, action="append", default=[], metavar="NAME=URL",
                   help="also drive another server's /rerank (Infinity's shape) on the same requests, after the "
                        "pool's runs; repeatable (needs --dataset squad-rerank)")
    p.add_argument("--broker-args", type=lambda s: s.split(), default=[], help='extra broker flags, quoted')
    p.add_argument("--worker-args", type=lambda s: s.split(), default=[], help='extra worker flags, quoted')
    p.add_argument("--title", default=None)
    p.add_argument("--description", default="batch size x concurrency x engine sweep through the pool")
    p.set_defaults(func=cmd_bench, **(defaults or {}))


def build_parser(bench_defaults: dict | None = None) -> argparse.ArgumentParser:
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
    rerank.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for the pool to have a live worker (a pool still starting)")
    rerank.add_argument("--model", default=None, help="which of the pool's models (default: the pool's default)")
    rerank.add_argument("--truncate", action=argparse.BooleanOptionalAction, default=None,
                        help="cut pairs past the model's window (default: the workers' --truncate); --no-truncate: "
                             "an error names a document that is too long")
    rerank.add_argument("--truncation-direction", choices=("right", "left"), default="right",
                        help="cut the end of a pair (right) or its start (left)")
    rerank.add_argument("--max-tokens-per-doc", type=int, default=None, help="cut each document to N tokens first")
    rerank.add_argument("--chunking", choices=("max", "mean", "first"), default=None,
                        help="score documents longer than the window by their windows, and print the best one")
    rerank.set_defaults(func=cmd_rerank)

    stats = sub.add_parser("stats", parents=[client_flags()], help="print a broker's live counters")
    stats.add_argument("--connect", default=DEFAULT_FRONTEND)
    stats.add_argument("--json", action="store_true", help="everything, the last minutes' history included")
    stats.add_argument("--timeout", type=float, default=5.0)
    stats.set_defaults(func=cmd_stats)
    top = sub.add_parser("top", parents=[client_flags()], help="the pool live in this terminal, redrawn every second")
    top.add_argument("--connect", default=DEFAULT_FRONTEND)
    top.add_argument("--interval", type=float, default=1.0, help="seconds between screens")
    top.set_defaults(func=cmd_top)

    models = sub.add_parser("models", parents=[client_flags()],
                            help="list the offline built-in models and the model families served; with --connect, "
                                 "the models a running pool serves and their live workers")
    models.add_argument("--connect", default=None, help="a broker's frontend endpoint")
    models.add_argument("--timeout", type=float, default=5.0)
    models.set_defaults(func=cmd_models)
    bench_parser(sub, bench_defaults)
    keys_parser(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; under ``bench --scenario NAME`` the scenario's options are the defaults the flags override."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "scenario", None):
        from rerankpool.bench.scenarios import ScenarioError, load

        try:
            defaults = load(args.scenario).defaults()
        except ScenarioError as exc:
            parser.exit(2, f"rerankpool bench: error: {exc}\n")
        args = build_parser(defaults).parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from rerankpool.logs import setup_logging

    args = parse_args(argv)
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
