"""PyTorch / transformers engine: AutoModelForSequenceClassification under inference_mode.

On CUDA, BERT, XLM-RoBERTa, ELECTRA and ModernBERT models run on packed tokens (``packed_encoder``,
``packed_modernbert``): no padding in the dense layers and FlashAttention's variable-length
kernel, so a batch of mixed lengths is one forward pass (up to 65,536 tokens) with no padding
waste; ``--packed`` runs the same on other devices, with attention in padded groups. Otherwise
(and for other architectures) the padded transformers forward pass runs on length-sorted
chunks: on CPU, packed measured no faster (the sorted chunks there already hold little padding).

Every family in ``rerankpool.models.families`` runs padded (BERT, XLM-RoBERTa, ELECTRA,
ModernBERT, DeBERTa-v2/v3), with the inputs ``CrossEncoder`` gives it: SDPA attention
where the model class supports it, else eager; ``token_type_ids`` only for a model that
reads them; padding set to the model's ``pad_token_id``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rerankpool.models.families import UnsupportedModelError, find_family, load_config, supported_text
from rerankpool.worker.engines.base import AsyncEngine, Chunk, EngineConfig, EngineLoadError, PackedChunk

logger = logging.getLogger(__name__)

# (atol, rtol of the largest logit) between the packed and padded passes on the load-time probe: rounding of
# each dtype passes, a forward pass laid out wrong (a missed window, positions, pooling) does not.
PACKED_TOLERANCE = {"float32": (1e-3, 1e-4), "float16": (5e-2, 1e-2), "bfloat16": (2e-1, 3e-2)}


def load_pretrained(model_class: Any, config: EngineConfig, what: str, **kwargs: Any) -> tuple[Any, str]:
    """A checkpoint as the torch engines load it: its dtype checked, the threads set, on its device, in
    eval mode; returns (model, device). ``what`` names the engine in the errors."""
    import torch
    import transformers

    if config.dtype not in ("float32", "float16", "bfloat16"):
        raise EngineLoadError(f"{what} runs float32, float16 or bfloat16, not {config.dtype!r}")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    transformers.utils.logging.disable_progress_bar()
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model = model_class.from_pretrained(str(config.model_path), **kwargs, **{dtype_kw: getattr(torch, config.dtype)})
    return model.eval().to(device), device


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


def sequence_classifier_class(model_path: Path) -> type:
    """The transformers class ``AutoModelForSequenceClassification`` loads for this checkpoint.

    The family comes from config.json (``rerankpool.models.families``); one rerankpool does
    not test is still served (a warning says so) if transformers has a classifier for it.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    try:
        raw = load_config(model_path)
    except UnsupportedModelError as exc:
        raise EngineLoadError(str(exc)) from exc
    if find_family(raw) is None:
        logger.warning("%s: model_type %r is not a family rerankpool tests (%s); its scores are not checked "
                       "against CrossEncoder", model_path, raw.get("model_type"), supported_text())
    try:
        return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(AutoConfig.from_pretrained(str(model_path)))]
    except (KeyError, ValueError) as exc:  # ValueError: a model_type this transformers does not know
        raise EngineLoadError(
            f"{model_path}: transformers has no sequence classifier for model_type {raw.get('model_type')!r}. "
            f"rerankpool serves: {supported_text()}"
        ) from exc


def attention_for(model_class: type) -> str:
    """SDPA where the class has it, else eager (DeBERTa-v2 has no SDPA): never one the family lacks."""
    return "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"


def feeds_token_types(model: Any) -> bool:
    """Whether the model reads ``token_type_ids``: its forward takes them and it has more than one type.

    BERT and ELECTRA do (query 0, document 1). XLM-R (one type) and DeBERTa-v3 (none) get
    none, as their CrossEncoder tokenizers give none or the embeddings ignore them, and
    ModernBERT's forward has no such argument.
    """
    takes = "token_type_ids" in inspect.signature(model.forward).parameters
    return takes and (getattr(model.config, "type_vocab_size", 0) or 0) > 1


def pad_with(chunk: Chunk, pad_token_id: int | None) -> np.ndarray:
    """The chunk's ids with the padding set to the model's ``pad_token_id``, as transformers pads a batch.

    Masked tokens change no score, but XLM-R numbers positions from its ids (``padding_idx
    + 1`` onward for every id but the pad id): with this, padding gets the position
    transformers gives it, instead of positions past the real tokens, and the model sees
    exactly the batch ``CrossEncoder`` would build.
    """
    if pad_token_id is None:
        return chunk.input_ids
    return np.where(chunk.attention_mask.astype(bool), chunk.input_ids, pad_token_id)


