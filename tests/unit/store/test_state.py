"""relay.store.state: delivery states, dead letters, abandoned deliveries and workers."""

from __future__ import annotations

import time

from relay.store.keys import INFLIGHT
from relay.store.state import DEAD, DeliveryState, Store, lock_key


def test_a_delivery_state_survives_its_json() -> None:
    state = DeliveryState(state=DEAD, attempt=3, reason="HTTP 404", parts_sent=2)
    assert DeliveryState.from_json(state.to_json()) == state
    assert DeliveryState.from_json(None).state == "queued"


def test_an_abandoned_delivery_is_claimed_once_and_never_under_a_lock(redis_conn) -> None:
    store = Store(redis_conn, 600)
    redis_conn.zadd(INFLIGHT, {"e1/slack": time.time() - 1, "e2/slack": time.time() + 60})
    assert store.abandoned(time.time()) == [("e1", "slack")]  # e2's poster still has time
    redis_conn.set(lock_key("e1", "slack"), "someone")
    assert not store.claim_abandoned("e1", "slack")  # a live poster holds it
    redis_conn.delete(lock_key("e1", "slack"))
    assert store.claim_abandoned("e1", "slack") and not store.claim_abandoned("e1", "slack")


def test_live_workers_and_the_targets_they_deliver_to(redis_conn) -> None:
    store = Store(redis_conn, 600)
    assert store.live_targets() is None  # nobody alive: nothing is known
    store.beat("w1")
    store.advertise("w1", ["slack", "discord"])
    store.beat("w0", now=time.time() - 3600)  # long silent: dropped
    assert [name for name, _ in store.live_workers()] == ["w1"]
    assert store.live_targets() == {"slack", "discord"}
    store.forget_worker("w1")
    assert store.live_targets() is None
