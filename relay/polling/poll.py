"""Polling the provider for watched tasks (see relay.watch): one scheduled job per watched task,
rescheduling itself until the task's result arrives by either path, or its deadline passes.

All pollers share ``RELAY_POLL_RATE``; when the provider asks to slow down (405, 430, 455, 5xx)
every poller backs off, doubling up to :data:`MAX_PROVIDER_BACKOFF`.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from relay.polling.client import SunoAPIError
from relay.store.keys import PROVIDER_COOLDOWN, PROVIDER_ERRORS
from relay.suno import PayloadError, from_record, music, records, timed_out, voice

log = logging.getLogger("relay.jobs")
# Waits for a rate-limit slot up to this long inside the job; a longer one is rescheduled.
MAX_PACING_SLEEP = 5.0
MAX_PROVIDER_BACKOFF = 600.0


def poll(rt: Any, task_id: str) -> str:
    """Ask the provider for a watched task's result; deliver it, or look again later."""
    watch = rt.watchlist.get(task_id)
    context = {"task_id": task_id}
    if watch is None:
        return "not watched"  # its result arrived, or it was never watched
    if _final_event_received(rt, task_id, watch.kind):
        rt.watchlist.remove(task_id)
        return "already received"
    now = time.time()
    if now >= watch.deadline:
        rt.ingest(timed_out(task_id, now - watch.since, watch.last_error, kind=watch.kind), source="poll deadline")
        log.warning("poll deadline passed", extra={**context, "last_error": watch.last_error})
        return "timed out"
    cooldown = rt.redis.pttl(PROVIDER_COOLDOWN)
    if cooldown > 0:  # the provider asked everyone to slow down
        rt.watchlist.schedule(task_id, cooldown / 1000 + random.uniform(0, 2))
        return "provider cooling down"
    wait = rt.limiter.reserve("suno-api", *rt.settings.poll_rate)
    if wait > MAX_PACING_SLEEP:
        rt.watchlist.schedule(task_id, wait)
        return "paced"
    time.sleep(wait)
    try:
        record = rt.suno.record_info(task_id, watch.kind)
        if watch.kind == "music":
            event, final = music.from_record(record, task_id)
        elif watch.kind in voice.FINAL:
            event = voice.from_record(watch.kind, record, task_id)
            final = event is not None
        elif watch.kind in records.KINDS:
            event = records.from_record(watch.kind, record, task_id)
            final = event is not None
        else:
            event = from_record(record, task_id)
            final = event is not None
    except (SunoAPIError, PayloadError) as exc:
        return _poll_failed(rt, task_id, exc, context)
    rt.redis.delete(PROVIDER_ERRORS)
    fresh = rt.ingest(event, source="poll") if event is not None else False  # the same door as callbacks: sent once
    if event is not None:
        log.info("polled", extra={**context, "event_id": event.id, "type": event.type, "fresh": fresh})
    if not final:  # pending, or a music task's progress: look again
        rt.watchlist.schedule(task_id, rt.settings.poll_interval)
        return "pending" if event is None else ("received" if fresh else "duplicate")
    rt.watchlist.remove(task_id)
    return "received" if fresh else "duplicate"


def _final_event_received(rt: Any, task_id: str, kind: str) -> bool:
    """A result (not a progress stage) of the task is in already, by callback or poll."""
    ids = set(rt.store.event_ids(task_id))
    if kind == "music":
        return bool(ids & {music.music_event_id(task_id, stage) for stage in ("complete", "error")})
    return bool(ids)


def _poll_failed(rt: Any, task_id: str, exc: Exception, context: dict) -> str:
    rt.watchlist.note_error(task_id, str(exc))
    delay = rt.settings.poll_interval
    if getattr(exc, "retryable", False):
        # Rate limited, maintenance or a server error: every poller backs off, doubling each time.
        errors = rt.redis.incr(PROVIDER_ERRORS)
        rt.redis.expire(PROVIDER_ERRORS, int(MAX_PROVIDER_BACKOFF * 2))
        delay = min(rt.settings.poll_interval * 2 ** (errors - 1), MAX_PROVIDER_BACKOFF)
        rt.redis.set(PROVIDER_COOLDOWN, 1, px=int(delay * 1000))
    rt.watchlist.schedule(task_id, delay)
    log.warning("poll failed", extra={**context, "reason": str(exc), "next_poll_s": round(delay, 1)})
    return f"poll failed: {exc}"
