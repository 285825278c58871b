"""Bench inputs: real SQuAD question/passage pairs, synthetic pairs, and MRR@k.

Throughput depends on input length (tokens per pair, padding per batch), so
sweeps run on real text where we have it (``pair_stream``) and on
synthetic text with controlled lengths where we do not
(``synthetic_pairs``). Ranking quality is checked end to end with
``rerank_workload``/``article_workload`` and ``mrr_at_k``.

The data file is ``squad-dev-rerank.json.gz`` (see ``shared/data/README.md``):
``passages`` ``[{id, group, text}]`` and ``queries`` ``[{id, group, text,
relevant}]``, where a group is a Wikipedia article.

Rebuild it with ``python -m rerankpool.bench.datasets build SRC OUT`` from
``squaddev_v1.1.json``; ``load_squad``'s error message says where that comes from.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Iterator, Literal, Sequence

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "DATA_FILE",
    "ENV_VAR",
    "Passage",
    "Query",
    "SquadData",
    "RerankItem",
    "default_squad_path",
    "load_squad",
    "build_squad_rerank",
    "rerank_workload",
    "article_workload",
    "pair_stream",
    "squad_vocab",
    "synthetic_pairs",
    "mrr_at_k",
]

# The bench's workloads: (question, passage) pairs, reranking (a query, its gold passage and others), synthetic.
DATASETS = ("squad-dev", "squad-rerank", "synthetic")
DATA_FILE = "squad-dev-rerank.json.gz"
ENV_VAR = "RERANKPOOL_SQUAD"
_SHARED_PATH = Path("shared") / "data" / DATA_FILE
_SDIST_URL = (
    "https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
    "bigbench-1.0.0.tar.gz"
)
_SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"

HOW_TO_GET = f"""\
Point {ENV_VAR} at the file, or put it at shared/data/{DATA_FILE} beside the checkout, or rebuild it
from the SQuAD v1.1 dev set shipped in the bigbench 1.0.0 source distribution (do not
`pip install bigbench`: it pulls in TensorFlow; `pip download --no-deps bigbench==1.0.0` may stop at
its direct-URL dependency, so fetch the sdist itself, 358 MB):
  curl -LO {_SDIST_URL}
  echo "{_SDIST_SHA256}  bigbench-1.0.0.tar.gz" | sha256sum -c
  tar xzf bigbench-1.0.0.tar.gz {_MEMBER}
  python -m rerankpool.bench.datasets build {_MEMBER} {DATA_FILE}"""


@dataclass(frozen=True)
class Passage:
    id: str
    group: str
    text: str


@dataclass(frozen=True)
class Query:
    id: str
    group: str
    text: str
    relevant: tuple[str, ...]


@dataclass
class SquadData:
    """The loaded file, with lookups by passage id and by group built on first use."""

    passages: list[Passage]
    queries: list[Query]
    name: str = ""
    source: str = ""
    license: str = ""
    path: Path | None = field(default=None, compare=False)

    @cached_property
    def passage_by_id(self) -> dict[str, Passage]:
        return {p.id: p for p in self.passages}

    @cached_property
    def passages_by_group(self) -> dict[str, list[Passage]]:
        groups: dict[str, list[Passage]] = defaultdict(list)
        for p in self.passages:
            groups[p.group].append(p)
        return dict(groups)

    def gold(self, query: Query) -> Passage:
        """The query's relevant passage (the first, where a file lists several)."""
        return self.passage_by_id[query.relevant[0]]

    def describe(self) -> str:
        """One line for a report's Data row."""
        return (f"{self.name or 'SQuAD'}: {len(self.queries)} questions, {len(self.passages)} passages, "
                f"{len(self.passages_by_group)} articles ({self.license or 'licence not recorded'})")


@dataclass(frozen=True)
class RerankItem:
    """One reranking query: score ``docs`` against ``query``; ``docs[gold_index]`` is the relevant one."""

    query: str
    docs: list[str]
    gold_index: int
    query_id: str


