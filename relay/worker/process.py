"""The RQ worker the Procfile runs: RQ's ``SimpleWorker`` (no fork per job) with a pool of
delivery threads (:mod:`.pool`), a sweeper thread (:mod:`.sweeper`), every Redis step retried
through an outage (:mod:`relay.store.outage`) and SIGTERM as a warm shutdown that hands unfinished
deliveries back. What that guarantees through outages and killed workers is written once, in
docs/delivery.md ("Redis outages", "Killed workers").
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis
from rq import SimpleWorker
from rq.exceptions import DequeueTimeout
from rq.worker import WorkerStatus

from relay.config import Settings
from relay.delivery.queue import delivery_queue
from relay.store.outage import OUTAGE, is_outage

log = logging.getLogger("relay.worker")
MONITORING_INTERVAL = 10
MAINTENANCE_INTERVAL = 15
# RQ blocks on the queue for worker_ttl - 15 s and sets the socket timeout 10 s above that.
WORKER_TTL = 30
# After SIGTERM: what is left for recording results before the platform's SIGKILL (30 s).
STOP_BUDGET = 20.0


class RelayWorker(SimpleWorker):
    def request_stop(self, signum: Any, frame: Any) -> None:
        OUTAGE.stop(within=STOP_BUDGET)
        super().request_stop(signum, frame)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's, through an outage: RQ's own retries grow to a minute between tries (so an idle
        worker came back ~30 s after Redis did) and log each try."""

        def attempt() -> Any:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            return self.queue_class.dequeue_any(
                self._ordered_queues,
                timeout,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )

        OUTAGE.call(lambda: self.set_state(WorkerStatus.IDLE))
        while True:
            try:
                result = OUTAGE.call(attempt)
            except DequeueTimeout:
                continue
            if result is not None:
                job, queue = result
                self.reorder_queues(reference_queue=queue)
                job.redis_server_version = OUTAGE.call(self.get_redis_server_version)
                self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
            return result

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            super().execute_job(job, queue)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            # RQ could not record the job's start or end. Run it again once Redis answers: the
            # relay's jobs are idempotent, and RQ's abandoned-job handling would wait minutes.
            OUTAGE.down(exc)
            OUTAGE.call(lambda: queue.enqueue_job(job))
            log.warning("job queued again after a redis outage", extra={"job_id": job.id})

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """RQ's logs an ERROR every 2 s while Redis is away; the outage's two lines say it all."""
        if not isinstance(exc, redis.ConnectionError):
            return super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)
        OUTAGE.down(exc)
        time.sleep(2.0)

    def check_for_suspension(self, burst: bool) -> None:
        OUTAGE.call(lambda: super(RelayWorker, self).check_for_suspension(burst))

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        try:
            super().heartbeat(timeout)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            OUTAGE.down(exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            OUTAGE.down(exc)
            self.last_cleaned_at = datetime.now(UTC)  # type: ignore[assignment]  # RQ types it None; it holds a datetime

    def teardown(self) -> None:
        try:
            super().teardown()
        except redis.RedisError as exc:
            log.warning("could not unregister from redis", extra={"reason": type(exc).__name__})


def build_worker(settings: Settings, connection: redis.Redis) -> RelayWorker:
    return RelayWorker(
        [delivery_queue(settings, connection)],
        connection=connection,
        job_monitoring_interval=MONITORING_INTERVAL,
        maintenance_interval=MAINTENANCE_INTERVAL,
        worker_ttl=WORKER_TTL,
    )
