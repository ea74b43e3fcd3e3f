"""Reads and writes of events, their delivery states, dead letters and workers. The keys (and
what each holds) are named in :mod:`relay.store.keys`; how a delivery moves through them is
:mod:`relay.delivery.attempt`'s business.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from relay.store.keys import (  # noqa: F401 - re-exported: the store's vocabulary
    DEAD_LETTERS,
    INFLIGHT,
    RECONCILE_LOCK,
    WORKER_TARGETS,
    WORKERS,
    deliveries_key,
    event_key,
    lock_key,
    task_key,
    text,
)
from relay.suno import Event, now_rfc3339

# A worker beats every second (relay.worker.sweeper); one silent for longer than this is gone.
WORKER_SILENCE = 10.0

QUEUED, SENDING, RETRYING, DELIVERED, DEAD = "queued", "sending", "retrying", "delivered", "dead"
HELD = "held"  # waiting for its target's breaker to close (relay.delivery.breaker)


@dataclass
class DeliveryState:
    state: str = QUEUED
    attempt: int = 0  # attempts made so far
    parts_sent: int = 0  # messages of this event the target has accepted (long lyrics span several)
    thread: str = ""  # where the rest go, for kinds that thread them under the first (Slack bot: its ts)
    at: str = ""  # when the state was last changed (RFC 3339)
    next_at: str | None = None  # when a retry is due
    reason: str = ""  # the last failure, never a URL or a secret

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))  # flat fields: no asdict deep copy

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> DeliveryState:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


class Store:
    """Reads and writes of the layout above, on one Redis connection."""

    def __init__(self, connection: redis.Redis, ttl: int) -> None:
        self.redis = connection
        self.ttl = ttl

    def load_event(self, event_id: str) -> Event | None:
        raw = self.redis.get(event_key(event_id))
        return Event.from_json(raw) if raw else None

    def event_ids(self, task_id: str) -> list[str]:
        return sorted(text(member) for member in self.redis.smembers(task_key(task_id)))

    def delivery(self, event_id: str, target: str) -> DeliveryState:
        return DeliveryState.from_json(self.redis.hget(deliveries_key(event_id), target))

    def deliveries(self, event_id: str) -> dict[str, DeliveryState]:
        raw = self.redis.hgetall(deliveries_key(event_id))
        return {text(name): DeliveryState.from_json(value) for name, value in sorted(raw.items())}

    def save_delivery(self, event_id: str, target: str, state: DeliveryState, pipeline: Any = None) -> None:
        state.at = now_rfc3339()
        client = pipeline if pipeline is not None else self.redis
        client.hset(deliveries_key(event_id), target, state.to_json())

    def dead_letters(self) -> list[tuple[str, str, float]]:
        entries = self.redis.zrange(DEAD_LETTERS, 0, -1, withscores=True)
        letters = []
        for entry in entries:
            event_id, _, target = text(entry[0]).partition("/")
            letters.append((event_id, target, float(entry[1])))
        return letters

    def forget_dead(self, event_id: str, target: str, pipeline: Any = None) -> None:
        client = pipeline if pipeline is not None else self.redis
        client.zrem(DEAD_LETTERS, f"{event_id}/{target}")

    def abandoned(self, now: float) -> list[tuple[str, str]]:
        """Deliveries whose poster's lock ran out without it finishing (it died)."""
        members = self.redis.zrangebyscore(INFLIGHT, 0, now)
        return [(event_id, target) for event_id, _, target in (text(member).partition("/") for member in members)]

    def claim_abandoned(self, event_id: str, target: str) -> bool:
        """True for exactly one caller, and only while no worker holds the delivery's lock."""
        if self.redis.exists(lock_key(event_id, target)):
            return False
        return bool(self.redis.zrem(INFLIGHT, f"{event_id}/{target}"))

    def beat(self, worker: str, now: float | None = None) -> None:
        self.redis.zadd(WORKERS, {worker: time.time() if now is None else now})

    def forget_worker(self, worker: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.zrem(WORKERS, worker)
            pipe.hdel(WORKER_TARGETS, worker)
            pipe.execute()

    def advertise(self, worker: str, targets: list[str]) -> None:
        """Say which targets this worker delivers to (replays of others are refused up front)."""
        self.redis.hset(WORKER_TARGETS, worker, ",".join(targets))

    def live_targets(self) -> set[str] | None:
        """The targets some live worker delivers to; None when no worker is alive."""
        live = [name for name, _ in self.live_workers()]
        if not live:
            return None
        found: set[str] = set()
        for names in self.redis.hmget(WORKER_TARGETS, live):
            found.update(name for name in text(names or b"").split(",") if name)
        return found

    def live_workers(self, now: float | None = None) -> list[tuple[str, float]]:
        """Workers heard from within WORKER_SILENCE: (name, seconds since its last heartbeat),
        most recent first. Older entries are dropped."""
        now = time.time() if now is None else now
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(WORKERS, 0, now - WORKER_SILENCE)
            pipe.zrevrange(WORKERS, 0, -1, withscores=True)
            _, entries = pipe.execute()
        return [(name.decode(), max(0.0, now - score)) for name, score in entries]
