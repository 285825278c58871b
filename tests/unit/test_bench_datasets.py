"""Bench inputs: SQuAD loading and workloads, synthetic pairs, MRR@k."""

from __future__ import annotations

import gzip
import json

import pytest

from rerankpool.bench import datasets
from rerankpool.bench.datasets import (
    Passage,
    Query,
    SquadData,
    article_workload,
    build_squad_rerank,
    load_squad,
    mrr_at_k,
    pair_stream,
    rerank_workload,
    synthetic_pairs,
)


def _tiny() -> SquadData:
    """Three articles of four passages; one question per passage."""
    passages = [Passage(f"{a}-{p}", f"art{a}", f"article {a} passage {p} text") for a in range(3) for p in range(4)]
    queries = [Query(f"q{a}{p}", f"art{a}", f"question about {a}-{p}?", (f"{a}-{p}",))
               for a in range(3) for p in range(4)]
    return SquadData(passages, queries, name="tiny")


# --- MRR ------------------------------------------------------------------------------------


def test_mrr_hand_made_cases() -> None:
    assert mrr_at_k([[0.9, 0.1, 0.2]], [0]) == 1.0
    assert mrr_at_k([[0.1, 0.9, 0.2]], [2]) == 0.5
    assert mrr_at_k([[0.9, 0.1], [0.1, 0.9, 0.5]], [0, 2]) == pytest.approx((1 + 1 / 2) / 2)
    # Rank 3 is past k=2: no credit.
    assert mrr_at_k([[0.3, 0.2, 0.1]], [2], k=2) == 0.0
    assert mrr_at_k([[0.3, 0.2, 0.1]], [2], k=3) == pytest.approx(1 / 3)


def test_mrr_ties_count_against_the_gold() -> None:
    assert mrr_at_k([[0.5, 0.5, 0.5, 0.5]], [0]) == 0.25
    assert mrr_at_k([[float("nan"), 0.1]], [0]) == 0.0


def test_mrr_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        mrr_at_k([[0.1]], [0, 1])
    with pytest.raises(ValueError):
        mrr_at_k([], [])
    with pytest.raises(ValueError):
        mrr_at_k([[0.1, 0.2]], [2])


# --- workloads ------------------------------------------------------------------------------


def test_rerank_workload_gold_plus_other_articles() -> None:
    data = _tiny()
    items = rerank_workload(data, n_queries=6, n_candidates=5, seed=3)
    assert len(items) == 6 and len({i.query_id for i in items}) == 6
    by_text = {p.text: p for p in data.passages}
    queries = {q.id: q for q in data.queries}
    for item in items:
        q = queries[item.query_id]
        assert item.query == q.text and len(item.docs) == 5 and len(set(item.docs)) == 5
        assert by_text[item.docs[item.gold_index]].id == q.relevant[0]
        others = [by_text[d] for i, d in enumerate(item.docs) if i != item.gold_index]
        assert all(p.group != q.group for p in others)
    assert {i.gold_index for i in items} != {0}  # shuffled, not always first


def test_workloads_are_deterministic_by_seed() -> None:
    data = _tiny()
    assert rerank_workload(data, 5, 4, seed=1) == rerank_workload(data, 5, 4, seed=1)
    assert rerank_workload(data, 5, 4, seed=1) != rerank_workload(data, 5, 4, seed=2)
    assert article_workload(data, 5, seed=7) == article_workload(data, 5, seed=7)
    assert pair_stream(data, 20, seed=4) == pair_stream(data, 20, seed=4)


def test_rerank_workload_limits() -> None:
    with pytest.raises(ValueError):
        rerank_workload(_tiny(), n_queries=13)
    with pytest.raises(ValueError):
        rerank_workload(_tiny(), n_queries=1, n_candidates=10)  # only 8 passages in other articles


def test_article_workload_uses_the_query_article() -> None:
    data = _tiny()
    by_text = {p.text: p for p in data.passages}
    for item in article_workload(data, n_queries=4, seed=0):
        group = {q.id: q for q in data.queries}[item.query_id].group
        assert sorted(by_text[d].group for d in item.docs) == [group] * 4
    small = article_workload(data, n_queries=4, max_candidates=2, seed=0)
    assert all(len(i.docs) == 2 for i in small)


