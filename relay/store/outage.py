"""Riding out Redis outages: a stopped or restarting Redis, a full one (``maxmemory`` with
``noeviction``), a failover, a replica that does not confirm, a TLS handshake that fails. The
worker waits here; the web process answers 503 and reports here only for the log lines.

Every thread of the worker that meets such an error reports it here and waits; the process logs
one line when Redis goes away and one when it answers again, never a traceback per attempt.
Anything else (a bug, a wrong key type) is not an outage and is raised as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from relay.store.connection import NotReplicated

log = logging.getLogger("relay.redis")
T = TypeVar("T")
# Redis answers these while it cannot take writes for a while: out of memory, loading its data,
# a replica promoted or not, persistence failing. Waiting is the cure.
_TRANSIENT_REPLIES = ("OOM", "LOADING", "READONLY", "MASTERDOWN", "MISCONF", "TRYAGAIN", "CLUSTERDOWN")
MAX_WAIT = 2.0


_TRANSIENT_ERRORS = (
    redis.ConnectionError,  # includes BusyLoadingError (LOADING)
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,  # includes MasterDownError
    redis.exceptions.TryAgainError,
)


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT_ERRORS):
        return True
    text = str(exc)
    return isinstance(exc, redis.ResponseError) and (
        text.startswith(_TRANSIENT_REPLIES) or "used memory > 'maxmemory'" in text
    )


def describe(exc: BaseException) -> str:
    """What went wrong, naming the setting to look at; never the URL (it may hold a password)."""
    text = str(exc)
    if isinstance(exc, NotReplicated):
        return f"RELAY_ACK_REPLICAS: {text}; a failover now could lose the write"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        detail = text.split("certificate verify failed", 1)[-1].strip(" :()") or "not trusted"
        return (
            f"REDIS_TLS_VERIFY: the Redis server's TLS certificate failed verification ({detail}); "
            "set REDIS_TLS_VERIFY=false for a self-signed certificate (platform add-ons use them)"
        )
    if isinstance(exc, redis.ResponseError):
        kind = "OOM, Redis is full" if isinstance(exc, redis.exceptions.OutOfMemoryError) else type(exc).__name__
        return f"Redis refuses writes ({kind}): {text.splitlines()[0][:120] if text else ''}"
    return f"cannot reach REDIS_URL ({type(exc).__name__})"


class Outage:
    """The process's view of Redis: up, or down since when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.stopping = threading.Event()  # set on SIGTERM: waits give up at give_up_at
        self.give_up_at: float | None = None
        # With Sentinel: where the primary is now ("host:port"), asked of the sentinels when Redis
        # is back, so that the log names the new primary after a failover.
        self.locate: Callable[[], str] | None = None

    def stop(self, within: float) -> None:
        """SIGTERM: from now on, waits for Redis end ``within`` seconds from now."""
        self.give_up_at = time.monotonic() + within
        self.stopping.set()

    def down(self, exc: BaseException) -> None:
        with self.lock:
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.error("redis unavailable; waiting for it", extra={"reason": describe(exc)})

    def up(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is not None:
                seconds = round(time.monotonic() - self.down_since, 1)
                self.down_since = None
                extra: dict[str, object] = {"down_s": seconds}
                if self.locate is not None:
                    try:
                        extra["primary"] = self.locate()
                    except redis.RedisError:
                        extra["primary"] = "unknown"
                log.warning("redis available again", extra=extra)

    def call(self, step: Callable[[], T], give_up_at: float | None = None) -> T:
        """Run ``step`` until Redis takes it: through an outage, retrying every 0.1–2 s. Raises the
        last error when ``give_up_at`` (monotonic) has passed."""
        pause = 0.1
        give_up_at = give_up_at if give_up_at is not None else self.give_up_at
        while True:
            try:
                result = step()
            except redis.RedisError as exc:
                if not is_outage(exc) or (give_up_at is not None and time.monotonic() >= give_up_at):
                    raise
                self.down(exc)
                time.sleep(pause)
                pause = min(pause * 2, MAX_WAIT)
                continue
            self.up()
            return result

    def wait_for(self, connection: redis.Redis, give_up_at: float | None = None) -> None:
        """Block until Redis answers a PING (at start, and after a failed job)."""
        self.call(connection.ping, give_up_at)


OUTAGE = Outage()  # one per process: the worker's threads share it
