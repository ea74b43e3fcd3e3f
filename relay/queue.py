"""The delivery queue: RQ jobs that carry ids only (an event id and target names), never a URL
or a secret. One job per event hands its targets to the worker's delivery threads; a retry is a
job for one target."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import redis
import rq
from rq import Retry

from relay.config import Settings

DISPATCH = "relay.jobs.dispatch"
# RQ's own retry covers only what our job cannot handle itself: a worker killed mid-job (an
# "abandoned" job, requeued at once) or an unexpected error. Delivery failures are retried by the
# job itself, on its own schedule.
CRASH_RETRY = Retry(max=5, interval=[0, 10, 30, 60, 120])


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
    pipeline: redis.client.Pipeline | None = None,
) -> rq.job.Job:
    options = {
        "args": (event_id, list(targets)),
        "kwargs": {"attempt": attempt, "force": force},
        "result_ttl": 0,  # a delivered job leaves nothing behind; the delivery state says it all
        "failure_ttl": 7 * 86400,
        "retry": CRASH_RETRY,
        "description": f"deliver {event_id} to {', '.join(targets)} (attempt {attempt})",
    }
    if delay > 0:
        # RQ's scheduler keeps whole seconds (truncated): round up, so a retry never comes sooner
        # than a target's Retry-After asked.
        due = datetime.fromtimestamp(math.ceil(time.time() + delay), UTC)
        return queue.enqueue_at(due, DISPATCH, **options)
    return queue.enqueue_call(DISPATCH, pipeline=pipeline, **options)
