"""Redis connections, built explicitly from :class:`~relay.config.Settings` (never at import)."""

from __future__ import annotations

import ssl

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
