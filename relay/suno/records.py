"""Polling the kinds that deliver files: a record-info answer of a WAV, stems, video, cover or MIDI
task → the event its callback gives (the same id: a task both polled and called back is delivered
once), or None while the task is still running.

The provider's flags (docs.sunoapi.org, docs.kie.ai): WAV, stems and video say ``successFlag``
in words (``PENDING``, ``SUCCESS``, ``CREATE_TASK_FAILED``, ``GENERATE_WAV_FAILED`` /
``GENERATE_AUDIO_FAILED`` / ``GENERATE_MP4_FAILED``, ``CALLBACK_EXCEPTION``); MIDI and cover in
integers that mean different things (MIDI: 0 pending, 1 success, 2 creating the task failed,
3 the MIDI failed; cover: 0 pending, 1 success, 2 still generating, 3 failed), or, on another
provider, cover in words. ``CALLBACK_EXCEPTION`` is the provider's callback failing, not the
task: the result is delivered when the answer holds it, else a failure. The result is under
``response`` (camelCase), MIDI's under ``midiData``.
"""

from __future__ import annotations

from typing import Any

from relay.suno import files, midi
from relay.suno.event import Event
from relay.suno.parsing import PayloadError, code, first, kind_of, text

# Integer flags, by kind: what each means.
INTEGER_FLAGS = {
    "midi": {0: "PENDING", 1: "SUCCESS", 2: "CREATE_TASK_FAILED", 3: "GENERATE_MIDI_FAILED"},
    "cover": {0: "PENDING", 1: "SUCCESS", 2: "PENDING", 3: "GENERATE_COVER_FAILED"},
}
KINDS = ("wav", "stems", "video", "cover", "midi")


def _status(kind: str, record: dict[str, Any]) -> str:
    raw = first(record, "successFlag", "status")
    if isinstance(raw, bool):
        raise PayloadError(f"successFlag must be a word or a number, got {kind_of(raw)}")
    if isinstance(raw, int):
        meanings = INTEGER_FLAGS.get(kind)
        if meanings is None or raw not in meanings:
            raise PayloadError(f"successFlag {raw} means nothing documented for a {kind} task")
        return meanings[raw]
    return text(raw, "successFlag").strip().upper() if raw is not None else "PENDING"


def _result(kind: str, record: dict[str, Any], task_id: str) -> dict[str, Any]:
    """The callback payload a success of this kind would have been, from the record."""
    found = record.get("response")
    response: dict[str, Any] = found if isinstance(found, dict) else {}
    data: dict[str, Any] = {"task_id": task_id}
    if kind == "wav":
        data["audioWavUrl"] = first(response, "audioWavUrl", "audio_wav_url")
    elif kind == "stems":
        data["vocal_removal_info"] = {
            key: value for key, value in response.items() if isinstance(key, str) and key.lower().endswith("url")
        }
    elif kind == "video":
        data["video_url"] = first(response, "videoUrl", "video_url")
    elif kind == "cover":
        data["images"] = first(response, "images") or []
    else:  # midi: its data is the callback's
        found = first(record, "midiData", "midi_data")
        data = {**found} if isinstance(found, dict) else {}
        return {"code": 200, "msg": "success", "task_id": task_id, "data": data}
    return {"code": 200, "msg": "success", "data": data}


def _normaliser(kind: str) -> Any:
    return {
        "wav": files.normalise_wav,
        "stems": files.normalise_stems,
        "video": files.normalise_video,
        "cover": files.normalise_cover,
        "midi": midi.normalise,
    }[kind]


def from_record(kind: str, record: Any, task_id: str, received_at: str | None = None) -> Event | None:
    """A record-info ``data`` object of a ``kind`` task → its event, or None while pending."""
    if not isinstance(record, dict):
        raise PayloadError(f"task details must be an object, got {kind_of(record)}")
    status = _status(kind, record)
    normalise = _normaliser(kind)
    if status in ("SUCCESS", "CALLBACK_EXCEPTION"):
        event = normalise(_result(kind, record, task_id), received_at)
        if status == "SUCCESS" or not event.failed:
            return event  # a success (or one whose callback was lost): what the callback gives
    elif not status.endswith(("FAILED", "ERROR")):
        return None  # PENDING, generating: look again
    failure_code = code(record.get("errorCode")) or 500
    message = text(record.get("errorMessage"), "errorMessage") or status.lower().replace("_", " ")
    failed: dict[str, Any] = {"code": failure_code, "msg": message, "data": {"task_id": task_id}}
    if kind == "midi":
        failed["task_id"] = task_id
    return normalise(failed, received_at)
