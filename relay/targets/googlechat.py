"""Google Chat, through an incoming webhook (``https://chat.googleapis.com/v1/spaces/…/messages
?key=…&token=…``: the key and token are the credential, the whole URL is a secret).

Each message has a plain ``text`` fallback and a ``cardsV2`` card (header: title and the task;
sections of ``textParagraph`` widgets). Limits (Google Chat API): at most 32,000 bytes a message,
so a message here stays under :data:`MESSAGE_BYTES`; 60 writes a minute per space for all apps
together (over it: 429, with no Retry-After, so the relay's backoff applies). One thread per
task: ``thread.threadKey`` is derived from the task id, with
``messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD``, so an event's continuation messages
and a task's later events stay together. Mentions are ``<users/…>`` (``<users/all>`` for
everyone): provider text is HTML-escaped in  and in the plain text a zero-width space
after ``<`` keeps ``<users/all>`` from pinging. 403 (a bad key or token) is gone (the breaker
opens); 400 refuses the payload.
"""

from __future__ import annotations

import hashlib
import html
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from relay.suno import Event, Lyric
from relay.targets.base import (
    OMITTED_NOTE,
    Card,
    Target,
    chunk_text,
    failure_text,
    files_note,
    label_sections,
    truncate,
)

MESSAGE_BYTES = 28_000  # of 32,000
PIECE_LIMIT = 4000
TITLE_LIMIT = 200
REPLY_OPTION = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def plain(text: str) -> str:
    """Plain message text that mentions nobody: ``<users/all>`` → ``<\u200busers/all>``."""
    return text.replace("<", "<\u200b")


def thread_key(task_id: str) -> str:
    return "suno-" + hashlib.sha256(task_id.encode()).hexdigest()[:24]


class GoogleChatTarget(Target):
    kind = "googlechat"
    variable = "GOOGLE_CHAT_WEBHOOK_URL"
    default_rate = (1, 1.0)  # Google Chat: 60 a minute per space, all apps together
    expected_hosts = ("chat.googleapis.com",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parts = urlsplit(self.spec.url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "messageReplyOption"]
        self.post_url = urlunsplit(parts._replace(query=urlencode([*query, ("messageReplyOption", REPLY_OPTION)])))

    def url_for(self, message: dict[str, Any]) -> str:
        return self.post_url

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        sections: list[tuple[str, list[str]]] = []  # (header, paragraphs)
        if not event.lyrics:
            sections.append(("Lyrics generation failed", chunk_text("❌ " + escape(failure_text(event)), PIECE_LIMIT)))
        for item in event.lyrics:
            sections.append(self._item_section(item))
        subtitle = f"Suno task {event.task_id} · {event.callback_type}"
        messages: list[dict[str, Any]] = []
        widgets: list[dict[str, Any]] = []
        titles: list[str] = []
        for header, paragraphs in sections:
            for n, paragraph in enumerate(paragraphs):
                text = f"<b>{escape(header)}</b>{' (continued)' if n else ''}<br>{paragraph}"
                widget = {"textParagraph": {"text": text}}
                candidate = self._message(event, subtitle, titles or [header], [*widgets, widget])
                if widgets and len(json.dumps(candidate).encode()) > MESSAGE_BYTES:
                    messages.append(self._message(event, subtitle, titles, widgets))
                    widgets, titles = [], []
                widgets.append(widget)
                if header not in titles:
                    titles.append(header)
        messages.append(self._message(event, subtitle, titles, widgets))
        return messages

    def notice(self, text: str) -> dict[str, Any]:
        return {"text": plain(text)}

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        widgets: list[dict[str, Any]] = []
        for card in found:
            lines = [f"<b>{escape(('❌ ' if card.failed else '') + card.title)}</b>"]
            lines += [f"<b>{escape(label)}:</b> {escape(value)}" for label, value in card.facts]
            lines += [f'<a href="{html.escape(link, quote=True)}">{escape(label)}</a>' for label, link in card.links]
            widgets.append({"textParagraph": {"text": "<br>".join(lines)}})
            if card.image:
                widgets.append({"image": {"imageUrl": card.image, "altText": plain(card.title)}})
        expire = files_note(found)
        subtitle = f"Suno task {event.task_id} · {event.type}{expire}"
        message = self._message(event, subtitle, [card.title for card in found], widgets)
        image = next((card.image for card in found if card.image), "")
        if image:
            message["cardsV2"][0]["card"]["header"]["imageUrl"] = image
        return [message]

    def omitted(self, count: int) -> dict[str, Any]:
        return {"text": OMITTED_NOTE.format(count=count)}

    def _item_section(self, item: Lyric) -> tuple[str, list[str]]:
        title = truncate(item.title or "Untitled lyrics", TITLE_LIMIT)
        if not item.ok:
            return f"Failed: {title}", chunk_text("❌ " + escape(item.error or f"status {item.status}"), PIECE_LIMIT)
        if not item.text and self.spec.format == "title":
            return title, [""]
        pieces = chunk_text(label_sections(escape(item.text), "<b>", "</b>"), PIECE_LIMIT) or ["(empty)"]
        return title, [piece.replace("\n", "<br>") for piece in pieces]

    @staticmethod
    def _message(event: Event, subtitle: str, titles: list[str], widgets: list[dict[str, Any]]) -> dict[str, Any]:
        heading = ", ".join(titles) or "Suno"
        return {
            "text": plain(truncate(f"{heading} ({subtitle})", 500)),
            "cardsV2": [
                {
                    "cardId": f"{event.id}-{len(widgets)}",
                    "card": {
                        "header": {"title": plain(truncate(heading, TITLE_LIMIT)), "subtitle": plain(subtitle)},
                        "sections": [{"widgets": widgets}],
                    },
                }
            ],
            "thread": {"threadKey": thread_key(event.task_id)},
        }
