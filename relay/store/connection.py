"""Redis connections, built explicitly from :class:`~relay.config.Settings` (never at import)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from relay.config import Settings

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True)
class SentinelURL:
    """``redis+sentinel://[:password@]host1:26379,host2:26379/<service>/<db>`` (the form
    rq-dashboard and Redis-Sentinel-Url read); ``rediss+sentinel://`` for TLS to the nodes."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None
    tls: bool


def sentinel_url(url: str) -> SentinelURL | None:
    """The parts of a Sentinel URL, None for any other URL; ValueError saying what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme not in SENTINEL_SCHEMES:
        return None
    netloc, _, path = rest.partition("/")
    auth, _, hostspec = netloc.rpartition("@")
    password = unquote(auth.partition(":")[2]) if auth else None
    hosts = []
    for entry in filter(None, hostspec.split(",")):
        host, _, port = entry.partition(":")
        if not host or (port and not port.isdigit()):
            raise ValueError(f"sentinel address {entry!r} is not host:port")
        hosts.append((host, int(port or 26379)))
    parts = [part for part in path.split("?")[0].split("/") if part]
    if not hosts or not parts:
        raise ValueError("a Sentinel URL names its sentinels and the service: redis+sentinel://host:26379/mymaster/0")
    db = parts[1] if len(parts) > 1 else "0"
    if not db.isdigit():
        raise ValueError("the database after the service name must be a number")
    return SentinelURL(tuple(hosts), parts[0], int(db), password or None, scheme == "rediss+sentinel")


def no_retry() -> Retry:
    """Never retried here: a broken or hung connection is an outage its caller handles (the door
    answers 503, the worker waits in :mod:`relay.store.outage`). A client built directly, as the
    Sentinel client builds its connections to the sentinels, gets redis-py's default instead:
    10 retries with backoff, timeouts included, 26 s for one command on a hung server at a 2 s
    timeout, past Suno's 15 s."""
    return Retry(NoBackoff(), 0)


def connect(settings: Settings, *, timeout: float = 5.0) -> redis.Redis:
    """A client for ``REDIS_URL``.

    Short socket timeouts, because the web process must answer Suno within 15 s even when
    Redis is gone (it answers 503). ``rediss://`` honours ``REDIS_TLS_VERIFY``: platform Redis
    add-ons often present self-signed certificates.
    """
    options: dict = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "health_check_interval": 30,
        "retry": no_retry(),
    }
    if settings.redis_url.startswith(("rediss://", "rediss+sentinel://")) and not settings.redis_tls_verify:
        options.update(ssl_cert_reqs=ssl.CERT_NONE, ssl_check_hostname=False)
    sentinel = sentinel_url(settings.redis_url)
    if sentinel is None:
        return redis.Redis.from_url(settings.redis_url, **options)
    # The sentinels tell each new connection where the primary is now: after a failover every
    # process follows it by itself (redis-py's Sentinel pool), riding the switch as an outage.
    node = {**options, "db": sentinel.db, "password": sentinel.password}
    if sentinel.tls:
        node["ssl"] = True
    sentinels = redis.sentinel.Sentinel(
        list(sentinel.hosts),
        sentinel_kwargs={
            "password": settings.sentinel_password or None,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "retry": no_retry(),
        },
        **{key: value for key, value in node.items() if key != "db"},
    )
    from relay.store.outage import OUTAGE

    def locate() -> str:
        host, port = sentinels.discover_master(sentinel.service)
        return f"{host}:{port}"

    OUTAGE.locate = locate
    return sentinels.master_for(sentinel.service, redis_class=redis.Redis, **node)


def redis_location(url: str) -> str:
    """``host:port db N`` (or the socket path) of a Redis URL: never its password."""
    try:
        sentinel = sentinel_url(url)
    except ValueError:
        sentinel = None
    if sentinel is not None:
        hosts = ",".join(f"{host}:{port}" for host, port in sentinel.hosts)
        return f"{sentinel.service} db {sentinel.db} via sentinels {hosts}{' (TLS)' if sentinel.tls else ''}"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix socket {parts.path}"
    db = parts.path.strip("/") or "0"
    tls = " (TLS)" if parts.scheme == "rediss" else ""
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379} db {db}{tls}"


# What a failed connection says → what the user is told.
_PROBLEMS = {
    "refused": "connection refused",
    "timed out": "timed out",
    "timeout": "timed out",
    "name or service": "unknown host",
    "temporary failure in name resolution": "unknown host",
    "auth": "authentication failed",
    "certificate": "TLS certificate rejected: see REDIS_TLS_VERIFY",
}


def unreachable(redis_url: str, exc: BaseException) -> str:
    """One line for a Redis that cannot be used: where (never the password) and why."""
    text = str(exc).lower()
    reason = next((said for key, said in _PROBLEMS.items() if key in text), type(exc).__name__)
    return f"REDIS_URL: cannot connect to {redis_location(redis_url)} ({reason})"


class NotReplicated(redis.exceptions.ConnectionError):
    """Fewer replicas than ``RELAY_ACK_REPLICAS`` confirmed a write within ``RELAY_ACK_TIMEOUT``:
    the write is on the primary only, and a failover now could lose it (treated as an outage)."""


def wait_for_replicas(pipe: Any, settings: Settings) -> bool:
    """Queue a ``WAIT`` on ``pipe`` after its writes (the same connection, so it covers them),
    when RELAY_ACK_REPLICAS asks for one; True when one was queued (its answer comes last)."""
    if settings.ack_replicas <= 0:
        return False
    pipe.execute_command("WAIT", settings.ack_replicas, int(settings.ack_timeout * 1000))
    return True