# --- loading ------------------------------------------------------------------------------


def default_squad_path() -> Path:
    """Where the data file is: ``$RERANKPOOL_SQUAD`` if set, else ``shared/data/`` in a parent dir.

    Parents of the current directory are searched first, then of this package.
    Raises FileNotFoundError, saying how to get the file, when none exists.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if path.is_file():
            return path
        raise FileNotFoundError(f"{ENV_VAR}={env} is not a file.\n{HOW_TO_GET}")
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for directory in (start, *start.parents):
            candidate = directory / _SHARED_PATH
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{DATA_FILE} not found: no {_SHARED_PATH} in a parent of {starts[0]} or {starts[1]}, "
        f"and {ENV_VAR} is not set.\n{HOW_TO_GET}"
    )


def load_squad(path: Path | None = None) -> SquadData:
    """Load the SQuAD rerank file (``default_squad_path()`` when ``path`` is None)."""
    path = Path(path) if path is not None else default_squad_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.\n{HOW_TO_GET}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        raw = json.load(fh)
    data = SquadData(
        passages=[Passage(p["id"], p["group"], p["text"]) for p in raw["passages"]],
        queries=[Query(q["id"], q["group"], q["text"], tuple(q["relevant"])) for q in raw["queries"]],
        name=raw.get("name", ""),
        source=raw.get("source", ""),
        license=raw.get("license", ""),
        path=path,
    )
    log.info("loaded %s from %s", data.describe(), path)
    return data


def build_squad_rerank(squad_json: Path, out: Path) -> Path:
    """Convert SQuAD v1.1 (``{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}``) to our file.

    Passage ids are ``"<article index>-<paragraph index>"``; a question's
    relevant passage is the paragraph it was asked about.
    """
    raw = json.loads(Path(squad_json).read_text(encoding="utf-8"))
    passages, queries = [], []
    for a, article in enumerate(raw["data"]):
        for p, paragraph in enumerate(article["paragraphs"]):
            pid = f"{a}-{p}"
            passages.append({"id": pid, "group": article["title"], "text": paragraph["context"]})
            for qa in paragraph["qas"]:
                queries.append({"id": qa["id"], "group": article["title"], "text": qa["question"],
                                "relevant": [pid]})
    doc = {
        "name": f"squad-dev-v{raw.get('version', '1.1')}",
        "source": "SQuAD v1.1 development set (Rajpurkar et al., 2016), as shipped in the squad_shifts "
                  "task of the bigbench 1.0.0 source distribution on PyPI",
        "license": "CC BY-SA 4.0",
        "format": "queries[].relevant lists passage ids; candidates for a query are the passages of "
                  "its group (article)",
        "passages": passages,
        "queries": queries,
    }
    out = Path(out)
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
    log.info("wrote %d passages and %d queries to %s", len(passages), len(queries), out)
    return out


# --- workloads ----------------------------------------------------------------------------


def _pick_queries(data: SquadData, n_queries: int, rng: random.Random) -> list[Query]:
    usable = [q for q in data.queries if q.relevant and q.relevant[0] in data.passage_by_id]
    if n_queries > len(usable):
        raise ValueError(f"asked for {n_queries} queries, the data has {len(usable)}")
    return rng.sample(usable, n_queries)


def _item(query: Query, gold: Passage, others: list[Passage], rng: random.Random) -> RerankItem:
    docs = [gold, *others]
    rng.shuffle(docs)
    return RerankItem(query.text, [d.text for d in docs], docs.index(gold), query.id)


def rerank_workload(data: SquadData, n_queries: int = 50, n_candidates: int = 20, seed: int = 0) -> list[RerankItem]:
    """Per query: its gold passage plus ``n_candidates - 1`` random passages from OTHER articles, shuffled.

    Negatives from other articles are easy; this checks that a model ranks at
    all (a working cross-encoder scores MRR@10 near 1). Same seed, same items.
    """
    if n_candidates < 1:
        raise ValueError("n_candidates must be at least 1")
    rng = random.Random(seed)
    items = []
    for q in _pick_queries(data, n_queries, rng):
        pool = [p for p in data.passages if p.group != q.group]
        if n_candidates - 1 > len(pool):
            raise ValueError(f"asked for {n_candidates - 1} negatives, only {len(pool)} passages are in other articles")
        items.append(_item(q, data.gold(q), rng.sample(pool, n_candidates - 1), rng))
    return items


def article_workload(
    data: SquadData, n_queries: int = 50, max_candidates: int | None = None, seed: int = 0
) -> list[RerankItem]:
    """Per query: the passages of its own article (about 43 on average), shuffled.

    Negatives on the same topic are hard: this is the realistic reranking
    case. ``max_candidates`` keeps the gold plus a random subset of the rest.
    """
    rng = random.Random(seed)
    items = []
    for q in _pick_queries(data, n_queries, rng):
        gold = data.gold(q)
        others = [p for p in data.passages_by_group[q.group] if p.id != gold.id]
        if max_candidates is not None and len(others) > max_candidates - 1:
            others = rng.sample(others, max(0, max_candidates - 1))
        items.append(_item(q, gold, others, rng))
    return items


def long_document_workload(data: SquadData, n_queries: int = 20, n_candidates: int = 20,
                           seed: int = 0) -> list[RerankItem]:
    """Per query: whole articles (every paragraph of one, in order, a blank line apart), its own among
    ``n_candidates``. An article runs to thousands of tokens, far past a cross-encoder's window: where its
    evidence sits decides whether a cut document still ranks."""
    rng = random.Random(seed)
    articles = {group: "\n\n".join(p.text for p in sorted(ps, key=lambda p: int(p.id.split("-")[-1])))
                for group, ps in data.passages_by_group.items()}
    if n_candidates > len(articles):
        raise ValueError(f"asked for {n_candidates} candidate articles; the file has {len(articles)}")
    items = []
    for q in _pick_queries(data, n_queries, rng):
        others = rng.sample(sorted(g for g in articles if g != q.group), n_candidates - 1)
        docs = [articles[g] for g in [q.group, *others]]
        order = list(range(len(docs)))
        rng.shuffle(order)
        items.append(RerankItem(q.text, [docs[i] for i in order], order.index(0), q.id))
    return items


def pair_stream(data: SquadData, n_pairs: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n_pairs`` real (question, passage) pairs: a random question with a random passage of its article.

    Lengths follow the data (questions ~9 words, passages ~123 words, up to
    629), which is what batching and padding see in production.
    """
    rng = random.Random(seed)
    queries = data.queries
    by_group = data.passages_by_group
    pairs = []
    for _ in range(n_pairs):
        q = rng.choice(queries)
        pairs.append((q.text, rng.choice(by_group[q.group]).text))
    return pairs


