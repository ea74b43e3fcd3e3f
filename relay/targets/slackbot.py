"""Slack through a bot token (the Web API), where incoming webhooks cannot: edit a message
(``stages=live``) and thread long lyrics.

``SLACK_BOT_TOKEN`` (``xoxb-…``, a secret like a webhook URL) + ``SLACK_CHANNEL`` (channel ids,
comma-separated, each a target: ``C0123ABCD#name=songs&stages=live``); ``SLACK_API_BASE``
(default ``https://slack.com/api``). ``chat.postMessage``, then ``chat.update`` with the
``channel`` and the ``ts`` it answered. The channel message holds the title and at most 3,000
characters of lyrics; the rest continues as replies in its thread (``thread_ts``, never broadcast
to the channel), live or not. Blocks, escaping and limits are the webhook kind's
(:mod:`relay.targets.slack`).

Slack answers errors as ``200 {"ok": false, "error": …}``, and its rate limit as HTTP 429 with
``Retry-After`` (``error: ratelimited``: paced, not a failure). The errors that say the bot
cannot post there (``channel_not_found``, ``not_in_channel``, ``invalid_auth``,
``account_inactive``, ``token_revoked``) end the delivery dead after one attempt, with what to
fix; ``message_not_found`` on an update posts a new message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from relay.delivery.http import Answer
from relay.suno import Event
from relay.targets.base import Outcome, answer_fields, short_text
from relay.targets.slack import SlackTarget
from relay.targets.spec import (
    COMMON_OPTIONS,
    ConfigError,
    TargetSpec,
    Variable,
    bot_settings,
    build_spec,
    parse_options,
)

_TOKEN = re.compile(r"^xoxb-[A-Za-z0-9-]{10,}$")
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{6,}$")
# What to fix, for each error that no retry cures.
CANNOT_POST = {
    "channel_not_found": "no such channel, or the bot cannot see it: check SLACK_CHANNEL (a channel id, C…)",
    "not_in_channel": "the bot is not in the channel: invite it (/invite @your-app)",
    "invalid_auth": "SLACK_BOT_TOKEN is not valid",
    "account_inactive": "the bot's workspace or app was deactivated",
    "token_revoked": "SLACK_BOT_TOKEN was revoked: reinstall the app and set the new token",
}


class SlackBotTarget(SlackTarget):
    kind = "slack-bot"
    variable = "SLACK_CHANNEL"  # channel ids (not secret); the token is the secret
    other_variables = (
        Variable("SLACK_BOT_TOKEN", deploy=True, secret=True),
        Variable("SLACK_API_BASE"),
    )
    default_rate = (1, 1.0)  # chat.postMessage: about one message a second per channel
    expected_hosts = ("slack.com",)
    live_capable = True

    @classmethod
    def variables(cls) -> tuple[Variable, ...]:
        return (Variable(cls.variable, deploy=True), *cls.other_variables)

    @classmethod
    def specs(cls, env: Mapping[str, str]) -> list[TargetSpec]:
        found = bot_settings(env, "SLACK_BOT_TOKEN", cls.variable, _TOKEN,
                             "be a bot token (xoxb-…, from your Slack app's OAuth page)",
                             "SLACK_API_BASE", "https://slack.com/api")  # fmt: skip
        if found is None:
            return []
        token, channels, base = found
        specs = []
        for position, entry in enumerate(channels, start=1):
            where = f"SLACK_CHANNEL entry {position}"
            channel, _, fragment = entry.partition("#")
            if not _CHANNEL.match(channel.strip()):
                raise ConfigError(f"{where} must be a channel id (C0123ABCD: the channel's details show it)")
            options = parse_options(fragment, where, COMMON_OPTIONS)
            extra = {"channel": channel.strip(), "token": token, "api": base}
            url = f"{base}/chat.postMessage"
            specs.append(
                build_spec(cls.kind, position, where, options, url, extra, cls.default_rate, live_capable=True)
            )
        return specs

    @classmethod
    def where(cls, spec: TargetSpec) -> str:
        return f"{urlsplit(spec.url).hostname} channel {spec.extra['channel']}"

    def __init__(self, spec: TargetSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.secrets = sorted({*self.secrets, spec.extra["token"]}, key=len, reverse=True)

    def render(self, event: Event) -> list[dict[str, Any]]:
        """The webhook kind's blocks. Lyrics: the channel message holds the first title and
        section (at most 3,000 characters) and the task's footer; each further section (with the
        title before it, for another lyric) is a reply in its thread. Cards stay one message."""
        rendered = super().render(event)
        channel = {"channel": self.spec.extra["channel"], "unfurl_links": False}
        if event.kind != "lyrics":
            return [{**channel, **message} for message in rendered]
        blocks = [block for message in rendered for block in message["blocks"]]
        footer = next((block for block in blocks if block["type"] == "context"), None)
        groups: list[list[dict[str, Any]]] = [[]]
        for block in blocks:
            if block["type"] == "context":
                continue
            groups[-1].append(block)
            if block["type"] == "section":
                groups.append([])
        groups = [group for group in groups if group]
        fallback = rendered[0]["text"]
        messages = [{**channel, "text": fallback, "blocks": [*groups[0], *([footer] if footer else [])]}]
        messages += [
            {**channel, "text": f"{fallback} ({n} of {len(groups)})", "blocks": group}
            for n, group in enumerate(groups[1:], start=2)
        ]
        return messages

    def headers(self, body: bytes, event: Event) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {self.spec.extra['token']}",
            "User-Agent": "suno-relay",
        }

    def send_threaded(self, message: dict[str, Any], event: Event, thread: str) -> tuple[Outcome, str]:
        if thread:
            message = {**message, "thread_ts": thread, "reply_broadcast": False}
        outcome, answer = self.exchange(self.spec.url, message, event)
        return outcome, thread or (_ts(answer) if outcome.ok else "")

    def post_live(self, message: dict[str, Any], event: Event) -> tuple[Outcome, str]:
        outcome, answer = self.exchange(self.spec.url, message, event)
        return outcome, _ts(answer) if outcome.ok else ""

    def edit(self, message_id: str, message: dict[str, Any], event: Event) -> Outcome:
        body = {**message, "ts": message_id}
        outcome, answer = self.exchange(f"{self.spec.extra['api']}/chat.update", body, event)
        if answer_fields(answer).get("error") == "message_not_found":
            return Outcome(ok=False, reason="the message was deleted", status=200, missing=True)
        return outcome

    def classify(self, response: Answer) -> Outcome:
        body = answer_fields(response)
        error = str(body.get("error") or "")
        status = response.status_code
        if status == 429 or error == "ratelimited":
            return Outcome(ok=False, reason="slack: ratelimited", status=429, retry_after=self.retry_after(response))
        if 200 <= status < 300 and body.get("ok") is True:
            return Outcome.delivered(status)
        if error in CANNOT_POST:
            reason = f"slack: {error}: {CANNOT_POST[error]}"
            return Outcome(ok=False, reason=reason, status=status, permanent=True, setup=True)
        if error in ("invalid_blocks", "invalid_arguments", "msg_too_long", "no_text", "too_many_attachments"):
            return Outcome(ok=False, reason=f"slack: {error}", status=status, permanent=True)
        if 200 <= status < 300:  # ok: false, something else (a fatal_error, a new one): try again
            return Outcome(ok=False, reason=f"slack: {short_text(error or response.text)}", status=status)
        return super(SlackTarget, self).classify(response)


def _ts(answer: Answer | None) -> str:
    found = answer_fields(answer).get("ts")
    return found if isinstance(found, str) and re.fullmatch(r"\d{1,12}\.\d{1,9}", found) else ""
