"""The side-by-side baseline: sentence-transformers ``CrossEncoder.predict`` in-process, same pairs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rerankpool.bench.results import BaselineResult

logger = logging.getLogger(__name__)


def load_cross_encoder(model_path: Path, device: str = "cpu", max_length: int = 512):
    """A CrossEncoder that returns raw logits (Identity activation), like the ms-marco hub configs."""
    import torch
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_path), device=device, max_length=max_length, activation_fn=torch.nn.Identity())


def run_cross_encoder(
    model, pairs: Sequence[tuple[str, str]], batch_size: int = 32, repeats: int = 1
) -> BaselineResult:
    """Time ``model.predict`` over the pairs (median of ``repeats`` runs).

    The pairs go in as given: ``predict`` sorts them by length itself (sentence-transformers
    6.x), so the baseline already pads little.
    """
    model.predict(list(pairs[:batch_size]), batch_size=batch_size, show_progress_bar=False)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(list(pairs), batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
        times.append(time.perf_counter() - start)
    name = f"CrossEncoder.predict(batch_size={batch_size})"
    note = f"in-process sentence-transformers, median of {repeats} run(s)"
    return BaselineResult(name, len(pairs), float(np.median(times)), batch_size, note)
