"""Redis connections, built explicitly from :class:`~relay.config.Settings` (never at import)."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import redis

from relay.config import Settings


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
        "retry_on_timeout": False,
    }
    if settings.redis_url.startswith("rediss://") and not settings.redis_tls_verify:
        options.update(ssl_cert_reqs=ssl.CERT_NONE, ssl_check_hostname=False)
    return redis.Redis.from_url(settings.redis_url, **options)


def redis_location(url: str) -> str:
    """``host:port db N`` (or the socket path) of a Redis URL: never its password."""
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
