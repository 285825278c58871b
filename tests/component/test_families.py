"""Each encoder family in one process: its tiny checkpoint, its tokenizer, and the engines against CrossEncoder.

The family comes from config.json, never the name; the tiny checkpoints keep what makes
each family itself (``rerankpool.models.tiny_families``); the workers' tokenizer makes
exactly the pairs ``AutoTokenizer`` makes; and the torch and ONNX engines, on the workers'
chunks cut every way, give ``CrossEncoder.predict``'s logits pair by pair within 1e-4.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from rerankpool.models import resolve_model
from rerankpool.models.families import (
    FAMILIES,
    UnsupportedModelError,
    check_engine,
    family_of,
    find_family,
    list_families,
)
from rerankpool.models.tiny_families import REAL_CONFIGS, TINY_FAMILIES
from rerankpool.worker.engines import load_engine
from rerankpool.worker.engines.base import EngineConfig, EngineLoadError, run_batch
from rerankpool.worker.policy import ChunkPolicy
from rerankpool.worker.tokenize import PairTokenizer
from tests.family_reference import ATOL, FAMILY_MODELS, MAX_LENGTH, crossencoder_logits, family_pairs

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

# The same pairs cut into chunks every way the worker may cut them.
POLICIES = {
    "fine chunks": ChunkPolicy(overhead_tokens=4),
    "one chunk": ChunkPolicy(overhead_tokens=10**9),
    "padded to 32": ChunkPolicy(pad_multiple=32),
}
# ... and as packed engines take them: one pass, or passes of at most 1,024 tokens.
PACKED_POLICIES = {
    "one packed pass": ChunkPolicy(packed=True),
    "packed passes of 1024 tokens": ChunkPolicy(packed=True, max_tokens=1024),
}
PACKED_FAMILIES = ("bert", "xlm-roberta", "electra", "modernbert")  # the families that run packed
HALF_ATOL = {"float16": 2e-2, "bfloat16": 1e-1}


# --- the table, from config.json -----------------------------------------------------


@pytest.mark.parametrize("family", list(REAL_CONFIGS))
def test_the_family_comes_from_config_json_not_the_name(family):
    config = REAL_CONFIGS[family]
    assert family_of(config).name == family
    assert family_of({"architectures": config["architectures"]}).name == family  # an old config, no model_type


def test_deberta_v3_is_the_deberta_v2_family():
    assert family_of({"model_type": "deberta-v2", "architectures": ["DebertaV2ForSequenceClassification"]}).title \
        == "DeBERTa-v2 / v3"


def test_an_unknown_family_is_refused_naming_the_supported_ones():
    with pytest.raises(UnsupportedModelError) as err:
        family_of({"model_type": "fancy-net", "architectures": ["FancyNetForSequenceClassification"]})
    message = str(err.value)
    assert "'fancy-net'" in message
    assert all(f"{f.name} (" in message for f in FAMILIES)
    assert find_family({"model_type": "fancy-net"}) is None


def test_an_engine_that_does_not_serve_a_family_says_which_do():
    with pytest.raises(UnsupportedModelError, match=r"mlx engine does not serve ELECTRA.*--engine torch or onnx"):
        check_engine(REAL_CONFIGS["electra"], "mlx")
    assert check_engine({"model_type": "bert"}, "mlx").name == "bert"
    assert check_engine(REAL_CONFIGS["xlm-roberta"], "mlx").name == "xlm-roberta"


def test_list_families_rows():
    rows = {row.family: row for row in list_families()}
    assert {"bert", "xlm-roberta", "electra", "modernbert", "deberta-v2"} <= set(rows)
    assert all(row.engines[0] == "torch" and row.examples for row in rows.values())
    assert rows["bert"].engines == rows["xlm-roberta"].engines == ("torch", "onnx", "mlx")
    assert "BAAI/bge-reranker-base" in rows["xlm-roberta"].examples
    for name in FAMILY_MODELS:
        assert rows[TINY_FAMILIES[name].family].builtin == name
    if "llm" in rows:  # rerankpool.models.llm is present
        assert family_of({"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}).name == "llm"


# --- the tiny checkpoints --------------------------------------------------------------


@pytest.fixture(scope="module", params=FAMILY_MODELS)
def tiny(request):
    """A family's tiny builtin (built once into the run's cache), its pairs and CrossEncoder's logits."""
    model = resolve_model(request.param)
    pairs = family_pairs()
    return model, pairs, crossencoder_logits(model.path, pairs)


