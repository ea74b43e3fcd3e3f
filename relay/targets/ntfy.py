"""ntfy (``NTFY_URL``: ``https://ntfy.sh/<topic>`` or a self-hosted server's topic URL; the topic
name is the only secret of a public topic, so the whole URL is treated as one). ``NTFY_TOKEN``:
an optional access token, sent as ``Authorization: Bearer`` and never logged.

Published as the message body with headers ``Title`` (RFC 2047 for non-ASCII), ``Tags``,
``Priority`` and ``Markdown: yes``. Limits (ntfy's documentation): a message is at most 4,096
bytes (a longer one becomes an attachment), so long lyrics continue in further messages; over
the rate limit ntfy answers 429 with JSON ``{"code": 42901, …}`` and no Retry-After (the relay's
backoff applies), and ``42908`` is the daily quota (the relay waits :data:`QUOTA_WAIT`). ntfy.sh
refills one request every 5 s after a burst of 60.
"""

from __future__ import annotations

import email.header
import re
from collections.abc import Mapping
from typing import Any

from relay.delivery.http import Answer
from relay.suno import Event, Lyric
from relay.targets.base import (
    KIND_TITLES,
    OMITTED_NOTE,
    Card,
    Outcome,
    Target,
    chunk_text,
    failure_text,
    files_note,
    label_sections,
    markdown_link,
    truncate,
)
from relay.targets.spec import ConfigError, TargetSpec, Variable

MESSAGE_BYTES = 4096
TITLE_LIMIT = 200
QUOTA_WAIT = 3600.0  # the daily quota: the most a Retry-After may ask (MAX_RETRY_AFTER)
_MARKDOWN = re.compile(r"([\\`*_~|#>])")


def escape(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def header_value(text: str) -> str:
    """An HTTP header value: ASCII as it is, anything else RFC 2047-encoded."""
    text = " ".join(text.split())
    if text.isascii():
        return text
    return email.header.Header(text, "utf-8").encode()


def fit_bytes(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, cut between stanzas first."""
    pieces = []
    for piece in chunk_text(text, limit) or [""]:
        if len(piece.encode()) <= limit:
            pieces.append(piece)
        else:  # multi-byte characters: the same piece, cut finer
            pieces += fit_bytes(piece, max(limit // 2, 64)) if len(piece) > 1 else [piece]
    return pieces


class NtfyTarget(Target):
    kind = "ntfy"
    variable = "NTFY_URL"
    other_variables = (Variable("NTFY_TOKEN", deploy=True, secret=True),)
    default_rate = (12, 60.0)  # ntfy.sh: a burst of 60, then one per 5 s

    @classmethod
    def extra_of(cls, env: Mapping[str, str], options: Mapping[str, str], where: str) -> dict[str, str]:
        return {"token": env.get("NTFY_TOKEN", "").strip()}

    @classmethod
    def check_environment(cls, env: Mapping[str, str], specs: list[TargetSpec]) -> None:
        if env.get("NTFY_TOKEN", "").strip() and not specs:
            raise ConfigError("NTFY_TOKEN is set but NTFY_URL is not")

    max_cards = 8  # 4,096 bytes a message

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if not event.lyrics:
            messages += self._messages("Lyrics generation failed", "❌ " + escape(failure_text(event)), "x", "high")
        for item in event.lyrics:
            messages += self._item_messages(item)
        footer = f"\n\n_Suno task {escape(event.task_id)} · {escape(event.callback_type)}_"
        if len((messages[-1]["body"] + footer).encode()) <= MESSAGE_BYTES:
            messages[-1]["body"] += footer
        return messages

    def notice(self, text: str) -> dict[str, Any]:
        return self._messages(truncate(text, TITLE_LIMIT), escape(text), "warning", "high")[0]

    def _item_messages(self, item: Lyric) -> list[dict[str, Any]]:
        title = truncate(item.title or "Untitled lyrics", TITLE_LIMIT)
        if not item.ok:
            return self._messages(
                f"Failed: {title}", "❌ " + escape(item.error or f"status {item.status}"), "x", "high"
            )
        if not item.text and self.spec.format == "title":
            return [{"title": title, "body": title, "tags": "musical_note", "priority": "default"}]
        labelled = label_sections(escape(item.text), "**")
        return self._messages(title, labelled, "musical_note", "default")

    @staticmethod
    def _messages(title: str, body: str, tags: str, priority: str) -> list[dict[str, Any]]:
        pieces = fit_bytes(body, MESSAGE_BYTES - 200)  # room for the footer
        total = len(pieces)
        return [
            {
                "title": title if total == 1 else f"{title} ({n}/{total})",
                "body": piece,
                "tags": tags,
                "priority": priority,
            }
            for n, piece in enumerate(pieces, start=1)
        ]

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        parts = []
        for card in found:
            lines = [f"**{escape(('❌ ' if card.failed else '') + card.title)}**"]
            lines += [f"{escape(label)}: {escape(value)}" for label, value in card.facts]
            lines += [markdown_link(escape(label), link) for label, link in card.links]
            parts.append("  \n".join(lines))
        expire = files_note(found)
        body = "\n\n".join(parts) + f"\n\n_Suno task {escape(event.task_id)} · {event.type}{expire}_"
        failed = any(card.failed for card in found)
        title = KIND_TITLES.get(event.kind, event.kind) + (" failed" if failed else "")
        message = {"title": title, "body": fit_bytes(body, MESSAGE_BYTES)[0], "tags": "x" if failed else "musical_note"}
        message["priority"] = "high" if failed else "default"
        link = next((link for card in found for _, link in card.links), "")
        if link:
            message["click"] = link  # tapping the notification opens the file
        return [message]

    def omitted(self, count: int) -> dict[str, Any]:
        return {
            "title": "suno-relay",
            "body": OMITTED_NOTE.format(count=count),
            "tags": "warning",
            "priority": "default",
        }

    def encode(self, message: dict[str, Any], event: Event) -> tuple[bytes, dict[str, str]]:
        headers = {
            "User-Agent": "suno-relay",
            "Content-Type": "text/markdown; charset=utf-8",
            "Title": header_value(message["title"]),
            "Tags": message["tags"],
            "Priority": message["priority"],
            "Markdown": "yes",
        }
        if message.get("click"):
            headers["Click"] = message["click"]
        token = self.spec.extra.get("token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return message["body"].encode(), headers

    def classify(self, response: Answer) -> Outcome:
        outcome = super().classify(response)
        if response.status_code == 429 and _code(response) == 42908:
            return Outcome(ok=False, reason="ntfy: daily quota reached (42908)", status=429, retry_after=QUOTA_WAIT)
        return outcome


def _code(response: Answer) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
