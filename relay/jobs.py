"""RQ entry points: the worker's runtime, and the jobs it runs.

- :func:`dispatch`: an event's delivery job. It hands each target to a delivery thread (the
  worker's pool), each delivery then runs on its own (:mod:`relay.delivery.attempt`).
- :func:`poll`: a watched task's poll (:mod:`relay.polling.poll`).

Jobs already queued in Redis name these two functions, so they keep these names. The worker calls
:func:`configure` once at start (see ``relay.cli worker``); a plain ``rq worker`` gets the same
from the environment on its first job. What a delivery guarantees (at most once per target, at
least once overall) is written once, in docs/delivery.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import redis
import rq

from relay.config import Settings
from relay.delivery.attempt import Delivery, dead_letter, lock_seconds
from relay.delivery.queue import CRASH_RETRY, Batches, enqueue_delivery
from relay.polling import poll as polling
from relay.runtime import Runtime, build
from relay.store.keys import held_key
from relay.store.keys import text as key_text
from relay.store.outage import OUTAGE
from relay.store.state import INFLIGHT
from relay.suno import Event
from relay.worker.pool import DeliveryPool

log = logging.getLogger("relay.jobs")


_runtime: Runtime | None = None


def configure(settings: Settings, connection: redis.Redis | None = None, threads: int = 0) -> Runtime:
    """Give the job functions their runtime (:func:`relay.runtime.build`, the composition root
    every process shares); with ``threads``, the worker's pool of delivery threads, else
    deliveries run inline in the job."""
    global _runtime
    _runtime = build(settings, connection, threads)
    return _runtime


def runtime() -> Runtime:
    return _runtime or configure(Settings.from_env())


def dispatch(event_id: str, targets: list[str], attempt: int = 1, force: bool = False, booked: bool = False) -> str:
    """RQ entry point: deliver an event to ``targets``, each on its own.

    In the worker, each target goes to a delivery thread, whose first step (``begin``: one round
    trip that also reads the event) marks it in flight; the job returns once every thread has
    begun. So the job itself makes no round trip, and a worker that dies before a delivery began
    leaves a job RQ runs again; after, the in-flight mark lets the sweeper hand it on.

    A job that waited in the queue (a burst) also takes up to 16 queued first attempts along
    (:class:`relay.delivery.queue.Batches`), held under its id until they have begun (handing them over
    waits for free threads, as its own targets do): a job RQ runs again after its worker died
    starts them again.
    """
    rt = runtime()
    if rt.pool is None:  # inline (tests, one-off runs)
        event = rt.store.load_event(event_id)
        return "; ".join(f"{target}: {deliver(event_id, target, attempt, force, event, booked)}" for target in targets)
    pool = rt.pool
    started = [_start(rt, pool, event_id, target, attempt, force, booked) for target in targets]
    job = rq.get_current_job()
    taken: list[tuple[str, list[str], str]] = []
    if job is not None:
        rerun = job.retries_left is not None and job.retries_left < CRASH_RETRY.max
        room = Batches.MAX if _waited(job) else 0
        if rerun or room > 0:
            taken = OUTAGE.call(lambda: rt.batches.claim(job.id, room))
    for other, its_targets, _task in taken:
        started += [_start(rt, pool, other, target, 1, False, False) for target in its_targets]
    for begun in started:
        if begun is not None:
            begun.wait(lock_seconds(rt.settings))
    if taken and job is not None:
        OUTAGE.call(lambda: rt.batches.release(job.id))
        return f"handed to delivery threads: {', '.join(targets)}, and {len(taken)} more events"
    return f"handed to delivery threads: {', '.join(targets)}"


# A slow target's delivery past its share of the threads comes back this much later, as a job.
BULKHEAD_DELAY = 2.0


def _start(
    rt: Runtime, pool: DeliveryPool, event_id: str, target: str, attempt: int, force: bool, booked: bool
) -> threading.Event | None:
    """Hand a delivery to a thread, or, its target's share of the threads being busy, back to
    Redis as a job due a moment later (it holds no thread meanwhile, and nothing of it lives only
    in this process): a slow target never takes the threads of the others."""
    begun = pool.submit(target, _deliver_in_thread, event_id, target, attempt, force, booked)
    if begun is None:
        # Not booked any more: it books its slot again when it runs (late, never early).
        OUTAGE.call(
            lambda: enqueue_delivery(rt.queue, event_id, [target], attempt=attempt, delay=BULKHEAD_DELAY, force=force)
        )
    return begun


def _waited(job: rq.job.Job) -> bool:
    """Whether the job sat in the queue for a while: others are likely queued behind it. (The
    web's clock wrote ``enqueued_at``: a skew between hosts only makes batches likelier or
    rarer, never wrong.)"""
    enqueued = job.enqueued_at
    if enqueued is None:
        return False
    if enqueued.tzinfo is None:
        enqueued = enqueued.replace(tzinfo=UTC)
    return (datetime.now(UTC) - enqueued).total_seconds() > Batches.BACKLOG_SECONDS


def _deliver_in_thread(
    event_id: str, target: str, attempt: int, force: bool, booked: bool, begun: Callable[[], None]
) -> None:
    try:
        deliver(event_id, target, attempt, force, None, booked, begun)
    except Exception as exc:
        # The in-flight mark stays: the sweeper queues this delivery again once it expires.
        extra = {"event_id": event_id, "target": target, "reason": type(exc).__name__}
        log.error("delivery interrupted; the sweeper will hand it on", extra=extra)


def deliver(
    event_id: str,
    target_name: str,
    attempt: int = 1,
    force: bool = False,
    event: Event | None = None,
    booked: bool = False,
    begun: Callable[[], None] = lambda: None,
) -> str:
    """Post one event to one target; returns what happened (kept by RQ only on failure).
    ``event``: when the caller has it (else the delivery's first step reads it)."""
    rt = runtime()
    if OUTAGE.stopping.is_set():
        # Shutting down: not started, so hand it straight back (the in-flight mark is dropped
        # with the job queued, so nothing waits for the sweeper).
        OUTAGE.call(lambda: _requeue(rt, event_id, target_name, attempt, force, booked))
        begun()
        return "handed back at shutdown"
    target = rt.targets.get(target_name)
    if target is None:
        OUTAGE.call(
            lambda: dead_letter(
                rt.redis, rt.settings.dedup_ttl, event_id, target_name, "target is not configured on this worker"
            )
        )
        begun()
        return "dead"
    return Delivery(rt.context, event_id, target, attempt, force, booked, event).run(begun)


def release(target_name: str) -> str:
    """RQ entry point: send a target's held deliveries (its breaker closed), oldest callback
    first. Each begins in that order, so their rate-limit slots are booked in that order; the
    first is posted here, the rest at their slots. Safe to run twice: a delivery posts once."""
    rt = runtime()
    target = rt.targets.get(target_name)
    if target is None:
        return "target is not configured on this worker"
    held = [key_text(raw) for raw in OUTAGE.call(lambda: rt.redis.zrange(held_key(target_name), 0, -1))]
    for count, event_id in enumerate(held):
        if OUTAGE.stopping.is_set() or rt.breakers.status([target_name])[target_name].down:
            return f"{count} of {len(held)} sent on; the rest stay held"
        attempt = OUTAGE.call(partial(rt.store.delivery, event_id, target_name)).attempt + 1
        Delivery(rt.context, event_id, target, attempt=attempt).run()
    return f"{len(held)} held deliveries sent on"


def _requeue(rt: Runtime, event_id: str, target: str, attempt: int, force: bool, booked: bool) -> None:
    with rt.redis.pipeline() as pipe:
        enqueue_delivery(rt.queue, event_id, [target], attempt=attempt, force=force, booked=booked, pipeline=pipe)
        pipe.zrem(INFLIGHT, f"{event_id}/{target}")
        pipe.execute()


def poll(task_id: str) -> str:
    """RQ entry point: poll a watched task (see relay.polling.poll)."""
    return polling.poll(runtime(), task_id)
