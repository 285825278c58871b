"""Which broker a client sends to, and when it leaves one (``client/brokers.py``): pure, with a fake clock."""

from __future__ import annotations

from rerankpool.client.brokers import PROBE_AFTER_S, RETRY_DOWN_S, BrokerSet


def test_brokers_are_taken_in_turn_and_a_down_one_is_skipped_until_it_may_be_back():
    brokers = BrokerSet(["a", "b", "c"])
    assert [brokers.pick(0.0) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    brokers.mark_down(1, 0.0)
    assert 1 not in {brokers.pick(0.5) for _ in range(6)}
    assert 1 in {brokers.pick(RETRY_DOWN_S + 0.1) for _ in range(6)}  # tried again once its time is up
    assert brokers.pick(0.0, avoid=0) != 0


def test_a_broker_heard_before_that_goes_silent_is_down_after_an_unanswered_ping():
    brokers = BrokerSet(["a", "b"])
    a = brokers.brokers[0]
    a.heard(10.0)
    assert not a.needs_probe(10.2, waiting_since=10.1)  # replies flow: no ping
    assert a.needs_probe(10.1 + PROBE_AFTER_S, waiting_since=10.1)
    a.probe_at = 10.6
    assert not brokers.down(0, 10.6 + PROBE_AFTER_S / 2)
    assert brokers.down(0, 10.6 + PROBE_AFTER_S)
    a.heard(11.2)  # the pong came: up again, no ping out
    assert not brokers.down(0, 12.0) and a.probe_at is None


def test_a_broker_never_heard_is_judged_by_silence_only_once_another_answers():
    """Alone, it may still be starting (``rerankpool up &`` then a client): requests wait for it."""
    alone = BrokerSet(["a"])
    alone.brokers[0].probe_at = 0.0
    assert not alone.down(0, 10.0)
    pair = BrokerSet(["a", "b"])
    pair.brokers[0].probe_at = 0.0
    assert not pair.down(0, 10.0)
    pair.brokers[1].heard(5.0)
    assert pair.down(0, 10.0)
    pair.mark_down(0, 10.0)
    assert pair.pick(10.5) == 1 and pair.pick(10.5) == 1


def test_addresses_that_refuse_connections_are_down_and_none_running_is_said_at_once():
    brokers = BrokerSet(["a", "b"])
    brokers.brokers[0].connection(refused=True, now=0.0)
    assert not brokers.down(0, 0.5) and brokers.down(0, 1.0)  # refused for a second: nothing listens
    assert not brokers.none_running(1.0)  # b may still answer
    brokers.brokers[1].connection(refused=True, now=0.2)
    assert brokers.none_running(1.2)
    brokers.brokers[1].connection(refused=False, now=1.3)  # b accepted a connection after all
    assert not brokers.none_running(1.5)
    restarting = BrokerSet(["a"])
    restarting.brokers[0].heard(0.0)
    restarting.brokers[0].connection(refused=True, now=1.0)
    assert not restarting.none_running(5.0)  # it answered before: a restart, worth waiting for
