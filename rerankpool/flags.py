"""The flags the commands share, as argparse parent parsers: the broker's, the workers', the heartbeats' and the
HTTP gateway's, and the threads a worker gets from them.

Below both ``rerankpool.cli`` and ``rerankpool.bench``: the bench reads worker flags with these, and never imports
the command line.
"""

from __future__ import annotations

import argparse

DEFAULT_FRONTEND = "tcp://127.0.0.1:5555"
DEFAULT_BACKEND = "tcp://127.0.0.1:5556"


def ints(text: str) -> tuple[int, ...]:
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
    g.add_argument("--bucket-edges", type=ints, default=DEFAULT_BUCKET_EDGES,
                   help="upper token lengths of the length buckets, comma-separated")
    g.add_argument("--split-min", type=int, default=b.split_min,
                   help="idle workers share a small queue, each taking at least this many pairs "
                        "but the last (0: never split)")
    g.add_argument("--request-timeout-ms", type=int, default=30_000, help="deadline of requests that name none")
    g.add_argument("--max-queued-pairs", type=int, default=200_000,
                   help="queue bound; beyond it requests get an 'overloaded' error at once")
    g.add_argument("--max-queued-pairs-per-model", type=int, default=None,
                   help="queue bound of each model (default: the whole bound with one model, half with several)")
    g.add_argument("--chunking", choices=("off", "max", "mean", "first"), default="off",
                   help="score documents longer than the window by overlapping windows, for requests that do not "
                        "say: the document's score is the max (or mean, or first) of its windows' scores")
    g.add_argument("--chunk-window-tokens", type=int, default=None,
                   help="--chunking: document tokens a window (default: all that fit beside the query)")
    g.add_argument("--chunk-overlap-tokens", type=int, default=64, help="--chunking: tokens shared by next windows")
    g.add_argument("--max-windows-per-doc", type=int, default=16,
                   help="chunked scoring: windows a document at most, its first ones (a request may ask for fewer)")
    g.add_argument("--default-model", default=None,
                   help="the model of requests that name none (default: the first one a worker serves; "
                        "`up` makes it its first --model)")
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
    g.add_argument("--model", action="append", default=None, metavar="NAME[,KEY=VALUE...]",
                   help="built-in name (see `rerankpool models`), local directory, or Hugging Face id; repeat it "
                        "to serve several models (requests choose one by name; the first is the default), each "
                        f"with its own workers=N, device=D, engine=E, dtype=T, max-length=L (default: {DEFAULT_MODEL})")
    g.add_argument("--engine", default="torch", help="model runtime: torch, onnx, mlx, null (no model)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps")
    g.add_argument("--devices", default=None,
                   help="spread workers over CUDA devices round robin, e.g. 0,1 (overrides --device)")
    g.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16", "int8"))
    g.add_argument("--max-length", type=int, default=512,
                   help="truncate pairs to this many tokens (LLM rerankers: the prompt included; their cards use 8192)")
    g.add_argument("--instruction", default=None,
                   help="LLM rerankers: the task instruction in the prompt (default: the checkpoint's "
                        "rerankpool-reranker.json, else the model card's)")
    g.add_argument("--truncate", action=argparse.BooleanOptionalAction, default=True,
                   help="cut pairs past --max-length for requests that do not say (--no-truncate: refuse them with "
                        "too_large, naming the document and its token count, as TEI does)")
    g.add_argument("--capacity", type=int, default=None,
                   help="batches in flight per worker, leased out among its brokers (default: 2 a broker, so each "
                        "still overlaps tokenizing with inference when the others are gone)")
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


def worker_threads(args: argparse.Namespace, workers: int, device: str) -> int:
    """Threads per worker from parsed worker flags: --threads, else the pool's default for the device."""
    from rerankpool.worker.supervisor import default_threads

    return args.threads or default_threads(workers, on_cpu=not args.devices and device == "cpu")
