"""The two ceilings a pool can approach: tokenizer throughput and the model's forward pass.

Both are measured in one process on the same pairs as the sweep, with no broker,
no sockets and no Python per pair: the tokenizer with ``encode_batch`` on all cores,
the model on length-sorted, pre-tokenized batches already on the device. The forward
pass is timed both padded (transformers, as the issue's ceiling was measured) and, where
the engine runs packed tokens (CUDA), packed: the higher one is the model's ceiling. The
pool's end-to-end throughput is then quoted as a fraction of the lower ceiling.

A third, the compute ceiling, bounds any engine in a given dtype: the device's measured
matmul rate at the model's own layer shapes, divided by the model's FLOPs per pair (from
its config and the pairs' real token counts, no padding). No runtime can beat it without
changing the arithmetic (another dtype, dropped inputs), so it says at once whether a
target is reachable in that dtype on that machine.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rerankpool.bench.results import BaselineResult

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


def bert_flops(config: dict, tokens: int) -> float:
    """FLOPs of one BERT forward pass over one pair of ``tokens`` tokens (matmuls and attention)."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 4 * tokens * tokens * h
    return layers * per_layer + 2 * h * h + 2 * h


def matmul_flops_per_s(hidden: int, intermediate: int, device: str, dtype: str, rows: int = 4096,
                       repeats: int = 20) -> float:
    """The device's matmul rate at the model's feed-forward shape ([rows, hidden] x [hidden, intermediate])."""
    import torch

    kind = getattr(torch, dtype)
    a = torch.randn(rows, hidden, dtype=kind, device=device)
    b = torch.randn(hidden, intermediate, dtype=kind, device=device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    for _ in range(3):
        a @ b
    times = []
    for _ in range(5):
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * rows * hidden * intermediate * repeats / float(np.median(times))


def compute_ceiling(model_path: Path, pairs: Sequence[tuple[str, str]], device: str, dtype: str,
                    max_length: int = 512) -> BaselineResult:
    """Pairs/s if every FLOP of the model ran at the device's measured matmul rate, with no padding."""
    import json

    from tokenizers import Tokenizer

    config = json.loads((model_path / "config.json").read_text())
    tok = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length, strategy="longest_first")
    flops = sum(bert_flops(config, len(e.ids)) for e in tok.encode_batch(list(pairs)))
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
    """Pairs/s of the model alone: length-sorted batches, inputs already on the device, shapes warmed."""
    import torch
    from tokenizers import Tokenizer

    from rerankpool.worker.engines.base import EngineConfig
    from rerankpool.worker.engines.packed_bert import PackedInputs
    from rerankpool.worker.engines.torch_engine import TorchEngine

    engine = TorchEngine(EngineConfig(model_path, "torch", device, dtype, max_length))
    tok = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length, strategy="longest_first")
    encodings = sorted(tok.encode_batch(list(pairs)), key=lambda e: len(e.ids))
    groups = [encodings[i : i + batch_size] for i in range(0, len(encodings), batch_size)]
    padded = []
    for group in groups:
        width = len(group[-1].ids)
        ids = np.zeros((len(group), width), np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(group):
            ids[row, : len(enc.ids)] = enc.ids
            types[row, : len(enc.ids)] = enc.type_ids
            mask[row, : len(enc.ids)] = 1
        padded.append({k: torch.from_numpy(v).to(engine.device) for k, v in
                       (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types))})

    def timed(run_all) -> float:
        def once() -> float:
            if engine.device.startswith("cuda"):
                torch.cuda.synchronize(engine.device)
            start = time.perf_counter()
            with torch.inference_mode():
                run_all()
            if engine.device.startswith("cuda"):
                torch.cuda.synchronize(engine.device)
            return time.perf_counter() - start

        once()  # warm-up: every shape once
        return float(np.median([once() for _ in range(repeats)]))

    note = f"model only: length-sorted batches of {batch_size} already on the device, median of {repeats} passes"
    results = [BaselineResult(f"forward ceiling ({dtype}, {device})", len(pairs),
                              timed(lambda: [engine.model(**inputs) for inputs in padded]), batch_size,
                              f"{note}; padded, transformers")]
    if engine.packed:
        packed = [
            PackedInputs.build(
                np.concatenate([e.ids for e in group]), np.concatenate([e.type_ids for e in group]),
                np.array([len(e.ids) for e in group]), engine.device,
            )
            for group in groups
        ]
        results.append(BaselineResult(f"forward ceiling ({dtype}, {device}, packed)", len(pairs),
                                      timed(lambda: [engine.packed_model(inputs) for inputs in packed]), batch_size,
                                      f"{note}; packed tokens, {engine.packed_model.attention} attention"))
    return results
