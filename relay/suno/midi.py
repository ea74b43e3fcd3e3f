"""MIDI callbacks: ``{"task_id", "code", "msg", "data": {"state", "instruments": [{"name",
"notes": [{"pitch", "start", "end", "velocity"}]}]}}`` (the task id at the top level; ``start``
and ``end`` sometimes strings). The event keeps each instrument's name and note count, not the
notes: chat shows what was made, a consumer who wants the notes asks the provider."""

from __future__ import annotations

from typing import Any

from relay.suno.event import Event
from relay.suno.parsing import (
    MAX_MESSAGE,
    PayloadError,
    code,
    envelope,
    event_id,
    kind_of,
    now_rfc3339,
    task_id_of,
    text,
)

MAX_INSTRUMENTS = 64


def normalise(payload: Any, received_at: str | None = None) -> Event:
    data = envelope(payload)
    holder = payload if ("task_id" in payload or "taskId" in payload) else data
    task_id = task_id_of(holder, "task_id" if holder is payload else "data")
    raw = data.get("instruments")
    if raw is not None and not isinstance(raw, list):
        raise PayloadError(f"data.instruments must be an array, got {kind_of(raw)}")
    instruments = []
    for index, item in enumerate((raw or [])[:MAX_INSTRUMENTS]):
        if not isinstance(item, dict):
            raise PayloadError(f"data.instruments[{index}] must be an object, got {kind_of(item)}")
        notes = item.get("notes")
        count = len(notes) if isinstance(notes, list) else 0
        instruments.append((text(item.get("name"), f"data.instruments[{index}].name", 100) or "instrument", count))
    status_code = code(payload.get("code"))
    failed = status_code not in (None, 200) or not instruments
    stage = "error" if failed else "complete"
    return Event(
        id=event_id(task_id, f"midi.{stage}"),
        task_id=task_id,
        callback_type=stage,
        code=status_code,
        message=text(payload.get("msg"), "msg", MAX_MESSAGE),
        received_at=received_at or now_rfc3339(),
        kind="midi",
        instruments=tuple(instruments) if not failed else (),
    )
