"""The bench's helper processes: each reports, or the sweep fails at once; it never waits on a dead child."""

from __future__ import annotations

import pytest


def _exit_with(status: int, out) -> None:
    if status == 0:
        out.put("done")
    raise SystemExit(status)


def test_collect_gets_what_children_report_and_raises_when_one_dies_silent():
    """A sweep's helper processes either report or fail the sweep at once; it never waits on a dead child."""
    import multiprocessing as mp

    from rerankpool.bench.children import collect

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    good = ctx.Process(target=_exit_with, args=(0, out), name="good")
    good.start()
    assert collect(out, [good], 1) == ["done"]
    bad = ctx.Process(target=_exit_with, args=(3, out), name="bad")
    bad.start()
    with pytest.raises(RuntimeError, match="bad exited with status 3"):
        collect(out, [bad], 1)
