"""The operator's view: a task's delivery status, dead letters, replay. Used by the CLI and by
``GET /tasks/<task_id>``; no Flask, no HTTP."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import rq

from relay.delivery.live import RANK, LiveMessage
from relay.delivery.queue import enqueue_delivery
from relay.polling.watchlist import WATCHLIST, watch_key
from relay.store import activity
from relay.store.keys import live_key, text
from relay.store.state import (
    DEAD,
    DELIVERED,
    HELD,
    QUEUED,
    RETRYING,
    SENDING,
    DeliveryState,
    Store,
    deliveries_key,
    event_key,
)


def describe(state: DeliveryState) -> str:
    """One line a person reads: ``delivered at …``, ``retrying (attempt 2, next at …)``, …"""
    if state.state == DELIVERED:
        return f"delivered at {state.at}"
    if state.state == RETRYING:
        late = _overdue(state.next_at)
        due = f"overdue by {late:.0f}s (was due at {state.next_at})" if late else f"next at {state.next_at}"
        return f"retrying (attempt {state.attempt + 1}, {due}): last error {state.reason}"
    if state.state == SENDING:
        return f"sending (attempt {state.attempt})"
    if state.state == DEAD:
        return f"dead: {state.reason}"
    if state.state == HELD:
        return f"held: the target's breaker is not closed (last error {state.reason})"
    return "received"


OVERDUE_AFTER = 10.0  # due work runs within a second while a worker is up: this late means none is


def _overdue(rfc3339: str | None, now: float | None = None) -> float:
    """Seconds past due (0 when not overdue by more than OVERDUE_AFTER)."""
    if not rfc3339:
        return 0.0
    late = (time.time() if now is None else now) - datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
    return late if late > OVERDUE_AFTER else 0.0


def task_status(store: Store, task_id: str) -> dict[str, Any] | None:
    """Every event of the task with every target's state, or None for an unknown task."""
    events = []
    live: dict[str, LiveMessage] = {}  # stages=live targets: the task's one message on each
    for event_id in store.event_ids(task_id):
        event = store.load_event(event_id)
        if event is None:
            continue
        targets = {
            name: {**asdict(state), "summary": describe(state)} for name, state in store.deliveries(event_id).items()
        }
        if event.type in RANK:
            for name, shown in targets.items():
                if name not in live:
                    live[name] = LiveMessage.from_redis(store.redis.hgetall(live_key(task_id, name)))
                if live[name].message_id:
                    shown.update(message_id=live[name].message_id, edits=live[name].edits)
        events.append(
            {
                "event_id": event.id,
                "type": event.type,
                "callback_type": event.callback_type,
                "received_at": event.received_at,
                "targets": targets,
                "timeline": activity.timeline(store.redis, event.id),
            }
        )
    status: dict[str, Any] = {"task_id": task_id, "events": events}
    watch = store.redis.hgetall(watch_key(task_id))
    next_poll = store.redis.zscore(WATCHLIST, task_id)
    if watch and next_poll is not None:
        status["watching"] = {
            "since": _iso(float(watch[b"since"])),
            "deadline": _iso(float(watch[b"deadline"])),
            "next_poll_at": _iso(next_poll),
            "last_error": text(watch.get(b"last_error", b"")),
        }
    elif not events:
        return None
    return status


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class DeadLetter:
    event_id: str
    task_id: str
    target: str
    died_at: str
    reason: str


def dead_letters(store: Store) -> list[DeadLetter]:
    letters = []
    for event_id, target, when in store.dead_letters():
        event = store.load_event(event_id)
        if event is None:  # expired with its event: nothing left to replay
            store.forget_dead(event_id, target)
            continue
        died_at = _iso(when)
        reason = store.delivery(event_id, target).reason
        letters.append(DeadLetter(event_id, event.task_id, target, died_at, reason))
    return letters


class ReplayError(ValueError):
    pass


def replay(
    store: Store,
    queue: rq.Queue,
    event_id: str,
    targets: list[str] | None = None,
    force: bool = False,
    known: set[str] | None = None,
) -> list[str]:
    """Queue the event again for ``targets`` (default: every target it was meant for, of those in
    ``known`` when given: the targets the workers deliver to).

    A target that already has the event is skipped unless ``force``: a replay never repeats a
    message by accident. One still under way may be queued again safely: the job's lock and state
    check keep it to one post. Returns the targets queued.
    """
    event = store.load_event(event_id)
    if event is None:
        raise ReplayError(f"no event {event_id} (unknown, or expired after RELAY_DEDUP_TTL)")
    states = store.deliveries(event_id)
    chosen = targets or [name for name in states if known is None or name in known]
    queued = []
    for name in chosen:
        state = states.get(name, DeliveryState())
        if state.state == DELIVERED and not force:
            continue
        store.forget_dead(event_id, name)
        fresh = DeliveryState(state=QUEUED, attempt=0, parts_sent=0 if force else state.parts_sent)
        store.save_delivery(event_id, name, fresh)
        enqueue_delivery(queue, event_id, [name], force=force)
        queued.append(name)
    for key in (event_key(event_id), deliveries_key(event_id)):
        store.redis.expire(key, store.ttl)
    return queued


def replay_events(store: Store, queue: rq.Queue, work: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Replay (event id, target) pairs; returns those queued (unknown events are skipped)."""
    queued = []
    for event_id, target in work:
        try:
            queued += [(event_id, name) for name in replay(store, queue, event_id, [target] if target else None)]
        except ReplayError:
            continue
    return queued


def resolve_event_ids(store: Store, reference: str) -> list[str]:
    """An event id, or a task id (then all its events)."""
    if reference.startswith("evt_"):
        return [reference]
    return store.event_ids(reference)


def discard_dead(store: Store, reference: str | None, targets: list[str]) -> list[tuple[str, str]]:
    """Drop dead letters: of an event or task id (``reference``), or all (None); only of
    ``targets`` when given. Their delivery state stays (dead), so ``status`` still tells."""
    events = set(resolve_event_ids(store, reference)) if reference else None
    dropped = [
        (event_id, target)
        for event_id, target, _ in store.dead_letters()
        if (events is None or event_id in events) and (not targets or target in targets)
    ]
    for event_id, target in dropped:
        store.forget_dead(event_id, target)
    return dropped