def test_pair_stream_real_pairs_from_one_article() -> None:
    data = _tiny()
    groups = {p.text: p.group for p in data.passages}
    q_groups = {q.text: q.group for q in data.queries}
    pairs = pair_stream(data, 50, seed=0)
    assert len(pairs) == 50
    assert all(q_groups[q] == groups[p] for q, p in pairs)


# --- synthetic pairs ------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["uniform", "lognormal", "fixed"])
def test_synthetic_lengths_respect_bounds(distribution: str) -> None:
    pairs = list(synthetic_pairs(300, (3, 9), (20, 120), distribution, seed=5, vocab=["a", "b", "c"]))
    q_lens = [len(q.split()) for q, _ in pairs]
    d_lens = [len(d.split()) for _, d in pairs]
    assert len(pairs) == 300
    assert 3 <= min(q_lens) and max(q_lens) <= 9
    assert 20 <= min(d_lens) and max(d_lens) <= 120
    if distribution == "fixed":
        assert set(q_lens) == {6} and set(d_lens) == {70}
    else:
        assert len(set(d_lens)) > 10


def test_synthetic_lognormal_is_right_skewed_and_deterministic() -> None:
    d_lens = sorted(len(d.split()) for _, d in synthetic_pairs(2000, (5, 5), (20, 320), "lognormal", vocab=["w"]))
    median = d_lens[len(d_lens) // 2]
    assert 70 <= median <= 90  # geometric mean of 20 and 320 is 80
    assert sum(d_lens) / len(d_lens) > median
    a = list(synthetic_pairs(5, seed=9, vocab=["x", "y"]))
    assert a == list(synthetic_pairs(5, seed=9, vocab=["x", "y"]))


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(synthetic_pairs(1, (0, 3), vocab=["a"]))
    with pytest.raises(ValueError):
        list(synthetic_pairs(1, distribution="zipf", vocab=["a"]))  # type: ignore[arg-type]


def test_synthetic_falls_back_to_builtin_words(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "missing.json.gz"))
    datasets.squad_vocab.cache_clear()
    (q, d), = synthetic_pairs(1, seed=0)
    assert set(q.split()) <= set(datasets._BUILTIN_WORDS)
    datasets.squad_vocab.cache_clear()


# --- the data file --------------------------------------------------------------------------


def test_build_and_load_round_trip(tmp_path) -> None:
    squad = {"version": "1.1", "data": [
        {"title": "A", "paragraphs": [{"context": "alpha text", "qas": [{"id": "x1", "question": "what?",
                                                                         "answers": []}]}]},
        {"title": "B", "paragraphs": [{"context": "b0", "qas": []},
                                      {"context": "b1", "qas": [{"id": "x2", "question": "who?", "answers": []}]}]},
    ]}
    src = tmp_path / "squad.json"
    src.write_text(json.dumps(squad))
    out = build_squad_rerank(src, tmp_path / "out.json.gz")
    raw = json.load(gzip.open(out, "rt"))
    assert raw["passages"][2] == {"id": "1-1", "group": "B", "text": "b1"}
    data = load_squad(out)
    assert data.gold(data.queries[1]).text == "b1"
    assert data.passages_by_group["B"][0].id == "1-0"


def test_missing_file_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "nope.json.gz"))
    with pytest.raises(FileNotFoundError, match="bigbench"):
        load_squad()
    with pytest.raises(FileNotFoundError, match="squaddev_v1.1.json"):
        load_squad(tmp_path / "also-missing.json.gz")


def test_real_squad_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    try:
        data = load_squad()
    except FileNotFoundError:
        pytest.skip("shared/data/squad-dev-rerank.json.gz is not beside this checkout")
    assert (len(data.passages), len(data.queries), len(data.passages_by_group)) == (2067, 10565, 48)
    items = rerank_workload(data, n_queries=20, n_candidates=10, seed=0)
    assert all(len(i.docs) == 10 for i in items)
