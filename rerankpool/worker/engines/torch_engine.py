"""PyTorch / transformers engine: AutoModelForSequenceClassification under inference_mode.

On CUDA, BERT models run on packed tokens (``packed_bert``): no padding in the dense
layers and FlashAttention's variable-length kernel, so a batch of mixed lengths is one
forward pass (up to 65,536 tokens) with no padding waste; ``--packed`` runs the same on
other devices, with attention in padded groups. Otherwise (and for other architectures)
the padded transformers forward pass runs on length-sorted chunks: on CPU, packed
measured no faster (the sorted chunks there already hold little padding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from rerankpool.worker.engines.base import AsyncEngine, Chunk, EngineConfig, EngineLoadError, PackedChunk

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """Check that the asked-for device exists here; say what to do if it does not."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineLoadError(f"--device {device}: no CUDA device is visible to torch; use --device cpu")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise EngineLoadError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0..)"
            )
        return f"cuda:{index}"
    if device == "mps" and not torch.backends.mps.is_available():
        raise EngineLoadError("--device mps: Metal is not available to torch here; use --device cpu")
    if device not in ("cpu", "mps"):
        raise EngineLoadError(f"unknown --device {device!r}: use cpu, cuda, cuda:N or mps")
    return device


@dataclass
class InFlight:
    """A launched chunk: its scores (a host tensor being filled, or a finished array) and the event to wait on."""

    scores: Any
    done: Any = None  # torch.cuda.Event; None when the scores are already there
    short: bool = False  # replayed from a CUDA graph: done within a millisecond or two, so waited for by polling


