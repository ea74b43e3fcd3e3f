"""relay.ingest: the first callback of an event is recorded and queued in one step, a repeat is not."""

from __future__ import annotations

import pytest
import redis

from relay import jobs
from relay.ingest import Ingest
from relay.store.keys import event_key, task_key
from relay.suno import normalise


@pytest.fixture
def runtime(make_settings, redis_conn, receivers):
    slack = receivers()
    return jobs.configure(make_settings(SLACK_WEBHOOK_URL=slack.url, RELAY_WEBHOOK_URL=slack.url + "/b"), redis_conn)


def test_first_is_new_and_queued_once_a_repeat_is_not(runtime, sample) -> None:
    event = normalise(sample)
    door, other_process = runtime.ingest, Ingest(runtime.settings, runtime.redis, runtime.queue)
    assert door(event) is True
    assert door(event) is False  # answered from this process's memory
    assert other_process(event) is False  # answered by Redis
    assert runtime.queue.count == 1  # one job, naming both targets
    assert set(runtime.store.deliveries(event.id)) == {"slack", "webhook"}
    assert runtime.store.load_event(event.id) == event


def test_a_failed_write_leaves_no_dedup_record_so_the_retry_is_new(runtime, sample) -> None:
    event = normalise(sample)
    runtime.redis.set(task_key(event.task_id), "not a set")  # SADD will fail mid-script
    with pytest.raises(redis.ResponseError):
        runtime.ingest(event)
    assert not runtime.redis.exists(event_key(event.id))
    runtime.redis.delete(task_key(event.task_id))
    assert runtime.ingest(event) is True
