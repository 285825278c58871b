"""The ceilings a pool can approach: tokenizer throughput and the model's forward pass.

All are measured on the same pairs as the sweep, with no broker and no sockets. The
tokenizer twice: ``tokenizers.encode_batch`` in one process on all cores (no Python per
pair), and the workers' own tokenizer in as many processes as the pool has, on
worker-sized batches (what the pool itself can tokenize). The model in one process, on
length-sorted, pre-tokenized batches already on the device, timed padded (transformers,
as the issue's ceiling was measured) and, where the engine runs packed tokens (CUDA),
packed: the higher one is the model's ceiling. The pool's end-to-end throughput is then
quoted as a fraction of each.

The compute ceiling bounds any engine in a given dtype: the device's measured
matmul rate at the model's own layer shapes, divided by the model's FLOPs per pair (from
its config and the pairs' real token counts, no padding). No runtime can beat it without
changing the arithmetic (another dtype, dropped inputs), so it says at once whether a
target is reachable in that dtype on that machine.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rerankpool.bench.children import collect
from rerankpool.bench.results import BaselineResult
from rerankpool.worker.policy import ChunkPolicy
from rerankpool.worker.tokenize import BatchTokenizer, load_pair_tokenizer, unpad

logger = logging.getLogger(__name__)


def tokenizer_ceiling(
    tokenizer_json: Path, pairs: Sequence[tuple[str, str]], max_length: int = 512, chunk: int = 4096
) -> BaselineResult:
    """Pairs/s of ``tokenizers``' encode_batch (Rust, all cores via rayon), no padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.enable_truncation(max_length, strategy="longest_first")
    tok.encode_batch(list(pairs[:chunk]))  # warm-up: thread pool start
    start = time.perf_counter()
    for i in range(0, len(pairs), chunk):
        tok.encode_batch(list(pairs[i : i + chunk]))
    wall = time.perf_counter() - start
    return BaselineResult("tokenizer ceiling", len(pairs), wall, chunk,
                          "tokenizers encode_batch in one process on all cores; no padding, no arrays")


def worker_batches(pairs: Sequence[tuple[str, str]], size: int):
    """Pairs cut into batches as the broker ships them: each batch's distinct queries once, and an index."""
    for i in range(0, len(pairs), size):
        group = pairs[i : i + size]
        queries = sorted({q for q, _ in group})
        index = {q: k for k, q in enumerate(queries)}
        yield queries, np.array([index[q] for q, _ in group], np.int32), [d for _, d in group]


def _tokenize_share(model_path: Path, batches: list, threads: int, device: str, max_length: int, fast: bool,
                    start, results) -> None:
    """One process of ``pool_tokenizer_ceiling``: thread pools sized as a worker's before the libraries load."""
    import os

    from rerankpool.worker.supervisor import thread_env

    os.environ.update(thread_env(threads, device))
    from rerankpool.worker.config import WorkerConfig

    # The chunks a worker cuts on this device: packed on CUDA (BERT models), padded elsewhere.
    policy = WorkerConfig(device=device).policy(packed=device.startswith("cuda"))
    tok = load_pair_tokenizer(model_path, max_length, fast=fast, threads=threads)
    tok.encode(*batches[0], policy)  # warm-up: thread pools, character checks
    start.wait()
    begin = time.perf_counter()
    for batch in batches:
        tok.encode(*batch, policy)
    results.put((tok.backend, time.perf_counter() - begin))


def pool_tokenizer_ceiling(
    model_path: Path, pairs: Sequence[tuple[str, str]], processes: int, threads: int, device: str = "cuda",
    max_length: int = 512, batch: int = 256, fast: bool = True,
) -> BaselineResult:
    """Pairs/s of the workers' own tokenizer in ``processes`` processes at once, as the pool runs it.

    Each process tokenizes its share of the pairs in broker-sized batches into the chunks
    a worker on ``device`` cuts (packed on CUDA, padded elsewhere); the rate is all pairs over
    the slowest process's time. This is the tokenizer ceiling the pool itself can reach.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    batches = list(worker_batches(pairs, batch))
    start, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_tokenize_share, args=(model_path, batches[i::processes], threads, device,
                                                        max_length, fast, start, results), name=f"tokenizer-{i}")
             for i in range(processes)]
    for proc in procs:
        proc.start()
    timings = collect(results, procs, processes)
    backend = timings[0][0]
    return BaselineResult(
        f"tokenizer ceiling (pool: {backend})", len(pairs), max(t for _, t in timings), batch,
        f"the workers' own tokenizer in {processes} processes x {threads} threads, batches of {batch}",
    )


def pair_flops(config: dict, tokens: int) -> float:
    """FLOPs of one forward pass over one pair of ``tokens`` tokens (matmuls and attention).

    An encoder (BERT, XLM-R, ...): Q/K/V/O and a two-matrix feed-forward a layer, full attention.
    A decoder (an LLM reranker: its config has ``num_key_value_heads``): grouped K/V, a gated
    three-matrix feed-forward, causal attention (half the scores), and two rows of the output
    projection at the last token.
    """
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    if "num_key_value_heads" not in config:
        per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 4 * tokens * tokens * h
        return layers * per_layer + 2 * h * h + 2 * h
    width = config["num_attention_heads"] * config.get("head_dim", h // config["num_attention_heads"])
    kv = config["num_key_value_heads"] * config.get("head_dim", h // config["num_attention_heads"])
    per_layer = 2 * tokens * (2 * h * width + 2 * h * kv + 3 * h * i) + 2 * tokens * tokens * width
    return layers * per_layer + 2 * h * 2


def _median_seconds(device: str, run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` on ``device`` after one warm-up call, waiting for the GPU each time."""
    import torch

    def once() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            run()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    once()
    return float(np.median([once() for _ in range(repeats)]))


