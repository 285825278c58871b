"""Request decoding: every bad input becomes a ProtocolError with a code, never a crash."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpool import protocol as P
from rerankpool.protocol import ErrorCode, Limits, ProtocolError, Request, decode_request, encode_request


def frames(header) -> list[bytes]:
    return [P.TAG, msgpack.packb(header, use_bin_type=True)]


def good(**over):
    header = {"op": "rerank", "id": 7, "query": "q", "docs": ["a", "b"], "top_k": None, "activation": "raw"}
    header.update(over)
    return header


def test_round_trip_of_every_scoring_op():
    for req in (
        Request(1, P.OP_RERANK, ["q"], None, ["a", "b"], top_k=1, activation="sigmoid", timeout_ms=50),
        Request(2, P.OP_SCORE, ["q1", "q2"], [1, 0, 1], ["a", "b", "c"]),
        Request(3, P.OP_SCORE, ["q"], None, ["a"]),
        Request(4, P.OP_RERANK, ["q"], None, ["a"], model="m", truncation=P.Truncation(False, "left", 7)),
        Request(5, P.OP_SCORE, ["q"], None, ["a"], truncation=P.Truncation(max_tokens_per_doc=3)),
    ):
        assert decode_request(encode_request(req)) == req


def test_a_batch_carries_each_docs_truncation_only_when_one_is_not_the_default():
    plain = P.BatchMessage(7, ["q"], np.array([0, 0], np.int32), ["a", "b"])
    assert "truncation" not in P.unpack(P.encode_batch(plain))
    assert P.decode_batch(P.unpack(P.encode_batch(plain))).truncations is None
    ts = [P.DEFAULT_TRUNCATION, P.Truncation(False, "left", 12)]
    back = P.decode_batch(P.unpack(P.encode_batch(P.BatchMessage(7, ["q"], np.array([0, 0], np.int32), ["a", "b"],
                                                                  ts))))
    assert back.truncations == ts


BAD = [
    ("not msgpack", [P.TAG, b"\xc1\xff\x00"], ErrorCode.BAD_REQUEST),
    ("one frame", [P.TAG], ErrorCode.BAD_REQUEST),
    ("wrong version", [b"RP99", msgpack.packb(good())], ErrorCode.UNSUPPORTED_VERSION),
    ("header not a map", frames([1, 2]), ErrorCode.BAD_REQUEST),
    ("unknown op", frames(good(op="embed")), ErrorCode.UNKNOWN_OP),
    ("missing id", frames({"op": "rerank", "query": "q", "docs": ["a"]}), ErrorCode.BAD_REQUEST),
    ("bool id", frames(good(id=True)), ErrorCode.BAD_REQUEST),
    ("missing docs", frames({"op": "rerank", "id": 1, "query": "q"}), ErrorCode.BAD_REQUEST),
    ("empty docs", frames(good(docs=[])), ErrorCode.BAD_REQUEST),
    ("docs not a list", frames(good(docs="abc")), ErrorCode.BAD_REQUEST),
    ("non-string doc", frames(good(docs=["a", 3])), ErrorCode.BAD_REQUEST),
    ("query not a string", frames(good(query=["q"])), ErrorCode.BAD_REQUEST),
    ("top_k zero", frames(good(top_k=0)), ErrorCode.BAD_REQUEST),
    ("bad activation", frames(good(activation="softmax")), ErrorCode.BAD_REQUEST),
    ("negative timeout", frames(good(timeout_ms=-5)), ErrorCode.BAD_REQUEST),
    ("truncate not a bool", frames(good(truncate="yes")), ErrorCode.BAD_REQUEST),
    ("unknown direction", frames(good(truncation_direction="up")), ErrorCode.BAD_REQUEST),
    ("max tokens zero", frames(good(max_tokens_per_doc=0)), ErrorCode.BAD_REQUEST),
    ("max tokens past 32 bits", frames(good(max_tokens_per_doc=1 << 40)), ErrorCode.BAD_REQUEST),
    ("chunking windows unbounded", frames(good(chunking={"max_windows": 1 << 40})), ErrorCode.BAD_REQUEST),
    ("chunking not a map", frames(good(chunking=[1])), ErrorCode.BAD_REQUEST),
    ("chunking unknown key", frames(good(chunking={"size": 3})), ErrorCode.BAD_REQUEST),
    ("empty model", frames(good(model="")), ErrorCode.BAD_REQUEST),
    ("too many docs", frames(good(docs=["a"] * 11)), ErrorCode.TOO_LARGE),
    ("doc too long", frames(good(docs=["x" * 101])), ErrorCode.TOO_LARGE),
    ("score needs index", frames({"op": "score", "id": 1, "queries": ["a", "b"], "docs": ["x"]}),
     ErrorCode.BAD_REQUEST),
    ("index out of range", frames({"op": "score", "id": 1, "queries": ["a"], "query_index": [1], "docs": ["x"]}),
     ErrorCode.BAD_REQUEST),
    ("index length", frames({"op": "score", "id": 1, "queries": ["a"], "query_index": [0, 0], "docs": ["x"]}),
     ErrorCode.BAD_REQUEST),
    ("message too big", frames(good(docs=["y" * 50] * 10, pad="z" * 2000)), ErrorCode.TOO_LARGE),
]


@pytest.mark.parametrize("name,message,code", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_code_and_a_message(name, message, code):
    with pytest.raises(ProtocolError) as err:
        decode_request(message, Limits(max_docs=10, max_doc_chars=100, max_message_bytes=1000))
    assert err.value.code == code
    assert err.value.message


def test_error_keeps_the_request_id_when_it_was_readable():
    with pytest.raises(ProtocolError) as err:
        decode_request(frames(good(id=42, docs=[])))
    assert err.value.request_id == 42


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(header=st.dictionaries(st.sampled_from(["op", "id", "query", "queries", "query_index", "docs", "top_k",
                                               "activation", "timeout_ms", "x"]), msgpack_values))
def test_fuzzed_headers_decode_or_raise_protocol_error(header):
    if "op" in header and not isinstance(header["op"], str):
        header["op"] = "score"
    try:
        req = decode_request(frames(header))
    except ProtocolError as exc:
        assert exc.code in vars(ErrorCode).values()
        return
    assert req.op in P.CLIENT_OPS


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(st.binary(max_size=64), max_size=4))
def test_fuzzed_frames_never_escape_as_other_exceptions(raw):
    try:
        decode_request(raw)
    except ProtocolError:
        pass


def test_timings_from_older_workers_take_the_defaults_of_the_hop_fields():
    timings = P.BatchTimings.from_dict({"size": 1, "tokenize_ms": 1.0, "inference_ms": 2.0, "real_tokens": 3,
                                        "padded_tokens": 3})
    assert timings.worker_ms == timings.device_ms == 0.0
    with pytest.raises(ProtocolError, match="incomplete"):
        P.BatchTimings.from_dict({"size": 1, "tokenize_ms": 1.0})
