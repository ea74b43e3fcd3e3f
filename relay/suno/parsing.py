"""What every Suno callback shares: strict JSON, text and code fields, the task id, and what the
door decides about odd but well-formed values (see :mod:`relay.suno`). Pure: no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_TASK_ID_LENGTH = 200
MAX_TITLE = 500
MAX_MESSAGE = 5000
MAX_URL = 2048
_UNPRINTABLE = re.compile("[\ud800-\udfff\x00]")  # unpaired surrogates (pairs are joined by json) and NUL
_CODE = re.compile(r"[+-]?[0-9]{1,9}")


class PayloadError(ValueError):
    """The payload cannot be understood; the message says what is wrong."""


def event_id(task_id: str, callback_type: str) -> str:
    """Stable id of (task, callback type): the same for a repeat, a retry, a replay or a poll."""
    digest = hashlib.sha256(f"{task_id}\x00{callback_type}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"body is not valid JSON: {name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, bounded nesting.

    orjson first (a few times faster); anything it refuses (a BOM, a lone surrogate escape, a
    huge integer, or a real error) takes the standard library's path, which decides and says why."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
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


def first(mapping: dict[str, Any], *names: str) -> Any:
    for name in names:
        if mapping.get(name) is not None:
            return mapping[name]
    return None


def kind_of(value: Any) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", str: "a string"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def text(value: Any, where: str, limit: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PayloadError(f"{where} must be a string, got {kind_of(value)}")
    result = value if isinstance(value, str) else str(value)
    result = _UNPRINTABLE.sub("\ufffd", result)
    if limit is not None and len(result) > limit:
        result = result[: limit - 1] + "…"
    return result


def code(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) < 10**9:
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**9:
        return int(value)
    if isinstance(value, str) and _CODE.fullmatch(value.strip()):
        return int(value.strip())
    raise PayloadError("code must be an integer such as 200 or 400 (at most 9 digits)")


def number(value: Any, where: str) -> float | None:
    """A duration or a count: a JSON number or a numeric string; anything else is ignored."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value and abs(value) < 1e9 else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if parsed == parsed and abs(parsed) < 1e9 else None
    return None


def url(value: Any, where: str) -> str:
    """An http(s) link from the provider, or "" (anything else is never shown as a link)."""
    link = text(value, where).strip()
    if not link or len(link) > MAX_URL or not re.match(r"^https?://[^\s<>\"'`|\\]+$", link):
        return ""
    return link


def task_id_of(mapping: dict[str, Any], where: str) -> str:
    raw = first(mapping, "task_id", "taskId")
    if raw is None:
        raise PayloadError(f"{where}.task_id (or {where}.taskId) is missing")
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise PayloadError(f"{where}.task_id must be a string, got {kind_of(raw)}")
    task_id = str(raw).strip()
    if not task_id:
        raise PayloadError(f"{where}.task_id is empty")
    if len(task_id) > MAX_TASK_ID_LENGTH or not task_id.isprintable() or _UNPRINTABLE.search(task_id):
        raise PayloadError(f"{where}.task_id must be at most {MAX_TASK_ID_LENGTH} printable characters")
    if "/" in task_id:  # it names the task in URLs (/tasks/<id>, the page): one path segment
        raise PayloadError(f"{where}.task_id must not contain '/'")
    return task_id


def envelope(payload: Any) -> dict[str, Any]:
    """The callback's ``data`` object (every kind has one)."""
    if not isinstance(payload, dict):
        raise PayloadError(f"body must be a JSON object, got {kind_of(payload)}")
    data = payload.get("data")
    if not isinstance(data, dict):
        got = "" if data is None else f", got {kind_of(data)}"
        raise PayloadError(f"data must be an object holding task_id{got}")
    return data


def failed_record(record: dict[str, Any], task_id: str, status: str, known: dict[str, tuple[int, str]]) -> dict:
    """A record-info answer whose status is a failure → the error callback it stands for: the
    provider's ``errorCode`` (else the status's default) and ``errorMessage`` (else its meaning)."""
    default_code, meaning = known.get(status, (500, "the task failed"))
    try:
        error_code = code(record.get("errorCode"))
    except PayloadError:  # a non-numeric error code: keep the default
        error_code = None
    reason = text(record.get("errorMessage"), "errorMessage").strip() or meaning
    return {
        "code": error_code or default_code,
        "msg": f"{reason} ({status})",
        "data": {"callbackType": "error", "task_id": task_id},
    }


def callback_type(data: dict[str, Any], allowed: tuple[str, ...], default: str) -> str:
    raw = first(data, "callbackType", "callback_type")
    if raw is not None and not isinstance(raw, str):
        raise PayloadError(f"data.callbackType must be a string, got {kind_of(raw)}")
    value = (raw or "").strip().lower() or default
    if value not in allowed:
        raise PayloadError(f"data.callbackType must be one of {', '.join(allowed)}")
    return value
