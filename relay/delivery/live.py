"""A song that follows its task: a ``stages=live`` target (Discord, Telegram, a Slack bot) shows
a music task's stages (``music.text``, ``music.first``, then ``music.completed`` or
``music.failed``) as one message, posted at the first stage to arrive and edited at each later
one, ending as the card a target without the option gets.

Per task and target Redis keeps that message (:func:`relay.store.keys.live_key`): its id, the
stage it shows, how often it was edited and the event it shows. It is written as soon as the
service accepted the post or the edit, before the next stage is handled. One stage at a time
per task and target (:func:`relay.store.keys.live_lock_key`, beside the delivery's own lock):
two stages arriving together never post two messages. A stage older than the one shown changes
nothing (``complete`` before ``first``: ``first`` is settled without a post); a stage re-run after
a crash repeats its edit, which leaves the message as it was; a message deleted in the meantime
is posted anew and followed from then on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.store.keys import text
from relay.suno import Event

# How far along a task a stage is; the message never goes back to a lower one.
RANK = {"music.text": 1, "music.first": 2, "music.completed": 3, "music.failed": 3}


@dataclass
class LiveMessage:
    """The task's one message on a target, as recorded."""

    message_id: str = ""  # the service's id (Slack's ts); "" before the first post
    rank: int = 0  # the stage it shows (RANK)
    edits: int = 0
    event_id: str = ""  # the event it shows

    @classmethod
    def from_redis(cls, raw: dict[Any, Any]) -> LiveMessage:
        found = {text(key): text(value) for key, value in raw.items()}
        return cls(
            message_id=found.get("message_id", ""),
            rank=int(found.get("rank") or 0),
            edits=int(found.get("edits") or 0),
            event_id=found.get("event_id", ""),
        )

    def mapping(self) -> dict[str, str | int]:
        return {"message_id": self.message_id, "rank": self.rank, "edits": self.edits, "event_id": self.event_id}

    def superseded_by_shown(self, event: Event) -> bool:
        """The message shows a later stage than ``event`` (or another end of the task)."""
        rank = RANK[event.type]
        return self.rank > rank or (self.rank == rank and self.event_id not in ("", event.id))

    def shown(self, event: Event, message_id: str, edited: bool) -> LiveMessage:
        """The record once ``event`` shows in message ``message_id``."""
        return LiveMessage(message_id, RANK[event.type], self.edits + int(edited), event.id)


def is_live(live: bool, event: Event) -> bool:
    """Whether a target with ``stages=live`` (``live``) shows ``event`` in the task's message."""
    return live and event.type in RANK
