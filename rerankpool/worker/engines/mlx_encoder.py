"""BERT and XLM-RoBERTa cross-encoders (``...ForSequenceClassification``) written in ``mlx.nn``.

MLX has no transformers integration for sequence classification, and these rerankers
(ms-marco MiniLM and friends; bge-reranker-base/large/v2-m3) share BERT's encoder, so the
models are small enough to write out. XLM-R differs only around it: positions counted from
``pad_token_id + 1`` (from the ids, as transformers does), one token type, and a dense-tanh
head on ``<s>`` in place of BERT's pooler and classifier. The module tree mirrors the
Hugging Face names (``bert.encoder.layer.0.attention.self.query``, ``roberta.embeddings``,
``classifier.out_proj`` ...), so a checkpoint loads by name with no renaming table, and a
missing or extra weight is an error rather than a silently random layer.

Weights are converted at load time, not cached: reading ``model.safetensors`` with
``mx.load`` and casting takes about 0.06 s for MiniLM-L12 (33M parameters) on a 2-core
Xeon, so a cache of converted weights would save nothing worth its invalidation rules.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

logger = logging.getLogger(__name__)

# Hugging Face ``hidden_act`` names -> MLX activations. "gelu" is the exact erf GELU.
ACTIVATIONS = {
    "gelu": nn.gelu,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "relu": nn.relu,
}

# Buffers some checkpoints carry that are not parameters.
IGNORED_SUFFIXES = (".position_ids", ".token_type_ids")


MODEL_TYPES = ("bert", "xlm-roberta")


class EncoderLoadError(ValueError):
    """The checkpoint is not a cross-encoder this module can run."""


@dataclass(frozen=True)
class BertConfig:
    """The ``config.json`` fields the forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    num_labels: int = 1
    model_type: str = "bert"
    pad_token_id: int = 0

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> "BertConfig":
        raw = json.loads((model_dir / "config.json").read_text())
        model_type = raw.get("model_type", "bert")
        if model_type not in MODEL_TYPES:
            raise EncoderLoadError(
                f"{model_dir}: model_type {model_type!r} is not supported by the mlx engine "
                f"({', '.join(MODEL_TYPES)}); use --engine torch or --engine onnx for this model"
            )
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise EncoderLoadError(f"{model_dir}: only absolute position embeddings are supported by the mlx engine")
        act = raw.get("hidden_act", "gelu")
        if act not in ACTIVATIONS:
            raise EncoderLoadError(f"{model_dir}: hidden_act {act!r} is not one of {sorted(ACTIVATIONS)}")
        num_labels = raw.get("num_labels") or len(raw.get("id2label") or {0: 0})
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=raw["num_attention_heads"],
            intermediate_size=raw["intermediate_size"],
            max_position_embeddings=raw.get("max_position_embeddings", 512),
            type_vocab_size=raw.get("type_vocab_size", 2),
            layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
            hidden_act=act,
            num_labels=num_labels,
            model_type=model_type,
            pad_token_id=raw.get("pad_token_id", 0) or 0,
        )


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        # XLM-R: positions pad + 1, pad + 2, ... for the tokens that are not the pad id (which get pad).
        self._position_pad = cfg.pad_token_id if cfg.model_type == "xlm-roberta" else None
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def __call__(self, input_ids: mx.array, token_type_ids: mx.array) -> mx.array:
        if self._position_pad is None:
            positions = self.position_embeddings(mx.arange(input_ids.shape[1]))[None]
        else:
            real = (input_ids != self._position_pad).astype(mx.int32)
            positions = self.position_embeddings(mx.cumsum(real, axis=1) * real + self._position_pad)
        x = self.word_embeddings(input_ids) + positions
        return self.LayerNorm(x + self.token_type_embeddings(token_type_ids))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def _split(self, x: mx.array) -> mx.array:
        n, length, _ = x.shape
        return x.reshape(n, length, self.heads, self.head_dim).transpose(0, 2, 1, 3)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        out = attention(q, k, v, mask, scale=1.0 / math.sqrt(self.head_dim))
        n, _, length, _ = out.shape
        return out.transpose(0, 2, 1, 3).reshape(n, length, self.heads * self.head_dim)


def attention(q: mx.array, k: mx.array, v: mx.array, mask: mx.array, scale: float) -> mx.array:
    """Softmax attention with an additive mask; the fused kernel when this MLX has one."""
    fast = getattr(mx.fast, "scaled_dot_product_attention", None)
    if fast is not None:
        return fast(q, k, v, scale=scale, mask=mask)
    scores = (q * scale) @ k.transpose(0, 1, 3, 2) + mask
    return mx.softmax(scores.astype(mx.float32), axis=-1).astype(q.dtype) @ v


