"""Hands on deliveries whose worker died mid-post (SIGKILL, a crashed dyno).

A worker posting a message keeps the delivery in ``relay:inflight``, scored by when its lock runs
out (:func:`relay.delivery.attempt.lock_seconds`, renewed per message). Every worker runs a sweeper thread:
an entry past its time whose lock is gone was abandoned, and is queued again; the new job resumes
after the last message the target accepted. RQ's own abandoned-job handling (heartbeat expiry,
about 70 s) stays as the second net, for a job killed before it started posting.

Every half ``RELAY_RECONCILE_AFTER`` (at most 30 s) one worker's sweeper also queues again the
pending deliveries whose job was lost altogether (:mod:`relay.worker.reconcile`).

The same thread, every worker's, moves due scheduled jobs onto the queue a few times a second
(:class:`relay.delivery.queue.DueJobs`), records the worker's heartbeat (``relay:workers``, read by
``check`` and ``/readyz``), and queues a poll for any watched task whose poll job was lost (see
relay.watch). Through a Redis outage it waits, logging once (relay.store.outage).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
import rq

from relay.delivery.attempt import dead_letter
from relay.delivery.breaker import Breakers
from relay.delivery.queue import DueJobs, enqueue_delivery
from relay.polling.watchlist import Watchlist
from relay.store import activity
from relay.store.keys import sweeps_key
from relay.store.outage import OUTAGE, is_outage
from relay.store.state import Store
from relay.worker.reconcile import due_to_run, reconcile

log = logging.getLogger("relay.sweeper")
SWEEP_INTERVAL = 5.0
TICK = 0.2  # due jobs run at most this late
BEAT_INTERVAL = 1.0  # the worker's heartbeat; see store.WORKER_SILENCE


MAX_SWEEPS = 5  # a delivery that keeps crashing its worker is a bug: dead-letter it, loudly


def sweep(store: Store, queue: rq.Queue, now: float | None = None) -> int:
    """Queue every abandoned delivery once; returns how many."""
    handed_on = 0
    for event_id, target in store.abandoned(time.time() if now is None else now):
        if not store.claim_abandoned(event_id, target):
            continue
        context = {"event_id": event_id, "target": target}
        state = store.delivery(event_id, target)
        sweeps = store.redis.incr(sweeps_key(event_id, target))
        store.redis.expire(sweeps_key(event_id, target), 86400)
        if sweeps > MAX_SWEEPS:
            last = f" (last error: {state.reason})" if state.reason else ""
            reason = f"abandoned {MAX_SWEEPS} times: the worker crashed or died on it{last}"
            dead_letter(store.redis, store.ttl, event_id, target, reason)
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
        worker_name: str,
        interval: float = SWEEP_INTERVAL,
        targets: list[str] | None = None,
        reconcile_after: float = 60.0,
        breakers: Breakers | None = None,
    ) -> None:
        super().__init__(name="relay-sweeper", daemon=True)
        self.store, self.queue, self.watchlist = store, queue, watchlist
        self.poll_interval, self.interval, self.worker_name = poll_interval, interval, worker_name
        self.due = DueJobs(queue)
        self.targets = targets or []
        self.reconcile_after = reconcile_after
        self.reconcile_every = min(30.0, reconcile_after / 2)  # a loss is seen within 1.5 × RELAY_RECONCILE_AFTER
        self.breakers = breakers
        self.stopped = threading.Event()

    def run(self) -> None:
        next_sweep = next_beat = 0.0
        next_reconcile = time.monotonic() + self.reconcile_every
        while not self.stopped.wait(TICK):
            try:
                self.due.enqueue()
                if self.breakers is not None:
                    self.breakers.tick()  # probes and releases that are due
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + BEAT_INTERVAL
                    self.store.beat(self.worker_name)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.interval
                    sweep(self.store, self.queue)
                    activity.trim(self.store.redis, self.targets, self.store.ttl)
                    if self.breakers is not None:
                        self.breakers.give_up()  # held longer than RELAY_BREAKER_GIVE_UP
                    for task_id in self.watchlist.requeue_overdue(self.poll_interval):
                        log.warning("lost poll queued again", extra={"task_id": task_id})
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + self.reconcile_every
                    if due_to_run(self.store, self.worker_name, self.reconcile_every):
                        reconcile(self.store, self.queue, self.targets, self.reconcile_after)
                OUTAGE.up()
            except redis.RedisError as exc:
                if not is_outage(exc):
                    log.warning("sweep failed", exc_info=True)
                    continue
                OUTAGE.down(exc)
                self.stopped.wait(1.0)
            except Exception:  # a bug must not stop the worker's clock
                log.warning("sweep failed", exc_info=True)
