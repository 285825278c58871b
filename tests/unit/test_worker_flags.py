"""How `rerankpool worker` flags become a pool: which processes it would start (none are started here)."""

from __future__ import annotations

import pytest

from rerankpool.cli import build_parser, worker_pool


def pool_for(*flags: str):
    args = build_parser().parse_args(["worker", *flags])
    return worker_pool(args, args.connect)


@pytest.mark.parametrize(
    ("flags", "device_processes"),
    [
        ((), []),  # CPU: each worker runs the model
        (("--device", "cuda"), ["device-cuda"]),  # torch on CUDA: one device process by default
        (("--devices", "0,1", "-n", "4"), ["device-cuda:0", "device-cuda:1"]),
        (("--device", "cuda", "--no-device-process"), []),
        (("--device", "cuda", "--engine", "onnx"), []),  # other engines only when asked
        (("--device-process",), ["device-cpu"]),
    ],
)
def test_device_processes_by_default_for_torch_on_cuda(flags, device_processes):
    pool = pool_for(*flags)
    started = [m.name for m in pool._members if m.name.startswith("device-")]
    assert started == device_processes
    workers = pool.configs
    assert all(w.device_endpoint for w in workers) == bool(device_processes)
