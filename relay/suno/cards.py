"""How a person reads an event: the failure text of a failed task, and for every kind but lyrics
one card per song or per set of files (title, facts, links, image). Each Suno kind's titles,
stages and cards live here, beside its normaliser; targets render the cards they are given
(relay.targets). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from relay.suno.event import Event


def failure_text(event: Event) -> str:
    """The provider's own explanation of a failed task, for failure notices."""
    errors = [item.error for item in event.lyrics if not item.ok and item.error]
    parts = errors or ([event.message] if event.message else [])
    text = "; ".join(dict.fromkeys(part.strip() for part in parts if part.strip()))
    if event.code not in (None, 200):
        text = f"{text} (code {event.code})" if text else f"code {event.code}"
    return text or "no reason given by the provider"


FILES_EXPIRE = "Files from the provider expire after about 14 days."
KIND_TITLES = {
    "music": "Song generation",
    "wav": "WAV conversion",
    "stems": "Vocal separation",
    "video": "Music video",
    "cover": "Cover images",
    "midi": "MIDI",
    "voice": "Voice",
}
VOICE_FACTS = {"voice_id": "Voice id", "validate_info": "Validation"}
STAGES = {"text": "lyrics and style ready, audio follows", "first": "the first song is ready", "complete": "complete"}


@dataclass(frozen=True)
class Card:
    title: str
    failed: bool = False
    facts: tuple[tuple[str, str], ...] = ()  # (label, value)
    links: tuple[tuple[str, str], ...] = ()  # (label, http(s) URL, checked at the door)
    image: str = ""


def duration_text(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def cards(event: Event) -> list[Card]:
    """The cards of a music, WAV, stems, video, cover or MIDI event (not lyrics)."""
    name = KIND_TITLES.get(event.kind, event.kind)
    if event.failed:
        return [Card(title=f"{name} failed", failed=True, facts=(("Reason", failure_text(event)),))]
    if event.kind == "music":
        found = []
        for track in event.tracks:
            facts = [("Stage", STAGES.get(event.callback_type, event.callback_type))]
            facts += [
                (label, value)
                for label, value in (
                    ("Tags", track.tags),
                    ("Duration", duration_text(track.duration)),
                    ("Model", track.model),
                )
                if value
            ]
            links = [("Audio", track.audio_url)] if track.audio_url else []
            if track.stream_url and not track.audio_url:
                links.append(("Stream", track.stream_url))  # the final file is not ready yet
            found.append(
                Card(
                    title=track.title or "Untitled song", facts=tuple(facts), links=tuple(links), image=track.image_url
                )
            )
        return found
    if event.kind == "voice":
        shown = tuple((VOICE_FACTS.get(label, label), value) for label, value in event.voice)
        done = "validated" if event.type == "voice.validated" else "ready"
        return [Card(title=f"{name} {done}", facts=shown)]
    if event.kind == "midi":
        notes = tuple((instrument, f"{count} notes") for instrument, count in event.instruments)
        return [Card(title=f"{name} ready", facts=notes)]
    image = event.files[0][1] if event.kind == "cover" and event.files else ""
    return [Card(title=f"{name} ready", links=event.files, image=image)]


def files_note(found: list[Card]) -> str:
    """`` · Files … expire …`` when the cards link to the provider's files."""
    return f" · {FILES_EXPIRE}" if any(card.links or card.image for card in found) else ""
