"""The RQ worker the Procfile runs, tuned for a relay on a Heroku-like platform.

- SIGTERM (a deploy, a restart: the platform sends it to every process of the dyno, then SIGKILL
  30 s later) is a warm shutdown: the work horse ignores SIGTERM and the current delivery gets
  :data:`SHUTDOWN_GRACE` seconds to finish (more than one message's worst case) before RQ's
  ``HerokuWorker`` interrupts it; an interrupted delivery is re-queued (RQ retry) and resumes
  after the last message the target accepted.
- A worker killed without warning (SIGKILL, a crashed dyno) leaves its job "started". RQ sees the
  job's heartbeat expire (``job_monitoring_interval`` + 60 s) and, at the next maintenance run
  (every :data:`MAINTENANCE_INTERVAL` s, by any live worker), re-queues it at once: delivery
  completes well within 2 minutes of a worker being available.
"""

from __future__ import annotations

import redis
from rq.worker import HerokuWorker

from relay.config import Settings
from relay.queue import delivery_queue

SHUTDOWN_GRACE = 20  # below the platforms' 30 s between SIGTERM and SIGKILL
MONITORING_INTERVAL = 10
MAINTENANCE_INTERVAL = 15


class RelayWorker(HerokuWorker):
    imminent_shutdown_delay = SHUTDOWN_GRACE


def build_worker(settings: Settings, connection: redis.Redis) -> RelayWorker:
    return RelayWorker(
        [delivery_queue(settings, connection)],
        connection=connection,
        job_monitoring_interval=MONITORING_INTERVAL,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