# --- synthetic pairs ----------------------------------------------------------------------

_BUILTIN_WORDS = tuple(
    """the of and to in a is was for on as with by that at from his it an were are which this be
    or has had first its new after who their also one two been more other they not but all most
    into time year years during than city war world government university state people some only
    such when there can over between would both used under early called three about national team
    school known many where later american century large made these while being may since them
    through each part number area season public series before company system game life became
    history found population million system water church music english french german british
    river century league second include power general group north south east west development
    building work form high law art king family modern council film election club based record
    military army european country center period early same several major total human culture
    design energy court final original single order space light language force market economy""".split()
)


@lru_cache(maxsize=4)
def squad_vocab(path: Path | None = None) -> tuple[str, ...]:
    """Every word of the SQuAD passages, repeats kept, so draws follow real word frequencies."""
    data = load_squad(path)
    return tuple(w for p in data.passages for w in p.text.split())


def _default_vocab() -> Sequence[str]:
    try:
        return squad_vocab()
    except FileNotFoundError:
        log.info("SQuAD data not found; synthetic pairs use a built-in word list")
        return _BUILTIN_WORDS


Distribution = Literal["uniform", "lognormal", "fixed"]


def _length_sampler(bounds: tuple[int, int], distribution: Distribution, rng: random.Random):
    low, high = bounds
    if not 1 <= low <= high:
        raise ValueError(f"word-count bounds must satisfy 1 <= low <= high, got {bounds}")
    if distribution == "uniform":
        return lambda: rng.randint(low, high)
    if distribution == "fixed":
        middle = round((low + high) / 2)
        return lambda: middle
    if distribution == "lognormal":
        # Median at the geometric mean, the bounds at about +-2 sigma; clipped to the bounds.
        mu = (math.log(low) + math.log(high)) / 2
        sigma = (math.log(high) - math.log(low)) / 4
        return lambda: min(high, max(low, round(rng.lognormvariate(mu, sigma))))
    raise ValueError(f"unknown distribution {distribution!r}; use uniform, lognormal or fixed")


