"""Discord webhooks: embeds, and never a ping.

Limits (Discord's API reference): embed title 256, description 4096, all embeds of one message
6000 characters, 10 embeds a message. ``allowed_mentions: {"parse": []}`` on every message, so
``@everyone`` or ``<@id>`` in lyrics mention nobody. Provider text is escaped for Discord's
markdown (``*``, ``_``, ``~``, ``|``, backticks, and ``#``, ``>``, ``-`` at a line's start), so
it shows as written; long text (lyrics, a failure message) continues in further embeds.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from relay.delivery.http import Answer
from relay.suno import Event, Lyric
from relay.targets.base import (
    MAX_RETRY_AFTER,
    Card,
    Outcome,
    Target,
    answer_fields,
    chunk_text,
    failure_text,
    files_note,
    label_sections,
    limit_messages,
    markdown_link,
    short_text,
    truncate,
)

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
MESSAGE_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10
GREEN, RED = 0x2ECC71, 0xE74C3C
NO_MENTIONS: dict[str, list[str]] = {"parse": []}


# Two continuation pieces, a title and the footer fit one message (6000): lyrics go 5400 a message.
PIECE_LIMIT = 2700


_MARKDOWN = re.compile(r"([\\*_~|`])")
_LINE_MARKDOWN = re.compile(r"^([ \t]*)([#>-])", re.MULTILINE)


def escape(text: str) -> str:
    """Provider text as written: Discord's markdown characters backslash-escaped."""
    return _LINE_MARKDOWN.sub(r"\1\\\2", _MARKDOWN.sub(r"\\\1", text))


def _pieces(markdown: str, empty: str = "*(empty)*") -> list[str]:
    return chunk_text(markdown, PIECE_LIMIT) or [empty]


def _size(embed: dict[str, Any]) -> int:
    return sum(len(embed.get(key, "")) for key in ("title", "description"))


UNKNOWN_MESSAGE = 10008  # Discord's JSON error code: the message was deleted (10015: the webhook)


class DiscordTarget(Target):
    kind = "discord"
    variable = "DISCORD_WEBHOOK_URL"
    default_rate = (5, 2.0)  # Discord: 5 requests per 2 s per webhook
    expected_hosts = ("discord.com", "discordapp.com")
    max_cards = 10  # 10 embeds a message
    live_capable = True  # ?wait=true answers the message; PATCH …/messages/{id} edits it

    def post_live(self, message: dict[str, Any], event: Event) -> tuple[Outcome, str]:
        parts = urlsplit(self.spec.url)
        query = "&".join(filter(None, [parts.query, "wait=true"]))
        outcome, answer = self.exchange(urlunsplit(parts._replace(query=query)), message, event)
        found = str(answer_fields(answer).get("id", "")) if outcome.ok else ""
        return outcome, found if found.isdigit() else ""

    def edit(self, message_id: str, message: dict[str, Any], event: Event) -> Outcome:
        parts = urlsplit(self.spec.url)
        url = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/messages/{message_id}"))
        outcome, answer = self.exchange(url, message, event, method="PATCH")
        if answer is not None and answer.status_code == 404 and answer_fields(answer).get("code") == UNKNOWN_MESSAGE:
            return Outcome(ok=False, reason="the message was deleted", status=404, missing=True)
        return outcome

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        footer = {"text": truncate(f"Suno task {event.task_id} · {event.callback_type}", 200, escape)}
        embeds: list[dict[str, Any]] = []
        if not event.lyrics:
            pieces = _pieces(f"❌ {escape(failure_text(event))}")
            embeds += [{"description": piece, "color": RED} for piece in pieces]
            embeds[0]["title"] = "Lyrics generation failed"
        for item in event.lyrics:
            embeds += self._item_embeds(item)
        messages: list[list[dict[str, Any]]] = [[]]
        for embed in embeds:
            page = messages[-1]
            full = sum(map(_size, page)) + _size(embed) + len(footer["text"]) > MESSAGE_LIMIT
            if page and (len(page) == EMBEDS_PER_MESSAGE or full):
                messages.append(page := [])
            page.append(embed)
        for page in messages:
            page[-1]["footer"] = footer  # once a message: the task id, without eating the budget
        rendered = [{"embeds": page, "allowed_mentions": NO_MENTIONS} for page in messages]
        return limit_messages(rendered, self._omitted)

    def notice(self, text: str) -> dict[str, Any]:
        return {"content": truncate(text, 2000, escape), "allowed_mentions": NO_MENTIONS}

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        embeds = []
        for card in found[:EMBEDS_PER_MESSAGE]:
            lines = [f"**{escape(label)}:** {escape(value)}" for label, value in card.facts]
            lines += [markdown_link(escape(label), link) for label, link in card.links]
            embed: dict[str, Any] = {
                "title": truncate(("❌ " if card.failed else "") + card.title, TITLE_LIMIT, escape),
                "description": "\n".join(lines)[:DESCRIPTION_LIMIT] or "\u200b",
                "color": RED if card.failed else GREEN,
            }
            if card.image:
                embed["thumbnail"] = {"url": card.image}
            embeds.append(embed)
        expire = files_note(found)
        embeds[-1]["footer"] = {"text": truncate(f"Suno task {event.task_id} · {event.type}{expire}", 200)}
        return [{"embeds": embeds, "allowed_mentions": NO_MENTIONS}]

    def _item_embeds(self, item: Lyric) -> list[dict[str, Any]]:
        title = item.title or "Untitled lyrics"
        if not item.ok:
            reason = item.error or f"status {item.status}"
            pieces = _pieces(f"❌ **Lyrics generation failed:** {escape(reason)}")
            failed: list[dict[str, Any]] = [{"description": piece, "color": RED} for piece in pieces]
            failed[0]["title"] = truncate(f"Failed: {title}", TITLE_LIMIT, escape)
            return failed
        if not item.text and self.spec.format == "title":
            return [{"title": truncate(title, TITLE_LIMIT, escape), "description": "🎵", "color": GREEN}]
        embeds: list[dict[str, Any]] = [
            {"description": piece, "color": GREEN} for piece in _pieces(label_sections(escape(item.text), "**"))
        ]
        embeds[0]["title"] = truncate(title, TITLE_LIMIT, escape)
        return embeds

    @staticmethod
    def _omitted(omitted: int) -> dict[str, Any]:
        note = f"⚠️ {omitted} more message(s) of lyrics were not sent: they exceed the relay's limit."
        return {"content": note, "allowed_mentions": NO_MENTIONS}

    def describe_error(self, response: Answer) -> str:
        try:
            body = response.json()
        except ValueError:
            return super().describe_error(response)
        if isinstance(body, dict) and "message" in body:
            code = f" ({body['code']})" if "code" in body else ""
            return short_text(f"{body['message']}{code}")
        return super().describe_error(response)

    def retry_after(self, response: Answer) -> float | None:
        # Discord puts a float `retry_after` (seconds) in the JSON body of a 429; use the larger
        # of it and the header, so that we never come back sooner than asked.
        header = super().retry_after(response)
        try:
            body = response.json()
            value = float(body["retry_after"]) if isinstance(body, dict) and "retry_after" in body else None
        except (ValueError, TypeError):
            value = None
        if value is None or value != value:
            return header
        return min(max(value, header or 0.0, 0.0), MAX_RETRY_AFTER)
