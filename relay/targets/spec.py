"""A target as configured (:class:`TargetSpec`), and the reading of a target variable's entries
that every kind shares: the options after ``#`` (``name``, ``only``, ``rate``, ``format``, and
the kind's own), durations and rates. Pure: no I/O, nothing of Flask, RQ or Redis.

A kind's own facts (its variable, default rate, expected hosts, options, how ``check`` shows
it) are declared on its class in :mod:`relay.targets`; :mod:`relay.config` asks the registry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from relay.suno.event import ALERT_TYPES, KINDS, PROGRESS_TYPES

# `only=`: event types (music.completed), families (music) or outcomes of every kind (completed,
# failed), several joined by `|`; `all` is every task event, progress stages included. The
# relay's own alerts go only where asked for: `alerts` (or `relay`) or one alert type.
EVENT_TYPES = {"lyrics.completed", "lyrics.failed", "music.text", "music.first", "voice.validated"} | {
    f"{kind}.{outcome}" for kind in KINDS for outcome in ("completed", "failed")
}
ALERT_WORDS = frozenset({"alerts", "relay", *ALERT_TYPES})
FILTER_WORDS = {"all", "completed", "failed", *KINDS, *EVENT_TYPES, *ALERT_WORDS}
FORMATS = ("full", "brief", "title")
COMMON_OPTIONS = frozenset({"name", "only", "rate", "format", "stages", "template"})
# `stages=live`: a music task's stages as one message, edited in place (relay.delivery.live).
LIVE_TYPES = ("music.text", "music.first", "music.completed", "music.failed")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


@dataclass(frozen=True)
class Variable:
    """A documented setting. ``deploy``: a user may set it when deploying (app.json, render.yaml
    list it); ``secret``: never printed."""

    name: str
    deploy: bool = False
    secret: bool = False


class ConfigError(ValueError):
    """A configuration variable is missing or malformed (the message names it)."""


@dataclass(frozen=True)
class TargetSpec:
    """One delivery target. ``url`` is a secret: it lives only in process memory."""

    kind: str  # the target class's `kind` (relay.targets.KINDS)
    name: str  # stable, non-secret identifier used in Redis, logs and the CLI
    url: str = field(default="", repr=False)
    only: tuple[str, ...] | None = None  # types, families or outcomes; None: the kind's default
    rate: tuple[int, float] = (1, 1.0)  # at most `rate[0]` messages per `rate[1]` seconds
    format: str = "full"  # full | brief | title
    extra: dict[str, str] = field(default_factory=dict, repr=False)  # kind-specific (a chat id, a token)
    every_event: bool = False  # the kind's default: every event, progress stages included (webhooks)
    live: bool = False  # stages=live: a music task's stages edit one message
    template_name: str = ""  # template=<name>: its source is RELAY_TEMPLATE_<NAME> (relay.targets.template)
    template: Any = field(default=None, repr=False, compare=False)  # parsed and checked by relay.config

    def wants(self, event_type: str) -> bool:
        """By default chat targets get what a person reads (not music's progress stages) and
        generic webhooks get every event; ``only`` narrows (or, with ``all``, widens) that. A
        live target that gets a song's end gets its stages too (they become that one message)."""
        if self.live and event_type in LIVE_TYPES[:2] and self.wants("music.completed"):
            return True
        if event_type in ALERT_TYPES:
            return self.only is not None and any(pattern in ("alerts", "relay", event_type) for pattern in self.only)
        if self.only is None:
            return self.every_event or event_type not in PROGRESS_TYPES
        return any(
            pattern in ("all", event_type)
            or event_type.startswith(pattern + ".")
            or (pattern in ("completed", "failed") and event_type.endswith("." + pattern))
            for pattern in self.only
        )


def parse_duration(value: str, name: str) -> float:
    """``"90"``, ``"90s"``, ``"500ms"``, ``"5m"``, ``"2h"``, ``"7d"`` → seconds."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise ConfigError(f"{name} must be a duration such as 30, 30s, 500ms, 5m, 2h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_rate(value: str, where: str) -> tuple[int, float]:
    count, _, period = value.partition("/")
    try:
        messages = int(count)
    except ValueError:
        messages = 0
    if messages < 1 or not period:
        raise ConfigError(f"{where}: rate must look like 1/1s or 5/2s (messages per period)")
    seconds = parse_duration(period, where + " rate")
    if seconds <= 0:
        raise ConfigError(f"{where}: rate period must be positive")
    return messages, seconds


def entries(env: Mapping[str, str], variable: str) -> list[str]:
    """A target variable's comma-separated entries."""
    return [entry.strip() for entry in env.get(variable, "").split(",") if entry.strip()]


def bot_settings(
    env: Mapping[str, str],
    token_variable: str,
    ids_variable: str,
    token: re.Pattern[str],
    token_hint: str,
    base_variable: str,
    default_base: str,
) -> tuple[str, list[str], str] | None:
    """A bot kind's token, its ids' entries and its API base (Telegram, the Slack bot); None when
    neither token nor ids is set. They go together; the base must be an http(s) URL."""
    found, ids = env.get(token_variable, "").strip(), entries(env, ids_variable)
    if bool(found) != bool(ids):
        raise ConfigError(f"{token_variable} and {ids_variable} go together: set both, or neither")
    if not found:
        return None
    if not token.match(found):
        raise ConfigError(f"{token_variable} must {token_hint}")
    base = env.get(base_variable, "").strip().rstrip("/") or default_base
    if urlsplit(base).scheme not in {"http", "https"} or not urlsplit(base).hostname:
        raise ConfigError(f"{base_variable} must be an http(s) URL")
    return found, ids, base


def parse_options(fragment: str, where: str, known: frozenset[str]) -> dict[str, str]:
    try:
        options = dict(parse_qsl(fragment, keep_blank_values=True, strict_parsing=bool(fragment)))
    except ValueError:
        raise ConfigError(f"{where}: options after '#' must look like name=ops&only=failed") from None
    unknown = set(options) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
        )
    return options


