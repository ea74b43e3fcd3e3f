"""Watched tasks: Suno tasks the relay polls until their result arrives (by callback or poll).

Redis: ``relay:watch`` (sorted set, task id → when its next poll is due) and
``relay:watch:<task id>`` (hash: since, deadline, last_error). The poll jobs themselves are RQ
scheduled jobs (:func:`relay.jobs.poll`); the sorted set lets the worker's sweeper queue a poll
whose job was lost, so watching survives restarts of every process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import rq

from relay.config import Settings
from relay.delivery.queue import CRASH_RETRY
from relay.polling.client import FILE_SUBMIT, STEM_TYPES, SunoAPIError, SunoClient
from relay.store.keys import WATCHLIST, text, watch_key

POLL = "relay.jobs.poll"
# Sent as callBackUrl in poll mode without RELAY_PUBLIC_URL: the API requires one; nothing
# listens there and no token goes with it.
NO_CALLBACK_URL = "https://callback.invalid/suno-relay-poll-mode"

_CLAIM_OVERDUE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


@dataclass
class Watch:
    task_id: str
    since: float
    deadline: float
    last_error: str = ""
    kind: str = "lyrics"  # lyrics, music, wav, stems, video, cover, midi: which record-info to ask


class Watchlist:
    def __init__(self, connection: redis.Redis, queue: rq.Queue, ttl: int) -> None:
        self.redis = connection
        self.queue = queue
        self.ttl = ttl
        self._claim = connection.register_script(_CLAIM_OVERDUE)

    def add(self, task_id: str, first_poll_in: float, deadline_in: float, kind: str = "lyrics") -> None:
        now = time.time()
        with self.redis.pipeline() as pipe:
            fields = {"since": now, "deadline": now + deadline_in, "last_error": "", "kind": kind}
            pipe.hset(watch_key(task_id), mapping=fields)  # type: ignore[arg-type]  # redis-py's key type is invariant
            pipe.expire(watch_key(task_id), self.ttl)
            pipe.execute()
        self.schedule(task_id, first_poll_in)

    def get(self, task_id: str) -> Watch | None:
        raw = self.redis.hgetall(watch_key(task_id))
        if not raw or self.redis.zscore(WATCHLIST, task_id) is None:
            return None
        kind = text(raw.get(b"kind", b"lyrics"))
        return Watch(task_id, float(raw[b"since"]), float(raw[b"deadline"]), text(raw.get(b"last_error", b"")), kind)

    def note_error(self, task_id: str, error: str) -> None:
        self.redis.hset(watch_key(task_id), "last_error", error[:300])

    def schedule(self, task_id: str, delay: float) -> None:
        """Queue the task's next poll in ``delay`` seconds (whole seconds, rounded up)."""
        due = time.time() + max(delay, 0)
        self.redis.zadd(WATCHLIST, {task_id: due})
        options: dict[str, Any] = {"args": (task_id,), "result_ttl": 0, "failure_ttl": 86400, "retry": CRASH_RETRY}
        if delay <= 0:
            self.queue.enqueue_call(POLL, description=f"poll {task_id}", **options)
        else:
            when = datetime.fromtimestamp(int(due) + 1, UTC)
            self.queue.enqueue_at(when, POLL, description=f"poll {task_id}", **options)

    def remove(self, task_id: str, pipeline: redis.client.Pipeline | None = None) -> None:
        client = pipeline if pipeline is not None else self.redis
        client.zrem(WATCHLIST, task_id)
        client.delete(watch_key(task_id))

    def requeue_overdue(self, interval: float, now: float | None = None) -> list[str]:
        """Queue a poll for every task whose poll is overdue by more than two intervals (its job
        was lost); returns their ids."""
        now = time.time() if now is None else now
        cutoff = now - max(60.0, 2 * interval)
        requeued = []
        for member in self.redis.zrangebyscore(WATCHLIST, 0, cutoff):
            task_id = text(member)
            if self._claim(keys=[WATCHLIST], args=[task_id, cutoff, now + interval]):
                self.schedule(task_id, 0)
                requeued.append(task_id)
        return requeued


class SubmitError(Exception):
    """Submitting failed; ``upstream`` when the provider (not the request) was the problem."""

    def __init__(self, message: str, upstream: bool = False) -> None:
        super().__init__(message)
        self.upstream = upstream


@dataclass(frozen=True)
class FileRequest:
    """Post-processing a finished task: WAV, stems (``stem_type``), video, cover or MIDI."""

    kind: str
    task_id: str  # the music task (for MIDI: the stems task)
    audio_id: str = ""  # which of its songs (not for cover; optional for MIDI)
    stem_type: str = "separate_vocal"

    def problem(self) -> str:
        """What is wrong with the request, or ""."""
        if self.kind not in FILE_SUBMIT:
            return f"kind must be one of lyrics, music, {', '.join(FILE_SUBMIT)}"
        if not self.task_id.strip():
            return f"a {self.kind} task needs the task id it is made from"
        if self.kind in ("wav", "stems", "video") and not self.audio_id.strip():
            return f"a {self.kind} task needs the audio id of the song (audio_id)"
        if self.kind == "stems" and self.stem_type not in STEM_TYPES:
            return f"stems type must be {' or '.join(STEM_TYPES)}"
        return ""


def submit(
    settings: Settings,
    client: SunoClient,
    watchlist: Watchlist,
    prompt: str,
    kind: str = "lyrics",
    request: FileRequest | None = None,
) -> str:
    """Submit a task with this relay's callback URL for its kind and watch it; returns the task
    id. ``prompt`` for lyrics and music; ``request`` for the kinds made from a finished task.

    In ``RELAY_MODE=poll`` the relay does not depend on the callback: the first poll comes after
    RELAY_POLL_GRACE either way, and polling stops as soon as a result arrives by either path.
    """
    kind = request.kind if request is not None else kind
    if request is not None and request.problem():
        raise SubmitError(request.problem())
    callback_url = settings.callback_url(kind)
    if callback_url is None and settings.mode == "callback":
        raise SubmitError(
            "RELAY_PUBLIC_URL is not set, so Suno could not call this relay back: set it to the relay's "
            "public https URL, or set RELAY_MODE=poll to poll for the result instead"
        )
    try:
        if request is not None:
            task_id = client.submit_file(
                kind, request.task_id, request.audio_id, request.stem_type, callback_url or NO_CALLBACK_URL
            )
        else:
            start = client.submit_music if kind == "music" else client.submit
            task_id = start(prompt, callback_url or NO_CALLBACK_URL)
    except SunoAPIError as exc:
        raise SubmitError(str(exc), upstream=exc.retryable or exc.code in (401, 429)) from None
    watchlist.add(task_id, settings.poll_grace, settings.poll_deadline, kind)
    return task_id
