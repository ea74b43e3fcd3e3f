"""relay.worker.sweeper: deliveries whose poster died are handed on, once each; one that keeps
dying ends dead."""

from __future__ import annotations

import time

import pytest

from relay import jobs
from relay.store.keys import INFLIGHT
from relay.store.state import DEAD, DELIVERED, lock_key
from relay.suno import normalise
from relay.worker.sweeper import MAX_SWEEPS, sweep
from tests.support import ingest, work


def test_abandoned_delivery_is_handed_on_by_the_sweeper(relay_env, sample) -> None:
    runtime, slack, _, _ = relay_env()
    event = normalise(sample)
    ingest(runtime, event)
    runtime.queue.empty()  # as if the worker that took the job died mid-post
    runtime.redis.zadd(INFLIGHT, {f"{event.id}/slack": time.time() - 1})
    assert sweep(runtime.store, runtime.queue) == 1
    assert sweep(runtime.store, runtime.queue) == 0  # claimed once
    work(runtime)
    assert len(slack.received) == 1 and runtime.store.delivery(event.id, "slack").state == DELIVERED


def test_a_crash_keeps_the_in_flight_mark_and_repeated_crashes_end_dead(relay_env, sample) -> None:
    runtime, slack, _, _ = relay_env()
    event = normalise(sample)
    ingest(runtime, event)

    def crash(_event):
        raise RuntimeError("a bug while rendering")

    runtime.targets["slack"].render = crash
    runtime.redis.zadd(INFLIGHT, {f"{event.id}/slack": time.time() + 60})
    with pytest.raises(RuntimeError):
        jobs.deliver(event.id, "slack")
    assert runtime.redis.zscore(INFLIGHT, f"{event.id}/slack") is not None  # the sweeper's cue
    assert not runtime.redis.exists(lock_key(event.id, "slack"))
    for _ in range(MAX_SWEEPS):
        runtime.redis.zadd(INFLIGHT, {f"{event.id}/slack": time.time() - 1})
        assert sweep(runtime.store, runtime.queue) == 1
    runtime.redis.zadd(INFLIGHT, {f"{event.id}/slack": time.time() - 1})
    assert sweep(runtime.store, runtime.queue) == 0
    state = runtime.store.delivery(event.id, "slack")
    assert state.state == DEAD and "abandoned 5 times" in state.reason and slack.received == []
