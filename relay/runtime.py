"""The one composition root: what web, worker and CLI hold, built from the settings in one place."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import rq

from relay.config import Settings
from relay.delivery.attempt import Context
from relay.delivery.breaker import Breakers
from relay.delivery.pacing import RateLimiter
from relay.delivery.queue import Batches, delivery_queue, enqueue_delivery, enqueue_release
from relay.ingest import Ingest
from relay.polling.client import SunoClient
from relay.polling.watchlist import Watchlist
from relay.store.connection import connect
from relay.store.state import Store
from relay.targets import Target, build_targets
from relay.worker.pool import DeliveryPool


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
    breakers: Breakers
    pool: DeliveryPool | None = None


def build(settings: Settings, connection: redis.Redis | None = None, threads: int = 0) -> Runtime:
    """Everything a process of the relay uses, built once from its settings: the one composition
    root of web, worker and CLI. With ``threads``, the worker's pool of delivery threads.

    ``connection`` is the process's own for its work: the worker gives RQ's loop another one,
    because RQ raises the socket timeout of its connection for its long blocking pops."""
    connection = connection or connect(settings)
    queue = delivery_queue(settings, connection)
    targets = build_targets(settings)
    ingest = Ingest(settings, connection, queue)
    breakers = Breakers(settings, connection)
    breakers.emit = lambda event: ingest(event, source="relay")
    breakers.release = lambda target: enqueue_release(queue, target)
    breakers.probe = lambda event_id, target, attempt: enqueue_delivery(queue, event_id, [target], attempt=attempt)
    return Runtime(
        settings=settings,
        redis=connection,
        queue=queue,
        store=Store(connection, settings.dedup_ttl),
        targets=targets,
        limiter=RateLimiter(connection),
        ingest=ingest,
        watchlist=Watchlist(connection, queue, settings.dedup_ttl),
        suno=SunoClient(settings.suno_api_base, settings.suno_api_key, timeout=settings.http_timeout),
        context=Context(settings, connection, queue, breakers),
        batches=Batches(queue),
        breakers=breakers,
        pool=DeliveryPool(threads, len(targets)) if threads else None,
    )
