"""Mattermost incoming webhooks (``https://<host>/hooks/<key>``: the key is the credential).

Slack-compatible body; the relay sends ``text`` (Markdown) with the title as a heading. The
server answers 200 ``ok``. Limits (Mattermost's documentation): at most 16,383 characters a post,
so lyrics go :data:`POST_LIMIT` characters a post, cut between stanzas. Mentions: ``@channel``,
``@here``, ``@all`` and ``@username`` notify people, and Slack-style ``<!channel>`` is translated
into a mention; Slack's ``parse``/``link_names`` are not supported there, so provider text is
neutralised instead (a zero-width space after ``@`` and ``<``), and its Markdown is escaped.
Server-side rate limiting is optional (10/s, burst 100, when on).
"""

from __future__ import annotations

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
    truncate,
)

POST_LIMIT = 16_000  # of 16,383
TITLE_LIMIT = 200
_MARKDOWN = re.compile(r"([\\`*_~|#>\[\]])")


def escape(text: str) -> str:
    """Provider text that pings nobody and shows as written."""
    text = text.replace("@", "@\u200b").replace("<", "<\u200b")
    return _MARKDOWN.sub(r"\\\1", text)


def _escape_keeping_tags(text: str) -> str:
    """Like :func:`escape`, but ``[Tag]`` lines stay recognisable for section labels."""
    text = text.replace("@", "@\u200b").replace("<", "<\u200b")
    return re.sub(r"([\\`*_~|#>])", r"\\\1", text)


class MattermostTarget(Target):
    kind = "mattermost"
    variable = "MATTERMOST_WEBHOOK_URL"
    default_rate = (5, 1.0)  # Mattermost: 10/s where limited at all

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        posts: list[str] = []
        if not event.lyrics:
            posts += self._posts("#### Lyrics generation failed", "❌ " + escape(failure_text(event)))
        for item in event.lyrics:
            posts += self._item_posts(item)
        posts[-1] += f"\n\n_Suno task {escape(event.task_id)} · {escape(event.callback_type)}_"
        return [{"text": post} for post in posts]

    def notice(self, text: str) -> dict[str, Any]:
        return {"text": escape(text)}

    def classify(self, response: Answer) -> Outcome:
        outcome = super().classify(response)
        # Mattermost answers 400 for a hook that is disabled or was deleted: gone, not our payload.
        if not outcome.ok and "incoming_webhook" in response.text and "invalid_payload" not in response.text:
            return Outcome(ok=False, reason=outcome.reason, status=outcome.status, permanent=True, gone=True)
        return outcome

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        parts = []
        for card in found:
            lines = [f"#### {escape(('❌ ' if card.failed else '') + card.title)}"]
            lines += [f"**{escape(label)}:** {escape(value)}" for label, value in card.facts]
            lines += [markdown_link(escape(label), link) for label, link in card.links]
            if card.image:
                lines.append(f"![cover]({card.image.replace('(', '%28').replace(')', '%29')})")
            parts.append("  \n".join(lines))
        expire = files_note(found)
        text = "\n\n".join(parts) + f"\n\n_Suno task {escape(event.task_id)} · {event.type}{expire}_"
        return [{"text": text[:POST_LIMIT]}]

    def omitted(self, count: int) -> dict[str, Any]:
        return {"text": OMITTED_NOTE.format(count=count)}

    def _item_posts(self, item: Lyric) -> list[str]:
        heading = f"#### {escape(truncate(item.title or 'Untitled lyrics', TITLE_LIMIT))}"
        if not item.ok:
            return self._posts(f"#### Failed: {heading[5:]}", "❌ " + escape(item.error or f"status {item.status}"))
        if not item.text and self.spec.format == "title":
            return [heading]
        labelled = label_sections(_escape_keeping_tags(item.text), "**")
        return self._posts(heading, labelled.replace("[", "\\[").replace("]", "\\]"))

    @staticmethod
    def _posts(heading: str, body: str) -> list[str]:
        pieces = chunk_text(body, POST_LIMIT) or ["(empty)"]
        return [f"{heading}{' (continued)' if n else ''}\n\n{piece}" for n, piece in enumerate(pieces)]
