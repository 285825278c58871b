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
        # two models on one GPU: a device process each (one loads one model)
        (("--device", "cuda", "--model", "tiny-bert", "--model", "tiny-xlm-roberta,workers=2"),
         ["device-cuda", "device-cuda-1"]),
    ],
)
def test_device_processes_by_default_for_torch_on_cuda(flags, device_processes):
    pool = pool_for(*flags)
    started = [m.name for m in pool._members if m.name.startswith("device-")]
    assert started == device_processes
    workers = pool.configs
    assert all(w.device_endpoint for w in workers) == bool(device_processes)


def test_each_model_gets_its_own_workers_device_and_dtype():
    pool = pool_for("-n", "2", "--model", "tiny-bert",
                    "--model", "tiny-xlm-roberta,workers=1,device=cuda:1,dtype=float16",
                    "--model", "default,workers=3,engine=onnx")
    got = [(w.name, w.model, w.device, w.dtype, w.engine) for w in pool.configs]
    assert sorted(got) == sorted([
        ("worker-0", "tiny-bert", "cpu", "float32", "torch"), ("worker-1", "tiny-bert", "cpu", "float32", "torch"),
        ("worker-2", "tiny-xlm-roberta", "cuda:1", "float16", "torch"),
        *((f"worker-{i}", "default", "cpu", "float32", "onnx") for i in (3, 4, 5)),
    ])
    by_model = {w.model: w.device_endpoint for w in pool.configs}
    assert by_model["tiny-xlm-roberta"] and not by_model["tiny-bert"]  # torch on CUDA: a device process


@pytest.mark.parametrize("spec, says", [
    (",workers=2", "the model's name comes first"),
    ("m,workers", "is not KEY=VALUE"),
    ("m,colour=red", "is not KEY=VALUE with KEY one of workers, device"),
    ("m,workers=two", "workers must be an integer"),
    ("m,workers=0", "workers must be >= 1"),
])
def test_a_bad_model_spec_says_what_is_wrong(spec, says):
    with pytest.raises(SystemExit, match=says):
        pool_for("--model", spec)
    with pytest.raises(SystemExit, match="names a model twice"):
        pool_for("--model", "a", "--model", "a,workers=2")