def test_tiny_checkpoints_keep_their_family_fields(tiny):
    model, _, _ = tiny
    config = json.loads((model.path / "config.json").read_text())
    family = TINY_FAMILIES[model.name].family
    assert family_of(config).name == family and config["hidden_size"] == 32 and len(config["id2label"]) == 1
    assert model.real_scores is False and "TEST" in model.label
    if family == "xlm-roberta":
        assert (config["pad_token_id"], config["max_position_embeddings"], config["type_vocab_size"]) == (1, 514, 1)
    elif family == "electra":
        assert config["embedding_size"] < config["hidden_size"] and config["type_vocab_size"] == 2
    elif family == "modernbert":
        assert set(config["layer_types"]) == {"full_attention", "sliding_attention"}
        assert (config["local_attention"], config["classifier_pooling"]) == (128, "mean")
    elif family == "deberta-v2":
        assert config["relative_attention"] and config["share_att_key"] and config["type_vocab_size"] == 0
        assert (config["position_buckets"], config["norm_rel_ebd"]) == (256, "layer_norm")
        assert sorted(config["pos_att_type"]) == ["c2p", "p2c"] and not config["position_biased_input"]


# Each family's pair of "q" and "d", as its real tokenizer lays it out.
LAYOUTS = {
    "tiny-xlm-roberta": (["<s>", "▁q", "</s>", "</s>", "▁d", "</s>"], None),
    "tiny-electra": (["[CLS]", "q", "[SEP]", "d", "[SEP]"], [0, 0, 0, 1, 1]),
    "tiny-modernbert": (["[CLS]", "q", "[SEP]", "d", "[SEP]"], None),
    "tiny-deberta-v2": (["[CLS]", "▁q", "[SEP]", "▁d", "[SEP]"], [0, 0, 0, 1, 1]),
}


def test_workers_tokenize_pairs_as_autotokenizer_does(tiny):
    """tokenizer.json (what the workers read) and AutoTokenizer (what CrossEncoder uses) make the same pairs."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    model, pairs, _ = tiny
    raw = Tokenizer.from_file(str(model.path / "tokenizer.json"))
    raw.enable_truncation(MAX_LENGTH, strategy="longest_first")
    auto = AutoTokenizer.from_pretrained(str(model.path))
    tokens, types = LAYOUTS[model.name]
    encoded = auto("q", "d")
    assert auto.convert_ids_to_tokens(encoded["input_ids"]) == tokens
    assert encoded.get("token_type_ids") == types  # None: the tokenizer gives the model no token types
    for query, doc in pairs:
        want = auto(query, doc, truncation=True, max_length=MAX_LENGTH)
        got = raw.encode(query, doc)
        assert got.ids == want["input_ids"], (query[:40], doc[:40])
        if "token_type_ids" in want:
            assert got.type_ids == want["token_type_ids"]
    assert max(len(raw.encode(q, d).ids) for q, d in pairs) == MAX_LENGTH  # some pairs are truncated


def test_workers_tokenize_a_hub_form_xlm_roberta_tokenizer_as_crossencoder_does(tmp_path):
    """The tokenizer.json layout XLM-R checkpoints ship (Metaspace alone, " {2,}" folded; the precompiled
    map left out): the pairs the workers make must still be CrossEncoder's."""
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(resolve_model("tiny-xlm-roberta").path, tmp_path / "hub", dirs_exist_ok=True)
    path = tmp_path / "hub" / "tokenizer.json"
    data = json.loads(path.read_text())
    data["normalizer"] = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    path.write_text(json.dumps(data))
    auto = AutoTokenizer.from_pretrained(str(tmp_path / "hub"))
    pairs = [("a\tb", "c\nd"), ("query", "a document with trailing spaces  ")]
    batch = PairTokenizer(path, MAX_LENGTH).encode([q for q, _ in pairs], [0, 1], [d for _, d in pairs],
                                                   ChunkPolicy(overhead_tokens=10**9))
    chunk = batch.chunks[0]
    got = [chunk.input_ids[i][chunk.attention_mask[i] == 1].tolist() for i in np.argsort(chunk.rows)]
    assert got == [auto(q, d)["input_ids"] for q, d in pairs]


def test_torch_engine_equals_crossencoder_on_every_chunking(tiny):
    model, pairs, want = tiny
    engine = load_engine(EngineConfig(model.path, engine="torch"))
    family = TINY_FAMILIES[model.name].family
    assert engine.model.config._attn_implementation == ("eager" if family == "deberta-v2" else "sdpa")
    assert engine.feeds_token_types == (family == "electra")
    assert max_diff(engine, model, pairs, want) <= ATOL


def test_onnx_engine_equals_crossencoder_on_every_chunking(tiny):
    pytest.importorskip("onnxruntime")
    model, pairs, want = tiny
    engine = load_engine(EngineConfig(model.path, engine="onnx"))
    assert ("token_type_ids" in engine._feeds) == (TINY_FAMILIES[model.name].family == "electra")
    assert max_diff(engine, model, pairs, want) <= ATOL


