"""The RQ dashboard (rq-dashboard) under ``/rq``, and the basic auth it shares with the relay's
own page (``/ui``, :mod:`relay.web.page`); both off unless ``RELAY_DASHBOARD_USER`` and
``RELAY_DASHBOARD_PASSWORD`` are set."""

from __future__ import annotations

import base64
import hmac
import json

import redis
from flask import Flask, Response, request

from relay.config import Settings
from relay.store.connection import redis_location

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

    # rq-dashboard would open a connection from the URL on every request (Redis-Sentinel-Url:
    # no rediss+sentinel://, no REDIS_TLS_VERIFY, no RELAY_SENTINEL_PASSWORD): it gets the
    # process's own connection instead, built as every process builds it. The "URL" it shows as
    # the instance's name is where Redis is, never a password.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (redis_location(settings.redis_url),)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    theirs = app.before_request_funcs.get(rq_dashboard.blueprint.name, [])
    if rq_dashboard.web.push_rq_connection in theirs:
        theirs.remove(rq_dashboard.web.push_rq_connection)
    app.redis_conn = connection  # type: ignore[attr-defined]  # where rq-dashboard's views look
    return True
