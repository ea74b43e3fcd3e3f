"""relay.targets.template: what a template sees, its helpers, and what it must give."""

from __future__ import annotations

import pytest


def test_a_template_sees_every_field_on_every_kind_plus_its_helpers_and_nothing_else() -> None:
    import json as json_module

    from relay.suno import NORMALISERS
    from relay.targets.template import context, examples_for
    from tests.support import example

    lyrics = context(NORMALISERS["lyrics"](example("lyrics-complete")))
    assert (
        lyrics["kind"] == "lyrics" and lyrics["tracks"] == [] and lyrics["files"] == [] and lyrics["instruments"] == []
    )
    assert lyrics["title"] == "Starry Night Dreams"
    assert lyrics["lyrics"][0]["first_stanza"] == lyrics["lyrics"][0]["text"].partition("\n\n")[0]
    music = context(NORMALISERS["music"](example("music-complete")))
    assert music["kind"] == "music" and music["title"] == music["tracks"][0]["title"] and music["lyrics"] == []
    json_module.dumps(music)  # plain JSON values only: nothing a template could walk into
    assert {event.type for event in examples_for(lambda kind: kind.startswith("lyrics."))} == {
        "lyrics.completed",
        "lyrics.failed",
    }


def test_the_json_filter_and_a_webhook_template_that_is_not_json() -> None:
    from relay.config import Settings
    from relay.targets.spec import ConfigError

    env = {"RELAY_WEBHOOK_URL": "https://example.com/hookpath", "RELAY_TEMPLATE_BODY": '{"t": {{ title | json }}}'}
    [spec] = Settings.from_env({**env, "RELAY_WEBHOOK_URL": env["RELAY_WEBHOOK_URL"] + "#template=body"}).targets
    from relay.suno import NORMALISERS
    from tests.support import example

    event = NORMALISERS["lyrics"](example("lyrics-complete"))
    assert spec.template.render(event) == '{"t": "Starry Night Dreams"}'
    with pytest.raises(ConfigError, match="a webhook template must give JSON"):
        Settings.from_env({**env, "RELAY_WEBHOOK_URL": "https://example.com/hookpath#template=body",
                           "RELAY_TEMPLATE_BODY": "title: {{ title }}"})  # fmt: skip
    with pytest.raises(ConfigError, match=r"^RELAY_TEMPLATE_NOPE is not set"):
        Settings.from_env({"RELAY_WEBHOOK_URL": "https://example.com/hookpath#template=nope"})
