"""LLM rerankers: causal language models that judge a (query, doc) pair with a prompt.

Qwen3-Reranker (0.6B, 4B, 8B) and bge-reranker-v2-gemma are causal LMs, not
cross-encoders with a score head. A pair is written into the model card's prompt template,
and its score is read off the next-token logits at the prompt's last token:

- **The pool's raw score** is the log-odds the model card's code turns into a probability,
  so ``activation="sigmoid"`` (and the HTTP shapes' default) gives the card's probability
  exactly. Qwen3: ``logit("yes") - logit("no")``, as
  ``sigmoid(yes - no) == softmax([no, yes])[1]``, the card's score. bge-reranker-v2-gemma:
  ``logit("Yes")``, the card's raw score, whose sigmoid is FlagEmbedding's normalized score.
- **The family comes from config.json**: an ``...ForCausalLM`` architecture is an LLM
  reranker, and its ``model_type`` picks the template (``TEMPLATES``), whatever the
  directory or hub id is called.
- **Truncation** is the card's: the worker's ``--max-length`` plays its ``max_length``.
  Qwen3 cuts the formatted pair text to ``max_length - len(prefix) - len(suffix)`` tokens
  from the right, then adds the prefix and suffix tokens.
- **The instruction** (Qwen3's ``<Instruct>``, bge-gemma's prompt) is, in order: the
  worker's ``WorkerConfig.instruction``; else ``{"instruction": "..."}`` in a
  ``rerankpool-reranker.json`` file beside the checkpoint's config.json; else the model
  card's default (``PromptTemplate.default_instruction``). Every pair a worker scores uses
  the same one, so a checkpoint directory is the unit to give its own instruction.

Importing this module is cheap and torch-free (the broker imports the registry, which
names the builtin below); only ``build_tiny_qwen3_reranker`` needs torch and transformers.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import ModelBuildError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TINY_QWEN3_MODEL = "tiny-qwen3-reranker"
INSTRUCTION_FILE = "rerankpool-reranker.json"


def read_config(model_path: Path) -> dict[str, Any]:
    """A checkpoint's config.json as a dict (empty when there is none, or it is not JSON)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def is_llm_reranker(config: dict[str, Any]) -> bool:
    """True for a causal LM checkpoint (``architectures`` holds an ``...ForCausalLM``).

    A causal LM is served only as an LLM reranker; whether its family has a template is
    ``template_for``'s question, which says what to do when it has none.
    """
    architectures = config.get("architectures") or []
    return any(str(a).endswith("ForCausalLM") for a in architectures)


class PromptTemplate(ABC):
    """How one family's model card builds a pair's token ids, and which logits make its score."""

    family: str
    default_instruction: str
    yes: str
    no: str | None  # None: the score is the "yes" logit alone

    @abstractmethod
    def pair_ids(self, tok: Tokenizer, pairs: Sequence[tuple[str, str]], instruction: str,
                 max_length: int) -> list[list[int]]:
        """Each pair's prompt token ids, truncated as the model card's code truncates them."""

    @abstractmethod
    def head_ids(self, tok: Tokenizer) -> tuple[int, int | None]:
        """The vocabulary ids whose logits make the score: (yes, no), no being None for a yes-only score."""


def _encode(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """``tokenizer(texts, add_special_tokens=False)['input_ids']``: the ids of each text on its own."""
    return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]


def _token_id(tok: Tokenizer, token: str) -> int:
    token_id = tok.token_to_id(token)
    if token_id is None:
        raise ValueError(f"the tokenizer has no token {token!r}, which this LLM reranker's score needs")
    return int(token_id)


