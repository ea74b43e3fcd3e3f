"""A new chat service is one module and one registry line: a throwaway kind, declared here and
registered in relay.targets.KINDS, is configured, known to the settings, checked, rendered and
delivered, with no other file touched."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from relay import jobs
from relay.cli import cli
from relay.config import Settings, known_variables, unknown_variables
from relay.suno import Event, normalise
from relay.targets import KINDS, Target
from tests.conftest import TOKEN
from tests.support import ingest


class ZulipTarget(Target):
    """The whole of a new service: its facts, and how it renders a message."""

    kind = "zulip"
    variable = "ZULIP_WEBHOOK_URL"
    default_rate: ClassVar[tuple[int, float]] = (3, 1.0)
    expected_hosts: ClassVar[tuple[str, ...]] = ("zulipchat.com",)
    options: ClassVar[frozenset[str]] = frozenset({"stream"})

    @classmethod
    def extra_of(cls, env: Any, options: Any, where: str) -> dict[str, str]:
        return {"stream": options.get("stream", "general")}

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        return [{"stream": self.spec.extra["stream"], "content": item.title} for item in event.lyrics]


@pytest.fixture
def zulip(monkeypatch):
    monkeypatch.setitem(KINDS, "zulip", ZulipTarget)  # the one registry line
    return ZulipTarget


def test_a_registered_kind_is_configured_checked_rendered_and_delivered(
    zulip, receivers, redis_url, redis_conn, sample
):
    receiver = receivers()
    env = {"REDIS_URL": redis_url, "RELAY_CALLBACK_TOKEN": TOKEN, "ZULIP_WEBHOOK_URL": receiver.url + "#stream=songs"}
    settings = Settings.from_env(env)
    [spec] = settings.targets
    assert (spec.kind, spec.name, spec.rate, spec.extra) == ("zulip", "zulip", (3, 1.0), {"stream": "songs"})
    assert "ZULIP_WEBHOOK_URL" in known_variables() and unknown_variables(env) == []
    checked = CliRunner().invoke(cli, ["check"], env=env)
    assert "target zulip" in checked.output and "127.0.0.1" in checked.output
    assert "127.0.0.1 is not a zulip host (zulipchat.com)" in checked.output  # its expected hosts
    runtime = jobs.configure(settings, redis_conn)
    event = normalise(sample)
    ingest(runtime, event)
    assert jobs.deliver(event.id, "zulip") == "delivered"
    assert receiver.received[0].json() == {"stream": "songs", "content": "Starry Night Dreams"}


def test_an_unregistered_kind_is_a_misspelt_variable(receivers) -> None:
    env = {"ZULIP_WEBHOOK_URL": "https://x.zulipchat.com/hook"}
    [warning] = unknown_variables(env)
    assert warning.startswith("ZULIP_WEBHOOK_URL is set, but suno-relay has no such setting")


def test_stages_live_is_refused_where_messages_cannot_be_edited() -> None:
    from relay.config import Settings
    from relay.targets.spec import ConfigError

    live = Settings.from_env({"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/abcdefgh#stages=live"})
    assert live.targets[0].live and live.targets[0].wants("music.text") and live.targets[0].wants("music.first")
    plain = Settings.from_env({"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/abcdefgh"})
    assert not plain.targets[0].wants("music.text")  # chat targets get what a person reads
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secretpart#stages=live"})
    said = str(refused.value)
    assert "SLACK_WEBHOOK_URL entry 1" in said and "(target slack)" in said and "stages=live" in said
    assert "secretpart" not in said
