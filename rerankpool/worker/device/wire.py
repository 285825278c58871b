"""How a chunk travels from a worker to the device process: a kind and its token arrays.

Both ends use these (``P.encode_forward`` / ``P.decode_forward`` carry the arrays); the
device process checks what it is sent, since a worker's bug must not take it down.
"""

from __future__ import annotations

import numpy as np

from rerankpool import protocol as P
from rerankpool.worker.engines.base import Chunk, PackedChunk

PACKED, PADDED = "packed", "padded"


def chunk_arrays(chunk: Chunk | PackedChunk) -> tuple[str, dict[str, np.ndarray]]:
    """What a worker sends for a chunk: its token arrays (rows stay with the worker)."""
    if isinstance(chunk, PackedChunk):
        return PACKED, {"input_ids": chunk.input_ids, "token_type_ids": chunk.token_type_ids,
                        "lengths": chunk.lengths}
    return PADDED, {"input_ids": chunk.input_ids, "attention_mask": chunk.attention_mask,
                    "token_type_ids": chunk.token_type_ids}


def chunk_from_arrays(kind: str, arrays: dict[str, np.ndarray]) -> Chunk | PackedChunk:
    """The chunk a worker sent; its rows are 0..n-1 (scores go back in the order sent)."""
    names = {PACKED: ("input_ids", "token_type_ids", "lengths"),
             PADDED: ("input_ids", "attention_mask", "token_type_ids")}.get(kind)
    if names is None:
        raise P.ProtocolError(P.ErrorCode.BAD_REQUEST, f"forward: unknown kind {kind!r}")
    if set(arrays) != set(names):
        raise P.ProtocolError(P.ErrorCode.BAD_REQUEST, f"forward: a {kind} chunk has the arrays {', '.join(names)}")
    if kind == PACKED:
        ids, types, lengths = (arrays[k] for k in names)
        if ids.ndim != 1 or lengths.ndim != 1 or ids.shape != types.shape or int(lengths.sum()) != ids.size:
            raise P.ProtocolError(P.ErrorCode.BAD_REQUEST,
                                  "forward: packed ids and types must be 1-D, as long as the lengths add up to")
        return PackedChunk(np.arange(len(lengths)), ids, types, lengths)
    ids, mask, types = (arrays[k] for k in names)
    if ids.ndim != 2 or not ids.shape == mask.shape == types.shape:
        raise P.ProtocolError(P.ErrorCode.BAD_REQUEST, "forward: padded arrays must be 2-D, all of one shape")
    return Chunk(np.arange(len(ids)), ids, mask, types)