class Qwen3Template(PromptTemplate):
    """Qwen3-Reranker's card: a chat prompt around ``<Instruct>/<Query>/<Document>``, "yes" against "no"."""

    family = "qwen3"
    default_instruction = "Given a web search query, retrieve relevant passages that answer the query"
    yes, no = "yes", "no"
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

    def pair_ids(self, tok, pairs, instruction, max_length):
        prefix, suffix = _encode(tok, [self.prefix, self.suffix])
        budget = max_length - len(prefix) - len(suffix)
        if budget < 1:
            raise ValueError(f"--max-length {max_length} leaves no room for a pair besides the "
                             f"{len(prefix) + len(suffix)} tokens of the Qwen3 prompt")
        texts = [f"<Instruct>: {instruction}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
        return [prefix + ids[:budget] + suffix for ids in _encode(tok, texts)]

    def head_ids(self, tok):
        return _token_id(tok, self.yes), _token_id(tok, self.no)  # convert_tokens_to_ids, as the card


class BgeGemmaTemplate(PromptTemplate):
    """bge-reranker-v2-gemma's card: ``<bos>A: q\\nB: d\\n<prompt>``, the "Yes" logit alone."""

    family = "gemma"
    default_instruction = (
        "Given a query A and a passage B, determine whether the passage contains an answer to the query "
        "by providing a prediction of either 'Yes' or 'No'."
    )
    yes, no = "Yes", None

    def pair_ids(self, tok, pairs, instruction, max_length):
        bos = tok.token_to_id("<bos>")
        if bos is None:
            raise ValueError("the tokenizer has no <bos> token, which the bge-reranker-v2-gemma prompt starts with")
        prompt, sep = _encode(tok, [instruction, "\n"])
        queries = _encode(tok, [f"A: {q}" for q, _ in pairs])
        docs = _encode(tok, [f"B: {d}" for _, d in pairs])
        out = []
        for q, d in zip(queries, docs):
            first = [bos] + q[: max_length * 3 // 4]
            second = (sep + d[:max_length])[: max(0, max_length - len(first))]  # prepare_for_model, only_second
            out.append(first + second + sep + prompt)
        return out

    def head_ids(self, tok):
        return _encode(tok, [self.yes])[0][0], None  # tokenizer('Yes')['input_ids'][0], as the card


TEMPLATES: dict[str, PromptTemplate] = {t.family: t for t in (Qwen3Template(), BgeGemmaTemplate())}


def template_for(config: dict[str, Any]) -> PromptTemplate:
    """The prompt template of an LLM reranker's family, from config.json's ``model_type``."""
    model_type = config.get("model_type")
    if model_type not in TEMPLATES:
        raise ValueError(
            f"{config.get('architectures')} (model_type {model_type!r}) is a causal LM with no reranker "
            f"template in rerankpool; LLM rerankers of these families are served: {', '.join(TEMPLATES)}"
        )
    return TEMPLATES[model_type]


@dataclass(frozen=True)
class LlmReranker:
    """An LLM reranker checkpoint's template and the instruction its workers use."""

    template: PromptTemplate
    instruction: str

    def pair_ids(self, tok: Tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[list[int]]:
        return self.template.pair_ids(tok, pairs, self.instruction, max_length)


def llm_reranker(model_path: Path, instruction: str | None = None) -> LlmReranker | None:
    """The checkpoint's LLM reranker set-up, or None for a cross-encoder; the instruction as the module says."""
    config = read_config(model_path)
    if not is_llm_reranker(config):
        return None
    template = template_for(config)
    if instruction is None:
        try:
            instruction = json.loads((Path(model_path) / INSTRUCTION_FILE).read_text(encoding="utf-8"))["instruction"]
        except FileNotFoundError:
            instruction = template.default_instruction
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{Path(model_path) / INSTRUCTION_FILE} must be JSON like "
                             f'{{"instruction": "..."}} ({type(exc).__name__}: {exc})') from exc
    if not isinstance(instruction, str) or not instruction:
        raise ValueError(f"the LLM reranker instruction must be a non-empty string, not {instruction!r}")
    return LlmReranker(template, instruction)


# --- the builtin tiny-qwen3-reranker ---------------------------------------------------

# Qwen3-Reranker-0.6B's config.json with the sizes shrunk (hidden 1024 -> 64, 28 layers -> 2,
# 16/8 heads of 128 -> 4/2 of 16, intermediate 3072 -> 128, 40960 positions -> 1024, vocabulary
# 151669 -> 600) and a wider random init.
TINY_QWEN3_SHAPE = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "head_dim": 16,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.2,  # the real 0.02 leaves a random model's scores almost blind to the text
    "intermediate_size": 128,
    "max_position_embeddings": 1024,
    "max_window_layers": 2,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "use_cache": True,
    "use_sliding_window": False,
}
# Qwen2's pre-tokenizer split (transformers' Qwen2Tokenizer builds the same pipeline).
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
               r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
# (token, special) in Qwen3's order; <think> and </think> are added tokens that are not special there.
QWEN3_ADDED_TOKENS = (("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                      ("<think>", False), ("</think>", False))
TINY_VOCAB = 600  # tokens in all, the added ones included

_WORDS = (
    "the a of and to in is was for on with as by at from that which who what when where how many people "
    "live city river music station old new year war park berlin paris france germany capital population "
    "million north south bank bridge history museum library school university language science water mountain "
    "forest train road market king queen church castle island lake sea coast weather summer winter football "
    "team game player score record film book author song band country state law court rule answer question "
    "query document passage relevant search retrieve judge requirement instruct provided"
).split()


def _tokenizer_corpus(seed: int) -> list[str]:
    """A few hundred seeded lines of text: the prompt, yes/no answers, words, digits, some non-ASCII."""
    rng = random.Random(seed)
    lines = [Qwen3Template.prefix, Qwen3Template.suffix, Qwen3Template.default_instruction] * 20
    for i in range(400):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 20)))
        lines.append(f"{rng.choice(['yes', 'no'])}\n<Query>: {words}? {i}\n<Document>: {words.capitalize()}.")
    lines += ["Grüße aus München, café déjà vu", "東京は日本の首都です", "naïve façade — 3.7 million €"] * 5
    return lines


