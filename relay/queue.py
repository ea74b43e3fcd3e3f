"""The delivery queue: RQ jobs that carry ids only (an event id and target names), never a URL
or a secret. One job per event hands its targets to the worker's delivery threads; a retry is a
job for one target.

Jobs due later go to RQ's scheduled-job registry with their exact time (RQ itself keeps whole
seconds), and every worker moves due jobs onto the queue (:func:`enqueue_due`), a few times a
second: there is no scheduler process to lose, and a retry or a paced message runs on time as
long as Redis and one worker are up.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from datetime import UTC, datetime

import redis
import rq
from rq import Retry
from rq.job import Job
from rq.utils import utcformat

from relay.config import Settings

DISPATCH = "relay.jobs.dispatch"
# RQ's own retry covers only what our job cannot handle itself: a worker killed mid-job (an
# "abandoned" job, requeued at once) or an unexpected error. Delivery failures are retried by the
# job itself, on its own schedule.
CRASH_RETRY = Retry(max=5, interval=[0, 10, 30, 60, 120])
FAILURE_TTL = 7 * 86400

# Moves due jobs from the scheduled registry to the queue. ZREM decides: of several workers
# moving at once, exactly one moves each job.
_ENQUEUE_DUE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) + tonumber(now_t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = ARGV[1] .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[2])
      redis.call('RPUSH', KEYS[2], id)
      moved = moved + 1
    end
  end
end
return moved
"""


def delivery_queue(settings: Settings, connection: redis.Redis) -> rq.Queue:
    return rq.Queue(settings.queue_name, connection=connection, default_timeout=settings.job_timeout)


def enqueue_delivery(
    queue: rq.Queue,
    event_id: str,
    targets: list[str],
    *,
    attempt: int = 1,
    delay: float = 0.0,
    force: bool = False,
    booked: bool = False,
    pipeline: redis.client.Pipeline | None = None,
) -> Job:
    """Queue a delivery job now, or ``delay`` seconds from now (never sooner). ``booked``: the job
    holds a rate-limit slot at its due time, and sends its first message without booking again."""
    kwargs: dict = {"attempt": attempt, "force": force}
    if booked:
        kwargs["booked"] = True
    options = {
        "args": (event_id, list(targets)),
        "kwargs": kwargs,
        "result_ttl": 0,  # a delivered job leaves nothing behind; the delivery state says it all
        "failure_ttl": FAILURE_TTL,
        "retry": CRASH_RETRY,
        "description": f"deliver {event_id} to {', '.join(targets)} (attempt {attempt})",
    }
    if delay <= 0:
        return queue.enqueue_call(DISPATCH, pipeline=pipeline, **options)
    due = time.time() + delay
    job = queue.create_job(DISPATCH, status=rq.job.JobStatus.SCHEDULED, **options)
    pipe = pipeline if pipeline is not None else queue.connection.pipeline()
    queue.schedule_job(job, datetime.fromtimestamp(due, UTC), pipeline=pipe)
    pipe.zadd(queue.scheduled_job_registry.key, {job.id: due})  # the exact time, not whole seconds
    if pipeline is None:
        pipe.execute()
    return job


def dispatch_writes(queue: rq.Queue, event_id: str, targets: list[str]) -> list[tuple]:
    """The Redis writes of ``enqueue_delivery(queue, event_id, targets)`` (a first attempt, due
    now), built directly: what RQ's ``enqueue_call`` writes for the pinned RQ, at a quarter of its
    cost on the door's hot path. ``tests/test_queue.py`` compares the two field by field, so an RQ
    upgrade that changes them fails loudly."""
    job_id = str(uuid.uuid4())
    key = Job.redis_job_namespace_prefix + job_id
    stamp = utcformat(datetime.now(UTC))
    call = (DISPATCH, None, (event_id, list(targets)), {"attempt": 1, "force": False})
    empty = dict.fromkeys(
        ("success_callback_name", "failure_callback_name", "stopped_callback_name", "started_at", "ended_at",
         "last_heartbeat", "worker_name", "group_id"), "",
    )  # fmt: skip
    fields = {
        "created_at": stamp,
        "data": zlib.compress(queue.serializer.dumps(call)),
        **empty,
        "retries_left": CRASH_RETRY.max,
        "retry_intervals": json.dumps(CRASH_RETRY.intervals),
        "origin": queue.name,
        "description": f"deliver {event_id} to {', '.join(targets)} (attempt 1)",
        "enqueued_at": stamp,
        "timeout": queue._default_timeout,
        "result_ttl": 0,
        "failure_ttl": FAILURE_TTL,
        "status": "queued",
    }
    return [
        ("SADD", queue.redis_queues_keys, queue.key),
        ("HSET", key, "status", "queued"),
        ("HSET", key, *(part for pair in fields.items() for part in pair)),
        ("RPUSH", queue.key, job_id),
    ]


class DueJobs:
    """Moves the queue's due scheduled jobs onto it (every worker runs one, see relay.sweeper)."""

    def __init__(self, queue: rq.Queue) -> None:
        self.queue = queue
        self.script = queue.connection.register_script(_ENQUEUE_DUE)

    def enqueue(self) -> int:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # RQ's own format
        keys = [self.queue.scheduled_job_registry.key, self.queue.key]
        return int(self.script(keys=keys, args=[Job.redis_job_namespace_prefix, stamp]))
