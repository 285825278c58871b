"""What a benchmark ran on: hardware and software versions, for the report's header."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess

import psutil

PACKAGES = ("rerankpool", "torch", "transformers", "tokenizers", "sentence-transformers", "onnxruntime", "mlx",
            "pyzmq", "msgpack", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=2).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or "unknown"


def gpus() -> list[str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30
            names.append(f"{name.decode() if isinstance(name, bytes) else name} ({mem:.0f} GiB)")
        return names
    except Exception:
        return []


def hardware() -> dict[str, str]:
    info = {
        "cpu": cpu_model(),
        "cores": f"{psutil.cpu_count(logical=True)} logical / {psutil.cpu_count(logical=False)} physical",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "usable cores": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
    }
    found = gpus()
    info["gpu"] = ", ".join(found) if found else "none (NVML found no NVIDIA GPU)"
    return info


def software() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