def build_spec(
    kind: str,
    position: int,
    where: str,
    options: Mapping[str, str],
    url: str,
    extra: dict[str, str],
    default_rate: tuple[int, float],
    every_event: bool = False,
    live_capable: bool = False,
) -> TargetSpec:
    """A target from its common options (``name``, ``only``, ``rate``, ``format``, ``stages``)."""
    name = options.get("name") or (kind if position == 1 else f"{kind}-{position}")
    if not NAME.match(name):
        raise ConfigError(f"{where}: name must be lowercase letters, digits, '-' or '_' (at most 40)")
    if "stages" in options and options["stages"] != "live":
        raise ConfigError(f"{where} (target {name}): stages takes one value, live")
    if "stages" in options and not live_capable:
        raise ConfigError(
            f"{where} (target {name}): stages=live needs a service whose messages the relay can edit: "
            "Discord, Telegram or a Slack bot (SLACK_BOT_TOKEN and SLACK_CHANNEL), not this one"
        )
    only = None
    if "only" in options:
        only = tuple(part.strip() for part in re.split(r"[|, ]+", options["only"]) if part.strip())
        wrong = [part for part in only if part not in FILTER_WORDS]
        if wrong or not only:
            raise ConfigError(
                f"{where}: only takes event types (music.completed), kinds (music), completed/failed "
                "or alerts, joined by |"
            )
    fmt = options.get("format", "full")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: format must be one of {', '.join(FORMATS)}")
    rate = parse_rate(options["rate"], where) if "rate" in options else default_rate
    if "template" in options and not NAME.match(options["template"]):
        raise ConfigError(f"{where} (target {name}): template names follow the name rule (lowercase, digits, - or _)")
    return TargetSpec(
        kind=kind, name=name, url=url, only=only, rate=rate, format=fmt, extra=extra, every_event=every_event,
        live="stages" in options, template_name=options.get("template", ""),
    )  # fmt: skip
