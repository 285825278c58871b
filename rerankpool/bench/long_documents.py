"""Long documents: ranking quality and cost of truncation against chunked scoring, on whole articles.

Each SQuAD dev question ranks whole Wikipedia articles (``long_document_workload``: its own
among ``--candidates``), thousands of tokens each, far past the model's window. The same pool
scores the same requests once per mode: cut at the window (the default), then chunked
(``Chunking("max")``: each article by its best window). MRR@10 says which finds the question's
article; pairs/s (the windows scored) and documents/s say what it cost. Run from the repo root::

    python -m rerankpool.bench.long_documents --out bench/results/cpu-long-documents

It writes NAME.md (the table and the set-up) and NAME.json.gz (every score) into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rerankpool.bench import environment
from rerankpool.bench.datasets import RerankItem, load_squad, long_document_workload, mrr_at_k
from rerankpool.client import AsyncClient
from rerankpool.launch import LocalPool
from rerankpool.models import DEFAULT_MODEL, resolve_model
from rerankpool.protocol import Chunking

logger = logging.getLogger(__name__)

MODES: dict[str, Chunking | None] = {"cut at the window": None, "chunked, max": Chunking("max")}


@dataclass
class ModeResult:
    mode: str
    mrr_at_10: float
    wall_s: float
    documents: int
    pairs: int  # pairs the workers scored: one a document when cut, one a window when chunked
    latency_p50_ms: float
    scores: list[list[float]]

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.wall_s

    @property
    def documents_per_s(self) -> float:
        return self.documents / self.wall_s


async def _score_all(address: str, items: list[RerankItem], chunking: Chunking | None,
                     concurrency: int) -> tuple[list[list[float]], list[float]]:
    """Every item's scores in document order, and each request's latency, ``concurrency`` requests at a time."""
    gate = asyncio.Semaphore(concurrency)
    async with AsyncClient(address, timeout=1800.0, retries=0) as client:

        async def one(item: RerankItem) -> tuple[list[float], float]:
            async with gate:
                start = time.perf_counter()
                scores = await client.score([(item.query, d) for d in item.docs], chunking=chunking)
                return list(scores), 1000.0 * (time.perf_counter() - start)

        done = await asyncio.gather(*(one(item) for item in items))
    return [s for s, _ in done], [t for _, t in done]


def run(out: Path, queries: int, candidates: int, workers: int, engine: str, concurrency: int) -> list[ModeResult]:
    items = long_document_workload(load_squad(), queries, candidates)
    name, _, dtype = engine.partition(":")
    results = []
    with LocalPool(model=DEFAULT_MODEL, workers=workers, engine=name, dtype=dtype or "float32",
                   broker_args=["--max-doc-chars", "1000000", "--request-timeout-ms", "1800000"]) as pool:
        with pool.client() as client:
            for mode, chunking in MODES.items():
                logger.info("%s: %d queries x %d articles", mode, len(items), candidates)
                before = client.stats()["pairs_scored"]
                start = time.perf_counter()
                scores, latencies = asyncio.run(_score_all(pool.frontend, items, chunking, concurrency))
                wall = time.perf_counter() - start
                pairs = client.stats()["pairs_scored"] - before
                mrr = mrr_at_k(scores, [it.gold_index for it in items])
                results.append(ModeResult(mode, mrr, wall, len(items) * candidates, pairs,
                                          float(np.median(latencies)), scores))
                logger.info("%s: MRR@10 %.3f, %.1f pairs/s", mode, mrr, results[-1].pairs_per_s)
    _write(out, items, results, workers, engine, concurrency)
    return results


def _write(out: Path, items: list[RerankItem], results: list[ModeResult], workers: int, engine: str,
           concurrency: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model = resolve_model(DEFAULT_MODEL)
    words = [len(d.split()) for it in items for d in it.docs]
    base = results[0]
    rows = "\n".join(
        f"| {r.mode} | {r.mrr_at_10:.3f} | {r.pairs} | {r.pairs_per_s:.1f} | {r.documents_per_s:.2f} | "
        f"{r.documents_per_s / base.documents_per_s:.2f}× | {r.latency_p50_ms:.0f} ms |" for r in results)
    hw = environment.hardware()
    machine = f"{hw.get('cpu')}, {hw.get('cores')}, {hw.get('memory')}; GPU: {hw.get('gpu')}"
    chunk = MODES["chunked, max"]
    text = f"""# Long documents: cut at the window, or chunked

**Model**: {model.label}. **Engine**: {engine}, {workers} workers. **Hardware**: {machine}.
**Data**: SQuAD v1.1 dev; {len(items)} questions, each ranking {len(items[0].docs)} whole articles (its own
and {len(items[0].docs) - 1} others; every paragraph of an article, in order), {int(np.median(words))} words
each at the median ({min(words)} to {max(words)}). **Window**: 512 tokens of question and article.
**Chunked**: windows of all the tokens that fit beside the question, {chunk.overlap_tokens} overlapping, at
most {chunk.max_windows} an article (its first ones). **Load**: {concurrency} requests at a time, 1 question each.

| Mode | MRR@10 | Pairs scored | Pairs/s | Articles/s | Articles/s vs cut | Request p50 |
|---|---|---|---|---|---|---|
{rows}

MRR@10: the mean of 1/rank of the question's own article (0 below rank 10). Pairs: what the workers
scored, one an article when cut, one a window when chunked. Scores for every question and article
are in `{out.name}.json.gz`.
"""
    (out / f"{out.name}.md").write_text(text, encoding="utf-8")
    raw = {"items": [{"query": it.query, "query_id": it.query_id, "gold_index": it.gold_index} for it in items],
           "results": [{**asdict(r), "pairs_per_s": r.pairs_per_s, "documents_per_s": r.documents_per_s}
                       for r in results],
           "engine": engine, "workers": workers, "concurrency": concurrency, "hardware": hw,
           "software": environment.software()}
    with gzip.open(out / f"{out.name}.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(raw, fh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rerankpool.bench.long_documents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a folder, e.g. bench/results/NAME")
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", default="onnx:int8", help="engine[:dtype] of the workers")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for r in run(Path(args.out), args.queries, args.candidates, args.workers, args.engine, args.concurrency):
        print(f"{r.mode:20s} MRR@10 {r.mrr_at_10:.3f}  {r.pairs_per_s:8.1f} pairs/s  "
              f"{r.documents_per_s:6.2f} articles/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
