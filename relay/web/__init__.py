"""The web process: the Flask app (:func:`create_app`, its one composition root), the callback
door and the operator's endpoints (:mod:`relay.web.views`), the operator's page
(:mod:`relay.web.page`), the mounted RQ dashboard (:mod:`relay.web.dashboard`) and gunicorn's
worker (:mod:`relay.web.server`)."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from relay.config import Settings
from relay.logs import configure_logging
from relay.metrics import CALLBACKS
from relay.runtime import build
from relay.store.connection import connect
from relay.web.dashboard import mount_dashboard

log = logging.getLogger("relay.web")


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Flask:
    """Build the web app. Tests pass their own settings; production reads the environment."""
    settings = settings or Settings.from_env()
    settings.require_auth()
    configure_logging(settings.log_level, settings.log_format)
    # Short, so that Suno gets its 503 well within its 15 s; longer than a WAIT for replicas.
    connection = connection or connect(settings, timeout=max(2.0, settings.ack_timeout + 1.0))

    app = Flask(__name__)
    # `//callbacks/…` is a 404, not a redirect whose Location would repeat the ?token=….
    app.url_map.merge_slashes = False
    # X-Forwarded-For / -Proto / -Host are believed for RELAY_TRUSTED_PROXIES hops only (the
    # platform's router): with none in front, a client could otherwise choose its logged address.
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]  # Flask's documented way to wrap
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Flask's default provider has it; typed as the base
    # The runtime every process builds the same way (relay.runtime): the door, the store, the queue.
    app.extensions["relay"] = build(settings, connection)

    from relay.web.page import bp as ui
    from relay.web.views import BodyTooLarge, bp, count_rejected, error, unavailable

    app.register_blueprint(bp)
    app.register_blueprint(ui)
    mount_dashboard(app, settings, connection)

    @app.errorhandler(BodyTooLarge)
    def too_large(_exc: Exception) -> Any:
        CALLBACKS.labels("too_large").inc()
        if request.path.startswith("/callbacks/"):
            count_rejected()
            log.warning("rejected", extra={"reason": "body too large", "client": request.remote_addr})
        response = error(413, f"body is larger than RELAY_MAX_BODY_BYTES ({settings.max_body_bytes} bytes)")
        response.headers["Connection"] = "close"  # the rest of the body is not read
        return response

    @app.after_request
    def json_options(response: Any) -> Any:
        # Flask answers OPTIONS itself with an empty body: say the allowed methods in JSON too.
        if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data():
            response.set_data(json.dumps({"allow": sorted(response.allow)}))
            response.mimetype = "application/json"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if exc.code == 413:
            return too_large(exc)
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(redis.RedisError)
    def storage_unavailable(_exc: Exception) -> Any:
        # Any route, the mounted dashboard's included: Redis away or hung is a 503, never a 500.
        return unavailable()

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unexpected error")
        return error(500, "internal error")

    return app
