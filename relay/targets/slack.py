"""Slack incoming webhooks: Block Kit messages with a plain-text fallback.

Limits (Slack's Block Kit reference): header text 150 characters, section text 3000, 50 blocks a
message. Provider text is escaped (``&``, ``<``, ``>``) so ``<!channel>`` in lyrics pings nobody.
Every text longer than its block's limit (lyrics, a provider's failure message) continues in
further sections; only titles are cut, visibly, on the characters a reader sees. Slack's mrkdwn
has no escape for ``*``, ``_``, ``~`` or `````: provider text using them shows formatted.
"""

from __future__ import annotations

from typing import Any

from relay.delivery.http import Answer
from relay.suno import Event, Lyric
from relay.targets.base import (
    Card,
    Outcome,
    Target,
    chunk_text,
    failure_text,
    files_note,
    label_sections,
    limit_messages,
    truncate,
)

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50
# Slack answers these with 4xx: the webhook is gone or disabled, retrying cannot help.
# Answers that say the webhook or its channel is gone (the breaker opens), and the ones that
# refuse this payload (a relay bug: that delivery is dead).
GONE_ERRORS = {
    "no_service", "invalid_token", "channel_not_found", "channel_is_archived", "action_prohibited",
    "no_active_hooks", "team_disabled", "no_service_id", "user_not_found", "posting_to_general_channel_denied",
}  # fmt: skip
INVALID_ERRORS = {"invalid_payload", "too_many_attachments", "invalid_blocks"}
PERMANENT_ERRORS = GONE_ERRORS | INVALID_ERRORS


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": truncate(text, HEADER_LIMIT, escape)}}


def _sections(mrkdwn: str) -> list[dict[str, Any]]:
    """Text of any length as sections of at most SECTION_LIMIT, cut between stanzas first."""
    return [_section(piece) for piece in chunk_text(mrkdwn, SECTION_LIMIT) or ["_(empty)_"]]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


class SlackTarget(Target):
    kind = "slack"
    variable = "SLACK_WEBHOOK_URL"
    default_rate = (1, 1.0)  # Slack: 1 message/s per incoming webhook
    expected_hosts = ("hooks.slack.com",)
    max_cards = 20  # 50 blocks a message: a header and a section a card, the footer

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if not event.lyrics:
            blocks += [_header("Lyrics generation failed"), *_sections(f":x: {escape(failure_text(event))}")]
        for item in event.lyrics:
            blocks += self._item_blocks(item)
        footer = _context(f"Suno task `{escape(event.task_id)}` · {escape(event.callback_type)}")
        pages = [blocks[i : i + BLOCKS_PER_MESSAGE - 1] for i in range(0, len(blocks), BLOCKS_PER_MESSAGE - 1)]
        fallback = escape(self._fallback(event))
        messages = [
            {"text": fallback if n == 1 else f"{fallback} (part {n} of {len(pages)})", "blocks": [*page, footer]}
            for n, page in enumerate(pages, start=1)
        ]
        return limit_messages(messages, lambda omitted: self._omitted(fallback, footer, omitted))

    def notice(self, text: str) -> dict[str, Any]:
        return {"text": escape(text), "blocks": [_section(escape(text))]}

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for card in found:
            blocks.append(_header(("❌ " if card.failed else "") + card.title))
            lines = [f"*{escape(label)}:* {escape(value)}" for label, value in card.facts]
            lines += [f"<{link}|{escape(label)}>" for label, link in card.links]
            sections = _sections("\n".join(lines) or " ")
            if card.image:  # the cover beside the first section
                sections[0]["accessory"] = {
                    "type": "image",
                    "image_url": card.image,
                    "alt_text": truncate(card.title, 100),
                }
            blocks += sections
        expire = files_note(found)
        blocks.append(_context(f"Suno task `{escape(event.task_id)}` · {event.type}{expire}"))
        fallback = escape(truncate(", ".join(card.title for card in found), 300))
        return [{"text": fallback, "blocks": blocks[:BLOCKS_PER_MESSAGE]}]

    def _item_blocks(self, item: Lyric) -> list[dict[str, Any]]:
        title = item.title or "Untitled lyrics"
        if not item.ok:
            reason = item.error or f"status {item.status}"
            return [_header(f"Failed: {title}"), *_sections(f":x: *Lyrics generation failed:* {escape(reason)}")]
        if not item.text and self.spec.format == "title":
            return [_header(title)]
        return [_header(title), *_sections(label_sections(escape(item.text), "*"))]

    @staticmethod
    def _fallback(event: Event) -> str:
        if event.failed:
            return truncate(f"Lyrics generation failed: {failure_text(event)}", 300)
        titles = ", ".join(item.title or "Untitled" for item in event.lyrics if item.ok)
        return truncate(f"New lyrics: {titles}", 300)

    @staticmethod
    def _omitted(fallback: str, footer: dict[str, Any], omitted: int) -> dict[str, Any]:
        note = f":warning: {omitted} more message(s) of lyrics were not sent: they exceed the relay's limit."
        return {"text": f"{fallback} (truncated)", "blocks": [_section(note), footer]}

    def classify(self, response: Answer) -> Outcome:
        outcome = super().classify(response)
        answer = response.text.strip()
        if outcome.ok or answer not in PERMANENT_ERRORS:
            return outcome
        return Outcome(
            ok=False,
            reason=f"slack: {answer} (HTTP {response.status_code})",
            status=response.status_code,
            permanent=True,
            gone=answer in GONE_ERRORS,
        )
