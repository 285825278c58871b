"""LLM rerankers: the prompt tokenizer and the last-token engine against the model cards' reference code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rerankpool.models.llm import (
    INSTRUCTION_FILE,
    TINY_QWEN3_MODEL,
    BgeGemmaTemplate,
    Qwen3Template,
    build_qwen3_tokenizer,
    is_llm_reranker,
    llm_reranker,
    template_for,
)
from rerankpool.protocol import Truncation
from rerankpool.worker.engines import EngineConfig, EngineLoadError, load_engine
from rerankpool.worker.engines.base import EncodedBatch, run_batch
from rerankpool.worker.policy import ChunkPolicy
from rerankpool.worker.tokenize import PairTokenizer, PromptTokenizer, load_pair_tokenizer
from tests.llm_reference import QwenReference, varied_pairs

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored")  # the card pads with max_length

# Batch compositions the scores must not depend on: a chunk per length, one chunk for all, GPU-style rounding.
POLICIES = [ChunkPolicy(overhead_tokens=0), ChunkPolicy(overhead_tokens=10**6), ChunkPolicy(8192, pad_multiple=8)]
PAIRS = varied_pairs(30, seed=5)


@pytest.fixture(scope="module")
def qwen():
    from rerankpool.models import resolve_model

    return resolve_model(TINY_QWEN3_MODEL)


@pytest.fixture(scope="module")
def engine(qwen):
    return load_engine(EngineConfig(model_path=qwen.path))


def pool_scores(engine, tokenizer, pairs, policy=ChunkPolicy()) -> tuple[np.ndarray, EncodedBatch]:
    queries = sorted({q for q, _ in pairs})
    batch = tokenizer.encode(queries, [queries.index(q) for q, _ in pairs], [d for _, d in pairs], policy)
    return run_batch(engine, batch), batch


def row_ids(batch: EncodedBatch) -> dict[int, list[int]]:
    return {int(r): c.input_ids[i, : c.attention_mask[i].sum()].tolist()
            for c in batch.chunks for i, r in enumerate(c.rows)}


@pytest.mark.parametrize("max_length", [512, 160])
def test_scores_equal_the_model_cards_code_pair_by_pair(qwen, engine, max_length):
    """fp32: sigmoid(raw) is the card's probability; raw is log p(yes) - log p(no); truncated pairs too."""
    p_yes, log_odds, ids = QwenReference(qwen.path, max_length)(PAIRS)
    tokenizer = load_pair_tokenizer(qwen.path, max_length)
    assert isinstance(tokenizer, PromptTokenizer)
    for policy in POLICIES:
        raw, batch = pool_scores(engine, tokenizer, PAIRS, policy)
        assert [row_ids(batch)[i] for i in range(len(PAIRS))] == ids  # the card's tokens, exactly
        np.testing.assert_allclose(1 / (1 + np.exp(-raw.astype(np.float64))), p_yes, atol=1e-5, rtol=0)
        np.testing.assert_allclose(raw, log_odds, atol=1e-4, rtol=0)
    lengths = [len(i) for i in ids]
    assert max(lengths) <= max_length
    if max_length == 160:
        assert sum(n == 160 for n in lengths) >= 3 and min(lengths) < 120  # some cut, some not
    assert np.ptp(log_odds) > 0.5 and len(set(np.round(log_odds, 3))) > 20  # a mixed-up row would show


