"""The door: deduplicate, store and enqueue a callback's event in one atomic step."""

from __future__ import annotations

import time

import redis
import rq

from relay import activity
from relay.config import Settings
from relay.queue import enqueue_delivery
from relay.scripts import REPLAY, pack, record
from relay.store import DeliveryState, deliveries_key, event_key, task_key
from relay.suno import PROGRESS_TYPES, Event
from relay.watch import WATCHLIST, watch_key

QUEUED_STATE = DeliveryState().to_json()

# SET the dedup record (the event itself) if absent, and only then run the recorded writes. A
# script runs atomically: no other client sees a dedup record without its work, or the reverse.
# A repeat: counted for the operator's page, in the same round trip as the check.
_IS_REPEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'duplicate', 1)
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""
_STORE_IF_NEW = (
    REPLAY
    + """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
replay(3)
return 1
"""
)


class Ingest:
    """``ingest(event)`` → True the first time an event is seen, False for a repeat.

    The event key is the dedup record. The event, its delivery states and its RQ delivery job
    are written by one Lua script, and only if the event key was absent: a Redis error leaves
    all of them or none (the caller then answers 503 and Suno retries), and of concurrent
    identical callbacks exactly one wins. The job's own writes are RQ's: they are recorded on a
    pipeline that is never sent, and replayed inside the script. A repeat costs one round trip
    (EXISTS), a new event two.
    """

    def __init__(self, settings: Settings, connection: redis.Redis, queue: rq.Queue) -> None:
        self.settings = settings
        self.redis = connection
        self.queue = queue
        self.store_if_new = connection.register_script(_STORE_IF_NEW)
        self.is_repeat = connection.register_script(_IS_REPEAT)

    def __call__(self, event: Event, source: str = "callback") -> bool:
        """``source``: how the event came (callback, poll), for its timeline."""
        key = event_key(event.id)
        stats = activity.stats_key(int(time.time() // activity.BUCKET))
        if self.is_repeat(keys=[key, stats], args=[86400 + activity.BUCKET]):
            return False
        ttl = self.settings.dedup_ttl
        args = [event.to_json(), ttl, *pack(record(self.redis, lambda pipe: self._writes(pipe, event, ttl, source)))]
        try:
            return bool(self.store_if_new(keys=[key], args=args))
        except redis.ResponseError:
            # A write after the SET failed and Redis has no rollback: drop the dedup record, so
            # that Suno's retry is not taken for a duplicate. (Out of memory fails before any write.)
            self.redis.delete(key)
            raise

    def _writes(self, pipe: redis.client.Pipeline, event: Event, ttl: int, source: str) -> None:
        targets = [spec.name for spec in self.settings.targets if spec.wants(event.type)]
        activity.received(pipe, event.id, event.task_id, source, targets, ttl)
        pipe.sadd(task_key(event.task_id), event.id)
        pipe.expire(task_key(event.task_id), ttl)
        if targets:
            pipe.hset(deliveries_key(event.id), mapping=dict.fromkeys(targets, QUEUED_STATE))
            pipe.expire(deliveries_key(event.id), ttl)
            enqueue_delivery(self.queue, event.id, targets, pipeline=pipe)
        # A result, by callback or by poll, ends the task's watch (a music task's progress does not).
        if event.type not in PROGRESS_TYPES:
            pipe.zrem(WATCHLIST, event.task_id)
            pipe.delete(watch_key(event.task_id))
