"""HTTP endpoints. The web process parses, authenticates and stores; it never talks to a target."""

from __future__ import annotations

import hmac
import logging
import time

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from relay.admin import task_status
from relay.suno import PayloadError, normalise, parse_json

log = logging.getLogger("relay.web")
bp = Blueprint("relay", __name__)
RETRY_AFTER_SECONDS = 30


def error(status: int, message: str, **headers: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def _authorised(header_only: bool = False) -> bool:
    """The callback token, as ``?token=`` (Suno can send no header) or ``X-Relay-Token``."""
    settings = current_app.extensions["relay"].settings
    if not settings.callback_token:
        return settings.allow_unauthenticated
    given = request.headers.get("X-Relay-Token") or ("" if header_only else request.args.get("token", ""))
    return hmac.compare_digest(given.encode(), settings.callback_token.encode())


@bp.post("/callbacks/suno/lyrics")
def suno_lyrics_callback() -> Response:
    started = time.perf_counter()
    if not _authorised():
        log.warning("rejected", extra={"reason": "missing or wrong token", "client": request.remote_addr})
        return error(401, "missing or wrong token: pass ?token=<RELAY_CALLBACK_TOKEN> or an X-Relay-Token header")
    try:
        event = normalise(parse_json(request.get_data(cache=False)))
    except PayloadError as exc:
        log.warning("rejected", extra={"reason": str(exc), "client": request.remote_addr})
        return error(400, str(exc))
    relay = current_app.extensions["relay"]
    try:
        fresh = relay.ingest(event)
    except redis.RedisError as exc:
        log.error("redis unavailable", extra={"task_id": event.task_id, "reason": type(exc).__name__})
        return error(503, "storage unavailable, retry later", **{"Retry-After": str(RETRY_AFTER_SECONDS)})
    status = "received" if fresh else "duplicate"
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    log.info(status, extra={"task_id": event.task_id, "event_id": event.id, "type": event.type, "ms": elapsed_ms})
    return jsonify(status=status, task_id=event.task_id, event_id=event.id)


@bp.get("/tasks/<task_id>")
def task(task_id: str) -> Response:
    """A task's delivery status per target (the CLI's ``relay status --json``)."""
    if not _authorised(header_only=True):
        return error(401, "missing or wrong token: send the X-Relay-Token header")
    try:
        found = task_status(current_app.extensions["relay"].store, task_id)
    except redis.RedisError:
        return error(503, "storage unavailable, retry later", **{"Retry-After": str(RETRY_AFTER_SECONDS)})
    if found is None:
        return error(404, f"no task {task_id} (unknown, or expired after RELAY_DEDUP_TTL)")
    return jsonify(found)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    try:
        current_app.extensions["relay"].redis.ping()
    except redis.RedisError as exc:
        response = jsonify(status="unavailable", redis=type(exc).__name__)
        response.status_code = 503
        return response
    return jsonify(status="ok", redis="ok")
