"""The operator's page (``/ui``): what happened to each task, and one click to fix it.

Served by the web process, server-rendered (Jinja2 templates in ``relay/web/templates/ui``, one
stylesheet), no JavaScript. Off unless ``RELAY_DASHBOARD_USER`` and ``RELAY_DASHBOARD_PASSWORD``
are set (the same credentials as ``/rq``), behind HTTP basic auth. Actions (replay, discard) are
POST only, carry a CSRF token derived from the password (a page of another site cannot know
it), and are logged with who did what to which task. It reads what the CLI and
``GET /tasks/<id>`` read (:mod:`relay.admin`, :mod:`relay.store.activity`), and shows targets by name,
never their URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.admin import dead_letters, discard_dead, replay_events, task_status
from relay.polling.watchlist import WATCHLIST
from relay.store import activity
from relay.store.state import DEAD, DELIVERED, HELD, QUEUED, RETRYING, SENDING
from relay.suno import Event
from relay.web.dashboard import authenticated_user, challenge
from relay.web.views import unavailable

log = logging.getLogger("relay.ui")
_SAFE_NEXT = re.compile(r"^/ui(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%=&+-]*)?$")
# The page has no script and one stylesheet of its own: nothing else may load or frame it, no
# other site is told where the operator came from, and nothing is kept in a cache.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make the page's own forms send Origin: null
    "Cache-Control": "no-store",
}
bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates", static_folder="static")
SEARCH_WINDOW = 500  # recent tasks searched by the task list's filters
PAGE = 50
REFRESH_SECONDS = 5
SYMBOLS = {
    DELIVERED: "✓", DEAD: "✗", RETRYING: "⟳", QUEUED: "…", SENDING: "→", HELD: "⏸", "failed": "✗", "pending": "…",
}  # fmt: skip
DONE = {
    "replayed": "Queued for delivery again.",
    "discarded": "Dead letters discarded.",
    "nothing": "Nothing to do.",
    "paused": "Target paused: its deliveries are held.",
    "resumed": "Target resumed: held deliveries going out.",
}


def _relay() -> Any:
    return current_app.extensions["relay"]


def csrf_token(user: str) -> str:
    key = hashlib.sha256(("suno-relay-ui:" + _relay().settings.dashboard_password).encode()).digest()
    return hmac.new(key, f"csrf:{user}".encode(), hashlib.sha256).hexdigest()


@bp.before_request
def guard() -> Response | None:
    settings = _relay().settings
    if not (settings.dashboard_user and settings.dashboard_password):
        return Response(
            json.dumps({"error": "the page is off: set RELAY_DASHBOARD_USER and RELAY_DASHBOARD_PASSWORD"}),
            404,
            mimetype="application/json",
        )
    user = authenticated_user(settings)
    if user is None:
        return challenge()
    request.environ["relay.user"] = user
    if request.method not in ("GET", "HEAD", "OPTIONS") and cross_site():
        seen = {"origin": request.headers.get("Origin", "")[:200], "fetch_site": request.headers.get("Sec-Fetch-Site")}
        log.warning("ui action refused", extra={"user": user, "reason": "cross-site request", **seen})
        return Response(json.dumps({"error": "cross-site request refused"}), 403, mimetype="application/json")
    if request.method == "POST" and not hmac.compare_digest(request.form.get("csrf", ""), csrf_token(user)):
        log.warning("ui action refused", extra={"user": user, "reason": "missing or wrong CSRF token"})
        return Response(json.dumps({"error": "missing or wrong CSRF token"}), 403, mimetype="application/json")
    return None


def cross_site() -> bool:
    """A browser says where a request comes from (Sec-Fetch-Site, Origin): anything but this
    site is refused before the CSRF token is even looked at."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "")
    if fetch_site:  # a browser that sends it says exactly this
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("Origin", "")
    if origin:
        return origin == "null" or urlsplit(origin).netloc != request.host
    return False


@bp.after_request
def headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def page(template: str, **values: Any) -> str:
    user = request.environ["relay.user"]
    flash = DONE.get(request.args.get("done", ""), "")
    return render_template(template, user=user, csrf=csrf_token(user), symbols=SYMBOLS, flash=flash, **values)


@bp.errorhandler(redis.RedisError)
def storage_unavailable(_exc: Exception) -> Response:
    return unavailable()


@bp.get("")
@bp.get("/")
def overview() -> str:
    relay = _relay()
    settings, store = relay.settings, relay.store
    names = list(settings.target_names)
    status = activity.target_status(relay.redis, names)
    dead_counts: dict[str, int] = {}
    for _event_id, target, _when in store.dead_letters():
        dead_counts[target] = dead_counts.get(target, 0) + 1
    breakers = relay.breakers.status(names)
    targets = [
        {"name": spec.name, "kind": spec.kind, "dead": dead_counts.get(spec.name, 0), "breaker": breakers[spec.name],
         **status[spec.name]}
        for spec in settings.targets
    ]  # fmt: skip
    watched = [
        (member.decode(), activity.iso(score))
        for member, score in relay.redis.zrange(WATCHLIST, 0, 49, withscores=True)
    ]
    for target in targets:
        target["waiting"] += target["breaker"].held  # held for its breaker: owed all the same
    pending = any(target["waiting"] for target in targets) or bool(watched)
    return page(
        "ui/overview.html",
        hour=activity.counts(relay.redis, 3600),
        day=activity.counts(relay.redis, 86400),
        targets=targets,
        workers=store.live_workers(),
        watched=watched,
        mode=settings.mode,
        refresh=REFRESH_SECONDS if pending else 0,
    )


