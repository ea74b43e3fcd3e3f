"""Acknowledged work never depends on one RQ job surviving.

A delivery that is pending (queued, retrying, paced) but has no job — none queued, scheduled or
running, none held in a running job's batch, not in flight — was lost: a queue emptied from a
Redis client or a dashboard, a job deleted, a ``FLUSHDB`` of RQ's keys, an RQ bug. Each target's
waiting index (``relay:waiting:<target>``, kept inside the relay's own atomic steps) says when
each pending delivery is due; one worker at a time (a lock) looks for entries more than
``RELAY_RECONCILE_AFTER`` past due, reads which deliveries the jobs in Redis cover (their
descriptions: a snapshot of the queue and the registries in one transaction), and queues each
uncovered one again, logged (``lost delivery queued again``) and counted
(``relay_deliveries_total{outcome="requeued"}``).

Queuing a delivery whose job merely moved between two reads is harmless: a delivery job resumes
after the last message its target accepted, does nothing for a settled delivery, and the
delivery's lock keeps two from posting at once.
"""

from __future__ import annotations

import logging
import re
import time

import orjson
import rq

from relay.delivery.queue import Batches, enqueue_delivery
from relay.metrics import record_delivery
from relay.store.activity import waiting_key
from relay.store.state import DEAD, DELIVERED, INFLIGHT, RECONCILE_LOCK, Store, event_key, lock_key

log = logging.getLogger("relay.reconcile")
MOST = 500  # overdue entries looked at per target and pass
_DESCRIPTION = re.compile(r"^deliver (\S+) to (.+) \(attempt \d+\)$")


def covered(store: Store, queue: rq.Queue) -> set[tuple[str, str]]:
    """The (event id, target) pairs some job in Redis answers for."""
    redis = store.redis
    with redis.pipeline(transaction=True) as pipe:  # one snapshot: a job moving between lists is seen once
        pipe.lrange(queue.key, 0, -1)
        pipe.zrange(queue.scheduled_job_registry.key, 0, -1)
        pipe.zrange(queue.started_job_registry.key, 0, -1)
        pipe.zrange(INFLIGHT, 0, -1)
        queued, scheduled, started, inflight = pipe.execute()
    running = [member.decode().split(":", 1)[0] for member in started]
    job_ids = [member.decode() for member in (*queued, *scheduled)] + running
    pairs = {tuple(member.decode().split("/", 1)) for member in inflight}
    with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(rq.job.Job.redis_job_namespace_prefix + job_id, "description")
        for job_id in running:
            pipe.lrange(Batches.key(job_id), 0, -1)
        found = pipe.execute()
    for description in found[: len(job_ids)]:
        match = _DESCRIPTION.match((description or b"").decode(errors="replace"))
        if match:
            pairs.update((match.group(1), target) for target in match.group(2).split(", "))
    for held in found[len(job_ids) :]:
        for spec in held:
            event_id, targets, _task = orjson.loads(spec)
            pairs.update((event_id, target) for target in targets)
    return pairs


def reconcile(store: Store, queue: rq.Queue, targets: list[str], after: float, now: float | None = None) -> int:
    """Queue again every pending delivery of ``targets`` overdue by ``after`` seconds with no job;
    returns how many."""
    now = time.time() if now is None else now
    redis = store.redis
    with redis.pipeline(transaction=False) as pipe:
        for target in targets:
            pipe.zrangebyscore(waiting_key(target), "-inf", now - after, start=0, num=MOST)
        overdue = [
            (member.decode(), target) for target, ids in zip(targets, pipe.execute(), strict=True) for member in ids
        ]
    if not overdue:
        return 0
    answered_for = covered(store, queue)
    requeued = 0
    for event_id, target in overdue:
        if (event_id, target) in answered_for or redis.exists(lock_key(event_id, target)):
            continue
        state = store.delivery(event_id, target)
        if state.state in (DELIVERED, DEAD) or not redis.exists(event_key(event_id)):
            redis.zrem(waiting_key(target), event_id)  # settled or expired: the index was stale
            continue
        enqueue_delivery(queue, event_id, [target], attempt=max(state.attempt, 1))
        record_delivery(redis, target, "requeued")
        log.warning("lost delivery queued again", extra={"event_id": event_id, "target": target, "note": state.state})
        requeued += 1
    return requeued


def due_to_run(store: Store, worker: str, every: float) -> bool:
    """True for one worker per ``every`` seconds."""
    return bool(store.redis.set(RECONCILE_LOCK, worker, nx=True, ex=max(1, int(every))))
