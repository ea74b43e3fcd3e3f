"""relay.store.connection: Redis URLs, Sentinel's included, and what a user is told of them."""

from __future__ import annotations

import signal
import time

import pytest
import redis
import redis.sentinel

from relay.config import Settings
from relay.dev import RedisServer
from relay.store.connection import connect, redis_location, sentinel_url
from relay.targets.spec import ConfigError


def test_a_sentinel_url_names_its_sentinels_service_db_and_the_nodes_password() -> None:
    found = sentinel_url("redis+sentinel://:s3cret@a:26379,b:26380,c/mymaster/2")
    assert found is not None
    assert found.hosts == (("a", 26379), ("b", 26380), ("c", 26379)) and found.service == "mymaster"
    assert found.db == 2 and found.password == "s3cret" and not found.tls
    assert sentinel_url("rediss+sentinel://a/m").tls and sentinel_url("rediss+sentinel://a/m").db == 0
    assert sentinel_url("redis://localhost:6379/0") is None


@pytest.mark.parametrize("url", ["redis+sentinel://a:26379", "redis+sentinel:///m", "redis+sentinel://a:x/m"])
def test_a_bad_sentinel_url_is_one_line_naming_the_variable(url) -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL: "):
        Settings.from_env({"REDIS_URL": url})


def test_where_it_is_never_shows_the_password() -> None:
    said = redis_location("redis+sentinel://:s3cret@a:26379,b:26380/mymaster/1")
    assert said == "mymaster db 1 via sentinels a:26379,b:26380" and "s3cret" not in said
    assert redis_location("redis://:s3cret@host:6380/3") == "host:6380 db 3"


def test_a_hung_redis_or_sentinel_fails_a_command_after_one_timeout_not_after_retries() -> None:
    """redis-py's default policy for a client built directly (as Sentinel builds its clients of
    the sentinels) is 10 retries with backoff, timeouts included: measured 26 s for one command on
    a hung server at a 2 s timeout, past Suno's 15 s."""
    server = RedisServer().start()
    try:
        plain = connect(Settings.from_env({"REDIS_URL": server.url}), timeout=0.5)
        plain.ping()
        # A "sentinel" that hangs: a sentinel is asked over the same protocol.
        hung_sentinel = Settings.from_env({"REDIS_URL": f"redis+sentinel://127.0.0.1:{server.port}/m/0"})
        sentinel = connect(hung_sentinel, timeout=0.5)
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            for client, error in ((plain, redis.TimeoutError), (sentinel, redis.sentinel.MasterNotFoundError)):
                started = time.monotonic()
                with pytest.raises(error):
                    client.get("x")
                waited = time.monotonic() - started
                assert waited < 0.5 * 4, (client, waited)  # one timeout (each retry would add one)
        finally:
            server.process.send_signal(signal.SIGCONT)
    finally:
        server.stop()


def test_the_door_waits_for_redis_longer_than_for_its_replicas() -> None:
    from relay import create_app

    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", "RELAY_CALLBACK_TOKEN": "t" * 24,
                                  "RELAY_ACK_REPLICAS": "1", "RELAY_ACK_TIMEOUT": "3s"})  # fmt: skip
    app = create_app(settings)
    pool = app.extensions["relay"].redis.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 4.0
    with pytest.raises(ConfigError, match=r"^RELAY_ACK_TIMEOUT must stay under 4s"):
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", "RELAY_ACK_REPLICAS": "1", "RELAY_ACK_TIMEOUT": "4s"})