class TorchEngine(AsyncEngine):
    """Launches a pass without waiting for it (``AsyncEngine``); ``packed`` when it runs ``packed_bert``."""

    name = "torch"

    def __init__(self, config: EngineConfig) -> None:
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification

        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if config.dtype not in dtypes:
            raise EngineLoadError(f"the torch engine runs float32, float16 or bfloat16, not {config.dtype!r}")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        self.dtype = config.dtype
        self._torch = torch
        transformers.utils.logging.disable_progress_bar()
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        model = AutoModelForSequenceClassification.from_pretrained(
            str(config.model_path), attn_implementation="sdpa", **{dtype_kw: dtypes[config.dtype]}
        )
        if model.config.num_labels != 1:
            raise EngineLoadError(
                f"{config.model_path} has {model.config.num_labels} labels; rerankpool serves "
                "single-score cross-encoders (num_labels=1)"
            )
        self.model = model.eval().to(self.device)
        self.packed_model = self._packed_runner(config)
        self.packed = self.packed_model is not None
        self.graphs = None
        if self.packed and config.cuda_graphs and self.packed_model.attention == "varlen":
            from rerankpool.worker.engines.packed_bert import GraphedPackedBert

            try:
                self.graphs = GraphedPackedBert(self.packed_model, config.max_length)
            except (RuntimeError, ValueError) as exc:  # a driver or torch that cannot capture: run eager
                logger.warning("CUDA graph capture failed (%s); small batches run eager", exc)
        if config.compile and not self.packed:  # packed: --compile fuses its add + LayerNorm steps instead
            self.model = torch.compile(self.model, dynamic=False)
        logger.info(
            "torch engine: %s on %s (%s%s)", config.model_path, self.device, self.dtype,
            f", packed, {self.packed_model.attention} attention{', CUDA graphs' if self.graphs else ''}"
            f"{', fused add + LayerNorm' if self.packed_model.fused else ''}"
            if self.packed_model else "",
        )

    def _packed_runner(self, config: EngineConfig):
        """The packed forward pass, if asked for (or, by default, on CUDA) and the model allows it."""
        from rerankpool.worker.engines.packed_bert import PackedBert, supports

        wanted = config.packed if config.packed is not None else self.device.startswith("cuda")
        if not wanted:
            return None
        reason = supports(self.model)
        if reason is not None:
            if config.packed:
                raise EngineLoadError(f"--packed: {reason}; run without --packed")
            logger.info("packed forward pass not used: %s", reason)
            return None
        return PackedBert(self.model, fused=config.compile)

    def launch(self, chunk: Chunk | PackedChunk) -> InFlight:
        """Start a chunk's forward pass and the copy of its scores to the host; ``collect`` waits for both.

        On CUDA this returns once the kernels are queued, so a caller (the device process)
        can launch the next chunk while the GPU still runs this one.
        """
        torch = self._torch
        if isinstance(chunk, PackedChunk):
            shape = self.graphs.shape_for(chunk.input_ids.size, len(chunk.lengths)) if self.graphs else None
            if shape is not None:
                chunk.computed_tokens = shape[0]
                return self._in_flight(self.graphs(chunk.input_ids, chunk.token_type_ids, chunk.lengths, shape),
                                       short=True)
            inputs = self.packed_model.inputs(chunk.input_ids, chunk.token_type_ids, chunk.lengths)
            return self._in_flight(self.packed_model(inputs))
        with torch.inference_mode():
            inputs = {
                "input_ids": torch.from_numpy(chunk.input_ids).to(self.device, non_blocking=True),
                "attention_mask": torch.from_numpy(chunk.attention_mask).to(self.device, non_blocking=True),
                "token_type_ids": torch.from_numpy(chunk.token_type_ids).to(self.device, non_blocking=True),
            }
            return self._in_flight(self.model(**inputs).logits[:, 0])

    def _in_flight(self, scores, short: bool = False) -> InFlight:
        if not self.device.startswith("cuda"):
            return InFlight(scores.float().cpu().numpy())
        # The copy is queued behind the pass, into pinned memory (so it does not block), and
        # a graph replayed next cannot overwrite these scores before it.
        host = self._torch.empty(scores.shape, dtype=self._torch.float32, pin_memory=True)
        host.copy_(scores, non_blocking=True)
        # Wait for large batches by sleeping, not spinning: a spinning worker burns a core the
        # tokenizers of all workers on the host need (CUDA's default spins when it can).
        # Small batches, replayed from CUDA graphs, finish within a millisecond or two:
        # there a sleeping wait's wake-up cost 0.06-0.23 ms at p50 and up to 2.5 ms at
        # p99 on the H100 host (bench/gpu/sync_probe.py; its output, bench/results/h100-sync-probe.txt,
        # is in git history at edd338e), so those spin.
        done = self._torch.cuda.Event(blocking=not short)
        done.record()
        return InFlight(host, done, short=short)

    def running(self, pending: InFlight) -> bool:
        """Whether a short pass is still on the GPU; False once done, and for long passes (``collect`` sleeps)."""
        return pending.short and not pending.done.query()

    def collect(self, pending: InFlight) -> np.ndarray:
        if pending.done is not None:
            pending.done.synchronize()
            return pending.scores.numpy()
        return pending.scores

    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        for rows, length in shapes:
            if self.packed:
                lengths = np.full(rows, length, dtype=np.int64)
                ids = np.ones(rows * length, dtype=np.int64)
                self.forward(PackedChunk(np.arange(rows), ids, np.zeros_like(ids), lengths))
                continue
            ids = np.ones((rows, length), dtype=np.int64)
            self.forward(Chunk(np.arange(rows), ids, ids, np.zeros_like(ids)))

    def memory(self) -> dict[str, float]:
        torch = self._torch
        if self.device.startswith("cuda"):
            return {
                "torch_cuda_allocated_mb": torch.cuda.memory_allocated(self.device) / 2**20,
                "torch_cuda_reserved_mb": torch.cuda.memory_reserved(self.device) / 2**20,
            }
        if self.device == "mps":
            return {"torch_mps_allocated_mb": torch.mps.current_allocated_memory() / 2**20}
        return {}
