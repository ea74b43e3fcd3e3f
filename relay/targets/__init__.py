"""Delivery targets, one module per service over :mod:`relay.targets.base`.

Each target class declares its own facts (its variable, default rate, expected hosts, options,
how ``check`` shows it); :mod:`relay.config` learns them from :data:`KINDS`. A new service is a
module and a line in KINDS, nothing else (``tests/unit/targets/test_registry.py`` shows it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.delivery.http import Client
from relay.targets.apprise import AppriseTarget
from relay.targets.base import Outcome, Target
from relay.targets.console import ConsoleTarget
from relay.targets.discord import DiscordTarget
from relay.targets.googlechat import GoogleChatTarget
from relay.targets.mattermost import MattermostTarget
from relay.targets.ntfy import NtfyTarget
from relay.targets.slack import SlackTarget
from relay.targets.slackbot import SlackBotTarget
from relay.targets.spec import TargetSpec
from relay.targets.teams import TeamsTarget
from relay.targets.telegram import TelegramTarget
from relay.targets.webhook import WebhookTarget

if TYPE_CHECKING:
    from relay.config import Settings

# One line per service, in the order their targets are listed: a new service is a module and a
# line here. The console stands in when no other target is configured.
KINDS: dict[str, type[Target]] = {
    cls.kind: cls
    for cls in (
        SlackTarget,
        SlackBotTarget,
        DiscordTarget,
        WebhookTarget,
        TeamsTarget,
        GoogleChatTarget,
        MattermostTarget,
        NtfyTarget,
        AppriseTarget,
        TelegramTarget,
        ConsoleTarget,
    )
}

__all__ = [
    "KINDS",
    "ConsoleTarget",
    "DiscordTarget",
    "Outcome",
    "SlackTarget",
    "Target",
    "WebhookTarget",
    "build_target",
    "build_targets",
]


def build_target(spec: TargetSpec, settings: Settings, client: Client | None = None) -> Target:
    cls = KINDS[spec.kind]
    if cls is WebhookTarget:
        return WebhookTarget(spec, timeout=settings.http_timeout, client=client, secret=settings.webhook_secret)
    return cls(spec, timeout=settings.http_timeout, client=client)


def build_targets(settings: Settings) -> dict[str, Target]:
    """Every configured target by name; they share one HTTP client (its connection pools), with
    room for every delivery thread."""
    client = Client(settings.worker_threads)
    targets = {spec.name: build_target(spec, settings, client) for spec in settings.targets}
    if settings.public_url and settings.dashboard_user and settings.dashboard_password:
        for target in targets.values():
            target.page_base = f"{settings.public_url.rstrip('/')}/ui/tasks/"
    return targets
