"""RQ entry points. The worker calls :func:`configure` once at start (see ``relay.cli worker``);
a plain ``rq worker`` gets the same from the environment on its first job.

Delivery guarantees, per (event, target):

- at most once: the target's accepted messages are recorded in Redis before the job ends, and a
  job that finds its target already delivered does nothing (unless forced by a replay); a lock
  keeps two jobs from posting the same delivery at the same time;
- at least once overall: a failed attempt is scheduled again (backoff, or the target's
  ``Retry-After``); a delivery whose worker died mid-post is handed on by the sweeper
  (:mod:`relay.sweeper`) once its lock expires, and a job whose worker died before posting is
  re-run by RQ; what is out of attempts or refused for good lands in the dead letters, from
  which it can be replayed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
import rq

from relay.config import Settings
from relay.connection import connect
from relay.ingest import Ingest
from relay.metrics import record_delivery
from relay.queue import delivery_queue, enqueue_delivery
from relay.ratelimit import RateLimiter
from relay.store import DEAD, DELIVERED, RETRYING, SENDING, DeliveryState, LockLost, Store, lock_key
from relay.suno import Event, PayloadError, from_record, timed_out
from relay.suno_api import SunoAPIError, SunoClient
from relay.targets import Target, build_targets
from relay.targets.base import Outcome
from relay.watch import Watchlist

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
    ingest: Ingest
    watchlist: Watchlist
    suno: SunoClient
    pool: DeliveryPool | None = None


_runtime: Runtime | None = None


def configure(settings: Settings, connection: redis.Redis | None = None, threads: int = 0) -> Runtime:
    """Give the job functions their settings, Redis connection and targets; with ``threads``, a
    pool of delivery threads (the worker's), else deliveries run inline in the job."""
    global _runtime
    connection = connection or connect(settings)
    queue = delivery_queue(settings, connection)
    _runtime = Runtime(
        settings=settings,
        redis=connection,
        queue=queue,
        store=Store(connection, settings.dedup_ttl),
        targets=build_targets(settings),
        limiter=RateLimiter(connection),
        ingest=Ingest(settings, connection, queue),
        watchlist=Watchlist(connection, queue, settings.dedup_ttl),
        suno=SunoClient(settings.suno_api_base, settings.suno_api_key, timeout=settings.http_timeout),
        pool=DeliveryPool(threads) if threads else None,
    )
    return _runtime


class DeliveryPool:
    """The worker's delivery threads. Posting is waiting on the network, so one worker process
    keeps many deliveries under way, and a slow target holds one thread, not the worker."""

    def __init__(self, size: int) -> None:
        self.slots = threading.BoundedSemaphore(size)
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="delivery")

    def submit(self, function: Callable[..., object], *args: object) -> None:
        self.slots.acquire()  # back-pressure: the dispatching job waits for a free thread
        future = self.executor.submit(function, *args)
        future.add_done_callback(lambda _: self.slots.release())

    def shutdown(self) -> None:
        """Let every delivery under way finish (each is bounded by the HTTP timeouts)."""
        self.executor.shutdown(wait=True)


def dispatch(event_id: str, targets: list[str], attempt: int = 1, force: bool = False) -> str:
    """RQ entry point: deliver an event to ``targets``, each on its own.

    In the worker, each target goes to a delivery thread and the job returns at once. Each is
    first marked in flight, so that if this process dies before a thread has taken it, the
    sweeper hands it on (see relay.sweeper).
    """
    rt = runtime()
    event = rt.store.load_event(event_id)
    if rt.pool is None or event is None:
        return "; ".join(f"{target}: {deliver(event_id, target, attempt, force, event)}" for target in targets)
    rt.store.enter_inflight(event_id, targets, time.time() + lock_seconds(rt.settings))
    for target in targets:
        rt.pool.submit(_deliver_in_thread, event, target, attempt, force)
    return f"handed to delivery threads: {', '.join(targets)}"


def _deliver_in_thread(event: Event, target: str, attempt: int, force: bool) -> None:
    try:
        deliver(event.id, target, attempt, force, event)
    except Exception:
        # The in-flight mark stays: the sweeper queues this delivery again once it expires.
        log.exception("delivery failed unexpectedly", extra={"event_id": event.id, "target": target})


def runtime() -> Runtime:
    return _runtime or configure(Settings.from_env())


