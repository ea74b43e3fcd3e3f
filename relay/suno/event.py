"""The normalised event every Suno callback becomes, whatever its kind (lyrics, music, WAV,
stems, video, cover images, MIDI). :meth:`Event.to_dict` is the generic webhook body."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import orjson

KINDS = ("lyrics", "music", "wav", "stems", "video", "cover", "midi", "voice")
COMPLETED = "lyrics.completed"
FAILED = "lyrics.failed"
# Stages of a music task a person does not need in chat (generic webhooks get them).
PROGRESS_TYPES = frozenset({"music.text", "music.first"})
RELAY = "relay"  # the relay's own events: a target's breaker opened or closed
ALERT_TYPES = ("relay.target.paused", "relay.target.resumed")
MUSIC_STAGES = {"text": "music.text", "first": "music.first", "complete": "music.completed"}


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
class Track:
    """One generated song (a music task makes two)."""

    id: str = ""
    title: str = ""
    tags: str = ""
    duration: float | None = None  # seconds
    model: str = ""
    prompt: str = ""
    created: str = ""
    audio_url: str = ""  # the final file (may come only with the `complete` stage)
    stream_url: str = ""  # playable earlier
    image_url: str = ""


@dataclass(frozen=True)
class Event:
    id: str
    task_id: str
    callback_type: str
    code: int | None
    message: str
    received_at: str
    lyrics: tuple[Lyric, ...] = field(default_factory=tuple)
    kind: str = "lyrics"
    tracks: tuple[Track, ...] = field(default_factory=tuple)
    files: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (label, url): WAV, stems, video, covers
    instruments: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # MIDI: (name, notes)
    voice: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # Voice: voice_id, validate_info
    # The relay's own alerts (kind "relay"): target, reason, since, held (relay.delivery.breaker).
    notice: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @functools.cached_property  # asked several times a callback; the event never changes
    def type(self) -> str:
        """``<kind>.completed`` / ``<kind>.failed``; music also ``music.text`` and ``music.first``."""
        if self.kind == "lyrics":
            return COMPLETED if any(item.ok for item in self.lyrics) else FAILED
        if self.kind == RELAY:
            return f"relay.{self.callback_type}"
        if self.callback_type == "error" or self.code not in (None, 200):
            return f"{self.kind}.failed"
        if self.kind == "music":
            return MUSIC_STAGES.get(self.callback_type, "music.failed")  # `text` carries no songs yet
        if self.kind == "voice":
            return "voice.validated" if self.callback_type == "validated" else "voice.completed"
        has_content = bool(self.files or self.instruments)
        return f"{self.kind}.completed" if has_content else f"{self.kind}.failed"

    @property
    def failed(self) -> bool:
        return self.type.endswith(".failed")

    @property
    def subject(self) -> str:
        """The target an alert is about (never sent to it); '' for a task's event."""
        return str(dict(self.notice).get("target", "")) if self.kind == RELAY else ""

    def to_dict(self) -> dict[str, Any]:
        if self.kind == RELAY:  # an alert: its facts at the top level
            return {"type": self.type, "kind": RELAY, "id": self.id, **dict(self.notice)}
        body: dict[str, Any] = {
            "type": self.type,
            "id": self.id,
            "task_id": self.task_id,
            "callback_type": self.callback_type,
            "code": self.code,
            "message": self.message,
            "received_at": self.received_at,
            "lyrics": [{"title": i.title, "text": i.text, "status": i.status, "error": i.error} for i in self.lyrics],
        }
        if self.kind != "lyrics":
            body["kind"] = self.kind
            body["tracks"] = [track.__dict__ for track in self.tracks]
            body["files"] = [{"label": label, "url": link} for label, link in self.files]
            body["instruments"] = [{"name": name, "notes": notes} for name, notes in self.instruments]
            body["voice"] = dict(self.voice)
        return body

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        if data.get("kind") == RELAY:
            return alert(data["type"].removeprefix("relay."), data["id"], **{
                key: value for key, value in data.items() if key not in ("type", "kind", "id")
            })  # fmt: skip
        return cls(
            id=data["id"],
            task_id=data["task_id"],
            callback_type=data["callback_type"],
            code=data["code"],
            message=data["message"],
            received_at=data["received_at"],
            lyrics=tuple(Lyric(**item) for item in data["lyrics"]),
            kind=data.get("kind", "lyrics"),
            tracks=tuple(Track(**track) for track in data.get("tracks", ())),
            files=tuple((item["label"], item["url"]) for item in data.get("files", ())),
            instruments=tuple((item["name"], item["notes"]) for item in data.get("instruments", ())),
            voice=tuple(data.get("voice", {}).items()),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        return cls.from_dict(orjson.loads(raw))


def alert(callback_type: str, event_id: str, **facts: Any) -> Event:
    """One of the relay's own events (``target.paused``, ``target.resumed``) with its facts."""
    target = str(facts.get("target", ""))
    return Event(
        id=event_id,
        task_id=f"relay.target.{target}",
        callback_type=callback_type,
        code=None,
        message=str(facts.get("reason", "")),
        received_at=str(facts.get("since", "")),
        kind=RELAY,
        notice=tuple(facts.items()),
    )
