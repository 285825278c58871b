"""Shared fixtures: a built-in model cache shared by the whole run, and direct reference scoring."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    # One model cache for the session (and its worker subprocesses), so each
    # built-in model is converted once per run, not once per test.
    os.environ.setdefault("RERANKPOOL_CACHE", str(Path(config.rootpath) / ".cache" / "rerankpool"))


class DirectScorer:
    """The same checkpoint run in-process with transformers: fp32, CPU, one pair at a time, unpadded."""

    def __init__(self, path: Path, max_length: int = 512, truncation_side: str = "right") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), truncation_side=truncation_side)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        self.max_length = max_length
        self._cache: dict[tuple[str, str], float] = {}

    def __call__(self, query: str, doc: str) -> float:
        if (query, doc) not in self._cache:
            inputs = self.tokenizer(query, doc, truncation=True, max_length=self.max_length, return_tensors="pt")
            threads = self.torch.get_num_threads()
            self.torch.set_num_threads(1)  # one pair at a time: extra threads only fight the pool's processes
            try:
                with self.torch.inference_mode():
                    self._cache[(query, doc)] = float(self.model(**inputs).logits[0, 0])
            finally:
                self.torch.set_num_threads(threads)
        return self._cache[(query, doc)]


@pytest.fixture(scope="session")
def tiny_model():
    from rerankpool.models import resolve_model

    return resolve_model("tiny-bert")


@pytest.fixture(scope="session")
def tiny_direct(tiny_model):
    return DirectScorer(tiny_model.path)


@pytest.fixture(scope="session")
def squad_items():
    """50 SQuAD dev queries with 20 candidates each (``../shared/data``); skips where the file is absent."""
    datasets = pytest.importorskip("rerankpool.bench.datasets")
    try:
        data = datasets.load_squad()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return datasets.rerank_workload(data, n_queries=50, n_candidates=20, seed=0)
