"""relay.store.outage: what counts as an outage, and a step retried through one."""

from __future__ import annotations

import time

import pytest
import redis

from relay.store.outage import Outage, describe, is_outage


def test_outages_are_told_from_mistakes() -> None:
    assert is_outage(redis.ConnectionError("refused"))
    assert is_outage(redis.exceptions.BusyLoadingError("LOADING"))
    assert is_outage(redis.exceptions.OutOfMemoryError("OOM command not allowed"))
    assert is_outage(redis.exceptions.ReadOnlyError("READONLY"))
    assert not is_outage(redis.ResponseError("WRONGTYPE Operation against a key"))


def test_descriptions_name_the_setting_and_never_the_url() -> None:
    said = describe(redis.ConnectionError("Error 111 connecting to redis://:hunter2@db:6379"))
    assert said == "cannot reach REDIS_URL (ConnectionError)"
    assert "REDIS_TLS_VERIFY" in describe(redis.ConnectionError("certificate verify failed: self-signed"))


def test_a_step_is_retried_until_redis_takes_it(caplog) -> None:
    outage, tries = Outage(), []

    def step() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise redis.ConnectionError("down")
        return "done"

    assert outage.call(step) == "done"
    assert len(tries) == 3 and outage.down_since is None
    said = [record.getMessage() for record in caplog.records]
    assert said.count("redis unavailable; waiting for it") == 1 and said.count("redis available again") == 1


def test_a_mistake_is_not_retried_and_a_deadline_ends_the_wait() -> None:
    outage = Outage()
    with pytest.raises(redis.ResponseError):
        outage.call(lambda: (_ for _ in ()).throw(redis.ResponseError("WRONGTYPE")))
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        outage.call(lambda: (_ for _ in ()).throw(redis.ConnectionError("down")), time.monotonic() + 0.3)
    assert time.monotonic() - started < 5
