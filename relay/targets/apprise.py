"""The long tail, through Apprise (``APPRISE_URLS``: ``pover://…``, ``mailto://…``,
``matrix://…``, ``rocket://…``, …; each URL a target, and a secret).

Delivered with the ``apprise`` package from the same delivery threads, with the same timeout
(Apprise's own ``cto``/``rto`` and its ``timeout``). The message is a plain title and body, and
Apprise splits what its service cannot take in one (``overflow=split``). Apprise reports success
or failure per service, with no HTTP status and no Retry-After: a failure is treated as
transient, on the relay's backoff. Apprise does not suppress Discord-style pings, so ``@everyone``,
``@here``, ``<!channel>`` and the like are neutralised (a zero-width space) before it sees them.
Apprise logs are kept out of the relay's (they could show a URL). For a service that has a
native target (Slack, Discord, Teams, Telegram, Google Chat, Mattermost, ntfy), use the native one.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from relay.suno import Event
from relay.targets.base import Outcome, Target, cards, failure_text, truncate
from relay.targets.spec import ConfigError, TargetSpec

logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)  # nothing of Apprise's reaches our logs
logging.getLogger("apprise").propagate = False


def neutralise(text: str) -> str:
    """No ping, whatever the service: a zero-width space after ``@`` and ``<``."""
    return text.replace("@", "@\u200b").replace("<", "<\u200b")


def with_options(url: str, timeout: float) -> str:
    """The URL with ``overflow=split`` and the relay's timeouts, unless the user set them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("overflow", "split")
    query.setdefault("cto", f"{min(5.0, timeout):g}")
    query.setdefault("rto", f"{timeout:g}")
    return urlunsplit(parts._replace(query=urlencode(query)))


def _apprise_knows(url: str) -> bool:
    import apprise  # only when APPRISE_URLS is set

    return apprise.Apprise.instantiate(url) is not None


class AppriseTarget(Target):
    kind = "apprise"
    variable = "APPRISE_URLS"
    default_rate = (1, 1.0)

    @classmethod
    def check_url(cls, entry: str, parts: Any, where: str) -> None:
        if not re.match(r"^[a-z][a-z0-9+.-]*://", entry) or not _apprise_knows(entry.partition("#")[0]):
            raise ConfigError(f"{where} is not an Apprise URL Apprise knows (scheme://…)")

    @classmethod
    def where(cls, spec: TargetSpec) -> str:
        return urlsplit(spec.url).scheme + "://"  # not an HTTP URL: its scheme says the service

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import apprise  # the package; imported here so that other targets never pay for it

        self.apprise = apprise.Apprise()
        self.apprise.add(with_options(self.spec.url, self.timeout))  # a URL Apprise knows: checked by config

    def notice(self, text: str) -> dict[str, Any]:
        return {"title": neutralise(truncate(text, 250)), "body": neutralise(text)}

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        if event.kind != "lyrics":
            found = cards(event)
            lines = []
            for card in found:
                lines.append(card.title)
                lines += [f"{label}: {value}" for label, value in card.facts]
                lines += [f"{label}: {link}" for label, link in card.links]
                lines.append("")
            lines.append(f"Suno task {event.task_id} · {event.type}")
            title = ", ".join(card.title for card in found)
            return [{"title": neutralise(truncate(title, 250)), "body": neutralise("\n".join(lines))}]
        parts: list[str] = []
        if not event.lyrics:
            title = "Lyrics generation failed"
            parts.append(f"❌ {failure_text(event)}")
        else:
            title = ", ".join(item.title or "Untitled lyrics" for item in event.lyrics)
        for item in event.lyrics:
            if not item.ok:
                parts.append(f"❌ Failed: {item.title or 'Untitled lyrics'}: {item.error or item.status}")
            elif item.text or self.spec.format != "title":
                heading = f"{item.title or 'Untitled lyrics'}\n\n" if len(event.lyrics) > 1 else ""
                parts.append(heading + item.text)
            else:
                parts.append(item.title or "Untitled lyrics")
        parts.append(f"Suno task {event.task_id} · {event.callback_type}")
        body = "\n\n".join(parts)
        return [{"title": neutralise(truncate(title, 250)), "body": neutralise(body)}]

    def send(self, message: dict[str, Any], event: Event) -> Outcome:
        import apprise

        try:
            sent = self.apprise.notify(
                body=message["body"],
                title=message["title"],
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self.timeout,
            )
        except Exception as exc:  # a plugin's bug: say which kind, never the URL
            return Outcome(ok=False, reason=f"apprise: {type(exc).__name__}")
        if sent:
            return Outcome(ok=True, reason="apprise: sent")
        return Outcome(ok=False, reason="apprise: the service refused or could not be reached (see its own logs)")
