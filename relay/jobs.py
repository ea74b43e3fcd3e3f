"""RQ entry points: the worker's runtime, and the jobs it runs.

- :func:`dispatch`: an event's delivery job. It hands each target to a delivery thread (the
  worker's pool), each delivery then runs on its own (:mod:`relay.delivery`).
- :func:`poll`: a watched task's poll (:mod:`relay.polling`).

The worker calls :func:`configure` once at start (see ``relay.cli worker``); a plain
``rq worker`` gets the same from the environment on its first job.

Delivery guarantees, per (event, target):

- at most once: the target's accepted messages are recorded in Redis before the delivery ends
  (through a Redis outage too: the worker keeps the result and records it once Redis answers),
  and a job that finds its target already delivered does nothing (unless forced by a replay); a
  lock keeps two jobs from posting the same delivery at the same time, and a thread that lost
  its lock records nothing;
- at least once overall: a failed attempt is scheduled again (backoff, or the target's
  ``Retry-After``); a delivery whose worker died mid-post is handed on by the sweeper
  (:mod:`relay.sweeper`) once its lock expires, and a job whose worker died before posting is
  re-run by RQ; what is out of attempts or refused for good lands in the dead letters, from
  which it can be replayed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
import rq

from relay import polling
from relay.config import Settings
from relay.connection import connect
from relay.delivery import Context, Delivery, dead_letter, lock_seconds
from relay.ingest import Ingest
from relay.outage import OUTAGE
from relay.queue import CRASH_RETRY, Batches, delivery_queue, enqueue_delivery
from relay.ratelimit import RateLimiter
from relay.store import INFLIGHT, Store
from relay.suno import Event
from relay.suno_api import SunoClient
from relay.targets import Target, build_targets
from relay.watch import Watchlist

log = logging.getLogger("relay.jobs")


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
    context: Context
    batches: Batches
    pool: DeliveryPool | None = None


_runtime: Runtime | None = None


def configure(settings: Settings, connection: redis.Redis | None = None, threads: int = 0) -> Runtime:
    """Give the job functions their settings, Redis connection and targets; with ``threads``, a
    pool of delivery threads (the worker's), else deliveries run inline in the job.

    ``connection`` is the jobs' own: RQ raises the socket timeout of the connection its worker
    loop uses (for its long blocking pops), so the worker passes another one."""
    global _runtime
    connection = connection or connect(settings)
    queue = delivery_queue(settings, connection)
    targets = build_targets(settings)
    _runtime = Runtime(
        settings=settings,
        redis=connection,
        queue=queue,
        store=Store(connection, settings.dedup_ttl),
        targets=targets,
        limiter=RateLimiter(connection),
        ingest=Ingest(settings, connection, queue),
        watchlist=Watchlist(connection, queue, settings.dedup_ttl),
        suno=SunoClient(settings.suno_api_base, settings.suno_api_key, timeout=settings.http_timeout),
        context=Context(settings, connection, queue),
        batches=Batches(queue),
        pool=DeliveryPool(threads, len(targets), connection, lock_seconds(settings)) if threads else None,
    )
    return _runtime


class DeliveryPool:
    """The worker's delivery threads. Posting is waiting on the network, so one worker process
    keeps many deliveries under way, and a slow target holds one thread, not the worker.

    A bulkhead: each target has at most ``per_target`` of the threads (``max(2, size / targets)``).
    A delivery past its target's share waits in memory, holding no thread, and starts on the
    thread its target's previous delivery frees; meanwhile it holds a lease in ``relay:inflight``
    (renewed by the sweeper through :meth:`renew`), so that if this worker dies the sweeper of
    another hands it on. The dispatching job waits for a free thread only for a delivery that can
    start now (back-pressure: work stays in Redis while every thread is busy)."""

    def __init__(self, size: int, targets: int = 1, redis: redis.Redis | None = None, lease: float = 60.0) -> None:
        self.size = size
        self.per_target = max(2, size // max(1, targets))
        self.slots = threading.BoundedSemaphore(size)
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="delivery")
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.waiting: dict[str, deque[tuple[Callable[..., object], tuple[object, ...], str]]] = {}
        self.redis, self.lease = redis, lease
        self.stopping = False

    def submit(self, target: str, member: str, function: Callable[..., object], *args: object) -> threading.Event:
        """Run ``function(*args, begun)`` for ``target`` on a delivery thread, or hold it until
        the target has a thread free. The returned event is set once the delivery has begun
        (``begun()`` called), the thread has ended, or the delivery is held under its lease."""
        begun = threading.Event()
        with self.lock:
            if self.running.get(target, 0) >= self.per_target:
                queue = self.waiting.setdefault(target, deque())
                if all(held != member for _f, _a, held in queue):  # the same delivery twice: once
                    queue.append((function, args, member))
                held = True
            else:
                self.running[target] = self.running.get(target, 0) + 1
                held = False
        if held:
            if self.redis is not None:  # NX: never shorten the lock-bound mark of a delivery under way
                self.redis.zadd(INFLIGHT, {member: time.time() + self.lease}, nx=True)
            begun.set()
            return begun
        self.slots.acquire()  # back-pressure: the dispatching job waits for a free thread
        self._start(target, function, args, begun)
        return begun

    def _start(
        self, target: str, function: Callable[..., object], args: tuple[object, ...], begun: threading.Event
    ) -> None:
        future = self.executor.submit(function, *args, begun.set)
        future.add_done_callback(lambda _: (begun.set(), self._done(target)))

    def _done(self, target: str) -> None:
        """A thread of ``target`` is free: its next held delivery takes it, else it goes back."""
        with self.lock:
            queue = self.waiting.get(target)
            follow = queue.popleft() if queue and not self.stopping else None
            if follow is None:
                self.running[target] -= 1
        if follow is None:
            self.slots.release()
            return
        function, args, _member = follow
        self._start(target, function, args, threading.Event())

    def held(self) -> list[str]:
        with self.lock:
            return [member for queue in self.waiting.values() for _f, _a, member in queue]

    def renew(self) -> None:
        """Extend the leases of the held deliveries (the sweeper's tick): XX, a delivery that
        began meanwhile keeps its own mark."""
        members = self.held()
        if members and self.redis is not None:
            until = time.time() + self.lease
            self.redis.zadd(INFLIGHT, dict.fromkeys(members, until), xx=True, gt=True)

    def shutdown(self) -> None:
        """Let every delivery under way finish its message in flight (bounded by the POST
        deadline), and hand the held ones and the rest back."""
        with self.lock:
            self.stopping = True
            held = [item for queue in self.waiting.values() for item in queue]
            self.waiting.clear()
        for function, args, _member in held:
            function(*args, lambda: None)  # shutting down: deliver() queues it again at once
        self.executor.shutdown(wait=True)


def runtime() -> Runtime:
    return _runtime or configure(Settings.from_env())


def dispatch(event_id: str, targets: list[str], attempt: int = 1, force: bool = False, booked: bool = False) -> str:
    """RQ entry point: deliver an event to ``targets``, each on its own.

    In the worker, each target goes to a delivery thread, whose first step (``begin``: one round
    trip that also reads the event) marks it in flight; the job returns once every thread has
    begun. So the job itself makes no round trip, and a worker that dies before a delivery began
    leaves a job RQ runs again; after, the in-flight mark lets the sweeper hand it on.

    A job that waited in the queue (a burst) also takes up to 16 queued first attempts along
    (:class:`relay.queue.Batches`), held under its id until they have begun (handing them over
    waits for free threads, as its own targets do): a job RQ runs again after its worker died
    starts them again.
    """
    rt = runtime()
    if rt.pool is None:  # inline (tests, one-off runs)
        event = rt.store.load_event(event_id)
        return "; ".join(f"{target}: {deliver(event_id, target, attempt, force, event, booked)}" for target in targets)
    pool = rt.pool
    started = [
        pool.submit(target, f"{event_id}/{target}", _deliver_in_thread, event_id, target, attempt, force, booked)
        for target in targets
    ]
    job = rq.get_current_job()
    taken: list[tuple[str, list[str], str]] = []
    if job is not None:
        rerun = job.retries_left is not None and job.retries_left < CRASH_RETRY.max
        room = Batches.MAX if _waited(job) else 0
        if rerun or room > 0:
            taken = OUTAGE.call(lambda: rt.batches.claim(job.id, room))
    for other, its_targets, _task in taken:
        started += [
            pool.submit(target, f"{other}/{target}", _deliver_in_thread, other, target, 1, False, False)
            for target in its_targets
        ]
    for begun in started:
        begun.wait(lock_seconds(rt.settings))
    if taken:
        OUTAGE.call(lambda: rt.batches.release(job.id))
        return f"handed to delivery threads: {', '.join(targets)}, and {len(taken)} more events"
    return f"handed to delivery threads: {', '.join(targets)}"


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


def _requeue(rt: Runtime, event_id: str, target: str, attempt: int, force: bool, booked: bool) -> None:
    with rt.redis.pipeline() as pipe:
        enqueue_delivery(rt.queue, event_id, [target], attempt=attempt, force=force, booked=booked, pipeline=pipe)
        pipe.zrem(INFLIGHT, f"{event_id}/{target}")
        pipe.execute()


def poll(task_id: str) -> str:
    """RQ entry point: poll a watched task (see relay.polling)."""
    return polling.poll(runtime(), task_id)
