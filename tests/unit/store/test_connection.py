"""relay.store.connection: Redis URLs, Sentinel's included, and what a user is told of them."""

from __future__ import annotations

import pytest

from relay.config import Settings
from relay.store.connection import redis_location, sentinel_url
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
