"""The worker's tests: a runtime with Slack, Discord and webhook receivers."""

from __future__ import annotations

import pytest

from relay import jobs
from tests.support import Reply


@pytest.fixture
def relay_env(make_settings, redis_conn, receivers):
    """Settings with Slack, Discord and webhook receivers; returns a builder."""

    def build(**env: str):
        slack, discord, webhook = receivers(), receivers(default=Reply(204, "")), receivers()
        fast = "#rate=100/1s"  # pacing has tests of its own; here it would only slow things down
        settings = make_settings(
            SLACK_WEBHOOK_URL=slack.url + fast,
            DISCORD_WEBHOOK_URL=discord.url + fast,
            RELAY_WEBHOOK_URL=webhook.url + fast,
            **env,
        )
        runtime = jobs.configure(settings, redis_conn)
        return runtime, slack, discord, webhook

    return build