@dataclass
class InFlight:
    """A launched chunk: its scores (a host tensor being filled, or a finished array) and the event to wait on."""

    scores: Any
    done: Any = None  # torch.cuda.Event; None when the scores are already there
    short: bool = False  # replayed from a CUDA graph: done within a millisecond or two, so waited for by polling


class TorchEngine(AsyncEngine):
    """Launches a pass without waiting for it (``AsyncEngine``); ``packed`` when it runs ``packed_encoder``."""

    name = "torch"

    def __init__(self, config: EngineConfig) -> None:
        import torch

        self._torch = torch
        self.dtype = config.dtype
        model_class = sequence_classifier_class(config.model_path)
        model, self.device = load_pretrained(model_class, config, "the torch engine",
                                             attn_implementation=attention_for(model_class))
        if model.config.num_labels != 1:
            raise EngineLoadError(
                f"{config.model_path} has {model.config.num_labels} labels; rerankpool serves "
                "single-score cross-encoders (num_labels=1)"
            )
        self.feeds_token_types = feeds_token_types(model)
        self.pad_token_id = model.config.pad_token_id
        self.model = model
        self.packed_model = self._packed_runner(config)
        self.packed = self.packed_model is not None
        self.graphs = None
        if self.packed and config.cuda_graphs and self.packed_model.attention == "varlen":
            from rerankpool.worker.engines.packed_encoder import GraphedPackedEncoder

            try:
                self.graphs = GraphedPackedEncoder(self.packed_model, config.max_length)
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
        from rerankpool.worker.engines.packed_encoder import load_packed, supports

        wanted = config.packed if config.packed is not None else self.device.startswith("cuda")
        if not wanted:
            return None
        reason = supports(self.model)
        if reason is not None:
            if config.packed:
                raise EngineLoadError(f"--packed: {reason}; run without --packed")
            logger.info("packed forward pass not used: %s", reason)
            return None
        packed = load_packed(self.model, fused=config.compile)
        worst, tolerance = self.packed_disagreement(packed, config.max_length)
        if worst > tolerance:
            reason = (f"the packed forward pass disagrees with transformers' padded one by {worst:.3g} (tolerance "
                      f"{tolerance:.3g}) on a probe batch")
            if config.packed:
                raise EngineLoadError(f"--packed: {reason}; run without --packed")
            logger.warning("%s: running padded", reason)
            return None
        return packed

    def packed_disagreement(self, packed: Any, max_length: int) -> tuple[float, float]:
        """The worst |packed - padded| logit on a probe batch of seeded ids, and what this dtype tolerates.

        The packed runners rebuild each family's forward pass around its modules; checking them
        against the model's own padded pass when they load means a layout they do not know (a
        new transformers, an odd checkpoint) runs padded instead of scoring wrong. The probe's
        lengths cross ModernBERT's local window and XLM-R's position offset.
        """
        torch = self._torch
        longest = min(max_length, getattr(self.model.config, "max_position_embeddings", 512) - 2)
        lengths = np.minimum(np.array([5, 37, 150], dtype=np.int64), longest)
        vocab = int(self.model.config.vocab_size)
        rng = np.random.default_rng(0)
        ids = rng.integers(min(10, vocab - 1), vocab, size=int(lengths.sum()))
        ids[ids == self.pad_token_id] = min(10, vocab - 1)
        types = np.zeros_like(ids)
        with torch.inference_mode():
            got = packed(packed.inputs(ids, types, lengths)).float().cpu().numpy()
        width = int(lengths.max())
        rows = np.zeros((len(lengths), width), dtype=np.int64)
        mask = np.arange(width)[None, :] < lengths[:, None]
        rows[mask] = ids
        want = self.collect(self.launch(Chunk(np.arange(len(lengths)), rows, mask.astype(np.int64),
                                              np.zeros_like(rows))))
        atol, rtol = PACKED_TOLERANCE[self.dtype]
        return float(np.abs(got - want).max()), float(atol + rtol * np.abs(want).max())

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
                "input_ids": torch.from_numpy(pad_with(chunk, self.pad_token_id)).to(self.device, non_blocking=True),
                "attention_mask": torch.from_numpy(chunk.attention_mask).to(self.device, non_blocking=True),
            }
            if self.feeds_token_types:
                inputs["token_type_ids"] = torch.from_numpy(chunk.token_type_ids).to(self.device, non_blocking=True)
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
        # p99 on the H100 host (bench/probes/sync_probe.py; its output, bench/results/h100-sync-probe.txt,
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
