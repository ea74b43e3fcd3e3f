"""Music callbacks (generate, extend, upload-and-cover, upload-and-extend, add vocals, add
instrumental share one envelope) and the music task's record-info for polling.

``{"code", "msg", "data": {"callbackType": "text" | "first" | "complete" | "error", "task_id",
"data": [items]}}``; an item: ``id``, ``audio_url``, ``source_audio_url``, ``stream_audio_url``,
``source_stream_audio_url``, ``image_url``, ``source_image_url``, ``prompt``, ``model_name``,
``title``, ``tags``, ``createTime``, ``duration`` (camelCase too, as record-info answers).
``text``, ``first`` and ``complete`` are three events of one task. Codes: 200; 400 (lyrics
copyrighted), 408 (timeout), 413 (the uploaded audio matches an existing work), 500, 501
(generation failed), 531 (failed, credits refunded).
"""

from __future__ import annotations

from typing import Any

from relay.suno.event import Event, Track
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
    number,
    task_id_of,
    text,
    url,
)

CALLBACK_TYPES = ("text", "first", "complete", "error")
CODES = {
    400: "the lyrics are copyrighted",
    408: "timed out",
    413: "the uploaded audio matches an existing work",
    500: "internal error",
    501: "generation failed",
    531: "generation failed; credits refunded",
}


def music_event_id(task_id: str, stage: str) -> str:
    return event_id(task_id, f"music.{stage}")


def _track(item: Any, where: str) -> Track:
    if not isinstance(item, dict):
        raise PayloadError(f"{where} must be an object, got {kind_of(item)}")
    return Track(
        id=text(first(item, "id"), f"{where}.id", 200),
        title=text(item.get("title"), f"{where}.title", MAX_TITLE).strip(),
        tags=text(item.get("tags"), f"{where}.tags", 1000).strip(),
        duration=number(item.get("duration"), f"{where}.duration"),
        model=text(first(item, "model_name", "modelName"), f"{where}.model_name", 100),
        prompt=text(item.get("prompt"), f"{where}.prompt", MAX_MESSAGE),
        created=text(first(item, "createTime", "create_time"), f"{where}.createTime", 40),
        audio_url=url(first(item, "audio_url", "audioUrl"), where)
        or url(first(item, "source_audio_url", "sourceAudioUrl"), where),
        stream_url=url(first(item, "stream_audio_url", "streamAudioUrl"), where)
        or url(first(item, "source_stream_audio_url", "sourceStreamAudioUrl"), where),
        image_url=url(first(item, "image_url", "imageUrl"), where)
        or url(first(item, "source_image_url", "sourceImageUrl"), where),
    )


def normalise(payload: Any, received_at: str | None = None) -> Event:
    data = envelope(payload)
    task_id = task_id_of(data, "data")
    items = first(data, "data", "sunoData")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise PayloadError(f"data.data must be an array or null, got {kind_of(items)}")
    status_code = code(payload.get("code"))
    stage = callback_type(data, CALLBACK_TYPES, "error" if status_code not in (None, 200) else "complete")
    if status_code not in (None, 200):
        stage = "error"  # a code other than 200 is a failure, whatever the data says
    message = text(payload.get("msg"), "msg", MAX_MESSAGE)
    detail = data.get("error")  # replace-section's failure detail, after msg
    if isinstance(detail, str) and detail.strip():
        detail = text(detail, "data.error", MAX_MESSAGE)
        message = f"{message}: {detail}" if message else detail
    if status_code in CODES and status_code != 200 and not message:
        message = CODES[status_code]
    return Event(
        id=music_event_id(task_id, stage),
        task_id=task_id,
        callback_type=stage,
        code=status_code,
        message=message,
        received_at=received_at or now_rfc3339(),
        kind="music",
        tracks=tuple(_track(item, f"data.data[{index}]") for index, item in enumerate(items)),
    )


# Polling: GET /api/v1/generate/record-info?taskId= → the events callbacks would have given.
STAGES = {"TEXT_SUCCESS": "text", "FIRST_SUCCESS": "first", "SUCCESS": "complete"}
FAILURE_STATUSES = {
    "CREATE_TASK_FAILED": (500, "creating the task failed"),
    "GENERATE_AUDIO_FAILED": (501, "generating the audio failed"),
    "CALLBACK_EXCEPTION": (500, "the provider's callback failed"),
    "SENSITIVE_WORD_ERROR": (400, "the prompt contains a sensitive word"),
}


def from_record(record: Any, task_id: str, received_at: str | None = None) -> tuple[Event | None, bool]:
    """A music record → (the event of its current stage or None while pending, whether final)."""
    if not isinstance(record, dict):
        raise PayloadError(f"task details must be an object, got {kind_of(record)}")
    status = text(record.get("status"), "status").strip().upper()
    found = record.get("response")
    response: dict[str, Any] = found if isinstance(found, dict) else {}
    items = first(response, "sunoData", "data") or []
    if status in STAGES:
        payload = {
            "code": 200,
            "msg": "success",
            "data": {"callbackType": STAGES[status], "task_id": task_id, "data": items},
        }
        return normalise(payload, received_at), status == "SUCCESS"
    if status in FAILURE_STATUSES or status.endswith(("FAILED", "ERROR")):
        return normalise(failed_record(record, task_id, status, FAILURE_STATUSES), received_at), True
    return None, False
