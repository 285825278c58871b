"""Encoder cross-encoders (BERT, XLM-RoBERTa, ELECTRA) over packed tokens: no padding in the dense layers.

A batch of pairs is one flat run of tokens ``[T]`` (the pairs back to back, sorted by
length) instead of a ``[rows, longest]`` rectangle. Embeddings, the Q/K/V and output
projections, the feed-forward layers and the layer norms, which are ~90 % of the FLOPs
for ~160-token pairs, then compute on real tokens only, whatever the mix of lengths.
Only attention needs to know where each pair starts:

- ``varlen``: on CUDA, FlashAttention's variable-length kernel takes the cumulative
  sequence offsets and pads nothing (as Text Embeddings Inference does). It is checked
  against ``grouped`` when the model loads, and ``grouped`` is used if it is missing.
- ``grouped``: anywhere else, pairs of similar length (consecutive, since they are
  sorted) are scattered into small padded groups for ``scaled_dot_product_attention``
  with a key mask, and gathered back.

The three families share BERT's encoder layer and differ only around it (``EncoderArch``):
XLM-R numbers positions from ``pad_token_id + 1`` and has a dense-tanh head on ``<s>``;
ELECTRA projects small embeddings up to the hidden size and has a dense-GELU head; BERT
has its pooler. The weights are the transformers model's own modules (loaded as usual),
so loading, dtype and device handling stay in one place; only Q, K and V are fused into
one matmul. Scores equal ``CrossEncoder.predict`` within float rounding (tested on CPU in
fp32 to 1e-4, and in fp16/bf16 on CUDA). ModernBERT (``packed_modernbert``) runs on the same
inputs, attention kernels (with a local window) and CUDA graphs; ``load_packed`` picks the runner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rerankpool.worker.policy import ChunkPolicy, plan_chunks

logger = logging.getLogger(__name__)

SUPPORTED_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}
GROUP_POLICY = ChunkPolicy(overhead_tokens=256)  # attention padding allowed before a new group
PACKED_MODEL_TYPES = ("bert", "xlm-roberta", "electra", "modernbert")


@dataclass(frozen=True)
class EncoderArch:
    """What differs between the packed families: where the encoder sits, positions, and the score head."""

    encoder: torch.nn.Module  # the ``...Model``: embeddings and encoder layers
    head: Callable[[torch.Tensor], torch.Tensor]  # first token's hidden state [n, hidden] -> logits [n, labels]
    position_pad: int | None  # XLM-R: positions are pad + 1, pad + 2, ... (pad tokens get pad); else 0, 1, ...

    @classmethod
    def of(cls, model: torch.nn.Module) -> "EncoderArch":
        model_type = model.config.model_type
        encoder = getattr(model, model.base_model_prefix)
        classifier = model.classifier
        if model_type == "bert":  # pooler (dense + tanh), then the classifier
            return cls(encoder, lambda h: classifier(torch.tanh(encoder.pooler.dense(h))), None)
        if model_type == "xlm-roberta":
            return cls(encoder, lambda h: classifier.out_proj(torch.tanh(classifier.dense(h))),
                       int(model.config.pad_token_id))
        return cls(encoder, lambda h: classifier.out_proj(classifier.activation(classifier.dense(h))), None)


def supports(model: torch.nn.Module) -> str | None:
    """Why this model cannot run packed, or None if it can."""
    config = model.config
    model_type = getattr(config, "model_type", None)
    if model_type not in PACKED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {', '.join(PACKED_MODEL_TYPES)}"
    if model_type == "modernbert":
        from rerankpool.worker.engines.packed_modernbert import modernbert_supports

        return modernbert_supports(model)
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return "only absolute position embeddings are supported"
    if config.hidden_act not in SUPPORTED_ACTIVATIONS:
        return f"hidden_act {config.hidden_act!r} is not supported"
    if model_type == "bert" and getattr(getattr(model, "bert", None), "pooler", None) is None:
        return "the model has no bert.pooler"
    if model_type != "bert" and not hasattr(getattr(model, "classifier", None), "out_proj"):
        return f"the {model_type} model has no classification head with out_proj"
    return None


def fill_packed_rows(rows: np.ndarray, input_ids: np.ndarray, token_type_ids: np.ndarray,
                     lengths: np.ndarray, position_pad: int | None = None) -> np.ndarray:
    """Write packed pairs' ids, token types and positions into ``rows[:, :total]``; returns their starts (n + 1).

    Positions restart at each pair: 0, 1, ... or, with ``position_pad`` (XLM-R), as
    transformers numbers them from the ids: ``pad + 1 + k`` for the k-th non-pad token, and
    ``pad`` for a pad token.
    """
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    total = int(starts[-1])
    rows[0, :total] = input_ids
    rows[1, :total] = token_type_ids
    if position_pad is None:
        np.subtract(np.arange(total, dtype=np.int64), np.repeat(starts[:-1], lengths), out=rows[2, :total])
        return starts
    real = np.asarray(input_ids) != position_pad
    count = np.cumsum(real)
    before = np.repeat(np.concatenate([[0], count])[starts[:-1]], lengths)
    rows[2, :total] = (count - before) * real + position_pad
    return starts


@dataclass
class PackedInputs:
    """A packed batch on the model's device, with the offsets attention needs.

    ``lengths`` must be sorted ascending (the tokenizer sorts them), so that grouped
    attention can cut them into groups of similar length.
    """

    input_ids: torch.Tensor  # [T]
    token_type_ids: torch.Tensor  # [T]
    position_ids: torch.Tensor  # [T]
    cu_seqlens: torch.Tensor  # [n + 1] int32
    lengths: np.ndarray  # [n], host copy
    max_len: int

    @classmethod
    def build(
        cls, input_ids: np.ndarray, token_type_ids: np.ndarray, lengths: np.ndarray, device: str,
        position_pad: int | None = None,
    ) -> "PackedInputs":
        lengths = np.asarray(lengths, dtype=np.int64)
        total = int(lengths.sum())
        # A copy from pageable memory waits for everything queued on the stream before it:
        # with a pass still running (the device process keeps two in flight), the CPU would
        # sit idle until the GPU is done instead of launching the next pass's kernels. So on
        # CUDA the rows are written straight into pinned memory and copied asynchronously.
        pinned = str(device).startswith("cuda")
        host = torch.empty((3, total), dtype=torch.int64, pin_memory=pinned)
        starts = fill_packed_rows(host.numpy(), input_ids, token_type_ids, lengths, position_pad)
        cu_seqlens = torch.from_numpy(starts.astype(np.int32))
        if pinned:
            cu_seqlens = cu_seqlens.pin_memory()
        on_device = host.to(device, non_blocking=True)
        return cls(
            input_ids=on_device[0],
            token_type_ids=on_device[1],
            position_ids=on_device[2],
            cu_seqlens=cu_seqlens.to(device, non_blocking=True),
            lengths=lengths,
            max_len=int(lengths.max()) if len(lengths) else 0,
        )


class GroupedAttention:
    """Attention over packed tokens by padded groups of similar length (any device)."""

    def __init__(self, inputs: PackedInputs, heads: int) -> None:
        self.heads = heads
        lengths = inputs.lengths
        starts = np.concatenate([[0], np.cumsum(lengths)])
        device = inputs.input_ids.device
        self.groups = []
        for rows in plan_chunks(lengths, GROUP_POLICY):
            rows = np.sort(rows)
            width = int(lengths[rows].max())
            # token index -> slot in the group's [rows * width] padded layout
            slots = np.concatenate([np.arange(lengths[r]) + i * width for i, r in enumerate(rows)])
            tokens = np.concatenate([np.arange(starts[r], starts[r] + lengths[r]) for r in rows])
            mask = np.arange(width)[None, :] < lengths[rows][:, None]
            self.groups.append(
                (
                    len(rows),
                    width,
                    torch.from_numpy(tokens).to(device),
                    torch.from_numpy(slots).to(device),
                    torch.from_numpy(mask[:, None, None, :]).to(device),
                )
            )

    def __call__(self, qkv: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """qkv: [T, 3, heads, head_dim] -> context [T, heads * head_dim]; ``window``: each token sees only the
        tokens of its pair at most that far from it (ModernBERT's local layers), else all of them."""
        total, _, heads, head_dim = qkv.shape
        out = qkv.new_empty(total, heads * head_dim)
        for rows, width, tokens, slots, mask in self.groups:
            if window is not None:
                near = torch.arange(width, device=mask.device)
                mask = mask & ((near[:, None] - near[None, :]).abs() <= window)
            padded = qkv.new_zeros(rows * width, 3, heads, head_dim)
            padded[slots] = qkv[tokens]
            q, k, v = padded.view(rows, width, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [rows, heads, width, d]
            out[tokens] = context.transpose(1, 2).reshape(rows * width, heads * head_dim)[slots]
        return out


class VarlenAttention:
    """FlashAttention over packed tokens with cumulative offsets (CUDA, fp16/bf16).

    Calls the aten kernel directly: it is there in every torch this project supports
    (the public ``torch.nn.attention.varlen`` wrapper only from 2.9), without a Python
    custom-op layer around it, and a CUDA graph can capture it.
    """

    def __init__(self, inputs: PackedInputs, heads: int) -> None:
        self.cu_seqlens = inputs.cu_seqlens
        self.max_len = inputs.max_len

    def __call__(self, qkv: torch.Tensor, window: int | None = None) -> torch.Tensor:
        total, _, heads, head_dim = qkv.shape
        q, k, v = qkv.unbind(1)
        cu, n = self.cu_seqlens, self.max_len
        side = {} if window is None else {"window_size_left": window, "window_size_right": window}
        context = torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, n, n, 0.0, False, False, **side)[0]
        return context.reshape(total, heads * head_dim)


def pick_attention(attention: str, device: torch.device, dtype: torch.dtype, heads: int, head_dim: int,
                   windowed: bool = False) -> str:
    """``varlen`` or ``grouped``: ``auto`` takes varlen on CUDA in half precision, where its kernel is there and
    agrees with grouped attention (checked once, with a local window too for a model that has one)."""
    if attention == "auto":
        half = dtype in (torch.float16, torch.bfloat16)
        attention = "varlen" if device.type == "cuda" and half else "grouped"
    if attention not in ("varlen", "grouped"):
        raise ValueError(f"attention must be varlen, grouped or auto, not {attention!r}")
    if attention == "grouped":
        return attention
    lengths = np.array([3, 17, 40])
    inputs = PackedInputs.build(np.zeros(60, np.int64), np.zeros(60, np.int64), lengths, str(device))
    qkv = torch.randn(60, 3, heads, head_dim, device=device, dtype=dtype)
    try:
        with torch.inference_mode():
            for window in (None, 5) if windowed else (None,):
                got = VarlenAttention(inputs, heads)(qkv, window).float()
                want = GroupedAttention(inputs, heads)(qkv, window).float()
                if not torch.allclose(got, want, atol=2e-2):
                    logger.warning("FlashAttention varlen kernel disagrees with SDPA here (window %s); packed "
                                   "attention runs grouped", window)
                    return "grouped"
    except (RuntimeError, NotImplementedError, AttributeError, TypeError) as exc:
        logger.warning("FlashAttention varlen kernel unavailable (%s); packed attention runs grouped", exc)
        return "grouped"
    return "varlen"


def add_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
             eps: float) -> torch.Tensor:
    """LayerNorm(x + residual): BERT's residual step, two kernels when run eager."""
    return F.layer_norm(x + residual, (x.shape[-1],), weight, bias, eps)


