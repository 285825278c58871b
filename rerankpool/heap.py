"""Keep what a long-running process loaded at start out of the cyclic GC's full collections."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections.

    A full collection walks every tracked object. With torch, transformers and a model
    loaded (or a benchmark's whole workload) that is hundreds of thousands of objects,
    milliseconds of pause paid by whichever batch or request is running then. Objects
    made later are collected as usual.
    """
    gc.collect()
    gc.freeze()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """``freeze_startup_heap`` for a while, in a process that goes on after it (a benchmark's parent)."""
    freeze_startup_heap()
    try:
        yield
    finally:
        gc.unfreeze()
