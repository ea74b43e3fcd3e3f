"""Every end of a delivery goes through one settle step, with its timeline entry, its metric,
the target's waiting list and last failure, and (when dead) its dead letter. Real Redis, real
local receivers, deliveries run in this process."""

from __future__ import annotations

import time

import pytest

from relay import jobs
from relay.metrics import DELIVERIES
from relay.store import activity
from relay.store.state import DEAD, DELIVERED, RETRYING
from relay.suno import normalise
from relay.worker.sweeper import MAX_SWEEPS, sweep
from tests.support import Reply, ingest


@pytest.fixture
def one_target(make_settings, redis_conn, receivers):
    def build(reply: Reply | None = None, rate: str = "100/1s", **env: str):
        slack = receivers(default=reply or Reply())
        settings = make_settings(SLACK_WEBHOOK_URL=f"{slack.url}#rate={rate}", RELAY_MAX_ATTEMPTS="2", **env)
        return jobs.configure(settings, redis_conn), slack

    return build


def settled_records(runtime, event_id: str, target: str, what: str) -> dict:
    """What the page and the metrics know of how this delivery ended."""
    redis = runtime.redis
    timeline = activity.timeline(redis, event_id)
    return {
        "timeline": [entry["what"] for entry in timeline if entry.get("target") == target],
        "waiting": redis.zscore(activity.waiting_key(target), event_id),
        "counted": int(redis.hget(DELIVERIES, f"{target}|{what}") or 0),
        "dead_letter": redis.zscore("relay:dead", f"{event_id}/{target}") is not None,
        "in_flight": redis.zscore("relay:inflight", f"{event_id}/{target}") is not None,
        "last_failure": redis.hget(activity.target_key(target), "last_failure"),
    }


def test_delivered(one_target, sample) -> None:
    runtime, _ = one_target()
    event = normalise(sample)
    ingest(runtime, event)
    jobs.deliver(event.id, "slack")
    records = settled_records(runtime, event.id, "slack", "delivered")
    assert runtime.store.delivery(event.id, "slack").state == DELIVERED
    assert records["timeline"] == ["delivered"] and records["waiting"] is None and records["counted"] == 1
    assert not records["dead_letter"] and not records["in_flight"]


def test_retrying_and_then_out_of_attempts(one_target, sample) -> None:
    runtime, _ = one_target(Reply(503, "down"))
    event = normalise(sample)
    ingest(runtime, event)
    jobs.deliver(event.id, "slack", attempt=1)
    records = settled_records(runtime, event.id, "slack", "retrying")
    assert runtime.store.delivery(event.id, "slack").state == RETRYING
    assert records["timeline"] == ["retrying"] and records["waiting"] > time.time() and records["counted"] == 1
    jobs.deliver(event.id, "slack", attempt=2)
    dead = settled_records(runtime, event.id, "slack", "dead")
    assert dead["timeline"] == ["retrying", "dead"] and dead["waiting"] is None and dead["counted"] == 1
    assert dead["dead_letter"] and dead["last_failure"]


def test_held_for_a_target_that_is_gone(one_target, sample) -> None:
    runtime, _ = one_target(Reply(404, "no_service"))
    event = normalise(sample)
    ingest(runtime, event)
    assert jobs.deliver(event.id, "slack") == "held"
    held = settled_records(runtime, event.id, "slack", "held")
    assert held["timeline"] == ["held"] and not held["dead_letter"] and not held["in_flight"]
    # Owed all the same: in the breaker's held set (which the page counts), not the reconcile's index.
    assert held["waiting"] is None and runtime.breakers.status(["slack"])["slack"].held == 1


def test_refused_for_good(one_target, sample) -> None:
    runtime, _ = one_target(Reply(400, "invalid_payload"))
    event = normalise(sample)
    ingest(runtime, event)
    jobs.deliver(event.id, "slack")
    dead = settled_records(runtime, event.id, "slack", "dead")
    assert dead["timeline"] == ["dead"] and dead["dead_letter"] and dead["waiting"] is None


def test_paced(one_target, sample) -> None:
    runtime, slack = one_target(rate="1/60s")
    first, second = normalise(sample), normalise({**sample, "data": {**sample["data"], "task_id": "other"}})
    for event in (first, second):
        ingest(runtime, event)
    jobs.deliver(first.id, "slack")  # takes the minute's only slot
    jobs.deliver(second.id, "slack")
    records = settled_records(runtime, second.id, "slack", "paced")
    assert len(slack.received) == 1 and records["counted"] == 1
    assert records["timeline"] == ["paced"] and records["waiting"] > time.time() + 30


def test_swept_too_often_is_dead_with_every_record(one_target, sample) -> None:
    """Was: store.mark_dead, with no timeline entry, no last failure, the event left waiting and
    no metric."""
    runtime, _ = one_target()
    event = normalise(sample)
    ingest(runtime, event)
    runtime.queue.empty()
    for _ in range(MAX_SWEEPS + 1):
        runtime.redis.zadd("relay:inflight", {f"{event.id}/slack": time.time() - 1})
        sweep(runtime.store, runtime.queue)
    state = runtime.store.delivery(event.id, "slack")
    assert state.state == DEAD and "abandoned 5 times" in state.reason
    dead = settled_records(runtime, event.id, "slack", "dead")
    assert dead["timeline"] == ["dead"] and dead["waiting"] is None and dead["counted"] == 1
    assert dead["dead_letter"] and dead["last_failure"] and not dead["in_flight"]


def test_target_gone_from_the_configuration_is_dead_with_every_record(make_settings, redis_conn, sample) -> None:
    settings = make_settings(SLACK_WEBHOOK_URL="http://127.0.0.1:9/hook")
    runtime = jobs.configure(settings, redis_conn)
    event = normalise(sample)
    ingest(runtime, event)
    runtime = jobs.configure(make_settings(DISCORD_WEBHOOK_URL="http://127.0.0.1:9/hook"), redis_conn)
    assert jobs.deliver(event.id, "slack") == "dead"
    state = runtime.store.delivery(event.id, "slack")
    assert state.state == DEAD and state.reason == "target is not configured on this worker"
    dead = settled_records(runtime, event.id, "slack", "dead")
    assert dead["timeline"] == ["dead"] and dead["waiting"] is None and dead["counted"] == 1
    assert dead["dead_letter"] and dead["last_failure"]


def test_with_acks_an_event_on_no_replica_is_not_posted_but_handed_back(
    make_settings, redis_conn, receivers, sample
) -> None:
    """Its callback got a 503 (not replicated): if a failover lost it, Suno's retry is stored
    afresh. Posting this copy too would deliver it twice. Here Redis has no replica at all."""
    slack = receivers()
    env = {"SLACK_WEBHOOK_URL": f"{slack.url}#rate=100/1s", "RELAY_ACK_TIMEOUT": "50ms"}
    event = normalise(sample)
    ingest(jobs.configure(make_settings(**env), redis_conn), event)  # stored, as a 503'd callback is
    runtime = jobs.configure(make_settings(RELAY_ACK_REPLICAS="1", **env), redis_conn)
    said = jobs.deliver(event.id, "slack")
    state = runtime.store.delivery(event.id, "slack")
    assert slack.attempts == [] and "on no replica yet" in said
    assert state.state == RETRYING and "RELAY_ACK_REPLICAS" in state.reason