def fused_add_norm(device: torch.device, dtype: torch.dtype, hidden: int) -> Callable[..., torch.Tensor] | None:
    """``add_norm`` compiled by Inductor into one kernel for any token count, or None where it cannot be.

    In a small pass on the H100, the residual adds took 8 % of the GPU time and the
    LayerNorms 16 % (``bench/probes/kernel_profile.py``; the profiles are
    ``bench/results/h100-kernel-profile-rows-*.txt`` in git history at edd338e). Compiling takes
    seconds to a minute at start, so it is ``--compile``'s, not the default.
    """
    compiled = torch.compile(add_norm, dynamic=True, fullgraph=True)
    x, residual = (torch.randn(37, hidden, device=device, dtype=dtype) for _ in range(2))
    weight, bias = (torch.randn(hidden, device=device, dtype=dtype) for _ in range(2))
    try:
        with torch.inference_mode():
            got, want = compiled(x, residual, weight, bias, 1e-12), add_norm(x, residual, weight, bias, 1e-12)
    except Exception as exc:  # no compiler or Triton here: the eager kernels do the same
        logger.warning("--compile: could not fuse add + LayerNorm (%s); they run eager", exc)
        return None
    if not torch.allclose(got.float(), want.float(), atol=2e-2):
        logger.warning("--compile: fused add + LayerNorm disagrees with eager here; they run eager")
        return None
    return compiled


