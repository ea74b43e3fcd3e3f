"""The RQ worker the Procfile runs, tuned for a relay on a Heroku-like platform.

- It runs jobs in its own process (RQ's ``SimpleWorker``, no fork per job) and posts in a pool of
  delivery threads (``RELAY_WORKER_THREADS``): a delivery job only hands its targets over, so a
  slow target holds one thread, not the worker, and nothing waits on a fork.
- SIGTERM (a deploy, a restart: the platform sends it, then SIGKILL 30 s later) is a warm
  shutdown: the worker takes no new job and lets every delivery under way finish (each is
  bounded by the HTTP timeouts, well under 30 s) before it exits.
- A worker killed without warning (SIGKILL, a crashed dyno) leaves its deliveries marked in
  flight; once their locks expire, any worker's sweeper queues them again (relay.sweeper), and
  each resumes after the last message its target accepted: delivery completes well within
  2 minutes of a worker being available. RQ's abandoned-job handling stays as a second net.
"""

from __future__ import annotations

import redis
from rq import SimpleWorker

from relay.config import Settings
from relay.queue import delivery_queue

MONITORING_INTERVAL = 10
MAINTENANCE_INTERVAL = 15


class RelayWorker(SimpleWorker):
    pass


def build_worker(settings: Settings, connection: redis.Redis) -> RelayWorker:
    return RelayWorker(
        [delivery_queue(settings, connection)],
        connection=connection,
        job_monitoring_interval=MONITORING_INTERVAL,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
