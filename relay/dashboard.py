"""The RQ dashboard (rq-dashboard) under ``/rq``, and the basic auth it shares with the relay's
own page (``/ui``, :mod:`relay.ui`); both off unless ``RELAY_DASHBOARD_USER`` and
``RELAY_DASHBOARD_PASSWORD`` are set."""

from __future__ import annotations

import base64
import hmac
import json
from urllib.parse import urlencode, urlsplit, urlunsplit

import redis
from flask import Flask, Response, request

from relay.config import Settings

PREFIX = "/rq"


def dashboard_redis_url(settings: Settings) -> str:
    """REDIS_URL as rq-dashboard must see it: it opens connections from the URL alone, so
    REDIS_TLS_VERIFY=false travels as URL options."""
    if not settings.redis_url.startswith("rediss://") or settings.redis_tls_verify:
        return settings.redis_url
    parts = urlsplit(settings.redis_url)
    options = urlencode({"ssl_cert_reqs": "none", "ssl_check_hostname": "false"})
    return urlunsplit(parts._replace(query=f"{parts.query}&{options}" if parts.query else options))


def authenticated_user(settings: Settings) -> str | None:
    """The user of this request's basic auth when its credentials are right (constant time)."""
    given = request.headers.get("Authorization", "")
    if not given.startswith("Basic ") or not (settings.dashboard_user and settings.dashboard_password):
        return None
    try:
        credentials = base64.b64decode(given.removeprefix("Basic ").strip(), validate=True)
    except ValueError:
        return None
    expected = f"{settings.dashboard_user}:{settings.dashboard_password}".encode()
    return settings.dashboard_user if hmac.compare_digest(credentials, expected) else None


def challenge() -> Response:
    body = json.dumps({"error": "authentication required: RELAY_DASHBOARD_USER and its password"})
    return Response(body, 401, {"WWW-Authenticate": 'Basic realm="suno-relay"'}, mimetype="application/json")


def mount_dashboard(app: Flask, settings: Settings, connection: redis.Redis) -> bool:
    if not (settings.dashboard_user and settings.dashboard_password):
        return False
    import rq_dashboard
    import rq_dashboard.web

    @app.before_request
    def require_basic_auth() -> Response | None:
        if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
            return None
        return None if authenticated_user(settings) else challenge()

    app.config["RQ_DASHBOARD_REDIS_URL"] = (dashboard_redis_url(settings),)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    rq_dashboard.web.setup_rq_connection(app)
    app.redis_conn = connection  # type: ignore[attr-defined]  # ours: TLS settings included
    return True