class PackedRunner:
    """What a packed model gives the engine and the CUDA graphs: its device, attention kind and inputs."""

    device: str
    attention: str  # "varlen" or "grouped"
    fused: bool = False
    position_pad: int | None = None  # XLM-R: positions are numbered from the ids (``fill_packed_rows``)

    def inputs(self, input_ids: np.ndarray, token_type_ids: np.ndarray, lengths: np.ndarray) -> PackedInputs:
        """A packed batch on this model's device."""
        return PackedInputs.build(input_ids, token_type_ids, lengths, self.device, self.position_pad)

    def __call__(self, inputs: PackedInputs) -> torch.Tensor:
        """Raw logits [n] for the packed pairs, in their packed order."""
        raise NotImplementedError


def load_packed(model: torch.nn.Module, attention: str = "auto", fused: bool = False) -> PackedRunner:
    """The packed runner of a model that ``supports`` says can run packed."""
    reason = supports(model)
    if reason is not None:
        raise ValueError(f"cannot run this model packed: {reason}")
    if model.config.model_type == "modernbert":
        from rerankpool.worker.engines.packed_modernbert import PackedModernBert

        if fused:
            logger.info("--compile fuses BERT's add + LayerNorm; ModernBERT's pre-norm layers run eager")
        return PackedModernBert(model, attention)
    return PackedEncoder(model, attention, fused)


