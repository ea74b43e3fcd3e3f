"""Hands on deliveries whose worker died mid-post (SIGKILL, a crashed dyno).

A worker posting a message keeps the delivery in ``relay:inflight``, scored by when its lock runs
out (:func:`relay.jobs.lock_seconds`, renewed per message). Every worker runs a sweeper thread:
an entry past its time whose lock is gone was abandoned, and is queued again; the new job resumes
after the last message the target accepted. RQ's own abandoned-job handling (heartbeat expiry,
about 70 s) stays as the second net, for a job killed before it started posting.

The same thread queues a poll for any watched task whose poll job was lost (see relay.watch).
"""

from __future__ import annotations

import logging
import threading
import time

import rq

from relay.queue import enqueue_delivery
from relay.store import DEAD, Store
from relay.watch import Watchlist

log = logging.getLogger("relay.sweeper")
SWEEP_INTERVAL = 5.0


MAX_SWEEPS = 5  # a delivery that keeps crashing its worker is a bug: dead-letter it, loudly


def sweep(store: Store, queue: rq.Queue, now: float | None = None) -> int:
    """Queue every abandoned delivery once; returns how many."""
    handed_on = 0
    for event_id, target in store.abandoned(time.time() if now is None else now):
        if not store.claim_abandoned(event_id, target):
            continue
        context = {"event_id": event_id, "target": target}
        state = store.delivery(event_id, target)
        sweeps_key = f"relay:sweeps:{event_id}/{target}"
        sweeps = store.redis.incr(sweeps_key)
        store.redis.expire(sweeps_key, 86400)
        if sweeps > MAX_SWEEPS:
            state.state, state.reason = DEAD, f"abandoned {MAX_SWEEPS} times: the worker crashed or died on it"
            store.mark_dead(event_id, target, state, time.time())
            log.error("dead", extra={**context, "reason": state.reason})
            continue
        enqueue_delivery(queue, event_id, [target], attempt=max(state.attempt, 1))
        log.warning("abandoned delivery queued again", extra=context)
        handed_on += 1
    return handed_on


class Sweeper(threading.Thread):
    def __init__(
        self,
        store: Store,
        queue: rq.Queue,
        watchlist: Watchlist,
        poll_interval: float,
        interval: float = SWEEP_INTERVAL,
    ) -> None:
        super().__init__(name="relay-sweeper", daemon=True)
        self.store, self.queue, self.watchlist = store, queue, watchlist
        self.poll_interval, self.interval = poll_interval, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                sweep(self.store, self.queue)
                for task_id in self.watchlist.requeue_overdue(self.poll_interval):
                    log.warning("lost poll queued again", extra={"task_id": task_id})
            except Exception:  # Redis away for a moment: the next round tries again
                log.warning("sweep failed", exc_info=True)
