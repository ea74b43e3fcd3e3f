"""The Suno API's callbacks, every kind and dialect → one normalised :class:`Event`.

Pure: no Flask, no Redis, no I/O. One module per task kind over shared parsing
(:mod:`relay.suno.parsing`): :mod:`~relay.suno.lyrics`, :mod:`~relay.suno.music`,
:mod:`~relay.suno.files` (WAV, stems, video, cover images), :mod:`~relay.suno.midi`.
:data:`NORMALISERS` maps each callback URL's kind to its normaliser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.suno import files, lyrics, midi, music, voice
from relay.suno.event import COMPLETED, FAILED, KINDS, PROGRESS_TYPES, Event, Lyric, Track
from relay.suno.lyrics import from_record, normalise, timed_out
from relay.suno.parsing import PayloadError, event_id, now_rfc3339, parse_json

NORMALISERS: dict[str, Callable[[Any], Event]] = {
    "lyrics": lyrics.normalise,
    "music": music.normalise,
    "wav": files.normalise_wav,
    "stems": files.normalise_stems,
    "video": files.normalise_video,
    "cover": files.normalise_cover,
    "midi": midi.normalise,
    "voice": voice.normalise,
}
assert set(NORMALISERS) == set(KINDS)

__all__ = [
    "COMPLETED",
    "FAILED",
    "KINDS",
    "NORMALISERS",
    "PROGRESS_TYPES",
    "Event",
    "Lyric",
    "PayloadError",
    "Track",
    "event_id",
    "from_record",
    "normalise",
    "now_rfc3339",
    "parse_json",
    "timed_out",
]
