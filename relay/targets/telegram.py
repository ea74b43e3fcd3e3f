"""Telegram, through a bot: ``sendMessage`` to each configured chat (and forum topic).

``TELEGRAM_BOT_TOKEN`` + ``TELEGRAM_CHAT_ID`` (a comma list, each chat a target). The token is in
the request's path (``/bot<token>/sendMessage``): like a webhook URL it is a secret, scrubbed
from anything derived from an answer. Limits (Telegram Bot API): ``text`` 1–4096 characters
after entity parsing, so lyrics go :data:`TEXT_LIMIT` visible characters a message; about one
message a second per chat and 20 a minute per group. HTML parse mode: ``&``, ``<``, ``>``
escaped, the title in ``<b>``. A 429 carries ``parameters.retry_after`` in its JSON body. 403
(blocked, kicked) and 400 ``chat not found`` are gone (the breaker opens); a group migrated to a
supergroup answers 400 with ``parameters.migrate_to_chat_id``: gone too, the reason says which id
to configure. Another 400 refuses the message (a relay bug: dead).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from relay.delivery.http import Answer
from relay.suno import Event, Lyric
from relay.targets.base import (
    MAX_RETRY_AFTER,
    OMITTED_NOTE,
    Card,
    Outcome,
    Target,
    answer_fields,
    chunk_text,
    failure_text,
    files_note,
    label_sections,
    short_text,
    truncate,
)
from relay.targets.spec import (
    COMMON_OPTIONS,
    ConfigError,
    TargetSpec,
    Variable,
    bot_settings,
    build_spec,
    parse_options,
)

_TOKEN = re.compile(r"^[0-9]{3,20}:[A-Za-z0-9_-]{20,}$")
_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")
TEXT_LIMIT = 3900  # of 4096, room for the title and a part marker
TITLE_LIMIT = 200


def escape(text: str) -> str:
    return html.escape(text, quote=False)


class TelegramTarget(Target):
    kind = "telegram"
    variable = "TELEGRAM_CHAT_ID"  # chat ids (not secret); the token is the secret
    other_variables = (
        Variable("TELEGRAM_BOT_TOKEN", deploy=True, secret=True),
        Variable("TELEGRAM_API_BASE"),
    )
    default_rate = (20, 60.0)  # about 1/s per chat, 20 a minute per group
    options = frozenset({"topic"})
    live_capable = True  # sendMessage answers its message_id; editMessageText edits it

    def post_live(self, message: dict[str, Any], event: Event) -> tuple[Outcome, str]:
        outcome, answer = self.exchange(self.spec.url, message, event)
        result = answer_fields(answer).get("result")
        found = result.get("message_id") if isinstance(result, dict) and outcome.ok else None
        return outcome, str(found) if isinstance(found, int) and not isinstance(found, bool) else ""

    def edit(self, message_id: str, message: dict[str, Any], event: Event) -> Outcome:
        body = {key: value for key, value in message.items() if key != "message_thread_id"}
        body["message_id"] = int(message_id)
        url = self.spec.url.rsplit("/", 1)[0] + "/editMessageText"
        outcome, answer = self.exchange(url, body, event)
        said = str(answer_fields(answer).get("description", "")).lower()
        if "message is not modified" in said:  # the same content again (a stage re-run): done
            return Outcome.delivered(200)
        if "message to edit not found" in said:
            return Outcome(ok=False, reason="the message was deleted", status=400, missing=True)
        return outcome

    @classmethod
    def variables(cls) -> tuple[Variable, ...]:
        return (Variable(cls.variable, deploy=True), *cls.other_variables)

    @classmethod
    def specs(cls, env: Mapping[str, str]) -> list[TargetSpec]:
        """``TELEGRAM_BOT_TOKEN`` + ``TELEGRAM_CHAT_ID`` (``-100123#name=songs&topic=42``, …)."""
        found = bot_settings(env, "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", _TOKEN,
                             "look like 123456789:AAE… (from @BotFather)",
                             "TELEGRAM_API_BASE", "https://api.telegram.org")  # fmt: skip
        if found is None:
            return []
        token, chats, base = found
        specs = []
        for position, entry in enumerate(chats, start=1):
            where = f"TELEGRAM_CHAT_ID entry {position}"
            chat, _, fragment = entry.partition("#")
            if not _CHAT.match(chat.strip()):
                raise ConfigError(f"{where} must be a chat id (-100…) or a @channelusername")
            options = parse_options(fragment, where, COMMON_OPTIONS | cls.options)
            extra = {"chat_id": chat.strip()}
            if "topic" in options:
                if not options["topic"].isdigit():
                    raise ConfigError(f"{where}: topic must be a forum topic's number")
                extra["topic"] = options["topic"]
            url = f"{base}/bot{token}/sendMessage"
            specs.append(
                build_spec(cls.kind, position, where, options, url, extra, cls.default_rate, live_capable=True)
            )
        return specs

    max_cards = 8  # 4,096 characters a message

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        texts: list[str] = []
        if not event.lyrics:
            texts += self._pieces("<b>Lyrics generation failed</b>", "❌ " + escape(failure_text(event)))
        for item in event.lyrics:
            texts += self._item_texts(item)
        footer = f"\n\n<i>Suno task {escape(event.task_id)} · {escape(event.callback_type)}</i>"
        texts[-1] += footer
        return [self._message(text) for text in texts]

    def notice(self, text: str) -> dict[str, Any]:
        return self._message(escape(text))

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        parts = []
        for card in found:
            lines = [f"<b>{escape(('❌ ' if card.failed else '') + card.title)}</b>"]
            lines += [f"<b>{escape(label)}:</b> {escape(value)}" for label, value in card.facts]
            lines += [f'<a href="{html.escape(link, quote=True)}">{escape(label)}</a>' for label, link in card.links]
            parts.append("\n".join(lines))
        expire = files_note(found)
        text = "\n\n".join(parts)[:TEXT_LIMIT] + f"\n\n<i>Suno task {escape(event.task_id)} · {event.type}{expire}</i>"
        message = self._message(text)
        image = next((card.image for card in found if card.image), "")
        if image:  # the cover, as the link preview
            message["link_preview_options"] = {"url": image, "prefer_small_media": True}
        return [message]

    def _item_texts(self, item: Lyric) -> list[str]:
        title = f"<b>{escape(truncate(item.title or 'Untitled lyrics', TITLE_LIMIT))}</b>"
        if not item.ok:
            return self._pieces(f"<b>Failed:</b> {title}", "❌ " + escape(item.error or f"status {item.status}"))
        if not item.text and self.spec.format == "title":
            return [title]
        return self._pieces(title, label_sections(escape(item.text), "<b>", "</b>"))

    @staticmethod
    def _pieces(title: str, body: str) -> list[str]:
        pieces = chunk_text(body, TEXT_LIMIT) or ["(empty)"]
        return [
            f"{title}\n\n{piece}" if n == 0 else f"{title} (continued)\n\n{piece}" for n, piece in enumerate(pieces)
        ]

    def _message(self, text: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "chat_id": self.spec.extra["chat_id"],
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        if self.spec.extra.get("topic"):
            message["message_thread_id"] = int(self.spec.extra["topic"])
        return message

    def omitted(self, count: int) -> dict[str, Any]:
        return self._message(OMITTED_NOTE.format(count=count))

    def classify(self, response: Answer) -> Outcome:
        outcome = super().classify(response)
        body = answer_fields(response)
        if outcome.ok:
            if body.get("ok") is False:  # a 200 that is not a success
                return Outcome(ok=False, reason=f"telegram: {short_text(str(body.get('description')))}")
            return outcome
        found = body.get("parameters")
        parameters: dict[str, Any] = found if isinstance(found, dict) else {}
        description = short_text(str(body.get("description") or ""))
        status = response.status_code
        if "migrate_to_chat_id" in parameters:
            new_id = parameters["migrate_to_chat_id"]
            reason = f"telegram: the group became a supergroup: set its new chat id {new_id} in TELEGRAM_CHAT_ID"
            return Outcome(ok=False, reason=reason, status=status, permanent=True, gone=True)
        if status in (400, 401, 403, 404):
            # Blocked, kicked, a revoked token, a chat that is not there: gone. Another 400 refuses
            # this message (a relay bug).
            gone = status != 400 or "chat not found" in description.lower()
            reason = f"telegram: {description} (HTTP {status})"
            return Outcome(ok=False, reason=reason, status=status, permanent=True, gone=gone)
        return outcome

    def describe_error(self, response: Answer) -> str:
        description = answer_fields(response).get("description")
        return short_text(str(description)) if description else super().describe_error(response)

    def retry_after(self, response: Answer) -> float | None:
        parameters = answer_fields(response).get("parameters")
        value = parameters.get("retry_after") if isinstance(parameters, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            return min(max(float(value), 0.0), MAX_RETRY_AFTER)
        return super().retry_after(response)