def build_qwen3_tokenizer(seed: int = 0, vocab_size: int = TINY_VOCAB, words: Sequence[str] = ()):
    """A byte-level BPE tokenizer with Qwen3's pipeline and special tokens, trained on a tiny corpus
    (and on ``words``, each with a leading space, for a vocabulary that keeps common words whole)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(vocab_size=vocab_size - len(QWEN3_ADDED_TOKENS), show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_tokenizer_corpus(seed) + [f" {w} {w.capitalize()}" for w in words], trainer=trainer)
    tok.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in QWEN3_ADDED_TOKENS])
    for word in ("yes", "no"):
        if tok.token_to_id(word) is None:
            raise ModelBuildError(f"the tiny Qwen3 tokenizer did not learn {word!r} as one token; change its corpus")
    return tok


def build_tiny_qwen3_reranker(path: Path, seed: int = 0) -> Path:
    """Write a seeded tiny Qwen3-Reranker (random weights: a TEST model) into ``path``."""
    return build_qwen3_reranker(path, TINY_QWEN3_MODEL, TINY_QWEN3_SHAPE, build_qwen3_tokenizer(seed), seed)


def build_qwen3_reranker(path: Path, name: str, shape: dict[str, Any], tok: Tokenizer, seed: int = 0) -> Path:
    """Write a seeded random Qwen3-Reranker of ``shape`` (config.json fields) with tokenizer ``tok`` into ``path``."""
    import torch

    from .checkpoint import import_transformers, save_checkpoint, write_provenance

    transformers = import_transformers()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t, _ in QWEN3_ADDED_TOKENS}
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "padding_side": "left",
        "model_max_length": shape["max_position_embeddings"],
        "added_tokens_decoder": {str(ids[t]): {"content": t, "special": s, "lstrip": False, "rstrip": False,
                                               "normalized": False, "single_word": False}
                                 for t, s in QWEN3_ADDED_TOKENS},
    }, indent=2) + "\n", encoding="utf-8")
    config = transformers.Qwen3Config(
        **{"vocab_size": tok.get_vocab_size(), **shape}, bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"], dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = transformers.Qwen3ForCausalLM(config).eval()
    save_checkpoint(model, path)
    write_provenance(path, name, seed=seed)
    return path