def test_the_vocabulary_projection_is_never_computed(qwen, engine):
    """Only [n, hidden] last-token states meet the head, and only its yes/no rows: no tensor has a vocabulary axis."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    config = engine.model.config
    ops: list[tuple[list[tuple[int, ...]], tuple[int, ...]]] = []  # each op's input shapes and output shape

    class Shapes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            outs = out if isinstance(out, (tuple, list)) else [out]
            ops.extend(([tuple(a.shape) for a in args if isinstance(a, torch.Tensor)], tuple(t.shape))
                       for t in outs if isinstance(t, torch.Tensor))
            return out

    def refuse(*_):
        raise AssertionError("lm_head ran: the full vocabulary projection")

    hook = engine.model.get_output_embeddings().register_forward_pre_hook(refuse)
    try:
        with Shapes():
            raw, batch = pool_scores(engine, load_pair_tokenizer(qwen.path, 512), PAIRS[:8],
                                     ChunkPolicy(overhead_tokens=10**6))
    finally:
        hook.remove()
    assert len(batch.chunks) == 1 and len(ops) > 50 and np.isfinite(raw).all()
    assert not [out for _, out in ops if config.vocab_size in out], "a tensor with a vocabulary axis was computed"
    assert tuple(engine.head.shape) == (2, config.hidden_size)  # the yes and no rows
    head_products = [inputs for inputs, _ in ops if (config.hidden_size, 2) in inputs]
    assert head_products == [[(8, config.hidden_size), (config.hidden_size, 2)]]  # the last tokens' states only


def test_max_tokens_per_doc_cuts_each_document_before_the_prompt(qwen, engine):
    """A document cut to its first tokens' text scores as the card scores that text; a cut from the left is refused."""
    from tokenizers import Tokenizer

    limit = 6
    plain = Tokenizer.from_file(str(qwen.path / "tokenizer.json"))
    cut_pairs = []
    for q, d in PAIRS:
        offsets = plain.encode(d, add_special_tokens=False).offsets
        cut_pairs.append((q, d if len(offsets) <= limit else d[: offsets[limit - 1][1]]))
    assert sum(c != p for c, p in zip(cut_pairs, PAIRS)) > len(PAIRS) // 2
    _, log_odds, ids = QwenReference(qwen.path, 512)(cut_pairs)
    tokenizer = load_pair_tokenizer(qwen.path, 512)
    queries = sorted({q for q, _ in PAIRS})
    index, docs = [queries.index(q) for q, _ in PAIRS], [d for _, d in PAIRS]
    cut = [Truncation(True, max_tokens_per_doc=limit)] * len(PAIRS)
    batch = tokenizer.encode(queries, index, docs, ChunkPolicy(), cut)
    assert [row_ids(batch)[i] for i in range(len(PAIRS))] == ids and not batch.refused
    np.testing.assert_allclose(run_batch(engine, batch), log_odds, atol=1e-4, rtol=0)
    left = tokenizer.encode(queries, index, docs, ChunkPolicy(), [Truncation(True, "left")] * len(PAIRS))
    assert set(left.refused) == set(range(len(PAIRS)))
    assert left.refused[0] == "LLM rerankers cut a pair only from its end, as their model cards do"


def test_instruction_comes_from_the_worker_then_the_file_then_the_card(qwen, engine, tmp_path):
    assert llm_reranker(qwen.path).instruction == Qwen3Template.default_instruction
    local = tmp_path / "qwen"
    shutil.copytree(qwen.path, local)
    task = "Given a question about a city, find passages about its rivers"
    (local / INSTRUCTION_FILE).write_text(json.dumps({"instruction": task}))
    assert llm_reranker(local).instruction == task
    assert llm_reranker(local, instruction="explicit").instruction == "explicit"
    p_yes, log_odds, _ = QwenReference(qwen.path, 512)(PAIRS[:10], task=task)
    raw, _ = pool_scores(engine, load_pair_tokenizer(local, 512), PAIRS[:10])
    np.testing.assert_allclose(raw, log_odds, atol=1e-4, rtol=0)
    default_raw, _ = pool_scores(engine, load_pair_tokenizer(qwen.path, 512), PAIRS[:10])
    assert np.abs(default_raw - raw).max() > 1e-3
    (local / INSTRUCTION_FILE).write_text('{"task": "x"}')
    with pytest.raises(ValueError, match="instruction"):
        llm_reranker(local)


def test_family_comes_from_config_json():
    qwen3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "tie_word_embeddings": True}
    gemma = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma"}
    assert is_llm_reranker(qwen3) and is_llm_reranker(gemma)
    assert isinstance(template_for(qwen3), Qwen3Template) and isinstance(template_for(gemma), BgeGemmaTemplate)
    for cross_encoder in ({"architectures": ["BertForSequenceClassification"], "model_type": "bert"},
                          {"architectures": ["Qwen3ForSequenceClassification"], "model_type": "qwen3"}, {}):
        assert not is_llm_reranker(cross_encoder)
    with pytest.raises(ValueError, match="no reranker template.*qwen3, gemma"):
        template_for({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})


def test_torch_engine_choice_and_refusals(qwen, tiny_model, tmp_path):
    assert type(load_engine(EngineConfig(model_path=tiny_model.path))).__name__ == "TorchEngine"
    with pytest.raises(EngineLoadError, match="--engine torch only"):
        load_engine(EngineConfig(model_path=qwen.path, engine="onnx"))
    with pytest.raises(EngineLoadError, match="--packed"):
        load_engine(EngineConfig(model_path=qwen.path, packed=True))
    with pytest.raises(ValueError, match="no room"):
        load_pair_tokenizer(qwen.path, max_length=40)  # the Qwen3 prompt alone is ~50 tokens here
    with pytest.raises(ValueError, match="cross-encoder"):
        load_pair_tokenizer(tiny_model.path, instruction="x")
    assert isinstance(load_pair_tokenizer(tiny_model.path), PairTokenizer)


