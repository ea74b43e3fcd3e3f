"""The worker's delivery threads, with a bulkhead per target (see :class:`DeliveryPool`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# A delivery in flight this long makes its target slow, once the target has its share of threads.
SLOW_AFTER = 1.0


class DeliveryPool:
    """The worker's delivery threads. Posting is waiting on the network, so one worker process
    keeps many deliveries under way, and a slow target holds one thread, not the worker.

    A bulkhead: a target whose ``per_target`` deliveries in flight (``max(2, size / targets)``)
    include one under way for more than :data:`SLOW_AFTER` is slow, and :meth:`submit` refuses its
    further deliveries (it returns None) — a fast target's burst is never refused: the caller hands
    it back to Redis, a job due a moment later, so it waits holding no thread and nothing of it
    lives only in this process's memory. The dispatching job waits for a free thread only for a
    delivery that can start now (back-pressure: work stays in Redis while every thread is busy)."""

    def __init__(self, size: int, targets: int = 1) -> None:
        self.size = size
        self.per_target = max(2, size // max(1, targets))
        self.slots = threading.BoundedSemaphore(size)
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="delivery")
        self.lock = threading.Lock()
        self.running: dict[str, list[float]] = {}  # target → start times of its deliveries in flight

    def submit(self, target: str, function: Callable[..., object], *args: object) -> threading.Event | None:
        """Run ``function(*args, begun)`` for ``target`` on a delivery thread; the returned event
        is set once the delivery has begun (``begun()`` called) or the thread has ended. None:
        the target has its share of the threads busy."""
        now = time.monotonic()
        with self.lock:
            started = self.running.setdefault(target, [])
            if len(started) >= self.per_target and now - min(started) > SLOW_AFTER:
                return None
            started.append(now)
        self.slots.acquire()  # back-pressure: the dispatching job waits for a free thread
        begun = threading.Event()
        future = self.executor.submit(function, *args, begun.set)

        def done(_future: object) -> None:
            begun.set()
            with self.lock:
                self.running[target].remove(now)
            self.slots.release()

        future.add_done_callback(done)
        return begun

    def shutdown(self) -> None:
        """Let every delivery under way finish its message in flight (bounded by the POST
        deadline) and hand the rest back."""
        self.executor.shutdown(wait=True)
