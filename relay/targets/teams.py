"""Microsoft Teams, through Workflows ("Post to a channel when a webhook request is received").

The URL a user copies from Teams → Workflows is a secret as a whole (its ``sig=`` query value is
the credential). Body: one Adaptive Card (version 1.2, full width) in a ``message`` envelope; the
legacy MessageCard format fails on these flows. Limits (Microsoft's documentation and senders'
reports): a posted message is limited to about 28 KB including markup, with failures reported
from about 21 KB, so each message here stays under :data:`MESSAGE_BYTES` and long lyrics continue
in further messages. Success is 200 or 202. A flow that is turned off answers
``WorkflowTriggerIsNotEnabled``: gone (the breaker opens). Plain text pings nobody (a mention needs ``<at>``
plus ``msteams.entities``, never sent here), and provider text is backslash-escaped for the
card's markdown, so ``<at>x</at>`` or ``**x**`` show as written.
"""

from __future__ import annotations

import json
import re
from typing import Any

from relay.delivery.http import Answer
from relay.suno import Event, Lyric
from relay.targets.base import (
    OMITTED_NOTE,
    Card,
    Outcome,
    Target,
    chunk_text,
    failure_text,
    files_note,
    label_sections,
    markdown_link,
    short_text,
    truncate,
)

MESSAGE_BYTES = 18_000  # well under the ~21 KB where posts start failing
PIECE_LIMIT = 4000  # characters of lyrics per TextBlock
TITLE_LIMIT = 200
_MARKDOWN = re.compile(r"([\\`*_~()<>#+\-!|{}])")  # and brackets, once section labels are made
PERMANENT_CODES = {"WorkflowTriggerIsNotEnabled", "DirectApiAuthorizationRequired", "InvalidWorkflowTriggerUrl"}


def escape(text: str, brackets: bool = True) -> str:
    """Provider text as written: CommonMark's punctuation backslash-escaped, so `<at>` and
    markdown are shown, never interpreted."""
    text = _MARKDOWN.sub(r"\\\1", text)
    return text.replace("[", "\\[").replace("]", "\\]") if brackets else text


def lyrics_markdown(text: str) -> str:
    """Escaped lyrics with `[Verse]` lines as bold labels."""
    labelled = label_sections(escape(text, brackets=False), "**")
    return labelled.replace("[", "\\[").replace("]", "\\]")


def _block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _card(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "body": blocks,
                    "msteams": {"width": "full"},
                },
            }
        ],
    }


def _size(message: dict[str, Any]) -> int:
    return len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode())


class TeamsTarget(Target):
    kind = "teams"
    variable = "TEAMS_WEBHOOK_URL"
    default_rate = (1, 1.0)  # Teams flows publish no figure: conservative
    expected_hosts = ("logic.azure.com", "powerautomate.com", "powerplatform.com")

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if not event.lyrics:
            blocks.append(_block("Lyrics generation failed", weight="Bolder", size="Medium", color="Attention"))
            blocks += [_block(piece) for piece in chunk_text("❌ " + escape(failure_text(event)), PIECE_LIMIT)]
        for item in event.lyrics:
            blocks += self._item_blocks(item)
        footer = _block(escape(f"Suno task {event.task_id} · {event.callback_type}"), isSubtle=True, size="Small")
        messages: list[list[dict[str, Any]]] = [[]]
        for block in blocks:
            if messages[-1] and _size(_card([*messages[-1], block, footer])) > MESSAGE_BYTES:
                messages.append([])
            messages[-1].append(block)
        return [_card([*page, footer]) for page in messages]

    def notice(self, text: str) -> dict[str, Any]:
        return _card([_block(escape(text))])

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for card in found:
            color = {"color": "Attention"} if card.failed else {}
            blocks.append(
                _block(escape(("❌ " if card.failed else "") + card.title), weight="Bolder", size="Medium", **color)
            )
            lines = [f"**{escape(label)}:** {escape(value)}" for label, value in card.facts]
            lines += [markdown_link(escape(label), link) for label, link in card.links]
            if lines:
                blocks.append(_block("  \n".join(lines)))
            if card.image:
                blocks.append({"type": "Image", "url": card.image, "altText": card.title, "size": "Medium"})
        expire = files_note(found)
        blocks.append(_block(escape(f"Suno task {event.task_id} · {event.type}{expire}"), isSubtle=True, size="Small"))
        return [_card(blocks)]

    def _item_blocks(self, item: Lyric) -> list[dict[str, Any]]:
        title = truncate(item.title or "Untitled lyrics", TITLE_LIMIT, escape)
        if not item.ok:
            reason = escape(item.error or f"status {item.status}")
            head = _block(f"Failed: {title}", weight="Bolder", size="Medium", color="Attention")
            return [head, *(_block(piece) for piece in chunk_text(f"❌ {reason}", PIECE_LIMIT))]
        head = _block(title, weight="Bolder", size="Medium")
        if not item.text and self.spec.format == "title":
            return [head]
        text = lyrics_markdown(item.text)
        # A TextBlock renders single newlines as spaces: keep line breaks as Markdown's two-space breaks.
        return [head, *(_block(piece.replace("\n", "  \n")) for piece in chunk_text(text, PIECE_LIMIT) or ["(empty)"])]

    def omitted(self, count: int) -> dict[str, Any]:
        return _card([_block(OMITTED_NOTE.format(count=count))])

    def classify(self, response: Answer) -> Outcome:
        outcome = super().classify(response)
        if outcome.ok:
            return outcome
        code = _error_code(response)
        if code in PERMANENT_CODES:
            return Outcome(
                ok=False,
                reason=f"teams: {code} (HTTP {response.status_code})",
                status=response.status_code,
                permanent=True,
                gone=True,  # the flow is off or its URL revoked
            )
        return outcome

    def describe_error(self, response: Answer) -> str:
        code = _error_code(response)
        return short_text(code) if code else super().describe_error(response)


def _error_code(response: Answer) -> str:
    try:
        body = response.json()
    except ValueError:
        return "WorkflowTriggerIsNotEnabled" if "WorkflowTriggerIsNotEnabled" in response.text else ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or "")
    return ""
