"""Lyrics callbacks: every published payload dialect → one normalised event.

Pure: no Flask, no Redis, no I/O. Dialects accepted (all give the same event):

- task id as ``data.task_id`` or ``data.taskId`` (a string, or an integer);
- lyrics list as ``data.data`` or ``data.lyricsData`` (null or absent for error callbacks);
- error text per item as ``error_message`` or ``errorMessage``;
- ``callbackType`` ``complete`` or ``error`` (absent: ``error`` when there are no items and
  ``code`` is not 200, else ``complete``);
- item ``status`` ``complete`` / ``failed`` (also ``success`` / ``error``; absent: ``complete``
  when the item has text and no error).

Unknown fields are ignored. Anything structurally wrong raises :class:`PayloadError` with a
message that says what and where. What the door decides about odd but well-formed text:

- an unpaired UTF-16 surrogate (``"\\ud83c"`` alone) or a NUL in free text (title, lyrics,
  messages) becomes U+FFFD, so the event can be stored and shown; in the task id or the
  callback type, where it cannot be meant, it is refused;
- ``code`` must be an integer (a JSON number, or a string of at most 9 ASCII digits with an
  optional sign); anything else is refused;
- ``callbackType`` must be ``complete`` or ``error`` (any case);
- text fields are bounded: a title at :data:`MAX_TITLE`, a message or an item's error at
  :data:`MAX_MESSAGE` characters (cut with "…"); lyrics are bounded by the body limit only.
"""

from __future__ import annotations

from typing import Any

from relay.suno.event import COMPLETED, FAILED, Event, Lyric
from relay.suno.parsing import (
    MAX_MESSAGE,
    MAX_TITLE,
    PayloadError,
    callback_type,
    code,
    envelope,
    event_id,
    failed_record,
    first,
    kind_of,
    now_rfc3339,
    task_id_of,
    text,
)

CALLBACK_TYPES = ("complete", "error")
_COMPLETE_WORDS = {"complete", "completed", "success", "succeeded", "ok"}
_FAILED_WORDS = {"failed", "fail", "failure", "error"}
__all__ = ["COMPLETED", "FAILED", "from_record", "normalise", "timed_out"]


def _status(raw: Any, body: str, error: str, where: str) -> str:
    word = text(raw, where, 40).strip().lower()
    if not word:
        return "complete" if body.strip() and not error else "failed"
    if word in _COMPLETE_WORDS:
        return "complete"
    if word in _FAILED_WORDS:
        return "failed"
    return word


def _lyric(item: Any, where: str) -> Lyric:
    if not isinstance(item, dict):
        raise PayloadError(f"{where} must be an object, got {kind_of(item)}")
    body = text(item.get("text"), f"{where}.text")
    error = text(first(item, "error_message", "errorMessage"), f"{where}.error_message", MAX_MESSAGE)
    return Lyric(
        title=text(item.get("title"), f"{where}.title", MAX_TITLE).strip(),
        text=body,
        status=_status(item.get("status"), body, error, f"{where}.status"),
        error=error,
    )


def normalise(payload: Any, received_at: str | None = None) -> Event:
    """Turn a decoded lyrics callback body of any known dialect into an :class:`Event`."""
    data = envelope(payload)
    task_id = task_id_of(data, "data")
    list_name = "data.data" if data.get("data") is not None else "data.lyricsData"
    items = first(data, "data", "lyricsData")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise PayloadError(f"{list_name} must be an array or null, got {kind_of(items)}")
    lyrics = tuple(_lyric(item, f"{list_name}[{index}]") for index, item in enumerate(items))
    status_code = code(payload.get("code"))
    kind = callback_type(data, CALLBACK_TYPES, "error" if not lyrics and status_code not in (None, 200) else "complete")
    return Event(
        id=event_id(task_id, kind),
        task_id=task_id,
        callback_type=kind,
        code=status_code,
        message=text(payload.get("msg"), "msg", MAX_MESSAGE),
        received_at=received_at or now_rfc3339(),
        lyrics=lyrics,
    )


# Polling: the "get lyrics details" record → the same event a callback would have given.
PENDING_STATUSES = {"PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "RUNNING", "QUEUED"}
FAILURE_STATUSES = {
    "CREATE_TASK_FAILED": (500, "creating the task failed"),
    "GENERATE_LYRICS_FAILED": (500, "generating the lyrics failed"),
    "CALLBACK_EXCEPTION": (500, "the provider's callback failed"),
    "SENSITIVE_WORD_ERROR": (400, "the prompt contains a sensitive word"),
}


def from_record(record: Any, task_id: str, received_at: str | None = None) -> Event | None:
    """A record-info ``data`` object → an :class:`Event`, or None while the task is not final.

    A success gives the ``complete`` event and a failure the ``error`` event, with the same ids
    as the callbacks would have: a task both polled and called back is delivered once.
    ``CALLBACK_EXCEPTION`` with lyrics present is a success whose callback was lost.
    """
    if not isinstance(record, dict):
        raise PayloadError(f"task details must be an object, got {kind_of(record)}")
    status = text(record.get("status"), "status").strip().upper()
    found = record.get("response")
    response: dict[str, Any] = found if isinstance(found, dict) else {}
    items = first(response, "data", "lyricsData") or []
    has_lyrics = isinstance(items, list) and any(isinstance(item, dict) and item.get("text") for item in items)
    if status == "SUCCESS" or (status == "CALLBACK_EXCEPTION" and has_lyrics):
        payload = {
            "code": 200,
            "msg": "success",
            "data": {"callbackType": "complete", "task_id": task_id, "data": items},
        }
        return normalise(payload, received_at)
    if status in FAILURE_STATUSES or (
        status and status not in PENDING_STATUSES and status.endswith(("FAILED", "ERROR"))
    ):
        return normalise(failed_record(record, task_id, status, FAILURE_STATUSES), received_at)
    return None


def timed_out(
    task_id: str, waited_seconds: float, last_error: str = "", received_at: str | None = None, kind: str = "lyrics"
) -> Event:
    """The notice for a watched task that gave no result before its deadline."""
    waited = f"{round(waited_seconds)} s" if waited_seconds < 120 else f"{round(waited_seconds / 60)} min"
    message = f"no result from the provider after {waited}; the relay stopped waiting"
    if last_error:
        message += f" (last error: {last_error})"
    return Event(
        event_id(task_id, "timeout"), task_id, "timeout", None, message, received_at or now_rfc3339(), (), kind=kind
    )