def synthetic_pairs(
    n_pairs: int,
    query_words: tuple[int, int] = (6, 12),
    doc_words: tuple[int, int] = (40, 200),
    distribution: Distribution = "uniform",
    seed: int = 0,
    vocab: Sequence[str] | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield ``n_pairs`` (query, doc) pairs of random words with controlled lengths (in words).

    For lengths the data lacks: long documents, uniform lengths (no padding),
    heavy tails. Word counts stay within the (low, high) bounds:

    - ``uniform``: every count in the bounds equally likely;
    - ``fixed``: every pair at the middle of the bounds, so it has the same
      mean as ``uniform`` but no padding within a batch;
    - ``lognormal``: median at the geometric mean of the bounds, a long right
      tail, clipped to the bounds.

    Words come from ``vocab``, by default the SQuAD passages' words (real
    frequencies, so tokens per word are realistic) or a built-in list when
    the data file is absent.
    """
    rng = random.Random(seed)
    words = vocab if vocab is not None else _default_vocab()
    if not words:
        raise ValueError("vocab is empty")
    query_len = _length_sampler(query_words, distribution, rng)
    doc_len = _length_sampler(doc_words, distribution, rng)
    for _ in range(n_pairs):
        yield " ".join(rng.choices(words, k=query_len())), " ".join(rng.choices(words, k=doc_len()))


# --- quality ------------------------------------------------------------------------------


def mrr_at_k(scores_per_query: list[list[float]], gold_indices: list[int], k: int = 10) -> float:
    """Mean reciprocal rank of the gold document, counting 0 when it ranks below ``k``.

    Ties count against the gold: its rank is 1 + the number of other
    documents scoring at least as high, so a model that scores everything
    the same gets no credit. A NaN gold score counts 0.
    """
    if len(scores_per_query) != len(gold_indices):
        raise ValueError(f"{len(scores_per_query)} score lists but {len(gold_indices)} gold indices")
    if not scores_per_query:
        raise ValueError("mrr_at_k needs at least one query")
    total = 0.0
    for scores, gold in zip(scores_per_query, gold_indices):
        if not 0 <= gold < len(scores):
            raise ValueError(f"gold index {gold} out of range for {len(scores)} scores")
        gold_score = scores[gold]
        if math.isnan(gold_score):
            continue  # an unscored gold ranks nowhere
        rank = 1 + sum(1 for i, s in enumerate(scores) if i != gold and s >= gold_score)
        if rank <= k:
            total += 1.0 / rank
    return total / len(scores_per_query)


def main(argv: list[str] | None = None) -> int:
    """``python -m rerankpool.bench.datasets build SRC OUT``: rebuild the data file."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "build":
        print(f"usage: python -m rerankpool.bench.datasets build squaddev_v1.1.json {DATA_FILE}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_squad_rerank(Path(args[1]), Path(args[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
