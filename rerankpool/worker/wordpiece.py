"""Single texts to BERT WordPiece ids: flash-tokenizer where it agrees with ``tokenizers``.

On GPU hosts the tokenizer, not the model, limits the pool: ``tokenizers`` spends about
a millisecond of a core on a 176-token SQuAD pair there. flash-tokenizer (C++, MIT) does
the same BERT WordPiece, and the pairs come out ~6x faster on one core
(``bench/probes/tokenizer_speed.py``), but it is not a drop-in: it splits
some non-ASCII characters differently (``§``, ``¿``, ``«``, combining accents, the
fraction slash), it has no 100-character word limit, and it does not know the special
tokens as text. So a text goes to it only when it is safe to: every character in it
was checked, once per process, to tokenize the same in both libraries in a few
contexts; no special token appears in it; flash-tokenizer's output shows no word over
the limit. Every other text goes to ``tokenizers``. The parity is tested on every
SQuAD text and on random text (``tests/unit/test_wordpiece.py``).

Only plain BERT tokenizers qualify (``bert_spec``): lowercasing or not, WordPiece with
``##`` and ``[UNK]``, the ``[CLS] A [SEP] B [SEP]`` pair template. The pair assembly and
truncation live in ``rerankpool.worker.tokenize``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

# Characters checked when the encoder loads: ASCII, Latin-1, Latin Extended-A/B, IPA,
# combining marks, Greek, Cyrillic and general punctuation. Anything else is checked the
# first time a text holds it.
_CHECKED_AT_LOAD = (range(0, 0x250), range(0x250, 0x370), range(0x370, 0x530), range(0x2000, 0x2070))
# Contexts a character is checked in: inside a word, between digits, alone, doubled, at
# either end of a word.
_CONTEXTS = ("a{c}b", "1{c}2", " {c} ", "{c}{c}", "The{c}", "{c}ing", "x {c}y{c} z")
_PARALLEL_MIN_TEXTS = 4  # below this, OpenMP start-up costs more than it saves


@dataclass(frozen=True)
class BertSpec:
    """What flash-tokenizer needs to reproduce a ``tokenizer.json``, read from that file."""

    vocab: tuple[str, ...]  # tokens by id
    lowercase: bool
    chinese_chars: bool
    max_word_chars: int
    cls_id: int
    sep_id: int
    special_tokens: tuple[str, ...]


def bert_spec(tokenizer_json: Path) -> BertSpec | None:
    """The file's settings if it is a plain BERT WordPiece tokenizer, else None (and why, logged)."""
    config = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    why = _not_plain_bert(config)
    if why:
        logger.info("fast tokenizer off for %s: %s", tokenizer_json, why)
        return None
    norm, model = config["normalizer"], config["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    ids = {token: i for token, i in vocab}
    return BertSpec(
        vocab=tuple(token for token, _ in vocab),
        lowercase=bool(norm["lowercase"]),
        chinese_chars=bool(norm["handle_chinese_chars"]),
        max_word_chars=int(model["max_input_chars_per_word"]),
        cls_id=ids["[CLS]"],
        sep_id=ids["[SEP]"],
        special_tokens=tuple(t["content"] for t in config.get("added_tokens", [])),
    )


def _not_plain_bert(config: dict) -> str | None:
    norm, pre, model, post = (config.get(k) or {} for k in ("normalizer", "pre_tokenizer", "model", "post_processor"))
    if norm.get("type") != "BertNormalizer" or not norm.get("clean_text", False):
        return f"normalizer {norm.get('type')}"
    if norm.get("strip_accents") not in (None, norm.get("lowercase")):
        return "strip_accents differs from lowercase"
    if pre.get("type") != "BertPreTokenizer":
        return f"pre-tokenizer {pre.get('type')}"
    if model.get("type") != "WordPiece" or model.get("unk_token") != "[UNK]":
        return f"model {model.get('type')} with unk {model.get('unk_token')}"
    if model.get("continuing_subword_prefix") != "##":
        return "subword prefix is not ##"
    vocab = model.get("vocab", {})
    if sorted(vocab.values()) != list(range(len(vocab))) or not {"[CLS]", "[SEP]", "[UNK]"} <= vocab.keys():
        return "vocab ids are not 0..n-1 with [CLS], [SEP] and [UNK]"
    added = config.get("added_tokens", [])
    if any(t.get("normalized") or not t.get("special") or not t["content"].startswith("[") for t in added):
        return "added tokens that are not special, or do not start with '['"
    if _pair_template(post) != ("[CLS]", "A", "[SEP]", "B", "[SEP]", (0, 0, 0, 1, 1)):
        return f"post-processor {post.get('type')} is not [CLS] A [SEP] B [SEP]"
    return None


def _pair_template(post: dict) -> tuple | None:
    if post.get("type") == "BertProcessing":
        return (post["cls"][0], "A", post["sep"][0], "B", post["sep"][0], (0, 0, 0, 1, 1))
    if post.get("type") != "TemplateProcessing":
        return None
    names, types = [], []
    for piece in post.get("pair", []):
        ((kind, value),) = piece.items()
        names.append(value["id"])
        types.append(value["type_id"])
    return (*names, tuple(types))


@dataclass
class TextIds:
    """Token ids of many texts in one array: text ``i`` is ``flat[starts[i] : starts[i] + lengths[i]]``."""

    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def lists(self) -> list[list[int]]:
        return [self.flat[s : s + n].tolist() for s, n in zip(self.starts, self.lengths)]


def balanced_order(sizes: np.ndarray, parts: int) -> np.ndarray:
    """An order of items whose ``parts`` contiguous blocks hold near-equal total size.

    flash-tokenizer splits a batch among its OpenMP threads in contiguous blocks (a
    static schedule: the first ``n % parts`` threads take one item more). Fed as
    ``[queries..., docs...]``, half the threads got the short queries and idled while
    the others did every document. Dealing the items, largest first, back and forth
    over the blocks evens the work out.
    """
    n = len(sizes)
    if parts <= 1 or n <= 1:
        return np.arange(n)
    largest_first = np.argsort(-np.asarray(sizes), kind="stable")
    position = np.arange(n)
    lane = position % parts
    block = np.where((position // parts) % 2 == 0, lane, parts - 1 - lane)
    if n % parts and (n // parts) % 2:  # the short last round went backwards: mirror, so extras land first
        block = parts - 1 - block
    return largest_first[np.argsort(block, kind="stable")]


def ragged_take(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([flat[s : s + n] for s, n in zip(starts, lengths)])`` without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return flat[np.arange(total, dtype=np.int64) + shift]


class FlashWordPiece:
    """Encodes single texts (no special tokens) with flash-tokenizer where safe, ``tokenizers`` elsewhere."""

    def __init__(self, spec: BertSpec, tokenizer_json: Path, threads: int | None = None) -> None:
        from flash_tokenizer._core import FlashBertTokenizer  # ImportError: the caller falls back
        from tokenizers import Tokenizer

        self.spec = spec
        self._threads = threads or os.cpu_count() or 1
        self._parallel = self._threads > 1
        self._slow = Tokenizer.from_file(str(tokenizer_json))
        self._slow.no_padding()
        self._slow.no_truncation()
        with tempfile.TemporaryDirectory() as tmp:
            vocab_txt = Path(tmp) / "vocab.txt"
            vocab_txt.write_text("".join(f"{token}\n" for token in spec.vocab), encoding="utf-8")
            self._flash = FlashBertTokenizer(str(vocab_txt), spec.lowercase, 1 << 30, spec.chinese_chars)
        self._agrees: dict[str, bool] = {}
        self._check([chr(c) for block in _CHECKED_AT_LOAD for c in block])
        specials = "|".join(re.escape(t) for t in spec.special_tokens)
        self._specials = re.compile(specials) if specials else None
        flagged = "".join(c for c, ok in self._agrees.items() if c.isascii() and not ok)
        self._bad_ascii = re.compile("[" + re.escape(flagged) + "]") if flagged else None
        self._unvetted = self._unvetted_pattern()
        # tokenizers turns a word of more than ``max_word_chars`` characters into [UNK];
        # flash-tokenizer splits it. A word's length is the sum of its pieces' lengths
        # (the "##" of continuation pieces left out), so it is read off flash-tokenizer's output.
        self._continuation = np.array([t.startswith("##") for t in spec.vocab], dtype=bool)
        self._piece_chars = np.array([len(t) - 2 * t.startswith("##") for t in spec.vocab], dtype=np.int64)
        logger.debug("flash wordpiece: %d of %d characters checked at load agree", sum(self._agrees.values()),
                     len(self._agrees))

    def _unvetted_pattern(self) -> re.Pattern:
        """Matches any character not yet checked to agree: one C-speed scan screens a whole text."""
        agreed = "".join(c for c, ok in self._agrees.items() if ok)
        return re.compile("[^" + re.escape(agreed) + "]")

    def _check(self, chars: Sequence[str]) -> None:
        """Encode each character in every context with both libraries; remember where they agree."""
        texts = [ctx.format(c=c) for c in chars for ctx in _CONTEXTS]
        slow = [e.ids for e in self._slow.encode_batch_fast(texts, add_special_tokens=False)]
        fast = self._flash.batch_encode(texts, "longest", -1, self._parallel)
        n = len(_CONTEXTS)
        for i, c in enumerate(chars):
            self._agrees[c] = all(f[1:-1] == s for f, s in zip(fast[i * n : (i + 1) * n], slow[i * n : (i + 1) * n]))

    def safe(self, text: str) -> bool:
        """Whether flash-tokenizer's ids for ``text`` can be trusted, before the long-word check on its output."""
        if "[" in text and self._specials is not None and self._specials.search(text):
            return False
        if text.isascii():
            return self._bad_ascii is None or not self._bad_ascii.search(text)
        if not self._unvetted.search(text):
            return True
        chars = set(text)
        new = [c for c in chars if c not in self._agrees]
        if new:
            self._check(new)
            if any(self._agrees[c] for c in new):
                self._unvetted = self._unvetted_pattern()
        return all(self._agrees[c] for c in chars)

    def _long_words(self, flat: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Indices of the texts (by ``starts`` into ``flat``) holding a word over ``max_word_chars``."""
        if not len(flat):
            return np.empty(0, dtype=np.int64)
        word = np.cumsum(~self._continuation[flat]) - 1  # a word starts at each piece without "##"
        chars = np.bincount(word, weights=self._piece_chars[flat])
        first_piece = np.flatnonzero(~self._continuation[flat])
        too_long = first_piece[chars > self.spec.max_word_chars]
        return np.unique(np.searchsorted(starts, too_long, side="right") - 1)

    def encode(self, texts: Sequence[str]) -> TextIds:
        """Token ids of each text, without [CLS]/[SEP]: exactly what ``tokenizers`` gives."""
        safe = np.fromiter((self.safe(t) for t in texts), dtype=bool, count=len(texts))
        fast_rows = np.flatnonzero(safe)
        parallel = self._parallel and len(fast_rows) >= _PARALLEL_MIN_TEXTS
        if parallel:  # every block below is encoded in this order, so nothing needs undoing
            sizes = np.fromiter((len(texts[i]) for i in fast_rows), dtype=np.int64, count=len(fast_rows))
            fast_rows = fast_rows[balanced_order(sizes, self._threads)]
        fast = self._flash.batch_encode([texts[i] for i in fast_rows], "longest", -1, parallel)
        # flash-tokenizer wraps each text in [CLS] ... [SEP]: keep them in the array (they
        # also keep "##" runs from crossing texts) and point past them.
        fast_lengths = np.fromiter(map(len, fast), dtype=np.int64, count=len(fast))
        fast_flat = np.fromiter(itertools.chain.from_iterable(fast), dtype=np.int64, count=int(fast_lengths.sum()))
        fast_starts = np.cumsum(fast_lengths) - fast_lengths
        safe[fast_rows[self._long_words(fast_flat, fast_starts)]] = False
        starts = np.zeros(len(texts), dtype=np.int64)
        lengths = np.zeros(len(texts), dtype=np.int64)
        keep = safe[fast_rows]
        starts[fast_rows[keep]] = fast_starts[keep] + 1
        lengths[fast_rows[keep]] = fast_lengths[keep] - 2
        slow_rows = np.flatnonzero(~safe)
        if not len(slow_rows):
            return TextIds(fast_flat, starts, lengths)
        slow = [e.ids for e in self._slow.encode_batch_fast([texts[i] for i in slow_rows], add_special_tokens=False)]
        slow_lengths = np.fromiter(map(len, slow), dtype=np.int64, count=len(slow))
        starts[slow_rows] = len(fast_flat) + np.cumsum(slow_lengths) - slow_lengths
        lengths[slow_rows] = slow_lengths
        slow_flat = np.fromiter(itertools.chain.from_iterable(slow), dtype=np.int64, count=int(slow_lengths.sum()))
        return TextIds(np.concatenate([fast_flat, slow_flat]), starts, lengths)


def load_fast_wordpiece(tokenizer_json: Path, threads: int | None = None) -> FlashWordPiece | None:
    """A ``FlashWordPiece`` for this tokenizer, or None where flash-tokenizer is missing or does not fit."""
    spec = bert_spec(tokenizer_json)
    if spec is None:
        return None
    try:
        return FlashWordPiece(spec, tokenizer_json, threads)
    except ImportError:
        logger.info("flash-tokenizer is not installed: tokenizing with tokenizers only "
                    "(pip install flash-tokenizer==1.2.0 on Linux x86-64 or Windows for ~6x faster tokenizing)")
        return None
