"""ModernBERT cross-encoders over packed tokens: the unpadding its own code did, done for every attention backend.

ModernBERT was built to run unpadded: its original code strips the padding once and runs
every layer on real tokens, with FlashAttention varlen (global layers) and a sliding window
of ``local_attention`` tokens (local layers). transformers 5 keeps that only with the
``flash_attn`` package; with SDPA it pads every layer. This module runs it as
``packed_encoder`` runs BERT, on the same ``PackedInputs``, attention kernels and CUDA graphs:

- positions restart at 0 for each pair and feed the rotary embedding (one table for the
  global layers' theta, one for the local layers');
- local layers attend within ``local_attention // 2`` tokens each side, as the reference's
  sliding-window mask (FlashAttention's ``window_size``, or a band mask when grouped);
- pre-norm layers (no norm before the first attention), the GLU feed-forward, the final norm;
- the head pools each pair's tokens (``classifier_pooling``: ``mean`` or ``cls``), then its
  dense, activation and norm, then the classifier.

The layers are the transformers model's own modules, so loading, dtype and device stay in
one place. Scores equal ``CrossEncoder.predict`` (tested on CPU in fp32 to 1e-4, and in
fp16/bf16 on CUDA).
"""

from __future__ import annotations

import torch

from rerankpool.worker.engines.packed_encoder import (
    GroupedAttention,
    PackedInputs,
    PackedRunner,
    VarlenAttention,
    pick_attention,
)

SLIDING = "sliding_attention"
POOLINGS = ("mean", "cls")


def modernbert_supports(model: torch.nn.Module) -> str | None:
    """Why this ModernBERT cannot run packed, or None (a transformers that lays it out otherwise cannot)."""
    config = model.config
    encoder = getattr(model, "model", None)
    if not hasattr(encoder, "rotary_emb") or not getattr(config, "layer_types", None):
        return "this transformers lays ModernBERT out without a shared rotary_emb and layer_types"
    if getattr(config, "classifier_pooling", None) not in POOLINGS:
        return f"classifier_pooling {getattr(config, 'classifier_pooling', None)!r} is not one of mean, cls"
    return None


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary embedding of x [T, heads, head_dim], in fp32 as the reference computes it."""
    x32 = x.float()
    half = x32.shape[-1] // 2
    rotated = torch.cat((-x32[..., half:], x32[..., :half]), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class PackedModernBert(PackedRunner):
    """Runs a transformers ``ModernBertForSequenceClassification`` on packed tokens."""

    def __init__(self, model: torch.nn.Module, attention: str = "auto") -> None:
        config = model.config
        self.model = model
        self.encoder = model.model
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.window = int(config.local_attention) // 2
        self.layer_types = list(config.layer_types)
        self.pooling = config.classifier_pooling
        device = next(model.parameters()).device
        self.device = str(device)
        self.attention = pick_attention(attention, device, model.dtype, self.heads, self.head_dim,
                                        windowed=SLIDING in self.layer_types)

    @torch.inference_mode()
    def __call__(self, inputs: PackedInputs) -> torch.Tensor:
        encoder = self.encoder
        emb = encoder.embeddings
        x = emb.norm(emb.tok_embeddings(inputs.input_ids))
        total = x.shape[0]
        positions = inputs.position_ids[None]
        rotary = {kind: tuple(t[0, :, None, :] for t in encoder.rotary_emb(x, positions, kind))
                  for kind in set(self.layer_types)}
        attend = (VarlenAttention if self.attention == "varlen" else GroupedAttention)(inputs, self.heads)
        for layer, kind in zip(encoder.layers, self.layer_types):
            qkv = layer.attn.Wqkv(layer.attn_norm(x)).view(total, 3, self.heads, self.head_dim)
            cos, sin = rotary[kind]
            qkv = torch.stack((rotate(qkv[:, 0], cos, sin), rotate(qkv[:, 1], cos, sin), qkv[:, 2]), dim=1)
            x = x + layer.attn.Wo(attend(qkv, self.window if kind == SLIDING else None))
            x = x + layer.mlp(layer.mlp_norm(x))
        x = encoder.final_norm(x)
        return self.model.classifier(self.model.head(self._pool(x, inputs.cu_seqlens)))[:, 0]

    def _pool(self, x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """Each pair's first token, or the mean of its tokens (summed in fp32). Tokens past the last pair (a CUDA
        graph's tail) fall in one extra row that is dropped, so shapes never depend on the data."""
        starts = cu_seqlens[:-1].long()
        if self.pooling == "cls":
            return x[starts]
        pair = torch.searchsorted(cu_seqlens[1:], torch.arange(x.shape[0], device=x.device, dtype=cu_seqlens.dtype),
                                  right=True)
        sums = x.new_zeros(len(starts) + 1, x.shape[1], dtype=torch.float32).index_add_(0, pair, x.float())
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).clamp(min=1)
        return (sums[:-1] / lengths[:, None]).to(x.dtype)