def test_tiny_checkpoint_has_the_real_shape_and_tokens(qwen):
    config = json.loads((qwen.path / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["model_type"] == "qwen3"
    assert config["tie_word_embeddings"] is True and config["num_key_value_heads"] < config["num_attention_heads"]
    tok_config = json.loads((qwen.path / "tokenizer_config.json").read_text())
    assert tok_config["padding_side"] == "left" and tok_config["pad_token"] == "<|endoftext|>"
    tok = build_qwen3_tokenizer(seed=0)
    assert tok.to_str() == type(tok).from_file(str(qwen.path / "tokenizer.json")).to_str()  # seeded: rebuilt equal
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "yes", "no"):
        assert tok.encode(token, add_special_tokens=False).ids == [tok.token_to_id(token)]


# --- bge-reranker-v2-gemma: its card's code on a tiny Gemma with the same tokenizer -----------------

@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """A tiny GemmaForCausalLM (bge-reranker-v2-gemma's shape, shrunk), seeded, with a <bos> tokenizer."""
    import torch
    import transformers

    path = tmp_path_factory.mktemp("tiny-gemma")
    tok = build_qwen3_tokenizer(seed=0)
    tok.add_special_tokens(["<pad>", "<eos>", "<bos>"])
    tok.save(str(path / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in ("<pad>", "<eos>", "<bos>")}
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>",
         "pad_token": "<pad>", "padding_side": "left"}))
    config = transformers.GemmaConfig(
        architectures=["GemmaForCausalLM"], vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
        initializer_range=0.2, pad_token_id=ids["<pad>"], eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"])
    torch.manual_seed(1)
    transformers.GemmaForCausalLM(config).eval().save_pretrained(path)
    return path


def bge_gemma_card(path, pairs, max_length):
    """bge-reranker-v2-gemma's card code (``get_inputs`` + the Yes logit); ``prepare_for_model``'s
    only_second truncation through transformers' own ``truncate_sequences`` (fast tokenizers lost the method)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.tokenization_python import PreTrainedTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    yes_loc = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    prompt = BgeGemmaTemplate.default_instruction
    prompt_inputs = tokenizer(prompt, return_tensors=None, add_special_tokens=False)["input_ids"]
    sep_inputs = tokenizer("\n", return_tensors=None, add_special_tokens=False)["input_ids"]
    inputs = []
    for query, passage in pairs:
        query_inputs = tokenizer(f"A: {query}", return_tensors=None, add_special_tokens=False,
                                 max_length=max_length * 3 // 4, truncation=True)
        passage_inputs = tokenizer(f"B: {passage}", return_tensors=None, add_special_tokens=False,
                                   max_length=max_length, truncation=True)
        first, second = [tokenizer.bos_token_id] + query_inputs["input_ids"], sep_inputs + passage_inputs["input_ids"]
        first, second, _ = PreTrainedTokenizer.truncate_sequences(
            tokenizer, first, second, num_tokens_to_remove=len(first) + len(second) - max_length,
            truncation_strategy="only_second")
        ids = first + second + sep_inputs + prompt_inputs
        inputs.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    batch = tokenizer.pad(inputs, padding=True, max_length=max_length + len(sep_inputs) + len(prompt_inputs),
                          pad_to_multiple_of=8, return_tensors="pt")
    with torch.no_grad():
        scores = model(**batch, return_dict=True).logits[:, -1, yes_loc].view(-1).float()
    return scores.numpy(), [row[m.bool()].tolist() for row, m in zip(batch["input_ids"], batch["attention_mask"])]


@pytest.mark.parametrize("max_length", [512, 96])
def test_bge_gemma_scores_equal_its_cards_code(gemma, max_length):
    want, ids = bge_gemma_card(gemma, PAIRS, max_length)
    engine = load_engine(EngineConfig(model_path=gemma))
    assert engine.head.shape[0] == 1  # the Yes row alone
    tokenizer = load_pair_tokenizer(gemma, max_length)
    for policy in POLICIES[:2]:
        raw, batch = pool_scores(engine, tokenizer, PAIRS, policy)
        assert [row_ids(batch)[i] for i in range(len(PAIRS))] == ids
        np.testing.assert_allclose(raw, want, atol=1e-4, rtol=0)
    assert np.ptp(want) > 0.5
