"""The one composition root: what web, worker and CLI hold, built from the settings in one place."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import rq

from relay.config import Settings
from relay.connection import connect
from relay.delivery import Context, lock_seconds
from relay.ingest import Ingest
from relay.pool import DeliveryPool
from relay.queue import Batches, delivery_queue
from relay.ratelimit import RateLimiter
from relay.store import Store
from relay.suno_api import SunoClient
from relay.targets import Target, build_targets
from relay.watch import Watchlist


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


def build(settings: Settings, connection: redis.Redis | None = None, threads: int = 0) -> Runtime:
    """Everything a process of the relay uses, built once from its settings: the one composition
    root of web, worker and CLI. With ``threads``, the worker's pool of delivery threads.

    ``connection`` is the process's own for its work: the worker gives RQ's loop another one,
    because RQ raises the socket timeout of its connection for its long blocking pops."""
    connection = connection or connect(settings)
    queue = delivery_queue(settings, connection)
    targets = build_targets(settings)
    return Runtime(
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
