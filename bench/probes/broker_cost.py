"""CPU cost of the broker's logic per pair, in-process: decode, admit, batch, encode, reassemble, reply.

Drives ``BrokerCore`` and the wire codecs the way ``broker/server.py`` does, with four
simulated workers that answer at once, on 20,000 SQuAD pairs in 20-pair requests. No
sockets: this is the Python cost the broker adds per pair, the part that could make it
the bottleneck. Run from the repo root: python bench/probes/broker_cost.py
"""

import time

import numpy as np

from rerankpool import protocol as P
from rerankpool.bench.datasets import load_squad, pair_stream
from rerankpool.broker.assembly import finalize
from rerankpool.broker.batching import BatchingConfig
from rerankpool.broker.core import CoreConfig, BrokerCore
from rerankpool.broker.server import batch_message

PAIRS, PER_REQUEST = 20_000, 20

pairs = pair_stream(load_squad(), PAIRS)
frames = [
    P.encode_request(
        P.Request(id=i, op=P.OP_RERANK, queries=[pairs[i][0]], docs=[d for _, d in pairs[i : i + PER_REQUEST]])
    )
    for i in range(0, PAIRS, PER_REQUEST)
]
core = BrokerCore(CoreConfig(batching=BatchingConfig(max_batch=256, max_batch_tokens=131_072, bucket_edges=(512,))))
info = P.WorkerInfo("m", "m", "null", "cpu", "float32", 2, 1, "h", 512)
for w in range(4):
    core.register(bytes([w]), info, 0.0)

start = time.perf_counter()
now, replies, sent, pending = 0.0, 0, 0, []
while sent < len(frames) or pending or core.queued_pairs:
    for f in frames[sent : sent + 20]:  # 20 requests arrive per loop turn
        req = P.decode_request(f)
        core.admit((b"client", req.id), req, now)
    sent += 20
    now += 0.001
    for worker, batch in core.dispatch(now):
        P.encode_batch(batch_message(batch))
        pending.append((worker.identity, batch.id, len(batch.pairs)))
    for identity, batch_id, n in pending[:2]:
        result = P.unpack(P.encode_result(batch_id, np.zeros(n, np.float32), P.BatchTimings(n, 1, 1, 1, 1), {},
                                          np.full(n, 100, np.int32)))
        _, outcomes = core.on_result(identity, result["id"], P.from_f32(result["scores"]), now)
        for outcome in outcomes:
            P.encode_scores_reply(outcome.key[1], *finalize(outcome.request, outcome.scores))
            replies += 1
    pending = pending[2:]
elapsed = time.perf_counter() - start
assert replies == len(frames)
print(f"{PAIRS} pairs in {len(frames)} requests: {elapsed * 1e6 / PAIRS:.2f} us of broker CPU per pair "
      f"({PAIRS / elapsed:,.0f} pairs/s on one core)")
