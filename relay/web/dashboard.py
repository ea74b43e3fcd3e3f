"""The RQ dashboard (rq-dashboard) under ``/rq``, and the basic auth it shares with the relay's
own page (``/ui``, :mod:`relay.web.page`); both off unless ``RELAY_DASHBOARD_USER`` and
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
# rq-dashboard's routes that change state (empty a queue or registry, delete or requeue jobs,
# compact): mounted read-only, every one is refused, whatever the method. Acknowledged work is
# changed through the relay's own commands and page only (replay, discard), which keep its records.
STATE_CHANGING = {
    "rq_dashboard.delete_job_view",
    "rq_dashboard.requeue_job_view",
    "rq_dashboard.requeue_all",
    "rq_dashboard.empty_queue",
    "rq_dashboard.compact_queue",
}
# rq-dashboard's pages use inline script: no CSP beyond framing, but never framed, sniffed or cached.
HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


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

    def ours(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    @app.before_request
    def require_basic_auth() -> Response | None:
        if not ours(request.path):
            return None
        if not authenticated_user(settings):
            return challenge()
        if request.endpoint in STATE_CHANGING or request.method not in ("GET", "HEAD", "OPTIONS"):
            body = json.dumps(
                {"error": "the RQ dashboard is read-only here: use the relay's page (/ui) or `python -m relay replay`"}
            )
            return Response(body, 403, mimetype="application/json")
        return None

    @app.after_request
    def dashboard_headers(response: Response) -> Response:
        if ours(request.path):
            response.headers.update(HEADERS)
        return response

    app.config["RQ_DASHBOARD_REDIS_URL"] = (dashboard_redis_url(settings),)
    app.config["RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD"] = settings.sentinel_password or None
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    rq_dashboard.web.setup_rq_connection(app)
    app.redis_conn = connection  # type: ignore[attr-defined]  # ours: TLS settings included
    return True
