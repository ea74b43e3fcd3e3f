"""The delivery queue: RQ jobs that carry ids only (an event id, target names, a task id), never
a URL or a secret. One job per event hands its targets to the worker's delivery threads; a retry is a
job for one target.

When deliveries queue up (a burst), one job takes several events' first attempts along
(:class:`Batches`): RQ's own bookkeeping, some 27 round trips a job, is then paid once for all of
them.

Jobs due later go to RQ's scheduled-job registry with their exact time (RQ itself keeps whole
seconds), and every worker moves due jobs onto the queue (:class:`DueJobs`), a few times a
second: there is no scheduler process to lose, and a retry or a paced message runs on time as
long as Redis and one worker are up.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
import rq
from rq import Retry
from rq.job import Job

from relay.config import Settings
from relay.store.keys import BATCH_PREFIX

DISPATCH = "relay.jobs.dispatch"
RELEASE = "relay.jobs.release"
# RQ's own retry covers only what our job cannot handle itself: a worker killed mid-job (an
# "abandoned" job, requeued at once) or an unexpected error. Delivery failures are retried by the
# job itself, on its own schedule.
CRASH_RETRY = Retry(max=5, interval=[0, 10, 30, 60, 120])
FAILURE_TTL = 7 * 86400
# A first attempt built by the door carries [event id, targets, task id] here, so that a running
# job can take it along (Batches); RQ ignores fields it does not know.
BATCH_FIELD = "relay_batch"

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
    options: dict[str, Any] = {
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


def enqueue_release(queue: rq.Queue, target: str) -> Job:
    """Queue the sending of a target's held deliveries, in order (its breaker closed)."""
    return queue.enqueue_call(
        RELEASE, args=(target,), result_ttl=0, failure_ttl=FAILURE_TTL, retry=CRASH_RETRY,
        description=f"send the deliveries held for {target}",
    )  # fmt: skip


def dispatch_writes(queue: rq.Queue, event_id: str, targets: list[str], task_id: str = "") -> list[tuple]:
    """The Redis writes of ``enqueue_delivery(queue, event_id, targets)`` (a first attempt, due
    now), built directly: what RQ's ``enqueue_call`` writes for the pinned RQ, at a fraction of
    its cost on the door's hot path, plus :data:`BATCH_FIELD`. ``tests/unit/delivery/test_queue.py`` compares
    the two field by field, so an RQ upgrade that changes them fails loudly."""
    job_id = str(uuid.uuid4())
    key = Job.redis_job_namespace_prefix + job_id
    # RQ's own format (rq.utils.utcformat), without strftime's cost.
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")[:26] + "Z"
    targets = list(targets)
    call = (DISPATCH, None, (event_id, targets), {"attempt": 1, "force": False})
    data = _zlib(queue.serializer.dumps(call))
    fields = (
        "created_at", stamp, "data", data, *_EMPTY_FIELDS,
        "retries_left", CRASH_RETRY.max, "retry_intervals", _RETRY_INTERVALS, "origin", queue.name,
        "description", f"deliver {event_id} to {', '.join(targets)} (attempt 1)", "enqueued_at", stamp,
        "timeout", queue._default_timeout, "result_ttl", 0, "failure_ttl", FAILURE_TTL, "status", "queued",
        BATCH_FIELD, orjson.dumps([event_id, targets, task_id]),
    )  # fmt: skip
    return [
        ("SADD", queue.redis_queues_keys, queue.key),
        ("HSET", key, "status", "queued"),
        ("HSET", key, *fields),
        ("RPUSH", queue.key, job_id),
    ]


_EMPTY_FIELDS = tuple(
    part
    for name in ("success_callback_name", "failure_callback_name", "stopped_callback_name", "started_at", "ended_at",
                 "last_heartbeat", "worker_name", "group_id")
    for part in (name, "")
)  # fmt: skip
_RETRY_INTERVALS = json.dumps(CRASH_RETRY.intervals)