def encode_pairs(tok: BatchTokenizer, pairs: Sequence[tuple[str, str]], policy: ChunkPolicy):
    """The pairs through the worker's own tokenizer, one query entry per pair."""
    return tok.encode([q for q, _ in pairs], list(range(len(pairs))), [d for _, d in pairs], policy)


def matmul_flops_per_s(hidden: int, intermediate: int, device: str, dtype: str, rows: int = 4096,
                       repeats: int = 20) -> float:
    """The device's matmul rate at the model's feed-forward shape ([rows, hidden] x [hidden, intermediate])."""
    import torch

    kind = getattr(torch, dtype)
    a = torch.randn(rows, hidden, dtype=kind, device=device)
    b = torch.randn(hidden, intermediate, dtype=kind, device=device)
    seconds = _median_seconds(device, lambda: [a @ b for _ in range(repeats)], 5)
    return 2 * rows * hidden * intermediate * repeats / seconds


def compute_ceiling(model_path: Path, pairs: Sequence[tuple[str, str]], device: str, dtype: str,
                    max_length: int = 512) -> BaselineResult:
    """Pairs/s if every FLOP of the model ran at the device's measured matmul rate, with no padding."""
    import json

    config = json.loads((model_path / "config.json").read_text())
    tok = load_pair_tokenizer(model_path, max_length)
    (chunk,) = encode_pairs(tok, pairs, ChunkPolicy(packed=True)).chunks
    flops = sum(pair_flops(config, int(n)) for n in chunk.lengths)
    rate = matmul_flops_per_s(config["hidden_size"], config["intermediate_size"], device, dtype)
    return BaselineResult(
        f"compute ceiling ({dtype}, {device})", len(pairs), flops / rate, 0,
        f"{flops / len(pairs) / 1e9:.2f} GFLOP a pair at the measured {dtype} matmul rate of "
        f"{rate / 1e9:,.0f} GFLOP/s; no engine in {dtype} can pass it",
    )


def forward_ceilings(
    model_path: Path,
    pairs: Sequence[tuple[str, str]],
    device: str = "cuda",
    dtype: str = "float16",
    batch_size: int = 512,
    max_length: int = 512,
    repeats: int = 3,
) -> list[BaselineResult]:
    """Pairs/s of the model alone: length-sorted batches, inputs already on the device, shapes warmed.

    A cross-encoder twice: transformers' padded forward pass, and the packed one where the
    engine packs (CUDA). An LLM reranker once: the pool's last-token engine on padded batches.
    """
    import torch

    from rerankpool.worker.engines import load_engine
    from rerankpool.worker.engines.base import EngineConfig
    from rerankpool.worker.engines.torch_engine import TorchEngine

    engine = load_engine(EngineConfig(model_path, "torch", device, dtype, max_length))
    tok = load_pair_tokenizer(model_path, max_length)
    (everything,) = encode_pairs(tok, pairs, ChunkPolicy(packed=True)).chunks  # its rows are sorted by length
    whole = ChunkPolicy(overhead_tokens=2**62)  # one padded chunk per batch
    chunks = [
        encode_pairs(tok, [pairs[i] for i in everything.rows[start : start + batch_size]], whole).chunks[0]
        for start in range(0, len(pairs), batch_size)
    ]
    note = f"model only: length-sorted batches of {batch_size} already on the device, median of {repeats} passes"
    if not isinstance(engine, TorchEngine):  # an LLM reranker: the reference's forward, minus the vocabulary
        def run_last_token() -> None:
            for chunk in chunks:
                engine.forward(chunk)

        return [BaselineResult(f"forward ceiling ({dtype}, {device})", len(pairs),
                               _median_seconds(engine.device, run_last_token, repeats), batch_size,
                               f"{note}; padded, the decoder and the last token's yes/no logits only")]
    names = ("input_ids", "attention_mask", *(("token_type_ids",) if engine.feeds_token_types else ()))
    padded = [{name: torch.from_numpy(getattr(c, name)).to(engine.device) for name in names} for c in chunks]

    def run_padded() -> None:
        for inputs in padded:
            engine.model(**inputs)

    results = [BaselineResult(f"forward ceiling ({dtype}, {device})", len(pairs),
                              _median_seconds(engine.device, run_padded, repeats), batch_size,
                              f"{note}; padded, transformers")]
    if engine.packed:
        packed = [engine.packed_model.inputs(p.input_ids, p.token_type_ids, p.lengths) for p in map(unpad, chunks)]

        def run_packed() -> None:
            for inputs in packed:
                engine.packed_model(inputs)

        results.append(BaselineResult(f"forward ceiling ({dtype}, {device}, packed)", len(pairs),
                                      _median_seconds(engine.device, run_packed, repeats), batch_size,
                                      f"{note}; packed tokens, {engine.packed_model.attention} attention"))
    return results
