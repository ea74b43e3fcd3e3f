"""The worker's delivery threads, with a bulkhead per target (see :class:`DeliveryPool`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from relay.store.keys import INFLIGHT


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

        def done(_future: object) -> None:
            begun.set()
            self._done(target)

        future.add_done_callback(done)

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