def test_torch_packed_equals_crossencoder_or_is_refused(tiny):
    """XLM-R, ELECTRA and ModernBERT (its local layers' window and mean pooling too) run packed (grouped attention
    on CPU) with CrossEncoder's scores; the rest say why not."""
    model, pairs, want = tiny
    family = TINY_FAMILIES[model.name].family
    if family not in PACKED_FAMILIES:
        with pytest.raises(EngineLoadError, match=f"--packed: model_type '{family}' is not one of bert, xlm-roberta"):
            load_engine(EngineConfig(model.path, engine="torch", packed=True))
        return
    engine = load_engine(EngineConfig(model.path, engine="torch", packed=True))
    assert engine.packed and engine.packed_model.attention == "grouped"
    assert max_diff(engine, model, pairs, want) <= ATOL


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="varlen attention needs a CUDA GPU")
@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graphs", "eager"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_packed_varlen_on_cuda_stays_near_crossencoder(tiny, dtype, graphs):
    """On CUDA the packed families run FlashAttention varlen by default, from CUDA graphs or eager, in half
    precision: within HALF_ATOL of CrossEncoder's fp32 logits."""
    model, pairs, want = tiny
    if TINY_FAMILIES[model.name].family not in PACKED_FAMILIES:
        pytest.skip("runs padded")
    engine = load_engine(EngineConfig(model.path, engine="torch", device="cuda", dtype=dtype, cuda_graphs=graphs))
    assert engine.packed and engine.packed_model.attention == "varlen" and (engine.graphs is not None) == graphs
    assert max_diff(engine, model, pairs, want) <= HALF_ATOL[dtype]


def max_diff(engine, model, pairs, want) -> float:
    """Worst |engine - CrossEncoder| over the pairs, tokenized by the workers' tokenizer and cut every way the
    engine takes them (padded or packed)."""
    tokenizer = PairTokenizer(model.path / "tokenizer.json", MAX_LENGTH)
    queries = sorted({q for q, _ in pairs})
    index = [queries.index(q) for q, _ in pairs]
    worst = 0.0
    for policy in (PACKED_POLICIES if engine.packed else POLICIES).values():
        got = run_batch(engine, tokenizer.encode(queries, index, [d for _, d in pairs], policy))
        worst = max(worst, float(np.abs(got - want).max()))
    logging.getLogger(__name__).info("%s on %s: max |engine - CrossEncoder| %.2e", engine.name, model.name, worst)
    return worst


# --- what the engines refuse ------------------------------------------------------------


def test_a_model_type_transformers_does_not_know_is_refused_naming_the_families(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKPOOL_CACHE", str(tmp_path / "cache"))  # the failed export leaves its lock dir
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "fancy-net", "num_labels": 1}))
    with pytest.raises(EngineLoadError, match=r"fancy-net.*rerankpool serves: bert \(torch, onnx, mlx\)"):
        load_engine(EngineConfig(tmp_path, engine="torch"))
    with pytest.raises(EngineLoadError, match="fancy-net"):
        load_engine(EngineConfig(tmp_path, engine="onnx"))


def test_mlx_engine_equals_crossencoder_or_refuses_the_family(tiny):
    """MLX serves XLM-R (its positions from the ids, its dense-tanh head) with CrossEncoder's scores; the
    families it does not serve are refused by name."""
    pytest.importorskip("mlx.core")
    model, pairs, want = tiny
    family = TINY_FAMILIES[model.name].family
    if family != "xlm-roberta":
        with pytest.raises(EngineLoadError, match=f"model_type '{family}' is not supported by the mlx engine"):
            load_engine(EngineConfig(model.path, engine="mlx"))
        return
    assert max_diff(load_engine(EngineConfig(model.path, engine="mlx")), model, pairs, want) <= ATOL


def test_a_packed_pass_that_disagrees_with_the_padded_one_is_caught_at_load(tmp_path):
    """The engine checks its packed runner against the model's own padded pass on a probe batch: the runner of
    another checkpoint of the same family (another seed) is far outside the tolerance, its own is inside."""
    from rerankpool.models.tiny_families import build_tiny_family
    from rerankpool.worker.engines.packed_encoder import load_packed

    engine = load_engine(EngineConfig(resolve_model("tiny-modernbert").path, engine="torch", packed=True))
    other = load_engine(EngineConfig(build_tiny_family("tiny-modernbert", tmp_path, seed=1), engine="torch"))
    worst, tolerance = engine.packed_disagreement(engine.packed_model, MAX_LENGTH)
    assert worst <= tolerance
    worst, tolerance = engine.packed_disagreement(load_packed(other.model), MAX_LENGTH)
    assert worst > 10 * tolerance