def _row(status: dict[str, Any]) -> dict[str, Any]:
    """One line of the task list: the task's latest event and where its deliveries stand."""
    latest = max(status["events"], key=lambda event: event["received_at"])
    states = [target["state"] for event in status["events"] for target in event["targets"].values()]
    if DEAD in states:
        state = DEAD
    elif any(value in (QUEUED, SENDING, RETRYING, HELD) for value in states):
        state = RETRYING
    else:
        state = DELIVERED
    counts = {value: states.count(value) for value in dict.fromkeys(states)}
    detail = ", ".join(f"{n} {value}" for value, n in counts.items())
    failed = any(event["type"].endswith(".failed") for event in status["events"])
    return {"task_id": status["task_id"], "type": latest["type"], "received_at": latest["received_at"],
            "state": state, "detail": detail, "failed": failed}  # fmt: skip


@bp.get("/tasks")
def tasks() -> str:
    relay = _relay()
    query = request.args.get("q", "").strip()[:200]
    state = request.args.get("state", "")
    if query:
        found = task_status(relay.store, query)
        statuses = [found] if found and found["events"] else []
    else:
        # A state filter searches the last SEARCH_WINDOW tasks; the plain list reads one page only.
        window = SEARCH_WINDOW if state else PAGE
        recent = activity.recent_task_ids(relay.redis, window)
        statuses = [found for task_id, _ in recent if (found := task_status(relay.store, task_id)) is not None]
    rows = [_row(status) for status in statuses if status and status["events"]]
    if state == "failed":
        rows = [row for row in rows if row["failed"]]
    elif state:
        rows = [row for row in rows if row["state"] == state]
    pending = any(row["state"] == RETRYING for row in rows[:PAGE])
    return page("ui/tasks.html", rows=rows[:PAGE], query=query, state=state, window=SEARCH_WINDOW,
                refresh=REFRESH_SECONDS if pending else 0)  # fmt: skip


def previews(event: Event, names: list[str]) -> dict[str, str]:
    """What each target was sent, rendered again from the stored event (no URL is in a message)."""
    targets = _relay().targets  # built once, with the app
    shown = {}
    for name in names:
        target = targets.get(name)
        if target is None:
            shown[name] = "(this target is not configured on the web process: no preview)"
            continue
        text = json.dumps(target.render(event), indent=2, ensure_ascii=False)
        shown[name] = text if len(text) <= 20_000 else text[:20_000] + "\n… (cut for the page)"
    return shown


@bp.get("/tasks/<task_id>")
def task(task_id: str) -> Any:
    relay = _relay()
    status = task_status(relay.store, task_id)
    if status is None:
        return Response(json.dumps({"error": f"no task {task_id[:200]}"}), 404, mimetype="application/json")
    for event in status["events"]:
        stored = relay.store.load_event(event["event_id"])
        event["previews"] = previews(stored, list(event["targets"])) if stored else {}
        event["json"] = json.dumps(stored.to_dict() if stored else {}, indent=2, ensure_ascii=False)
    pending = any(
        target["state"] in (QUEUED, SENDING, RETRYING)
        for event in status["events"]
        for target in event["targets"].values()
    )
    return page("ui/task.html", status=status, refresh=REFRESH_SECONDS if pending or "watching" in status else 0)


@bp.get("/dead")
def dead() -> str:
    target = request.args.get("target", "").strip()[:40]
    letters = [letter for letter in dead_letters(_relay().store) if not target or letter.target == target]
    return page("ui/dead.html", letters=letters, target=target, refresh=0)


def _back(done: str) -> WerkzeugResponse:
    target = request.form.get("next", "")
    if not _SAFE_NEXT.match(target):  # a page of ours, in plain characters (no CR/LF, no other host)
        target = url_for("ui.overview")
    target = target.rstrip("?")
    separator = "&" if "?" in target else "?"
    return redirect(f"{target}{separator}done={done}", code=303)


@bp.post("/replay")
def replay() -> WerkzeugResponse:
    relay = _relay()
    user = request.environ["relay.user"]
    target = request.form.get("target", "").strip()
    if request.form.get("all"):
        work = [
            (letter.event_id, letter.target)
            for letter in dead_letters(relay.store.state)
            if not target or letter.target == target
        ]
    else:
        work = [(request.form.get("event_id", ""), target)]
    queued = replay_events(relay.store, relay.queue, work)
    for event_id, name in queued:
        log.info("ui action", extra={"user": user, "action": "replay", "event_id": event_id, "target": name})
    return _back("replayed" if queued else "nothing")


@bp.post("/discard")
def discard() -> WerkzeugResponse:
    relay = _relay()
    user = request.environ["relay.user"]
    target = request.form.get("target", "").strip()
    if request.form.get("all"):
        dropped = discard_dead(relay.store, None, [target] if target else [])
    else:
        dropped = discard_dead(relay.store, request.form.get("event_id", "") or "-", [target] if target else [])
    for event_id, name in dropped:
        log.info("ui action", extra={"user": user, "action": "discard", "event_id": event_id, "target": name})
    return _back("discarded" if dropped else "nothing")


@bp.post("/pause")
def pause() -> WerkzeugResponse:
    return _by_hand("pause")


@bp.post("/resume")
def resume() -> WerkzeugResponse:
    return _by_hand("resume")


def _by_hand(action: str) -> WerkzeugResponse:
    relay = _relay()
    target = request.form.get("target", "").strip()
    if relay.settings.target(target) is None:
        return _back("nothing")
    before = relay.breakers.pause(target) if action == "pause" else relay.breakers.resume(target)
    extra = {"user": request.environ["relay.user"], "action": action, "target": target, "was": before}
    log.info("ui action", extra=extra)
    return _back("paused" if action == "pause" else "resumed")