def _zlib(data: bytes) -> bytes:
    """A zlib stream RQ's ``zlib.decompress`` reads, for a job's few hundred bytes: stored, with
    the smallest window and state. ``zlib.compress`` sets up 256 KB of state first: 60 µs here."""
    compressor = zlib.compressobj(0, zlib.DEFLATED, 9, 1)
    return compressor.compress(data) + compressor.flush()


class DueJobs:
    """Moves the queue's due scheduled jobs onto it (every worker runs one, see relay.worker.sweeper)."""

    def __init__(self, queue: rq.Queue) -> None:
        self.queue = queue
        self.script = queue.connection.register_script(_ENQUEUE_DUE)

    def enqueue(self) -> int:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # RQ's own format
        keys = [self.queue.scheduled_job_registry.key, self.queue.key]
        return int(self.script(keys=keys, args=[Job.redis_job_namespace_prefix, stamp]))


# Takes up to ARGV[2] first attempts from the head of the queue for the running job ARGV[7]: their
# job hashes are deleted and their specs kept under the running job's key KEYS[2], so that if its
# worker dies, RQ runs the job again (abandoned-job retry) and the job finds them there. A job run
# again takes nothing new: it returns what it had taken. One event per task: a task's later event
# (a song's next stage) stays behind, a job of its own, so that it starts after the earlier one.
_CLAIM = """
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 or tonumber(ARGV[2]) <= 0 then return held end
local tasks = {}
local own = redis.call('HGET', ARGV[1] .. ARGV[7], ARGV[4])
if own then tasks[cjson.decode(own)[3]] = true end
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local taken = {}
for _, id in ipairs(ids) do
  local spec = redis.call('HGET', ARGV[1] .. id, ARGV[4])
  -- never a job that ran before (it may hold a batch of its own): it runs as itself
  if not spec or redis.call('HGET', ARGV[1] .. id, 'retries_left') ~= ARGV[6]
     or redis.call('EXISTS', ARGV[5] .. id) == 1 then break end
  local task = cjson.decode(spec)[3]
  if tasks[task] then break end
  tasks[task] = true
  taken[#taken + 1] = spec
  redis.call('DEL', ARGV[1] .. id)
end
if #taken > 0 then
  redis.call('LTRIM', KEYS[1], #taken, -1)
  redis.call('RPUSH', KEYS[2], unpack(taken))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return taken
"""


class Batches:
    """Several events' first attempts carried by one running job (see the module's docstring).

    Only first attempts the door queued and no worker has run yet are taken (retries, paced
    messages, replays, polls and a job run again after a crash stay jobs of their own), only from
    the head of the queue (order kept), one event per task (a task's stages start in the order
    they came), and only by a job that waited in the queue
    (:data:`BACKLOG_SECONDS`): an idle relay pays no extra round trip."""

    BACKLOG_SECONDS = 0.02
    MAX = 16
    PREFIX = BATCH_PREFIX

    def __init__(self, queue: rq.Queue) -> None:
        self.queue = queue
        self.script = queue.connection.register_script(_CLAIM)
        # A script, not a DEL, so that the bench counts the relay's round trips as its Lua steps.
        self.drop = queue.connection.register_script("return redis.call('DEL', KEYS[1])")

    @classmethod
    def key(cls, job_id: str) -> str:
        return cls.PREFIX + job_id

    def claim(self, job_id: str, count: int) -> list[tuple[str, list[str], str]]:
        """Up to ``count`` queued first attempts, now this job's; a job run again (``count`` 0 is
        enough) gets what it had taken before."""
        keys = [self.queue.key, self.key(job_id)]
        count = max(0, min(count, self.MAX))
        args: list[str | int] = [
            Job.redis_job_namespace_prefix, count, FAILURE_TTL, BATCH_FIELD, self.PREFIX, CRASH_RETRY.max, job_id
        ]  # fmt: skip
        return [tuple(orjson.loads(spec)) for spec in self.script(keys=keys, args=args)]

    def release(self, job_id: str) -> None:
        """Every taken delivery has begun (marked in flight): the job no longer answers for them."""
        self.drop(keys=[self.key(job_id)])
