"""Suno Voice (a persona's voice): ``POST /api/v1/voice/validate``, ``/voice/regenerate`` (whose
field is spelled ``calBackUrl``) and ``/voice/generate`` call back with ``{"code", "msg",
"data": {"taskId", "status", "validateInfo" | "voiceId", "errorCode", "errorMessage"}}``.

``status``: ``wait_validating`` (a validate or regenerate task passed: the voice awaits its
generation) → ``voice.validated``; ``success`` (generated) → ``voice.completed`` with its voice
id; ``processing_validate_fail`` and ``fail`` → ``voice.failed`` with the error. The same
shapes come back from ``/api/v1/voice/validate-info`` and ``/api/v1/voice/record-info`` when the
task is polled (:func:`from_record`).
"""

from __future__ import annotations

from typing import Any

from relay.suno.event import Event
from relay.suno.parsing import (
    MAX_MESSAGE,
    PayloadError,
    code,
    envelope,
    event_id,
    first,
    kind_of,
    now_rfc3339,
    task_id_of,
    text,
)

VALIDATED, SUCCESS = "wait_validating", "success"
FAILURES = ("processing_validate_fail", "fail")
# What ends a polled task, by the endpoint it is polled at (watch --kind voice-validate | voice).
FINAL = {"voice-validate": (VALIDATED, "processing_validate_fail"), "voice": (SUCCESS, "fail")}


def normalise(payload: Any, received_at: str | None = None) -> Event:
    data = envelope(payload)
    task_id = task_id_of(data, "data")
    status = text(data.get("status"), "data.status").strip().lower()
    status_code = code(payload.get("code"))
    facts = []
    for label, name in (("voice_id", "voiceId"), ("validate_info", "validateInfo")):
        value = first(data, name, label)
        if value is not None and not isinstance(value, (str, int, float)):
            raise PayloadError(f"data.{name} must be text, got {kind_of(value)}")
        if value not in (None, ""):
            facts.append((label, text(str(value), f"data.{name}", 500)))
    error = text(first(data, "errorMessage", "error_message"), "data.errorMessage", MAX_MESSAGE)
    failed = status_code not in (None, 200) or status in FAILURES or (status == SUCCESS and not facts)
    stage = "error" if failed else ("validated" if status == VALIDATED else "complete")
    said = text(payload.get("msg"), "msg", MAX_MESSAGE)
    message = (error or said) if failed else said
    return Event(
        id=event_id(task_id, f"voice.{stage}"),
        task_id=task_id,
        callback_type=stage,
        code=status_code if status_code not in (None, 200) else code(data.get("errorCode")) if failed else status_code,
        message=message,
        received_at=received_at or now_rfc3339(),
        kind="voice",
        voice=tuple(facts) if not failed else (),
    )


def from_record(kind: str, record: Any, task_id: str, received_at: str | None = None) -> Event | None:
    """A validate-info (``voice-validate``) or record-info (``voice``) answer → its event, or
    None while the task is not final."""
    if not isinstance(record, dict):
        raise PayloadError(f"task details must be an object, got {kind_of(record)}")
    status = text(record.get("status"), "status").strip().lower()
    if status not in FINAL[kind]:
        return None
    return normalise({"code": 200, "msg": "", "data": {**record, "taskId": task_id}}, received_at)
