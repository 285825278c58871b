"""BusyPoll: blocks like a poll until a first event, then checks without sleeping for its spin window."""

from __future__ import annotations

import itertools

import pytest
import zmq

from rerankpool.sockets import BusyPoll

ENDPOINTS = itertools.count()


@pytest.fixture
def pair():
    ctx = zmq.Context.instance()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    endpoint = f"inproc://busy-poll-{next(ENDPOINTS)}"
    pull.bind(endpoint)
    push.connect(endpoint)
    yield pull, push
    pull.close(0)
    push.close(0)


class Recorded:
    """The socket's own poll, with each timeout it was called with written down."""

    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self.timeouts: list[int] = []

    def __call__(self, timeout_ms: int) -> int:
        self.timeouts.append(timeout_ms)
        return self.sock.poll(timeout_ms)


def test_without_a_recent_event_it_blocks_once_for_the_whole_timeout(pair):
    pull, _ = pair
    poll = Recorded(pull)
    assert not BusyPoll(poll, spin_s=10.0)(5)
    assert len(poll.timeouts) == 1 and 0 < poll.timeouts[0] <= 5


def test_after_an_event_it_spins_and_still_returns_the_next_message(pair):
    pull, push = pair
    poll = Recorded(pull)
    busy = BusyPoll(poll, spin_s=10.0)
    push.send(b"first")
    assert busy(1000)
    pull.recv()
    poll.timeouts.clear()
    assert not busy(5)  # nothing comes: it checks over and over, never sleeping in poll
    assert len(poll.timeouts) > 1 and set(poll.timeouts) == {0}
    push.send(b"second")
    assert busy(1000)
    assert pull.recv() == b"second"


def test_a_spin_of_zero_is_a_plain_poll(pair):
    pull, push = pair
    poll = Recorded(pull)
    busy = BusyPoll(poll, spin_s=0.0)
    push.send(b"one")
    assert busy(1000)
    pull.recv()
    assert not busy(5)
    assert len(poll.timeouts) == 2 and all(t > 0 for t in poll.timeouts)  # each one blocking call