class PackedEncoder(PackedRunner):
    """Runs a transformers BERT, XLM-RoBERTa or ELECTRA ``...ForSequenceClassification`` on packed tokens.

    ``fused``: each residual add and its LayerNorm run as one compiled kernel (``fused_add_norm``).
    """

    def __init__(self, model: torch.nn.Module, attention: str = "auto", fused: bool = False) -> None:
        config = model.config
        self.model = model
        self.arch = EncoderArch.of(model)
        self.position_pad = self.arch.position_pad
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.act = SUPPORTED_ACTIVATIONS[config.hidden_act]
        device = next(model.parameters()).device
        self.device = str(device)
        self.attention = pick_attention(attention, device, model.dtype, self.heads, self.head_dim)
        self.layers = []
        for layer in self.arch.encoder.encoder.layer:
            att = layer.attention
            qkv_w = torch.cat([att.self.query.weight, att.self.key.weight, att.self.value.weight]).detach()
            qkv_b = torch.cat([att.self.query.bias, att.self.key.bias, att.self.value.bias]).detach()
            self.layers.append((qkv_w, qkv_b, att.output, layer.intermediate.dense, layer.output))
        self._add_norm = (fused_add_norm(device, model.dtype, config.hidden_size) if fused else None) or add_norm
        self.fused = self._add_norm is not add_norm

    @torch.inference_mode()
    def __call__(self, inputs: PackedInputs) -> torch.Tensor:
        encoder = self.arch.encoder
        emb = encoder.embeddings
        x = (
            emb.word_embeddings(inputs.input_ids)
            + emb.position_embeddings(inputs.position_ids)
            + emb.token_type_embeddings(inputs.token_type_ids)
        )
        x = emb.LayerNorm(x)
        project = getattr(encoder, "embeddings_project", None)  # ELECTRA: embedding_size -> hidden_size
        if project is not None:
            x = project(x)
        attend = (VarlenAttention if self.attention == "varlen" else GroupedAttention)(inputs, self.heads)
        total = x.shape[0]
        add_norm = self._add_norm
        for qkv_w, qkv_b, att_out, inter, out in self.layers:
            qkv = F.linear(x, qkv_w, qkv_b).view(total, 3, self.heads, self.head_dim)
            context = attend(qkv)
            norm = att_out.LayerNorm
            x = add_norm(att_out.dense(context), x, norm.weight, norm.bias, norm.eps)
            norm = out.LayerNorm
            x = add_norm(out.dense(self.act(inter(x))), x, norm.weight, norm.bias, norm.eps)
        return self.arch.head(x[inputs.cu_seqlens[:-1].long()])[:, 0]


