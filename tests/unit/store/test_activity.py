"""relay.store.activity: an event's timeline, the per-target status and the counts the page shows."""

from __future__ import annotations

import time

from relay.store import activity
from relay.store.keys import RECENT, waiting_key


def record(redis_conn, write) -> None:
    with redis_conn.pipeline() as pipe:
        write(pipe)
        pipe.execute()


def test_an_event_from_received_to_delivered(redis_conn) -> None:
    record(redis_conn, lambda pipe: activity.received(pipe, "e1", "task1", "callback", ["slack", "discord"], 600))
    assert activity.target_status(redis_conn, ["slack"])["slack"]["waiting"] == 1
    due = time.time() + 30
    record(
        redis_conn,
        lambda pipe: activity.outcome(pipe, "e1", "slack", "retrying", 600, attempt=1, reason="HTTP 500", due=due),
    )
    record(redis_conn, lambda pipe: activity.outcome(pipe, "e1", "discord", "delivered", 600, attempt=1))
    slack, discord = activity.target_status(redis_conn, ["slack", "discord"]).values()
    assert slack["waiting"] == 1 and slack["last_reason"] == "HTTP 500" and slack["next_due"]  # still owed
    assert discord["waiting"] == 0 and discord["last_success"] and not discord["last_failure"]
    steps = [entry["what"] for entry in activity.timeline(redis_conn, "e1")]
    assert steps == ["received by callback", "retrying", "delivered"]
    counts = activity.counts(redis_conn, 3600)
    assert counts["retrying"] == 1 and counts["delivered"] == 1
    assert activity.recent_task_ids(redis_conn, 10)[0][0] == "task1"


def test_trim_drops_what_outlived_the_dedup_window(redis_conn) -> None:
    old = time.time() - 7200
    redis_conn.zadd(RECENT, {"old-task": old, "new-task": time.time()})
    redis_conn.zadd(waiting_key("slack"), {"old-event": old})
    activity.trim(redis_conn, ["slack"], ttl=3600)
    assert [task for task, _ in activity.recent_task_ids(redis_conn, 10)] == ["new-task"]
    assert redis_conn.zcard(waiting_key("slack")) == 0


def test_a_timeline_keeps_its_latest_entries(redis_conn) -> None:
    for attempt in range(activity.MAX_LOG + 5):
        record(redis_conn, lambda pipe, n=attempt: activity.outcome(pipe, "e2", "slack", "retrying", 600, attempt=n))
    entries = activity.timeline(redis_conn, "e2")
    assert len(entries) == activity.MAX_LOG and entries[-1]["attempt"] == activity.MAX_LOG + 4
