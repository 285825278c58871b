"""`pip install rerankpool` is the client alone: a fresh venv with the base install reranks against a pool,
and has no model stack (torch, tokenizers, onnxruntime)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rerankpool.launch import LocalPool

ROOT = Path(__file__).resolve().parents[2]

CLIENT_SCRIPT = """
import asyncio, importlib.util, json, sys
from rerankpool import AsyncClient, Client
absent = [m for m in ("torch", "tokenizers", "onnxruntime", "transformers", "psutil") if importlib.util.find_spec(m)]
with Client(sys.argv[1], timeout=60) as client:
    hits = client.rerank("berlin river", ["the spree flows through berlin", "paris"])
async def main():
    async with AsyncClient(sys.argv[1], timeout=60) as client:
        return await client.score([("berlin river", "paris")])
print(json.dumps({"present": absent, "hits": [[h.index, h.score] for h in hits], "scores": asyncio.run(main())}))
"""


@pytest.mark.slow
def test_the_base_install_reranks_with_no_model_stack(tmp_path, tiny_direct):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT / "rerankpool", source / "rerankpool", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    install = subprocess.run([python, "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    with LocalPool(model="tiny-bert", workers=1) as pool:
        run = subprocess.run([python, "-c", CLIENT_SCRIPT, pool.frontend], capture_output=True, text=True,
                             cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["present"] == []
    want = sorted(((0, tiny_direct("berlin river", "the spree flows through berlin")),
                   (1, tiny_direct("berlin river", "paris"))), key=lambda x: -x[1])
    assert [i for i, _ in out["hits"]] == [i for i, _ in want]
    assert [s for _, s in out["hits"]] == pytest.approx([s for _, s in want], abs=1e-4)
    assert out["scores"] == pytest.approx([tiny_direct("berlin river", "paris")], abs=1e-4)
