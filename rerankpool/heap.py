"""Keep what a long-running process loaded at start out of the cyclic GC's full collections."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections.

    A full collection walks every tracked object. With torch, transformers and a model
    loaded (or a benchmark's whole workload) that is hundreds of thousands of objects,
    milliseconds of pause paid by whichever batch or request is running then. Objects
    made later are collected as usual.
    """
    gc.collect()
    gc.freeze()