# Token capacities of the CUDA graphs for small batches.
GRAPH_TOKEN_BUCKETS = (512, 1024, 2048, 3072, 4096, 5120, 6144, 7168, 8192)
# Rows (pairs) of the graphs of each capacity, as tokens a pair on average: 64 holds usual
# reranking pairs; 8 takes batches of very short ones.
GRAPH_TOKENS_PER_ROW = (64, 8)


def graph_layout(
    input_ids: np.ndarray, token_type_ids: np.ndarray, lengths: np.ndarray, capacity: int, rows: int,
    out: tuple[np.ndarray, np.ndarray] | None = None, position_pad: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Host arrays for a graph of ``capacity`` tokens and ``rows`` pairs: [3, capacity] ids and cu_seqlens.

    The real tokens come first; the tail is pad tokens that belong to no pair (rows past
    the real ones have length 0). Every op but attention works token by token, and
    attention only mixes tokens of one pair, so the tail cannot reach a real score.
    ``out`` is a ([3, capacity] int64, [rows + 1] int32) pair to write into (pinned memory).
    """
    total = int(lengths.sum())
    if total >= capacity or len(lengths) > rows:
        raise ValueError(f"{len(lengths)} pairs / {total} tokens do not fit a graph of {rows} / {capacity}")
    host, cu = out if out is not None else (np.empty((3, capacity), np.int64), np.empty(rows + 1, np.int32))
    host[:, total:] = 0
    starts = fill_packed_rows(host, input_ids, token_type_ids, lengths, position_pad)
    cu[:] = total
    cu[: len(starts)] = starts
    return host, cu


def graph_rows(capacity: int, tokens_per_row: int = 8) -> int:
    """Pairs a graph of ``capacity`` tokens holds: ``tokens_per_row`` tokens a pair on average, at least 8 pairs."""
    return max(8, capacity // tokens_per_row)


def graph_shapes(buckets: tuple[int, ...] = GRAPH_TOKEN_BUCKETS) -> list[tuple[int, int]]:
    """(capacity, rows) of each graph, smallest first."""
    return sorted({(capacity, graph_rows(capacity, t)) for capacity in buckets for t in GRAPH_TOKENS_PER_ROW})


def pick_shape(shapes: list[tuple[int, int]], tokens: int, pairs: int) -> tuple[int, int] | None:
    """The first of ``shapes`` (sorted) that holds a batch, or None: the smallest capacity, then the fewer rows.

    At least one tail token stays free, so that the score gather of the empty rows
    (which point at the first tail token) stays in bounds.
    """
    for capacity, rows in shapes:
        if tokens < capacity and pairs <= rows:
            return capacity, rows
    return None


def capture_lengths(capacity: int, rows: int) -> np.ndarray:
    """Pair lengths to capture a graph with: every row used, one tail token left free."""
    return np.full(rows, (capacity - 1) // rows, dtype=np.int64)


class GraphedPackedEncoder:
    """The packed forward pass replayed from CUDA graphs, for batches of up to 8,192 tokens.

    Eager PyTorch spends ~2.8 ms of CPU launching the ~100 kernels of a MiniLM-L6 pass
    (measured on the H100 host), whatever the batch size, while a small batch's GPU work
    takes a fraction of a millisecond. A graph per token capacity replays them in one
    launch. Small batches pad up to the next capacity (reported as padding); large ones
    run eager, where launches are a small share.

    Each capacity has a graph of few rows and one of many. FlashAttention's varlen kernel
    launches blocks for every row of the graph, empty or not. When every graph had
    capacity/8 rows, a 32-pair L6 batch took 1.58 ms from its graph of 1,024 rows against
    0.86 ms of kernels for its eager pass; with 112 rows, 1.24 ms (H100,
    ``bench/probes/kernel_profile.py``; ``bench/results/h100-kernel-profile*.txt`` in git
    history at edd338e). A batch takes the smallest capacity that holds it, and of that
    capacity the graph with fewer rows where its pairs fit.
    """

    def __init__(self, packed: PackedRunner, max_len: int, buckets: tuple[int, ...] = GRAPH_TOKEN_BUCKETS) -> None:
        if packed.attention != "varlen":
            raise ValueError("CUDA graphs need the varlen attention path")
        device = packed.device
        self._position_pad = packed.position_pad
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        pool = None
        for capacity, rows in reversed(graph_shapes(buckets)):  # largest first, so smaller ones reuse its memory
            host_ids = torch.zeros((3, capacity), dtype=torch.int64, device=device)
            cu = torch.zeros(rows + 1, dtype=torch.int32, device=device)
            lengths = capture_lengths(capacity, rows)
            total = int(lengths.sum())
            ids, cu_host = graph_layout(np.ones(total, np.int64), np.zeros(total, np.int64), lengths, capacity, rows)
            host_ids.copy_(torch.from_numpy(ids))
            cu.copy_(torch.from_numpy(cu_host))
            inputs = PackedInputs(host_ids[0], host_ids[1], host_ids[2], cu, lengths, max_len)
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    packed(inputs)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = packed(inputs)
            pool = graph.pool()
            self._graphs[capacity, rows] = (graph, host_ids, cu, out)
        self._shapes = sorted(self._graphs)

    def shape_for(self, tokens: int, pairs: int) -> tuple[int, int] | None:
        """(capacity, rows) of the graph for a batch (``pick_shape``), or None: run it eager."""
        return pick_shape(self._shapes, tokens, pairs)

    def __call__(self, input_ids: np.ndarray, token_type_ids: np.ndarray, lengths: np.ndarray,
                 shape: tuple[int, int]) -> torch.Tensor:
        capacity, rows = shape
        graph, host_ids, cu, out = self._graphs[shape]
        # Laid out in pinned memory and copied asynchronously, like eager batches (see
        # PackedInputs.build): from pageable memory the copy would wait for the pass already
        # on the GPU. The copies and the replay are queued in order on one stream, so the
        # graph's inputs are not overwritten before an earlier replay has read them.
        staged = (torch.empty((3, capacity), dtype=torch.int64, pin_memory=True),
                  torch.empty(len(cu), dtype=torch.int32, pin_memory=True))
        graph_layout(input_ids, token_type_ids, lengths, capacity, rows, out=(staged[0].numpy(), staged[1].numpy()),
                     position_pad=self._position_pad)
        host_ids.copy_(staged[0], non_blocking=True)
        cu.copy_(staged[1], non_blocking=True)
        graph.replay()
        return out[: len(lengths)]
