"""The device process's merging and its socket loop, with the tiny model on CPU (packed, grouped attention)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq

from rerankpool import protocol as P
from rerankpool.worker.device.client import DeviceClient, DeviceReply
from rerankpool.worker.device.server import DeviceServer, merge_packed, split_scores
from rerankpool.worker.device.stages import DeviceStages, OpenBatch
from rerankpool.worker.device.wire import chunk_arrays
from rerankpool.worker.engines import EngineConfig, load_engine
from rerankpool.worker.engines.base import Chunk, EncodedBatch, EngineGone, PackedChunk
from rerankpool.worker.policy import PACKED_POLICY
from rerankpool.worker.tokenize import PairTokenizer, unpad


@pytest.fixture(scope="module")
def engine(tiny_model):
    return load_engine(EngineConfig(model_path=tiny_model.path, packed=True, threads=1))


def packed_chunk(rng: np.random.Generator, rows: int) -> PackedChunk:
    lengths = np.sort(rng.integers(3, 60, size=rows))
    ids = rng.integers(1, 1000, size=int(lengths.sum()))
    types = np.concatenate([np.repeat([0, 1], [n // 3, n - n // 3]) for n in lengths])
    return PackedChunk(np.arange(rows), ids, types, lengths)


def padded_chunk(rng: np.random.Generator, rows: int, width: int) -> Chunk:
    ids = rng.integers(1, 1000, size=(rows, width))
    return Chunk(np.arange(rows), ids, np.ones_like(ids), np.zeros_like(ids))


def test_a_merged_pass_gives_each_chunk_its_own_scores(engine):
    rng = np.random.default_rng(0)
    chunks = [packed_chunk(rng, rows) for rows in (1, 7, 3, 12)]
    alone = [engine.forward(c) for c in chunks]
    merged = split_scores(engine.forward(merge_packed(chunks)), chunks)
    assert [len(s) for s in merged] == [1, 7, 3, 12]
    for got, want in zip(merged, alone):
        np.testing.assert_allclose(got, want, atol=1e-5)


ENDPOINTS = itertools.count()


@pytest.fixture
def server(engine):
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind(f"inproc://device-test-{next(ENDPOINTS)}")  # a closed socket's endpoint is freed asynchronously
    yield DeviceServer(engine, sock, max_tokens=4096)
    sock.close(0)


def endpoint(server: DeviceServer) -> str:
    return server.sock.getsockopt_string(zmq.LAST_ENDPOINT)


def dealer(server: DeviceServer) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint(server))
    return sock


def reply(sock: zmq.Socket) -> dict:
    assert sock.poll(10_000), "no reply from the device server"
    return P.unpack(sock.recv_multipart())


def test_waiting_chunks_from_two_workers_run_as_one_pass(server, engine):
    rng = np.random.default_rng(1)
    workers = [dealer(server), dealer(server)]
    chunks = [packed_chunk(rng, 5), packed_chunk(rng, 9)]
    for tag, (sock, chunk) in enumerate(zip(workers, chunks)):
        sock.send_multipart(P.encode_forward(*chunk_arrays(chunk), tag=tag))
    assert server.sock.poll(10_000)
    server.step()
    assert len(server._in_flight) == 1  # one pass for both
    server.drain()
    assert server.merged_passes == 1
    for tag, (sock, chunk) in enumerate(zip(workers, chunks)):
        got = reply(sock)
        assert got["tag"] == tag
        np.testing.assert_allclose(P.from_f32(got["scores"]), engine.forward(chunk), atol=1e-5)
        assert got["computed_tokens"] == chunk.real_tokens  # CPU: no graph pads it
        sock.close(0)


def test_a_pass_stays_within_its_token_budget(server):
    rng = np.random.default_rng(2)
    workers = [dealer(server) for _ in range(3)]
    chunks = [packed_chunk(rng, 60) for _ in range(3)]  # ~1,900 tokens each; the budget is 4,096
    for sock, chunk in zip(workers, chunks):
        sock.send_multipart(P.encode_forward(*chunk_arrays(chunk), tag=7))
    assert server.sock.poll(10_000)
    server.step()  # launches the first pass
    (first,) = server._in_flight
    assert len(first.requests) == 2 and first.chunk.real_tokens <= 4096
    server.step()  # launches the one held back while the first is in flight, then finishes the first
    (second,) = server._in_flight
    assert len(second.requests) == 1 and second is not first
    server.drain()
    for sock in workers:
        assert reply(sock)["ok"]
        sock.close(0)


def test_padded_chunks_and_bad_requests_get_answers_and_the_server_keeps_serving(server, engine):
    rng = np.random.default_rng(3)
    sock = dealer(server)
    bad = [
        [b"nope", b"\x80"],
        P.pack({"op": "explode"}),
        P.pack({"op": P.D_FORWARD, "kind": "packed", "arrays": {"input_ids": ["<i8", [3]]}}),  # no frame
        P.encode_forward("packed", {"input_ids": np.ones(5, np.int64), "token_type_ids": np.zeros(5, np.int64),
                                    "lengths": np.array([2, 2])}, tag=1),  # lengths do not add up
        P.encode_forward("sideways", {"input_ids": np.ones(5, np.int64)}, tag=2),
        P.encode_forward("packed", {"input_ids": np.ones((2, 2), np.int64), "token_type_ids": np.zeros(4, np.int64),
                                    "lengths": np.array([2, 2])}, tag=3),  # not 1-D
        P.encode_forward("padded", {"input_ids": np.ones((2, 3), np.int64), "attention_mask": np.ones((2, 2)),
                                    "token_type_ids": np.zeros((2, 3), np.int64)}, tag=4),  # shapes differ
        P.encode_forward("packed", {"input_ids": np.ones(4, np.int64), "token_type_ids": np.zeros(4, np.int64),
                                    "lengths": np.array([2, 2])}, tag="x"),  # a tag that is not an int
    ]
    stop = threading.Event()
    loop = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    loop.start()
    try:
        for frames in bad:
            sock.send_multipart(frames)
            answer = reply(sock)
            assert not answer["ok"] and answer["error"]
            tag = P.unpack(frames)["tag"] if len(frames) > 2 else None  # the tag it sent, when it could be read
            assert answer["tag"] == (tag if isinstance(tag, int) else None)
        chunk = padded_chunk(rng, 4, 16)
        sock.send_multipart(P.encode_forward(*chunk_arrays(chunk), tag=5))
        np.testing.assert_allclose(P.from_f32(reply(sock)["scores"]), engine.forward(chunk), atol=1e-5)
    finally:
        stop.set()
        loop.join()
        sock.close(0)


def test_the_client_keeps_chunks_in_flight_and_tells_their_replies_apart(server, engine):
    stop = threading.Event()
    loop = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    loop.start()
    try:
        client = DeviceClient(endpoint(server), zmq.Context.instance(), start_timeout_s=10)
        assert (client.name, client.device, client.packed) == ("torch", "cpu", True)
        rng = np.random.default_rng(4)
        sent = (packed_chunk(rng, 3), packed_chunk(rng, 8), unpad(padded_chunk(rng, 6, 20)))
        chunks = {client.send(c): c for c in sent}
        for _ in sent:
            assert client.socket.poll(10_000)
            reply = client.read(client.socket.recv_multipart())
            np.testing.assert_allclose(reply.scores, engine.forward(chunks.pop(reply.tag)), atol=1e-5)
            assert reply.device_ms > 0  # the chunk's time in the server, as its reply said
        assert not chunks
        # A reply from another device process (one restarted behind the same socket), or one that
        # cannot be read: the chunks sent to the old one are lost, and the worker must say so.
        with pytest.raises(EngineGone, match="replaced"):
            client.read(P.pack({"ok": True, "tag": 1, "pid": client.pid + 1, "scores": P.f32_bytes(np.zeros(1))}))
        with pytest.raises(EngineGone, match="unreadable"):
            client.read([b"rp1", b"\xc1"])
        with pytest.raises(EngineGone, match="unreadable"):
            client.read(P.pack({"ok": True, "tag": 1, "pid": client.pid}))  # no scores
    finally:
        stop.set()
        loop.join()


def open_batch(rng: np.random.Generator) -> tuple[OpenBatch, list[PackedChunk]]:
    """A 10-pair batch cut into chunks of rows 7..9, 0..3 and 4..6 (the order a tokenizer may give)."""
    chunks = []
    for rows in (np.arange(7, 10), np.arange(0, 4), np.arange(4, 7)):
        chunk = packed_chunk(rng, len(rows))
        chunk.rows = rows
        chunks.append(chunk)
    message = P.BatchMessage(5, ["q"], np.zeros(10, np.int32), ["d"] * 10)
    return OpenBatch(message, EncodedBatch(10, chunks), arrived=0.0, sent=0.001), chunks


def test_an_open_batch_puts_chunk_replies_back_in_row_order_whatever_order_they_come_in():
    batch, chunks = open_batch(np.random.default_rng(5))
    replies = {i: DeviceReply(i, c.rows.astype(np.float32) * 10, device_ms=float(i)) for i, c in enumerate(chunks)}
    assert not batch.add(chunks[2], replies[2])
    assert not batch.add(chunks[0], replies[0])
    assert batch.add(chunks[1], replies[1])  # the last one in completes it
    result = P.unpack(batch.result({}))
    assert result["op"] == P.W_RESULT and result["id"] == 5
    np.testing.assert_array_equal(P.from_f32(result["scores"]), np.arange(10) * 10)
    timings = P.BatchTimings.from_dict(result["timings"])
    assert (timings.size, timings.chunks, timings.device_ms) == (10, 3, 2.0)  # sent together: the longest
    assert timings.tokenize_ms == pytest.approx(1.0)


@pytest.mark.parametrize(("bad", "error"), [
    (DeviceReply(0, None, "device process: CUDA error"), "device process: CUDA error"),
    (DeviceReply(0, np.zeros(2, np.float32)), "device process: 2 scores for 3 pairs"),
])
def test_an_open_batch_with_a_failed_or_short_chunk_fails_once_every_chunk_is_in(bad, error):
    batch, chunks = open_batch(np.random.default_rng(6))
    assert not batch.add(chunks[0], bad)
    assert not batch.add(chunks[1], DeviceReply(1, np.zeros(4, np.float32)))
    assert batch.add(chunks[2], DeviceReply(2, np.zeros(3, np.float32)))
    failed = P.unpack(batch.result({}))
    assert (failed["op"], failed["id"], failed["error"]) == (P.W_FAILED, 5, error)


@pytest.fixture
def stages(server, tiny_model):
    """A worker's DeviceStages against the device server (the tiny model, packed), served on a thread."""
    stop = threading.Event()
    loop = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    loop.start()
    tokenizer = PairTokenizer(tiny_model.path / "tokenizer.json", threads=1)
    yield DeviceStages(tokenizer, DeviceClient(endpoint(server), zmq.Context.instance(), start_timeout_s=10),
                       PACKED_POLICY)
    stop.set()
    loop.join()


