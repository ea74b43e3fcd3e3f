"""The door: deduplicate, store and enqueue a callback's event in one atomic step."""

from __future__ import annotations

import time
from typing import Any

import redis
import rq

from relay.config import Settings
from relay.delivery.queue import dispatch_writes
from relay.polling.watchlist import WATCHLIST, watch_key
from relay.store import activity
from relay.store.connection import NotReplicated, wait_for_replicas
from relay.store.outage import is_outage
from relay.store.scripts import REPLAY, Recorder, pack
from relay.store.state import DeliveryState, deliveries_key, event_key, task_key
from relay.suno import PROGRESS_TYPES, Event

QUEUED_STATE = DeliveryState().to_json()

# SET the dedup record (the event itself) if absent, and only then run the recorded writes. A
# script runs atomically: no other client sees a dedup record without its work, or the reverse.
# New events and repeats are counted for the operator's page (KEYS[2], the current stats bucket,
# kept ARGV[4] seconds): this repeat, and those answered from memory since (ARGV[3]).
_STORE_IF_NEW = (
    REPLAY
    + """
local repeats = tonumber(ARGV[3])
local stored = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if not stored then repeats = repeats + 1 end
if repeats > 0 then redis.call('HINCRBY', KEYS[2], 'duplicate', repeats) end
if stored then redis.call('HINCRBY', KEYS[2], 'received', 1) end
redis.call('EXPIRE', KEYS[2], ARGV[4])
if not stored then return 0 end
replay(5)
return 1
"""
)
# Event ids this process has seen Redis confirm, answered as repeats without Redis for a while.
CONFIRMED_FOR = 60.0
CONFIRMED_MAX = 50_000


class Ingest:
    """``ingest(event)`` → True the first time an event is seen, False for a repeat.

    The event key is the dedup record. The event, its delivery states and its RQ delivery job
    are written by one Lua script, and only if the event key was absent: a Redis error leaves
    all of them or none (the caller then answers 503 and Suno retries), and of concurrent
    identical callbacks exactly one wins. The writes are recorded (:class:`relay.store.scripts.Recorder`)
    and replayed inside the script; the job's are RQ's, built directly (``dispatch_writes``). A
    new event costs one round trip; a repeat too, unless this process saw Redis confirm that
    event id in the last :data:`CONFIRMED_FOR` seconds: then it is answered from memory (bounded
    to :data:`CONFIRMED_MAX` ids). After a manual flush of Redis, such a repeat is still answered
    "duplicate" for up to a minute by a process that had confirmed it.
    """

    def __init__(self, settings: Settings, connection: redis.Redis, queue: rq.Queue) -> None:
        self.settings = settings
        self.redis = connection
        self.queue = queue
        self.store_if_new = connection.register_script(_STORE_IF_NEW)
        self.confirmed: dict[str, float] = {}  # event id → until when (monotonic); oldest first
        self.repeats = 0  # answered from memory, not yet counted in Redis

    def __call__(self, event: Event, source: str = "callback") -> bool:
        """``source``: how the event came (callback, poll), for its timeline."""
        until = self.confirmed.get(event.id)
        if until is not None and until > time.monotonic():
            self.repeats += 1
            return False
        key = event_key(event.id)
        stats = activity.stats_key(int(time.time() // activity.BUCKET))
        ttl = self.settings.dedup_ttl
        repeats, self.repeats = self.repeats, 0
        recorder = Recorder()  # type: ignore[abstract]  # redis-py types its commands for a client; this one records
        self._writes(recorder, event, ttl, source)
        writes = pack(recorder.commands)
        try:
            args = [event.to_json(), ttl, repeats, activity.STATS_TTL, *writes]
            if self.settings.ack_replicas <= 0:
                fresh = bool(self.store_if_new(keys=[key, stats], args=args))
            else:
                fresh = self._store_replicated([key, stats], args)
        except redis.ResponseError as exc:
            self.repeats += repeats
            if not is_outage(exc):
                # A write after the SET failed and Redis has no rollback: drop the dedup record, so
                # that Suno's retry is not taken for a duplicate. (Out of memory fails before any write.)
                self.redis.delete(key)
            raise
        except redis.RedisError:
            self.repeats += repeats
            raise
        self._confirm(event.id)
        return fresh

    def _store_replicated(self, keys: list[str], args: list[Any]) -> bool:
        """The store step, then ``WAIT`` on the same connection: "received" means the callback is
        on RELAY_ACK_REPLICAS replicas too, so a failover cannot lose it. Not confirmed in time:
        NotReplicated (503; it is on the primary, so Suno's retry is a duplicate)."""
        with self.redis.pipeline(transaction=False) as pipe:
            self.store_if_new(keys=keys, args=args, client=pipe)
            wait_for_replicas(pipe, self.settings)
            fresh, confirmed = pipe.execute()
        if int(confirmed) < self.settings.ack_replicas:
            raise NotReplicated(f"{confirmed} of {self.settings.ack_replicas} replicas confirmed in time")
        return bool(fresh)

    def _confirm(self, event_id: str) -> None:
        self.confirmed.pop(event_id, None)
        self.confirmed[event_id] = time.monotonic() + CONFIRMED_FOR
        while len(self.confirmed) > CONFIRMED_MAX:
            self.confirmed.pop(next(iter(self.confirmed)))

    def _writes(self, pipe: Any, event: Event, ttl: int, source: str) -> None:
        """The writes of a new event, on ``pipe`` (a recorder: nothing is sent)."""
        # An alert about a target is never sent to that target.
        subject = event.subject
        targets = [spec.name for spec in self.settings.targets if spec.wants(event.type) and spec.name != subject]
        activity.received(pipe, event.id, event.task_id, source, targets, ttl)
        pipe.sadd(task_key(event.task_id), event.id)
        pipe.expire(task_key(event.task_id), ttl)
        if targets:
            pipe.hset(deliveries_key(event.id), mapping=dict.fromkeys(targets, QUEUED_STATE))
            pipe.expire(deliveries_key(event.id), ttl)
            # RQ's enqueue, built directly
            pipe.commands.extend(dispatch_writes(self.queue, event.id, targets, event.task_id))
        # A result, by callback or by poll, ends the task's watch (a music task's progress does not).
        if event.type not in PROGRESS_TYPES:
            pipe.zrem(WATCHLIST, event.task_id)
            pipe.delete(watch_key(event.task_id))
