"""RQ entry points. The worker calls :func:`configure` once at start (see ``relay.cli worker``);
a plain ``rq worker`` gets the same from the environment on its first job.

Delivery guarantees, per (event, target):

- at most once: the target's accepted messages are recorded in Redis before the job ends, and a
  job that finds its target already delivered does nothing (unless forced by a replay); a lock
  keeps two jobs from posting the same delivery at the same time;
- at least once overall: a failed attempt is scheduled again (backoff, or the target's
  ``Retry-After``), a job whose worker died is re-run by RQ, and what is out of attempts or
  refused for good lands in the dead letters, from which it can be replayed.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
import rq

from relay.config import Settings
from relay.connection import connect
from relay.queue import delivery_queue, enqueue_delivery
from relay.ratelimit import RateLimiter
from relay.store import DEAD, DELIVERED, RETRYING, SENDING, DeliveryState, Store, lock_key
from relay.targets import Target, build_targets
from relay.targets.base import Outcome

log = logging.getLogger("relay.jobs")
# Waits for a rate-limit slot up to this long inside the job; a longer one is rescheduled.
MAX_PACING_SLEEP = 5.0


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    queue: rq.Queue
    store: Store
    targets: dict[str, Target]
    limiter: RateLimiter


_runtime: Runtime | None = None


def configure(settings: Settings, connection: redis.Redis | None = None) -> Runtime:
    """Give the job functions their settings, Redis connection and targets."""
    global _runtime
    connection = connection or connect(settings)
    _runtime = Runtime(
        settings=settings,
        redis=connection,
        queue=delivery_queue(settings, connection),
        store=Store(connection, settings.dedup_ttl),
        targets=build_targets(settings),
        limiter=RateLimiter(connection),
    )
    return _runtime


def runtime() -> Runtime:
    return _runtime or configure(Settings.from_env())


def backoff_delay(settings: Settings, attempt: int) -> float:
    """Delay before attempt ``attempt + 1``: the ``RELAY_BACKOFF`` schedule, ±20 % jitter."""
    schedule = settings.backoff
    base = schedule[min(attempt, len(schedule)) - 1]
    return base * random.uniform(0.8, 1.2)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def deliver(event_id: str, target_name: str, attempt: int = 1, force: bool = False) -> str:
    """Post one event to one target; returns what happened (kept by RQ only on failure)."""
    rt = runtime()
    store = rt.store
    context = {"event_id": event_id, "target": target_name, "attempt": attempt}
    event = store.load_event(event_id)
    if event is None:
        log.warning("event expired before delivery", extra=context)
        return "expired"
    context["task_id"] = event.task_id
    state = store.delivery(event_id, target_name)
    if state.state == DELIVERED and not force:
        log.info("already delivered", extra=context)
        return "already delivered"
    target = rt.targets.get(target_name)
    if target is None:
        state.state, state.reason = DEAD, "target is not configured on this worker"
        store.mark_dead(event_id, target_name, state, time.time())
        log.error("dead", extra={**context, "reason": state.reason})
        return "dead"

    lock = rt.redis.lock(lock_key(event_id, target_name), timeout=rt.settings.job_timeout, blocking=False)
    if not lock.acquire():
        # Another job is posting this delivery right now; look again once it must have finished.
        enqueue_delivery(rt.queue, event_id, target_name, attempt=attempt, force=force, delay=rt.settings.job_timeout)
        return "busy"
    try:
        return _attempt(rt, target, event_id, state, attempt, force, context)
    finally:
        with contextlib.suppress(redis.exceptions.LockError):  # expired meanwhile: nothing to release
            lock.release()


def _attempt(
    rt: Runtime, target: Target, event_id: str, state: DeliveryState, attempt: int, force: bool, context: dict
) -> str:
    store = rt.store
    event = store.load_event(event_id)
    assert event is not None
    if force and state.state == DELIVERED:
        state.parts_sent = 0
    messages = target.render(event)
    state.state, state.attempt, state.next_at = SENDING, attempt, None
    store.save_delivery(event_id, target.name, state)
    outcome = Outcome(ok=True)
    started = time.monotonic()
    for index in range(state.parts_sent, len(messages)):
        wait = rt.limiter.reserve(target.name, *target.spec.rate)
        if wait > MAX_PACING_SLEEP:
            outcome = Outcome(ok=False, reason="paced by rate limit", retry_after=wait)
            break
        if wait > 0:
            time.sleep(wait)
        outcome = target.send(messages[index], event)
        if not outcome.ok:
            break
        state.parts_sent = index + 1
        store.save_delivery(event_id, target.name, state)
    context = {**context, "duration_ms": round((time.monotonic() - started) * 1000, 1)}

    if outcome.ok:
        state.state, state.reason = DELIVERED, ""
        store.save_delivery(event_id, target.name, state)
        store.forget_dead(event_id, target.name)
        log.info("delivered", extra={**context, "messages": len(messages)})
        return "delivered"

    state.reason = outcome.reason
    paced = outcome.reason == "paced by rate limit"
    if outcome.permanent or (attempt >= rt.settings.max_attempts and not paced):
        state.state = DEAD
        store.mark_dead(event_id, target.name, state, time.time())
        level = logging.ERROR
        if outcome.status == 400 or "invalid_payload" in outcome.reason:
            outcome_note = "target rejected our payload: this is a relay bug, please report it"
            log.log(level, "dead", extra={**context, "reason": outcome.reason, "note": outcome_note})
        else:
            log.log(level, "dead", extra={**context, "reason": outcome.reason})
        return f"dead: {outcome.reason}"

    delay = backoff_delay(rt.settings, attempt)
    if outcome.retry_after is not None:
        # Never sooner than the target asked; a 429 is not our failure, so it waits no longer.
        delay = (
            outcome.retry_after + random.uniform(0.05, 0.25)
            if outcome.status == 429 or paced
            else max(delay, outcome.retry_after)
        )
    next_attempt = attempt if paced else attempt + 1
    state.state, state.next_at = RETRYING, _iso(time.time() + delay)
    store.save_delivery(event_id, target.name, state)
    enqueue_delivery(rt.queue, event_id, target.name, attempt=next_attempt, force=False, delay=delay)
    log.warning(
        "retrying",
        extra={**context, "reason": outcome.reason, "next_attempt": next_attempt, "delay_s": round(delay, 2)},
    )
    return f"retrying in {delay:.1f}s: {outcome.reason}"