class BertSelfOutput(nn.Module):
    """Dense + residual + LayerNorm; HF names it ``attention.output`` and ``output``."""

    def __init__(self, cfg: BertConfig, in_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.hidden_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def __call__(self, x: mx.array) -> mx.array:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.intermediate_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = [BertLayer(cfg) for _ in range(cfg.num_hidden_layers)]

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def __call__(self, hidden: mx.array) -> mx.array:
        return mx.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """Embeddings and encoder; BERT's pooler too (``pooler``), else the first token's hidden state comes out."""

    def __init__(self, cfg: BertConfig, pooler: bool = True) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        if pooler:
            self.pooler = BertPooler(cfg)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array) -> mx.array:
        x = self.embeddings(input_ids, token_type_ids)
        # Additive key mask [n, 1, 1, L]: padded keys get the dtype's lowest value, as
        # transformers does, so they carry zero weight after the softmax.
        low = mx.array(mx.finfo(x.dtype).min, dtype=x.dtype)
        mask = mx.where(attention_mask[:, None, None, :].astype(mx.bool_), mx.array(0, dtype=x.dtype), low)
        hidden = self.encoder(x, mask)
        return self.pooler(hidden) if "pooler" in self else hidden[:, 0]


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array) -> mx.array:
        """Logits [n, num_labels] in the model's dtype."""
        return self.classifier(self.bert(input_ids, attention_mask, token_type_ids))


class RobertaClassificationHead(nn.Module):
    """XLM-R's head: dense, tanh, out_proj on the ``<s>`` token."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def __call__(self, first: mx.array) -> mx.array:
        return self.out_proj(mx.tanh(self.dense(first)))


class XLMRobertaForSequenceClassification(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.roberta = BertModel(cfg, pooler=False)
        self.classifier = RobertaClassificationHead(cfg)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array) -> mx.array:
        """Logits [n, num_labels] in the model's dtype."""
        return self.classifier(self.roberta(input_ids, attention_mask, token_type_ids))


CLASSES = {"bert": BertForSequenceClassification, "xlm-roberta": XLMRobertaForSequenceClassification}


def read_hf_weights(model_dir: Path) -> dict[str, mx.array]:
    """Tensors of a transformers checkpoint by HF name: safetensors, else pytorch_model.bin."""
    safetensors = sorted(model_dir.glob("model*.safetensors"))
    if safetensors:
        weights: dict[str, mx.array] = {}
        for path in safetensors:
            weights.update(mx.load(str(path)))
        return weights
    bin_path = model_dir / "pytorch_model.bin"
    if bin_path.exists():
        import torch  # only for old checkpoints; safetensors needs no torch

        state = torch.load(bin_path, map_location="cpu", weights_only=True)
        return {k: mx.array(v.float().numpy()) for k, v in state.items()}
    raise EncoderLoadError(
        f"{model_dir} has no model.safetensors or pytorch_model.bin; point --model at a "
        "transformers checkpoint directory"
    )


def hf_to_mlx_name(name: str) -> str | None:
    """The MLX parameter path for an HF tensor name, or None for buffers we do not need."""
    if name.endswith(IGNORED_SUFFIXES):
        return None
    if name.endswith(".gamma"):  # pre-2020 checkpoints name LayerNorm weights gamma/beta
        return name[: -len(".gamma")] + ".weight"
    if name.endswith(".beta"):
        return name[: -len(".beta")] + ".bias"
    return name


def load_encoder(model_dir: Path, dtype: mx.Dtype = mx.float32) -> nn.Module:
    """Build the model from ``config.json`` and load the checkpoint's weights, cast to ``dtype``."""
    cfg = BertConfig.from_model_dir(model_dir)
    model = CLASSES[cfg.model_type](cfg)
    expected = {name for name, _ in tree_flatten(model.parameters())}
    weights: dict[str, mx.array] = {}
    for hf_name, value in read_hf_weights(model_dir).items():
        name = hf_to_mlx_name(hf_name)
        if name in expected:
            weights[name] = value.astype(dtype)
        elif name is not None and not name.startswith(("cls.", "lm_head.")):  # the MLM heads
            logger.debug("mlx encoder: ignoring checkpoint tensor %s", hf_name)
    missing = sorted(expected - weights.keys())
    if missing:
        raise EncoderLoadError(
            f"{model_dir} lacks {len(missing)} weight(s) of a {type(model).__name__} "
            f"(first: {missing[:3]}); is it a cross-encoder checkpoint?"
        )
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:  # shapes that disagree with config.json
        raise EncoderLoadError(f"{model_dir}: weights do not fit config.json ({exc})") from exc
    model.eval()
    mx.eval(model.parameters())
    return model
