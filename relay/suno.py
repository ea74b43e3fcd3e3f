"""Suno lyrics callbacks: every published payload dialect → one normalised event.

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

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_TASK_ID_LENGTH = 200
MAX_TITLE = 500
MAX_MESSAGE = 5000
CALLBACK_TYPES = ("complete", "error")
_UNPRINTABLE = re.compile("[\ud800-\udfff\x00]")  # unpaired surrogates (pairs are joined by json) and NUL
_CODE = re.compile(r"[+-]?[0-9]{1,9}")

COMPLETED = "lyrics.completed"
FAILED = "lyrics.failed"

_COMPLETE_WORDS = {"complete", "completed", "success", "succeeded", "ok"}
_FAILED_WORDS = {"failed", "fail", "failure", "error"}


class PayloadError(ValueError):
    """The payload cannot be understood; the message says what is wrong."""


@dataclass(frozen=True)
class Lyric:
    title: str
    text: str
    status: str  # "complete" or "failed" (or the provider's word, lowercased, if unknown)
    error: str

    @property
    def ok(self) -> bool:
        return self.status == "complete"


@dataclass(frozen=True)
class Event:
    """The normalised event; :meth:`to_dict` is the generic webhook body."""

    id: str
    task_id: str
    callback_type: str
    code: int | None
    message: str
    received_at: str
    lyrics: tuple[Lyric, ...] = field(default_factory=tuple)

    @property
    def type(self) -> str:
        return COMPLETED if any(item.ok for item in self.lyrics) else FAILED

    @property
    def failed(self) -> bool:
        return self.type == FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "task_id": self.task_id,
            "callback_type": self.callback_type,
            "code": self.code,
            "message": self.message,
            "received_at": self.received_at,
            "lyrics": [{"title": i.title, "text": i.text, "status": i.status, "error": i.error} for i in self.lyrics],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            id=data["id"],
            task_id=data["task_id"],
            callback_type=data["callback_type"],
            code=data["code"],
            message=data["message"],
            received_at=data["received_at"],
            lyrics=tuple(Lyric(**item) for item in data["lyrics"]),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        return cls.from_dict(json.loads(raw))


def event_id(task_id: str, callback_type: str) -> str:
    """Stable id of (task, callback type): the same for a repeat, a retry, a replay or a poll."""
    digest = hashlib.sha256(f"{task_id}\x00{callback_type}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"body is not valid JSON: {name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, bounded nesting."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise PayloadError("body is empty; expected a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except PayloadError:
        raise
    except json.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PayloadError("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        raise PayloadError(f"body is not valid JSON: {exc}") from None


def _first(mapping: dict[str, Any], *names: str) -> Any:
    for name in names:
        if mapping.get(name) is not None:
            return mapping[name]
    return None


def _text(value: Any, where: str, limit: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PayloadError(f"{where} must be a string, got {_kind(value)}")
    text = value if isinstance(value, str) else str(value)
    text = _UNPRINTABLE.sub("\ufffd", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", str: "a string"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def _code(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) < 10**9:
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**9:
        return int(value)
    if isinstance(value, str) and _CODE.fullmatch(value.strip()):
        return int(value.strip())
    raise PayloadError("code must be an integer such as 200 or 400 (at most 9 digits)")


def _status(raw: Any, text: str, error: str, where: str) -> str:
    word = _text(raw, where, 40).strip().lower()
    if not word:
        return "complete" if text.strip() and not error else "failed"
    if word in _COMPLETE_WORDS:
        return "complete"
    if word in _FAILED_WORDS:
        return "failed"
    return word


def _lyric(item: Any, where: str) -> Lyric:
    if not isinstance(item, dict):
        raise PayloadError(f"{where} must be an object, got {_kind(item)}")
    text = _text(item.get("text"), f"{where}.text")
    error = _text(_first(item, "error_message", "errorMessage"), f"{where}.error_message", MAX_MESSAGE)
    return Lyric(
        title=_text(item.get("title"), f"{where}.title", MAX_TITLE).strip(),
        text=text,
        status=_status(item.get("status"), text, error, f"{where}.status"),
        error=error,
    )


def normalise(payload: Any, received_at: str | None = None) -> Event:
    """Turn a decoded callback body of any known dialect into an :class:`Event`."""
    if not isinstance(payload, dict):
        raise PayloadError(f"body must be a JSON object, got {_kind(payload)}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PayloadError("data must be an object holding task_id" + ("" if data is None else f", got {_kind(data)}"))

    raw_id = _first(data, "task_id", "taskId")
    if raw_id is None:
        raise PayloadError("data.task_id (or data.taskId) is missing")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise PayloadError(f"data.task_id must be a string, got {_kind(raw_id)}")
    task_id = str(raw_id).strip()
    if not task_id:
        raise PayloadError("data.task_id is empty")
    if len(task_id) > MAX_TASK_ID_LENGTH or not task_id.isprintable() or _UNPRINTABLE.search(task_id):
        raise PayloadError(f"data.task_id must be at most {MAX_TASK_ID_LENGTH} printable characters")

    list_name = "data.data" if data.get("data") is not None else "data.lyricsData"
    items = _first(data, "data", "lyricsData")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise PayloadError(f"{list_name} must be an array or null, got {_kind(items)}")
    lyrics = tuple(_lyric(item, f"{list_name}[{index}]") for index, item in enumerate(items))

    code = _code(payload.get("code"))
    raw_type = _first(data, "callbackType", "callback_type")
    if raw_type is not None and not isinstance(raw_type, str):
        raise PayloadError(f"data.callbackType must be a string, got {_kind(raw_type)}")
    callback_type = (raw_type or "").strip().lower()
    if not callback_type:
        callback_type = "error" if not lyrics and code not in (None, 200) else "complete"
    if callback_type not in CALLBACK_TYPES:
        raise PayloadError(f"data.callbackType must be one of {', '.join(CALLBACK_TYPES)}")

    return Event(
        id=event_id(task_id, callback_type),
        task_id=task_id,
        callback_type=callback_type,
        code=code,
        message=_text(payload.get("msg"), "msg", MAX_MESSAGE),
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
        raise PayloadError(f"task details must be an object, got {_kind(record)}")
    status = _text(record.get("status"), "status").strip().upper()
    response = record.get("response") if isinstance(record.get("response"), dict) else {}
    items = _first(response, "data", "lyricsData") or []
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
        default_code, meaning = FAILURE_STATUSES.get(status, (500, "the task failed"))
        try:
            code = _code(record.get("errorCode"))
        except PayloadError:  # a non-numeric error code: keep the default
            code = None
        reason = _text(record.get("errorMessage"), "errorMessage").strip() or meaning
        payload = {
            "code": code or default_code,
            "msg": f"{reason} ({status})",
            "data": {"callbackType": "error", "task_id": task_id},
        }
        return normalise(payload, received_at)
    return None


def timed_out(task_id: str, waited_seconds: float, last_error: str = "", received_at: str | None = None) -> Event:
    """The notice for a watched task that gave no result before its deadline."""
    waited = f"{round(waited_seconds)} s" if waited_seconds < 120 else f"{round(waited_seconds / 60)} min"
    message = f"no result from the provider after {waited}; the relay stopped waiting"
    if last_error:
        message += f" (last error: {last_error})"
    return Event(event_id(task_id, "timeout"), task_id, "timeout", None, message, received_at or now_rfc3339(), ())
