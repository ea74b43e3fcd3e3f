"""Prometheus metrics, served by ``GET /metrics`` (off unless ``RELAY_METRICS_TOKEN`` is set).

Two sources, because web and worker run in different processes, often on different machines:

- the web process's own (callbacks by outcome, ingest latency) live in process memory; under
  gunicorn, prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set up by
  gunicorn.conf.py) adds up every gunicorn worker;
- the workers' (deliveries by target and outcome, delivery latency from callback to target) are
  counted in Redis, and read with the queue depth, dead letters and workers at scrape time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import redis
import rq
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from relay.store.keys import DELIVERY_COUNTS as DELIVERIES
from relay.store.keys import DELIVERY_LATENCY as LATENCY
from relay.store.keys import text
from relay.store.state import DEAD_LETTERS, Store

# Not registered globally: scrape() puts them in each scrape's registry (or the files do).
CALLBACKS = Counter("relay_callbacks", "Callbacks received, by outcome.", ["outcome"], registry=None)
INGEST_SECONDS = Histogram(
    "relay_ingest_seconds",
    "Time to check, parse, store and enqueue one callback.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=None,
)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, math.inf)


def record_delivery(client: Any, target: str, outcome: str, seconds: float | None = None) -> None:
    """Count one delivery outcome (delivered, retrying, dead), with its end-to-end latency. On a
    pipeline the commands are queued; on a connection they are sent at once."""
    pipe = client if isinstance(client, redis.client.Pipeline) else client.pipeline(transaction=False)
    pipe.hincrby(DELIVERIES, f"{target}|{outcome}", 1)
    if seconds is not None:
        bucket = next(le for le in LATENCY_BUCKETS if seconds <= le)
        pipe.hincrby(LATENCY, f"{target}|{bucket}", 1)
        pipe.hincrby(LATENCY, f"{target}|sum", round(seconds * 1000))
    if pipe is not client:
        pipe.execute()


class RedisCollector(Collector):
    def __init__(self, connection: redis.Redis, queue: rq.Queue, targets: Sequence[str] = ()) -> None:
        self.redis = connection
        self.queue = queue
        self.targets = list(targets)

    def collect(self) -> Iterator:
        deliveries = CounterMetricFamily(
            "relay_deliveries", "Delivery attempts by target and outcome.", labels=["target", "outcome"]
        )
        for key, count in sorted(self.redis.hgetall(DELIVERIES).items()):
            target, _, outcome = text(key).rpartition("|")
            deliveries.add_metric([target, outcome], int(count))
        yield deliveries

        latency = HistogramMetricFamily(
            "relay_delivery_seconds", "Time from a callback's arrival to its delivery, by target.", labels=["target"]
        )
        raw = {text(key): int(value) for key, value in self.redis.hgetall(LATENCY).items()}
        for target in sorted({key.rpartition("|")[0] for key in raw}):
            cumulative, buckets = 0, []
            for le in LATENCY_BUCKETS:
                cumulative += raw.get(f"{target}|{le}", 0)
                buckets.append(("+Inf" if le == math.inf else str(le), cumulative))
            latency.add_metric([target], buckets, raw.get(f"{target}|sum", 0) / 1000)
        yield latency

        depth = GaugeMetricFamily("relay_queue_jobs", "Jobs waiting in the queue, by state.", labels=["state"])
        depth.add_metric(["queued"], self.queue.count)
        depth.add_metric(["scheduled"], self.queue.scheduled_job_registry.count)
        yield depth
        yield GaugeMetricFamily(
            "relay_dead_letters", "Deliveries that failed for good.", self.redis.zcard(DEAD_LETTERS)
        )
        workers = Store(self.redis, 0).live_workers()
        yield GaugeMetricFamily("relay_workers", "Workers with a heartbeat in the last 10 s.", len(workers))
        yield from self._breakers()

    def _breakers(self) -> Iterator:
        from relay.delivery.breaker import STATES, status_of

        states = GaugeMetricFamily(
            "relay_target_state", "Each target's breaker: 1 for its current state.", labels=["target", "state"]
        )
        held = GaugeMetricFamily(
            "relay_deliveries_held", "Deliveries held while the target's breaker is not closed.", labels=["target"]
        )
        for target, breaker in status_of(self.redis, self.targets).items():
            for state in STATES:
                states.add_metric([target, state], int(breaker.state == state))
            held.add_metric([target], breaker.held)
        yield states
        yield held


def scrape(connection: redis.Redis, queue: rq.Queue, targets: Sequence[str] = ()) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(CALLBACKS)
        registry.register(INGEST_SECONDS)
    registry.register(RedisCollector(connection, queue, targets))
    return generate_latest(registry)