def results(stages: DeviceStages) -> list[dict]:
    """Everything the stages send the broker until nothing is pending."""
    out = []
    while stages.pending:
        assert stages.socket.poll(10_000), "the device process did not answer"
        out += [P.unpack(frames) for frames in stages.collect()]
    return out


def test_stages_score_batches_even_when_a_restarted_broker_reuses_an_id(stages, tiny_direct):
    docs = ["berlin has a river", "a city", "music and war in the old north station", "people"]
    first = P.BatchMessage(1, ["river city"], np.zeros(4, np.int32), docs)
    second = P.BatchMessage(1, ["music", "war"], np.array([0, 1, 0], np.int32), docs[1:])  # the same id
    early = stages.submit(first)
    early += stages.submit(second)  # the first batch's result may be back by now: submit returns it
    assert stages.pending + len(early) == 2
    replies = [P.unpack(frames) for frames in early] + results(stages)
    got = {len(P.from_f32(r["scores"])): r for r in replies}  # 4 and 3 pairs: told apart by size
    assert [r["op"] for r in got.values()] == [P.W_RESULT, P.W_RESULT]
    # The tiny model's scores differ by ~1e-5 from pair to pair: a tolerance below that catches mixed-up rows.
    np.testing.assert_allclose(P.from_f32(got[4]["scores"]), [tiny_direct("river city", d) for d in docs],
                               atol=2e-6, rtol=0)
    np.testing.assert_allclose(P.from_f32(got[3]["scores"]),
                               [tiny_direct(q, d) for q, d in zip(["music", "war", "music"], docs[1:])],
                               atol=2e-6, rtol=0)
    timings = P.BatchTimings.from_dict(got[4]["timings"])
    assert timings.worker_ms >= timings.tokenize_ms + timings.inference_ms - 1e-6
    assert timings.inference_ms >= timings.device_ms > 0


def test_stages_fail_a_batch_that_cannot_be_tokenized_at_once(stages):
    broken = P.BatchMessage(3, ["q"], np.array([0, 5], np.int32), ["a", "b"])  # query 5 does not exist
    (failed,) = [P.unpack(frames) for frames in stages.submit(broken)]
    assert (failed["op"], failed["id"]) == (P.W_FAILED, 3) and "tokenization failed" in failed["error"]
    assert stages.pending == 0


def test_stages_give_up_when_the_device_process_dies_with_chunks_out(stages):
    stages.check()  # nothing out: nothing to check
    stages.submit(P.BatchMessage(4, ["q"], np.zeros(2, np.int32), ["a", "b"]))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stages.device.pid = gone.pid  # as if the device process had exited (its pid is free)
    with pytest.raises(EngineGone, match="is gone"):
        stages.check()
