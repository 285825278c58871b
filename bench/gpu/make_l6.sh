#!/usr/bin/env bash
# The L6 stand-in's compute on the GPU host: ms-marco-MiniLM-L-6-v2's shape, seeded random weights, in /tmp/l6, where
# the GPU scenarios that name model = "/tmp/l6" and the probes find it. setup.sh runs it.
python3 - <<'PY'
import shutil, torch
from transformers import BertConfig, BertForSequenceClassification
torch.manual_seed(0)
BertForSequenceClassification(BertConfig.from_pretrained(".carry/l6")).save_pretrained("/tmp/l6")
for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "rerankpool-model.json"):
    shutil.copy(f".carry/l6/{f}", f"/tmp/l6/{f}")
PY