def backoff_delay(settings: Settings, attempt: int) -> float:
    """Delay before attempt ``attempt + 1``: the ``RELAY_BACKOFF`` schedule, ±20 % jitter."""
    schedule = settings.backoff
    base = schedule[min(attempt, len(schedule)) - 1]
    return base * random.uniform(0.8, 1.2)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _since(rfc3339: str) -> float:
    return max(0.0, time.time() - datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


def lock_seconds(settings: Settings) -> float:
    """How long one worker may hold a delivery without renewing: one message's worst case
    (connect + read timeouts, or a pacing wait) and a margin, no more, so that the lock of a
    killed worker frees itself soon and the sweeper can hand the delivery to another."""
    return MAX_PACING_SLEEP + min(5.0, settings.http_timeout) + settings.http_timeout + 3


def deliver(event_id: str, target_name: str, attempt: int = 1, force: bool = False, event: Event | None = None) -> str:
    """Post one event to one target; returns what happened (kept by RQ only on failure)."""
    rt = runtime()
    context = {"event_id": event_id, "target": target_name, "attempt": attempt}
    event = event or rt.store.load_event(event_id)
    if event is None:
        log.warning("event expired before delivery", extra=context)
        return "expired"
    context["task_id"] = event.task_id
    target = rt.targets.get(target_name)
    if target is None:
        state = rt.store.delivery(event_id, target_name)
        state.state, state.reason = DEAD, "target is not configured on this worker"
        rt.store.mark_dead(event_id, target_name, state, time.time())
        log.error("dead", extra={**context, "reason": state.reason})
        return "dead"

    token = uuid.uuid4().hex
    # The lock, read together with the state: a job that held it before us may have delivered.
    state = rt.store.lock_and_read(event_id, target_name, token, lock_seconds(rt.settings))
    if state is None:
        # Another job is posting this delivery right now; look again once its lock must be gone.
        remaining = max(rt.redis.pttl(lock_key(event_id, target_name)), 0) / 1000
        enqueue_delivery(rt.queue, event_id, [target_name], attempt=attempt, force=force, delay=remaining + 1)
        return "busy"
    settled = False
    try:
        if state.state == DELIVERED and not force:
            settled = True
            log.info("already delivered", extra=context)
            return "already delivered"
        if force and state.state == DELIVERED:
            state.parts_sent = 0
        outcome, sent = _post(rt, target, event, state, attempt, token)
        context["duration_ms"] = round(sent * 1000, 1)
        result = _settle(rt, target, event, state, attempt, outcome, context)
        settled = True
        return result
    finally:
        # After an unexpected error the in-flight mark stays, so that the sweeper hands the
        # delivery on: nothing acknowledged is left behind by a crash.
        rt.store.unlock(event_id, target_name, token, done=settled)


def _post(
    rt: Runtime, target: Target, event: Event, state: DeliveryState, attempt: int, token: str
) -> tuple[Outcome, float]:
    """Post the messages the target has not accepted yet, recording each one it accepts.

    Before each message, one round trip: the state (first message only), the lock's renewal
    (later ones), the in-flight mark and the rate-limit booking."""
    messages = target.render(event)
    state.state, state.attempt, state.next_at = SENDING, attempt, None
    started = time.monotonic()
    outcome = Outcome(ok=True, reason="nothing left to send")
    first = state.parts_sent
    for index in range(first, len(messages)):
        ttl = lock_seconds(rt.settings)
        with rt.redis.pipeline(transaction=False) as pipe:
            if index == first:
                rt.store.save_delivery(event.id, target.name, state, pipeline=pipe)
            else:
                rt.store.renew_lock(event.id, target.name, token, ttl, pipeline=pipe)
            rt.store.enter_inflight(event.id, [target.name], time.time() + ttl, pipeline=pipe)
            rt.limiter.reserve(target.name, *target.spec.rate, pipeline=pipe)
            results = pipe.execute()
        if index != first and not results[0]:
            raise LockLost(f"lock of {event.id}/{target.name} expired")  # another worker owns it now
        wait = int(results[-1]) / 1000
        if wait > MAX_PACING_SLEEP:
            return Outcome(ok=False, reason="paced by rate limit", retry_after=wait, paced=True), 0.0
        time.sleep(wait)
        outcome = target.send(messages[index], event)
        if not outcome.ok:
            break
        state.parts_sent = index + 1
        if index + 1 < len(messages):  # the last one is recorded with the delivered state
            rt.store.save_delivery(event.id, target.name, state)
    return outcome, time.monotonic() - started


def _settle(
    rt: Runtime, target: Target, event: Event, state: DeliveryState, attempt: int, outcome: Outcome, context: dict
) -> str:
    """Record the attempt's result: delivered, dead, or retrying at the right time."""
    store = rt.store
    if outcome.ok:
        state.state, state.reason = DELIVERED, ""
        with rt.redis.pipeline(transaction=False) as pipe:
            store.save_delivery(event.id, target.name, state, pipeline=pipe)
            store.forget_dead(event.id, target.name, pipeline=pipe)
            record_delivery(pipe, target.name, "delivered", _since(event.received_at))
            pipe.execute()
        log.info("delivered", extra={**context, "messages": state.parts_sent})
        return "delivered"

    state.reason = outcome.reason
    if outcome.permanent or (attempt >= rt.settings.max_attempts and not outcome.paced):
        state.state = DEAD
        store.mark_dead(event.id, target.name, state, time.time())
        record_delivery(rt.redis, target.name, "dead")
        if outcome.status == 400 or "invalid_payload" in outcome.reason:
            context["note"] = "the target rejected our payload: a relay bug, please report it with this line"
        log.error("dead", extra={**context, "reason": outcome.reason})
        return f"dead: {outcome.reason}"

    delay = backoff_delay(rt.settings, attempt)
    if outcome.paced or outcome.status == 429:
        # Not a failure of the target: come back when asked (never sooner), not on the backoff.
        delay = (outcome.retry_after if outcome.retry_after is not None else delay) + random.uniform(0.05, 0.25)
    elif outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    next_attempt = attempt if outcome.paced else attempt + 1
    state.state, state.next_at = RETRYING, _iso(time.time() + delay)
    store.save_delivery(event.id, target.name, state)
    enqueue_delivery(rt.queue, event.id, [target.name], attempt=next_attempt, delay=delay)
    record_delivery(rt.redis, target.name, "paced" if outcome.paced else "retrying")
    extra = {**context, "reason": outcome.reason, "next_attempt": next_attempt, "delay_s": round(delay, 2)}
    log.log(logging.INFO if outcome.paced else logging.WARNING, "retrying", extra=extra)
    return f"retrying in {delay:.1f}s: {outcome.reason}"


# Polling (see relay.watch): one scheduled job per watched task, rescheduling itself.
PROVIDER_COOLDOWN = "relay:suno:cooldown"
PROVIDER_ERRORS = "relay:suno:errors"
MAX_PROVIDER_BACKOFF = 600.0


def poll(task_id: str) -> str:
    """Ask the provider for a watched task's result; deliver it, or look again later."""
    rt = runtime()
    watch = rt.watchlist.get(task_id)
    context = {"task_id": task_id}
    if watch is None:
        return "not watched"  # its result arrived, or it was never watched
    if rt.store.event_ids(task_id):
        rt.watchlist.remove(task_id)
        return "already received"
    now = time.time()
    if now >= watch.deadline:
        rt.ingest(timed_out(task_id, now - watch.since, watch.last_error))
        log.warning("poll deadline passed", extra={**context, "last_error": watch.last_error})
        return "timed out"
    cooldown = rt.redis.pttl(PROVIDER_COOLDOWN)
    if cooldown > 0:  # the provider asked everyone to slow down
        rt.watchlist.schedule(task_id, cooldown / 1000 + random.uniform(0, 2))
        return "provider cooling down"
    wait = rt.limiter.reserve("suno-api", *rt.settings.poll_rate)
    if wait > MAX_PACING_SLEEP:
        rt.watchlist.schedule(task_id, wait)
        return "paced"
    time.sleep(wait)
    try:
        event = from_record(rt.suno.record_info(task_id), task_id)
    except (SunoAPIError, PayloadError) as exc:
        return _poll_failed(rt, task_id, exc, context)
    rt.redis.delete(PROVIDER_ERRORS)
    if event is None:
        rt.watchlist.schedule(task_id, rt.settings.poll_interval)
        return "pending"
    fresh = rt.ingest(event)  # the same door as callbacks: a task both polled and called back is sent once
    rt.watchlist.remove(task_id)
    log.info("polled", extra={**context, "event_id": event.id, "type": event.type, "fresh": fresh})
    return "received" if fresh else "duplicate"


def _poll_failed(rt: Runtime, task_id: str, exc: Exception, context: dict) -> str:
    rt.watchlist.note_error(task_id, str(exc))
    delay = rt.settings.poll_interval
    if getattr(exc, "retryable", False):
        # Rate limited, maintenance or a server error: every poller backs off, doubling each time.
        errors = rt.redis.incr(PROVIDER_ERRORS)
        rt.redis.expire(PROVIDER_ERRORS, int(MAX_PROVIDER_BACKOFF * 2))
        delay = min(rt.settings.poll_interval * 2 ** (errors - 1), MAX_PROVIDER_BACKOFF)
        rt.redis.set(PROVIDER_COOLDOWN, 1, px=int(delay * 1000))
    rt.watchlist.schedule(task_id, delay)
    log.warning("poll failed", extra={**context, "reason": str(exc), "next_poll_s": round(delay, 1)})
    return f"poll failed: {exc}"
