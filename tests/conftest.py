"""Fixtures: a real Redis server (``REDIS_URL`` if set, else one started here on a free port),
real local HTTP receivers, settings built from an environment dict."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from relay.config import Settings
from relay.dev import RedisServer, free_port
from tests.support import EXAMPLES, FakeSuno, Receiver

TOKEN = "test-token-0123456789abcdef"
SUNO_KEY = "suno-test-key"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_conn(redis_url: str) -> redis.Redis:
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    return connection


@pytest.fixture
def make_settings(redis_url: str) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        base = {"REDIS_URL": redis_url, "RELAY_CALLBACK_TOKEN": TOKEN, "RELAY_BACKOFF": "1,2,3"}
        return Settings.from_env({**base, **env})

    return make


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(**kwargs: object) -> Receiver:
        receiver = Receiver(**kwargs)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture
def sample() -> dict:
    return copy.deepcopy(json.loads((EXAMPLES / "lyrics-complete.json").read_text()))


@pytest.fixture
def user_env(tmp_path) -> dict[str, str]:
    """The environment of a new user's shell: none of the relay's variables, a data folder and
    a port of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "RELAY_", "SLACK_", "DISCORD_"))}
    env.update(RELAY_DATA_DIR=str(tmp_path / "data"), PORT=str(free_port()), TERM="xterm")
    env.pop("LOG_FORMAT", None)
    return env


# tests/system/ starts real processes (gunicorn, RQ workers, make run, a browser, a production
# install); tests/unit/ mirrors relay/ and runs in this process. `make test-fast` runs the unit lane.
SYSTEM = Path(__file__).resolve().parent / "system"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SYSTEM in item.path.parents:
            item.add_marker(pytest.mark.system)


@pytest.fixture
def suno() -> Iterator[FakeSuno]:
    """The provider's API, served for real on a free port, expecting ``SUNO_KEY``."""
    fake = FakeSuno(SUNO_KEY)
    yield fake
    fake.close()
