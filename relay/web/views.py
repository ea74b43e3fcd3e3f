"""HTTP endpoints. The web process parses, authenticates and stores; it never talks to a target."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping

import orjson
import redis
from flask import Blueprint, Response, current_app, jsonify, redirect, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.datastructures import Headers
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.admin import task_status
from relay.metrics import CALLBACKS, INGEST_SECONDS, scrape
from relay.polling.watchlist import FileRequest, SubmitError, submit
from relay.store import activity
from relay.store.outage import OUTAGE, is_outage
from relay.suno import NORMALISERS, PayloadError, parse_json

log = logging.getLogger("relay.web")
bp = Blueprint("relay", __name__)
RETRY_AFTER_SECONDS = 30
SIGNATURE_TOLERANCE = 300


def unavailable() -> Response:
    """Redis away, hung or full: 503 with Retry-After, so that a callback's sender tries again."""
    return error(503, "storage unavailable, retry later", **{"Retry-After": str(RETRY_AFTER_SECONDS)})


def error(status: int, message: str, **headers: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def _authorised(header_only: bool = False) -> bool:
    """The callback token, as ``?token=`` (Suno can send no header) or ``X-Relay-Token``.

    ``RELAY_ALLOW_UNAUTHENTICATED`` opens the callback endpoint only (``header_only=False``):
    the operator's endpoints always need the token, so without one they are closed."""
    settings = current_app.extensions["relay"].settings
    if not settings.callback_token:
        return settings.allow_unauthenticated and not header_only
    given = request.headers.get("X-Relay-Token") or ("" if header_only else request.args.get("token", ""))
    return hmac.compare_digest(given.encode(), settings.callback_token.encode())


class BodyTooLarge(Exception):
    pass


def read_body() -> bytes:
    """The request body, read no further than ``RELAY_MAX_BODY_BYTES`` + 1, however it is framed
    (Content-Length or chunked): over the limit raises :class:`BodyTooLarge`."""
    limit = current_app.extensions["relay"].settings.max_body_bytes
    if (request.content_length or 0) > limit:
        raise BodyTooLarge
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise BodyTooLarge
    return b"".join(chunks)


@bp.post("/callbacks/suno/<kind>")
def suno_callback(kind: str) -> Response:
    """One URL per task kind (lyrics, music, wav, stems, video, cover, midi), one door."""
    normaliser = NORMALISERS.get(kind)
    if normaliser is None:
        return error(404, f"no callback endpoint for {kind[:40]!r}: use one of {', '.join(NORMALISERS)}")
    started = time.perf_counter()
    if not _authorised():
        CALLBACKS.labels("unauthorized").inc()
        count_rejected()
        log.warning("rejected", extra={"reason": "missing or wrong token", "client": request.remote_addr})
        return error(401, "missing or wrong token: pass ?token=<RELAY_CALLBACK_TOKEN> or an X-Relay-Token header")
    try:
        event = normaliser(parse_json(read_body()))
    except PayloadError as exc:
        CALLBACKS.labels("invalid").inc()
        count_rejected()
        log.warning("rejected", extra={"reason": str(exc), "client": request.remote_addr})
        return error(400, str(exc))
    relay = current_app.extensions["relay"]
    if relay.settings.suno_hmac_key:
        problem = signature_problem(relay.settings.suno_hmac_key, event.task_id, request.headers)
        if problem:
            CALLBACKS.labels("bad_signature").inc()
            count_rejected()
            log.warning("rejected", extra={"reason": problem, "task_id": event.task_id})
            return error(401, problem)
    try:
        fresh = relay.ingest(event)
    except redis.RedisError as exc:
        CALLBACKS.labels("unavailable").inc()
        if is_outage(exc):
            # One line per process when Redis (or its primary) goes and one when it is back, as
            # the worker logs; each refused callback is an access-log line, not an error.
            OUTAGE.down(exc)
            log.info("unavailable", extra={"task_id": event.task_id, "reason": type(exc).__name__})
        else:
            log.error("redis unavailable", extra={"task_id": event.task_id, "reason": type(exc).__name__})
        return unavailable()
    OUTAGE.up()
    status = "received" if fresh else "duplicate"
    elapsed = time.perf_counter() - started
    CALLBACKS.labels(status).inc()
    INGEST_SECONDS.observe(elapsed)
    elapsed_ms = round(elapsed * 1000, 2)
    extra = {"task_id": event.task_id, "event_id": event.id, "type": event.type, "ms": elapsed_ms}
    log.info(status, extra={**extra, "client": request.remote_addr})
    body = orjson.dumps({"status": status, "task_id": event.task_id, "event_id": event.id})
    return Response(body, mimetype="application/json")


def count_rejected() -> None:
    """For the operator's page; a Redis that is away must not turn a 4xx into a 503."""
    with contextlib.suppress(redis.RedisError):
        activity.count(current_app.extensions["relay"].redis, "rejected")


def signature_problem(key: bytes, task_id: str, headers: Mapping[str, str] | Headers, now: float | None = None) -> str:
    """Check a signed callback (providers that sign): ``X-Webhook-Signature`` =
    base64(HMAC-SHA256(key, "<taskId>.<X-Webhook-Timestamp>")), timestamp within 5 minutes.
    Returns what is wrong, or "" when the signature holds."""
    timestamp, signature = headers.get("X-Webhook-Timestamp", ""), headers.get("X-Webhook-Signature", "")
    if not timestamp or not signature:
        return "missing X-Webhook-Timestamp or X-Webhook-Signature header"
    try:
        skew = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return "X-Webhook-Timestamp must be Unix seconds"
    if skew > SIGNATURE_TOLERANCE:
        return "X-Webhook-Timestamp is more than 5 minutes off"
    expected = base64.b64encode(hmac.new(key, f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature.strip().encode()):
        return "X-Webhook-Signature does not match"
    return ""


@bp.post("/tasks")
def submit_task() -> Response:
    """Submit a task with this relay's callback URL for its kind, and watch it: ``{"prompt": …}``
    (lyrics; ``"kind": "music"`` for a song) or ``{"kind": "wav"|"stems"|"video"|"cover"|"midi",
    "task_id": …, "audio_id": …, "type": …}`` (made from a finished task)."""
    if not _authorised(header_only=True):
        return error(401, "missing or wrong token: send the X-Relay-Token header")
    try:
        body = parse_json(read_body())
    except PayloadError as exc:
        return error(400, str(exc))
    if not isinstance(body, dict):
        return error(400, 'body must be {"prompt": "…"} or {"kind": "stems", "task_id": "…", "audio_id": "…"}')
    kind = body.get("kind", "lyrics")
    file_request = None
    if kind in ("lyrics", "music"):
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return error(400, 'body must be {"prompt": "<text, at most 200 words>"}')
    else:
        fields = {name: body.get(name, "") for name in ("task_id", "audio_id")}
        stem_type = body.get("type", "separate_vocal")
        if not isinstance(kind, str) or not all(isinstance(value, str) for value in [*fields.values(), stem_type]):
            return error(400, "kind, task_id, audio_id and type must be strings")
        file_request = FileRequest(kind, fields["task_id"], fields["audio_id"], stem_type)
        if file_request.problem():
            return error(400, file_request.problem())
        prompt = ""
    relay = current_app.extensions["relay"]
    try:
        # The callback URL comes from RELAY_PUBLIC_URL only: never from the request's Host or
        # X-Forwarded-Host, which a client chooses.
        task_id = submit(relay.settings, relay.suno, relay.watchlist, prompt, kind, file_request)
    except SubmitError as exc:
        return error(502 if exc.upstream else 400, str(exc))
    except redis.RedisError:
        return unavailable()
    log.info("submitted", extra={"task_id": task_id, "client": request.remote_addr})
    response = jsonify(status="submitted", task_id=task_id, mode=relay.settings.mode)
    response.status_code = 202
    return response


@bp.get("/tasks/<task_id>")
def task(task_id: str) -> Response:
    """A task's delivery status per target (the CLI's ``relay status --json``)."""
    if not _authorised(header_only=True):
        return error(401, "missing or wrong token: send the X-Relay-Token header")
    try:
        found = task_status(current_app.extensions["relay"].store, task_id)
    except redis.RedisError:
        return unavailable()
    if found is None:
        return error(404, f"no task {task_id} (unknown, or expired after RELAY_DEDUP_TTL)")
    return jsonify(found)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics; off (404) unless RELAY_METRICS_TOKEN is set, then that bearer token."""
    relay = current_app.extensions["relay"]
    token = relay.settings.metrics_token
    if not token:
        return error(404, "metrics are off: set RELAY_METRICS_TOKEN to turn them on")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        return error(401, "missing or wrong token: send Authorization: Bearer <RELAY_METRICS_TOKEN>")
    try:
        body = scrape(relay.redis, relay.queue, relay.settings.target_names)
    except redis.RedisError:
        return unavailable()
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


@bp.get("/")
def index() -> WerkzeugResponse:
    """Where to go from the bare URL: the operator's page when it is on, else how to turn it on."""
    settings = current_app.extensions["relay"].settings
    if settings.dashboard_user and settings.dashboard_password:
        return redirect("/ui", code=302)
    return jsonify(
        service="suno-relay",
        page="off: set RELAY_DASHBOARD_USER and RELAY_DASHBOARD_PASSWORD to turn on the operator's page at /ui",
        callbacks="/callbacks/suno/<kind>?token=<RELAY_CALLBACK_TOKEN>",
        health="/healthz",
    )


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis answers. Also says (without failing: the web process itself is fine) when no
    worker is alive, since callbacks are then acknowledged but not delivered. A worker counts while
    its heartbeat (every second) is under WORKER_SILENCE (10 s) old: a dead one drops out within 10 s."""
    relay = current_app.extensions["relay"]
    try:
        workers = relay.store.live_workers()
    except redis.RedisError as exc:
        response = jsonify(status="unavailable", redis=type(exc).__name__)
        response.status_code = 503
        return response
    body: dict = {"status": "ok", "redis": "ok", "workers": len(workers)}
    if workers:
        body["latest_heartbeat_s"] = round(workers[0][1], 1)
    else:
        body["warning"] = "no worker is running: callbacks are acknowledged but not delivered"
    return jsonify(body)
