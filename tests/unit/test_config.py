"""Environment → settings: defaults, target lists and options, and errors that name the variable
without repeating a secret."""

from __future__ import annotations

import re

import pytest

from relay.config import ConfigError, Settings
from relay.dev import ROOT

SLACK = "https://hooks.slack.com/services/T0/B0/SLACKSECRET"
DISCORD = "https://discord.com/api/webhooks/1/DISCORDSECRET"


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.dedup_ttl == 7 * 86400 and settings.max_body_bytes == 1024 * 1024
    assert [(t.kind, t.name) for t in settings.targets] == [("console", "console")]
    assert settings.http_timeout * 3 <= settings.job_timeout


def test_several_urls_each_a_target() -> None:
    settings = Settings.from_env({
        "SLACK_WEBHOOK_URL": f" {SLACK} , {SLACK}2#name=ops&only=failed&rate=2/1s",
        "DISCORD_WEBHOOK_URL": DISCORD,
        "RELAY_WEBHOOK_URL": "https://example.com/hook",
        "RELAY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    })  # fmt: skip
    assert [(t.kind, t.name, t.only, t.rate) for t in settings.targets] == [
        ("slack", "slack", None, (1, 1.0)),
        ("slack", "ops", ("failed",), (2, 1.0)),
        ("discord", "discord", None, (5, 2.0)),
        ("webhook", "webhook", None, (10, 1.0)),
    ]
    assert settings.targets[1].url == SLACK + "2"  # options are not sent to the target
    assert settings.targets[0].wants("lyrics.completed") and not settings.targets[1].wants("lyrics.completed")
    assert "SECRET" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLACK_WEBHOOK_URL": "hooks.slack.com/services/S3CR3T"}, "SLACK_WEBHOOK_URL entry 1 is not an http(s) URL"),
        ({"DISCORD_WEBHOOK_URL": f"{DISCORD},ftp://S3CR3T"}, "DISCORD_WEBHOOK_URL entry 2 is not an http(s) URL"),
        ({"SLACK_WEBHOOK_URL": f"{SLACK}#only=sometimes"}, "SLACK_WEBHOOK_URL entry 1: only takes event types"),
        ({"SLACK_WEBHOOK_URL": f"{SLACK}#colour=red"}, "unknown option(s) colour"),
        ({"SLACK_WEBHOOK_URL": f"{SLACK}#rate=fast"}, "rate must look like 1/1s"),
        ({"SLACK_WEBHOOK_URL": f"{SLACK}#name=ops,{SLACK}#name=ops"}, "target names must be unique; repeated: ops"),
        ({"RELAY_WEBHOOK_SECRET": "whsec_S3CR3T"}, "RELAY_WEBHOOK_SECRET must be 'whsec_' followed by base64"),
        ({"RELAY_WEBHOOK_URL": "https://x.example/h", "RELAY_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "too short"),
        ({"RELAY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "RELAY_WEBHOOK_URL is not"),
        ({"REDIS_URL": "http://S3CR3T@host"}, "REDIS_URL must start with"),
        ({"RELAY_DEDUP_TTL": "soon"}, "RELAY_DEDUP_TTL must be a duration"),
        ({"RELAY_DEDUP_TTL": "60"}, "RELAY_DEDUP_TTL must be at least 3600 seconds"),
        ({"RELAY_MAX_BODY_BYTES": "lots"}, "RELAY_MAX_BODY_BYTES must be a number"),
        ({"RELAY_ALLOW_UNAUTHENTICATED": "maybe"}, "RELAY_ALLOW_UNAUTHENTICATED must be a boolean"),
        ({"RELAY_HTTP_TIMEOUT": "100"}, "RELAY_HTTP_TIMEOUT must stay well below RELAY_JOB_TIMEOUT"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of"),
    ],
)
def test_bad_values_name_the_variable_and_hide_the_value(env: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)
    assert "S3CR3T" not in str(caught.value)


def test_durations() -> None:
    settings = Settings.from_env({"RELAY_DEDUP_TTL": "2d", "RELAY_HTTP_TIMEOUT": "1500ms", "RELAY_BACKOFF": "5s,1m,2h"})
    assert settings.dedup_ttl == 172800 and settings.http_timeout == 1.5 and settings.backoff == (5, 60, 7200)


def test_token_is_required_for_the_web_process() -> None:
    with pytest.raises(ConfigError, match="RELAY_ALLOW_UNAUTHENTICATED=1"):
        Settings.from_env({}).require_auth()
    with pytest.raises(ConfigError, match="too short"):
        Settings.from_env({"RELAY_CALLBACK_TOKEN": "abc"}).require_auth()
    Settings.from_env({"RELAY_ALLOW_UNAUTHENTICATED": "1"}).require_auth()
    Settings.from_env({"RELAY_CALLBACK_TOKEN": "x" * 32}).require_auth()


def test_only_takes_types_families_and_outcomes_and_defaults_by_kind() -> None:
    settings = Settings.from_env({
        "SLACK_WEBHOOK_URL": f"{SLACK}, {SLACK}2#only=music.completed|lyrics.completed, {SLACK}3#only=music,"
        f"{SLACK}4#only=all",
        "RELAY_WEBHOOK_URL": "https://example.com/hook",
    })  # fmt: skip
    default, pair, family, everything, webhook = settings.targets
    assert default.wants("music.completed") and default.wants("wav.failed") and not default.wants("music.text")
    assert webhook.wants("music.text") and webhook.wants("music.first")
    assert pair.wants("music.completed") and pair.wants("lyrics.completed") and not pair.wants("music.failed")
    assert family.wants("music.text") and family.wants("music.failed") and not family.wants("lyrics.completed")
    assert everything.wants("music.first")
    with pytest.raises(ConfigError, match="only takes event types"):
        Settings.from_env({"SLACK_WEBHOOK_URL": f"{SLACK}#only=music.done"})


def documented_variables() -> set[str]:
    """The names in the first column of the configuration table (docs/configuration.md)."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    table = doc[doc.index("## Configuration") : doc.index("### Targets, names and filters")]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_every_variable_read_is_documented_and_every_documented_one_is_known() -> None:
    from relay.config import KNOWN_VARIABLES

    documented = documented_variables()
    assert documented == KNOWN_VARIABLES, (sorted(documented - KNOWN_VARIABLES), sorted(KNOWN_VARIABLES - documented))


def test_every_variable_the_code_reads_is_in_the_registry() -> None:
    """Names read from the environment anywhere in the processes' code are known settings."""
    from relay.config import KNOWN_VARIABLES

    read: set[str] = set()
    for path in [*(ROOT / "relay").rglob("*.py"), ROOT / "app.py", ROOT / "gunicorn.conf.py"]:
        text = path.read_text()
        read |= set(re.findall(r"""(?:environ|env|reader\.\w+)\.?(?:get)?\(\s*["']([A-Z][A-Z0-9_]{2,})["']""", text))
        read |= set(re.findall(r"""environ\[["']([A-Z][A-Z0-9_]{2,})["']\]""", text))
    read -= {"PATH"}  # make run's, for its children: not a setting
    assert len(read) > 20 and read <= KNOWN_VARIABLES, sorted(read - KNOWN_VARIABLES)
