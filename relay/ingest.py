"""The door: deduplicate, store and enqueue a callback's event in one Redis transaction."""

from __future__ import annotations

import redis
import rq

from relay.config import Settings
from relay.queue import enqueue_delivery
from relay.store import DeliveryState, deliveries_key, event_key, task_key
from relay.suno import Event
from relay.watch import WATCHLIST, watch_key


class Ingest:
    """``ingest(event)`` → True the first time an event is seen, False for a repeat.

    The event key is the dedup record. The event, its delivery states and its delivery job are
    written in one MULTI/EXEC guarded by WATCH on that key, so a crash or a Redis error leaves
    either all of them or none (then the caller answers 503 and Suno retries), and of concurrent
    identical callbacks exactly one wins. A repeat costs one round trip (EXISTS).
    """

    def __init__(self, settings: Settings, connection: redis.Redis, queue: rq.Queue) -> None:
        self.settings = settings
        self.redis = connection
        self.queue = queue

    def __call__(self, event: Event) -> bool:
        key = event_key(event.id)
        if self.redis.exists(key):
            return False
        targets = [spec.name for spec in self.settings.targets if spec.wants(event.type)]
        ttl = self.settings.dedup_ttl
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    return False
                pipe.multi()
                pipe.set(key, event.to_json(), ex=ttl)
                pipe.sadd(task_key(event.task_id), event.id)
                pipe.expire(task_key(event.task_id), ttl)
                if targets:
                    pipe.hset(deliveries_key(event.id), mapping={name: DeliveryState().to_json() for name in targets})
                    pipe.expire(deliveries_key(event.id), ttl)
                if targets:
                    enqueue_delivery(self.queue, event.id, targets, pipeline=pipe)
                # A result, by callback or by poll, ends the task's watch.
                pipe.zrem(WATCHLIST, event.task_id)
                pipe.delete(watch_key(event.task_id))
                pipe.execute()
            except redis.WatchError:
                return False  # a concurrent identical callback won the race
            except redis.ResponseError:
                # Redis applies the rest of an EXEC whose one command failed (it has no rollback):
                # drop the dedup record, so that Suno's retry is not taken for a duplicate.
                self.redis.delete(key)
                raise
        return True
