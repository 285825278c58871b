"""Recover fp32 BERT weights from a dynamically quantized (INT8) ONNX cross-encoder.

onnxruntime's dynamic quantization rewrites every ``MatMul`` into ``DynamicQuantizeLinear``
+ ``MatMulInteger`` + ``Cast`` + ``Mul(scale)``, renames weights to exporter names such as
``onnx::MatMul_1662``, and stores embedding tables as uint8 behind ``DequantizeLinear``.
We read the graph rather than guess names: each quantized weight is found through the
nodes that consume it, and named after the bias of the ``Add`` that follows the matmul.
Only numpy and onnx are needed (no torch), so the output is a plain ``name -> ndarray`` map.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_LAYER_RE = re.compile(r"^bert\.encoder\.layer\.(\d+)\.")


@dataclass
class OnnxBertWeights:
    """fp32 weights in transformers' BertForSequenceClassification naming, plus config facts."""

    state_dict: dict[str, np.ndarray]
    layer_norm_eps: float | None
    num_attention_heads: int | None
    hidden_act: str
    notes: list[str] = field(default_factory=list)

    def bert_config(self, default_heads: int = 12) -> dict:
        """Keyword arguments for ``transformers.BertConfig``, read off the tensor shapes."""
        sd = self.state_dict
        words = sd["bert.embeddings.word_embeddings.weight"]
        layers = {int(m.group(1)) for k in sd if (m := _LAYER_RE.match(k))}
        return {
            "vocab_size": int(words.shape[0]),
            "hidden_size": int(words.shape[1]),
            "num_hidden_layers": len(layers),
            "num_attention_heads": self.num_attention_heads or default_heads,
            "intermediate_size": int(sd["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]),
            "max_position_embeddings": int(
                sd["bert.embeddings.position_embeddings.weight"].shape[0]
            ),
            "type_vocab_size": int(sd["bert.embeddings.token_type_embeddings.weight"].shape[0]),
            "num_labels": int(sd["classifier.weight"].shape[0]),
            "hidden_act": self.hidden_act,
            "layer_norm_eps": self.layer_norm_eps if self.layer_norm_eps is not None else 1e-12,
        }


class _Graph:
    """Producer/consumer indexes over an ONNX graph, with Constant nodes folded in."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.const = dict(self.init)
        self.nodes = list(graph.node)
        self.producer = {}
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.const[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def only_consumer(self, name: str, op_type: str):
        found = [n for n in self.consumers.get(name, []) if n.op_type == op_type]
        if len(found) != 1:
            raise ValueError(f"expected one {op_type} consuming {name!r}, found {len(found)}")
        return found[0]

    def other_input(self, node, known: str) -> str:
        others = [i for i in node.input if i != known]
        if len(others) != 1:
            raise ValueError(f"node {node.name!r} does not have exactly two distinct inputs")
        return others[0]


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    # (q - zp) * scale, computed in fp32; per-tensor (scalar) or per-column (last axis) params.
    return (q.astype(np.float32) - zero_point.astype(np.float32)) * scale.astype(np.float32)


def _matmul_integer_weight(g: _Graph, node) -> tuple[str, np.ndarray, set[str]]:
    """Dequantize the weight of one MatMulInteger and name it after the bias added next."""
    _, w_name, _, w_zp_name = node.input
    q, zp = g.init[w_name], g.init[w_zp_name]
    # MatMulInteger -> Cast -> Mul(cast, scale) where scale = Mul(activation_scale, w_scale).
    cast = g.only_consumer(node.output[0], "Cast")
    mul = g.only_consumer(cast.output[0], "Mul")
    scale_in = g.other_input(mul, cast.output[0])
    if scale_in in g.init:
        scale_name = scale_in
    else:
        scales_mul = g.producer[scale_in]
        w_scales = [i for i in scales_mul.input if i in g.init]
        if scales_mul.op_type != "Mul" or len(w_scales) != 1:
            raise ValueError(f"cannot find the weight scale of {node.name!r}")
        scale_name = w_scales[0]
    add = g.only_consumer(mul.output[0], "Add")
    bias = g.other_input(add, mul.output[0])
    if bias not in g.init or not bias.endswith(".bias"):
        raise ValueError(f"the Add after {node.name!r} has no named bias (got {bias!r})")
    weight = _dequantize(q, g.init[scale_name], zp)  # ONNX MatMul weight is [in, out]
    name = bias[: -len(".bias")] + ".weight"
    return (
        name,
        np.ascontiguousarray(weight.T),
        {w_name, w_zp_name, scale_name},
    )  # torch Linear: [out, in]


def _dequantize_linear_weight(g: _Graph, node) -> tuple[str, np.ndarray, set[str]]:
    """Dequantize a whole quantized table that is Gathered (embeddings) then DequantizeLinear'd."""
    x_name, scale_name, zp_name = node.input
    if x_name in g.init:
        table_name = x_name
    else:
        gather = g.producer.get(x_name)
        if gather is None or gather.op_type != "Gather" or gather.input[0] not in g.init:
            raise ValueError(f"DequantizeLinear {node.name!r} does not read a quantized table")
        table_name = gather.input[0]
    weight_name = table_name.removesuffix("_quantized")
    if not weight_name.endswith(".weight"):
        raise ValueError(f"cannot name the table {table_name!r} read by {node.name!r}")
    weight = _dequantize(g.init[table_name], g.init[scale_name], g.init[zp_name])
    return weight_name, weight, {table_name, scale_name, zp_name}


def _layer_norm_eps(g: _Graph) -> float | None:
    """The epsilon of the decomposed LayerNorms: the constant added right before each Sqrt."""
    found: Counter[float] = Counter()
    for node in g.nodes:
        if node.op_type != "Sqrt":
            continue
        add = g.producer.get(node.input[0])
        if add is None or add.op_type != "Add":
            continue
        for name in add.input:
            value = g.const.get(name)
            if value is not None and value.size == 1 and 0 < float(value) < 1e-3:
                found[float(f"{float(value):.6g}")] += 1  # fp32 9.99999996e-13 -> 1e-12
    if not found:
        return None
    if len(found) > 1:
        logger.warning("LayerNorms use different epsilons %s; using the most common", dict(found))
    return found.most_common(1)[0][0]


def _attention_heads(g: _Graph) -> int | None:
    """Heads, from the [batch, seq, heads, head_dim] Reshape applied to the query projection."""
    for node in g.nodes:
        if node.op_type != "Reshape":
            continue
        add = g.producer.get(node.input[0])
        if (
            add is None
            or add.op_type != "Add"
            or not any(i.endswith("attention.self.query.bias") for i in add.input)
        ):
            continue
        shape = g.producer.get(node.input[1])
        parts = (
            [g.const.get(i) for i in shape.input]
            if shape is not None and shape.op_type == "Concat"
            else []
        )
        if len(parts) == 4 and parts[2] is not None and parts[3] is not None:
            return int(np.asarray(parts[2]).reshape(-1)[0])
        if node.input[1] in g.const and g.const[node.input[1]].size == 4:
            return int(g.const[node.input[1]][2])
    return None


def load_int8_bert(onnx_path: Path) -> OnnxBertWeights:
    """Read a dynamically quantized BERT cross-encoder and return its dequantized weights."""
    import onnx

    g = _Graph(onnx.load(str(onnx_path)))
    sd: dict[str, np.ndarray] = {}
    used: set[str] = set()
    counts = Counter(n.op_type for n in g.nodes)
    for node in g.nodes:
        if node.op_type == "MatMulInteger":
            name, weight, inputs = _matmul_integer_weight(g, node)
        elif node.op_type == "DequantizeLinear":
            name, weight, inputs = _dequantize_linear_weight(g, node)
        else:
            continue
        if name in sd:
            raise ValueError(f"two quantized weights map to {name!r}")
        sd[name] = weight
        used |= inputs
    # Everything else with a real parameter name is already fp32 (biases, LayerNorms).
    for name, value in g.init.items():
        if name in used or value.dtype != np.float32 or value.ndim == 0:
            continue
        if name.endswith((".weight", ".bias")):
            sd[name] = value.astype(np.float32, copy=True)
    # Anything left over is something we did not understand: say so rather than drop it silently.
    leftover = [n for n in g.init if n not in used and n not in sd]
    notes = [
        f"{counts['MatMulInteger']} MatMulInteger, {counts['DynamicQuantizeLinear']} DynamicQuantizeLinear, "
        f"{counts['DequantizeLinear']} DequantizeLinear nodes; {len(g.init)} initializers",
    ]
    if leftover:
        notes.append(f"unused initializers: {leftover[:10]}{'...' if len(leftover) > 10 else ''}")
        logger.warning("ONNX initializers not mapped to any BERT weight: %s", leftover)
    # Exact GELU exports as Erf; the tanh approximation would show as Tanh beyond the pooler's.
    hidden_act = "gelu_new" if not counts["Erf"] and counts["Tanh"] > 1 else "gelu"
    heads = _attention_heads(g)
    if heads is None:
        logger.warning(
            "could not read the number of attention heads from %s; assuming 12", onnx_path
        )
    return OnnxBertWeights(sd, _layer_norm_eps(g), heads, hidden_act, notes)
