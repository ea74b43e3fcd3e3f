"""relay.delivery.breaker: a failing target is paused, its deliveries held (no attempt burnt, no
dead letter), probed, resumed by itself in arrival order, and someone who asked for alerts is
told. Real Redis and local receivers; deliveries run in this process."""

from __future__ import annotations

import time

import pytest

from relay import jobs
from relay.config import Settings
from relay.store.state import DEAD, DELIVERED, HELD
from relay.suno import normalise
from relay.targets.spec import build_spec
from tests.support import Reply, ingest, work


@pytest.fixture
def breaker_env(make_settings, redis_conn, receivers):
    """A webhook `hook` that fails, Discord that works, and an `only=alerts` webhook."""

    def build(reply: Reply, **env: str):
        hook, discord, alerts = receivers(default=reply), receivers(default=Reply(204, "")), receivers()
        fast = "rate=1000/1s"
        settings = make_settings(**{
            "RELAY_WEBHOOK_URL": f"{hook.url}#name=hook&{fast}, {alerts.url}#name=alerts&only=alerts&{fast}",
            "DISCORD_WEBHOOK_URL": f"{discord.url}#{fast}",
            "RELAY_BREAKER_FAILURES": "3",
            "RELAY_BREAKER_PROBE": "0.5s",
            **env,
        })  # fmt: skip
        return jobs.configure(settings, redis_conn), hook, discord, alerts

    return build


def events(sample, count: int, prefix: str = "t") -> list:
    """Callbacks arriving one after another (a few milliseconds apart)."""
    made = []
    for n in range(count):
        made.append(normalise({**sample, "data": {**sample["data"], "task_id": f"{prefix}{n}"}}))
        time.sleep(0.003)
    return made


def task_ids(receiver) -> list[str]:
    return [body.json()["task_id"] for body in receiver.received]


def test_failures_open_it_hold_the_rest_probe_doubling_and_resume_in_order(breaker_env, sample) -> None:
    runtime, hook, discord, alerts = breaker_env(Reply(500, "down"))
    first, *later = events(sample, 4)
    ingest(runtime, first)
    assert jobs.deliver(first.id, "hook", attempt=1).startswith("retrying")
    assert jobs.deliver(first.id, "hook", attempt=2).startswith("retrying")
    assert jobs.deliver(first.id, "hook", attempt=3) == "held"  # the third failure in a row opens it
    work(runtime)  # the alert's delivery (and the first event's to Discord and the alerts hook)
    [paused] = [body.json() for body in alerts.received if body.json().get("kind") == "relay"]
    assert paused["type"] == "relay.target.paused" and paused["target"] == "hook" and paused["held"] == 1
    assert "HTTP 500" in paused["reason"] and paused["id"].startswith("evt_")
    assert not any(body.json().get("kind") == "relay" for body in hook.received)  # never to itself

    for event in later:
        ingest(runtime, event)
    work(runtime)
    assert len(hook.attempts) == 3  # nothing sent to an open target but probes
    assert len(discord.received) == 4  # the others are not affected
    assert all(runtime.store.delivery(event.id, "hook").state == HELD for event in [first, *later])
    assert runtime.store.delivery(first.id, "hook").attempt == 3  # holding burns no attempt
    assert not runtime.store.dead_letters()

    time.sleep(0.6)
    runtime.breakers.tick()  # the probe is due: the oldest held delivery
    assert runtime.breakers.status(["hook"])["hook"].state == "probing"
    work(runtime)
    assert len(hook.attempts) == 4 and hook.attempts[-1].json()["task_id"] == "t0"
    fields = runtime.breakers._fields("hook")
    assert fields["state"] == "open" and float(fields["delay"]) == pytest.approx(1.0)  # doubled
    assert float(fields["probe_at"]) - float(fields["probe_started"]) >= 1.0  # the next one is later

    hook.default = Reply(200, "ok")
    time.sleep(1.1)
    runtime.breakers.tick()
    work(runtime)  # the probe delivers, the breaker closes, the release sends the rest in order
    assert task_ids(hook) == ["t0", "t1", "t2", "t3"]
    assert all(runtime.store.delivery(event.id, "hook").state == DELIVERED for event in [first, *later])
    resumed = [body.json() for body in alerts.received if body.json().get("type") == "relay.target.resumed"]
    assert len(resumed) == 1 and resumed[0]["held"] == 3 and resumed[0]["reason"] == "probe delivered"
    status = runtime.breakers.status(["hook"])["hook"]
    assert status.state == "closed" and status.held == 0
    runtime.breakers.tick()
    work(runtime)
    assert len(hook.attempts) == 8 and len(hook.received) == 4  # 3 failures, 2 probes, 3 held: each once


def test_an_answer_that_it_is_gone_opens_it_at_once_and_a_new_url_probes_at_once(breaker_env, sample) -> None:
    runtime, hook, _, _ = breaker_env(Reply(404, "no such hook"), RELAY_BREAKER_PROBE="1m")
    first, second = events(sample, 2)
    ingest(runtime, first)
    work(runtime)
    assert len(hook.attempts) == 1 and runtime.breakers.status(["hook"])["hook"].state == "open"
    ingest(runtime, second)
    work(runtime)
    assert len(hook.attempts) == 1
    runtime.breakers.sync_urls({"hook": hook.url})  # a restart with the same URL: nothing
    runtime.breakers.tick()
    assert runtime.breakers.status(["hook"])["hook"].state == "open"
    hook.default = Reply(200, "ok")
    runtime.breakers.sync_urls({"hook": hook.url + "?new"})  # the same name, a new URL
    runtime.breakers.tick()  # at once, without waiting for RELAY_BREAKER_PROBE
    work(runtime)
    assert task_ids(hook) == ["t0", "t1"]


def test_a_refused_payload_or_a_429_neither_counts_nor_opens(breaker_env, sample) -> None:
    runtime, hook, _, _ = breaker_env(Reply(400, "bad body"))
    for event in events(sample, 4):
        ingest(runtime, event)
    work(runtime)
    assert len(hook.attempts) == 4 and runtime.breakers.status(["hook"])["hook"].state == "closed"
    assert all(state.state == DEAD for state in [runtime.store.delivery(e.id, "hook") for e in events(sample, 4)])
    hook.default = Reply(429, "slow down", {"Retry-After": "1"})
    for event in events(sample, 4, "r"):
        ingest(runtime, event)
    work(runtime)
    assert runtime.breakers.status(["hook"])["hook"].state == "closed"


def test_pause_and_resume_by_hand(breaker_env, sample) -> None:
    runtime, hook, _, alerts = breaker_env(Reply(200, "ok"))
    assert runtime.breakers.pause("hook") == "closed"
    first, second = events(sample, 2)
    for event in (first, second):
        ingest(runtime, event)
    work(runtime)
    assert hook.attempts == [] and runtime.store.delivery(first.id, "hook").state == HELD
    time.sleep(0.6)
    runtime.breakers.tick()
    work(runtime)
    assert hook.attempts == []  # paused: never probed
    assert runtime.breakers.pause("hook") == "paused"  # again: no new alert
    assert runtime.breakers.resume("hook") == "paused"
    work(runtime)
    assert task_ids(hook) == ["t0", "t1"]
    kinds = [body.json()["type"] for body in alerts.received if body.json().get("kind") == "relay"]
    assert kinds == ["relay.target.paused", "relay.target.resumed"]
    assert [body.json()["reason"] for body in alerts.received if body.json().get("kind") == "relay"] == [
        "paused by hand",
        "resumed by hand",
    ]


def test_held_too_long_is_dead_with_the_reason_and_a_replay_is_held_again(breaker_env, sample) -> None:
    runtime, hook, _, _ = breaker_env(Reply(410, "gone"), RELAY_BREAKER_GIVE_UP="3s")
    [event] = events(sample, 1)
    ingest(runtime, event)
    work(runtime)
    assert runtime.store.delivery(event.id, "hook").state == HELD
    runtime.breakers.give_up()
    assert runtime.store.delivery(event.id, "hook").state == HELD  # not yet
    time.sleep(3.1)
    runtime.breakers.give_up()
    state = runtime.store.delivery(event.id, "hook")
    assert state.state == DEAD and state.reason.startswith("target down since 20") and "HTTP 410" in state.reason
    assert [letter[:2] for letter in runtime.store.dead_letters()] == [(event.id, "hook")]
    said = jobs.deliver(event.id, "hook", force=True)
    assert said == "held", (said, hook.attempts)  # replayed to a target still open
    assert runtime.breakers.status(["hook"])["hook"].held == 1 and not runtime.store.dead_letters()


def test_alerts_go_only_where_asked_for() -> None:
    def wants(only: str | None, event_type: str) -> bool:
        options = {"only": only} if only else {}
        spec = build_spec("webhook", 1, "RELAY_WEBHOOK_URL", options, "https://x.org/h", {}, (10, 1.0), True)
        return spec.wants(event_type)

    for only in ("alerts", "relay", "relay.target.paused|lyrics"):
        assert wants(only, "relay.target.paused")
    assert wants("alerts", "relay.target.resumed") and not wants("relay.target.paused", "relay.target.resumed")
    for only in (None, "all", "failed", "completed"):
        assert not wants(only, "relay.target.paused")
    assert not wants("alerts", "lyrics.completed")


def test_give_up_longer_than_the_dedup_window_is_a_configuration_error() -> None:
    from relay.targets.spec import ConfigError

    with pytest.raises(ConfigError, match="RELAY_BREAKER_GIVE_UP"):
        Settings.from_env({"RELAY_DEDUP_TTL": "1d", "RELAY_BREAKER_GIVE_UP": "2d"})
    assert Settings.from_env({"RELAY_DEDUP_TTL": "1d"}).breaker_give_up == 86400  # the default fits itself


def open_with_two_held(runtime, hook, sample) -> list:
    """The hook's breaker opened by a 404, two deliveries held, the probe due."""
    held = events(sample, 2, "h")
    for event in held:
        ingest(runtime, event)
    work(runtime)
    assert runtime.breakers.status(["hook"])["hook"].held == 2
    time.sleep(0.6)
    return held


def test_a_probe_answered_429_waits_as_asked_without_doubling(breaker_env, sample) -> None:
    runtime, hook, _, _ = breaker_env(Reply(404, "gone"))
    open_with_two_held(runtime, hook, sample)
    hook.default = Reply(429, "slow down", {"Retry-After": "30"})
    runtime.breakers.tick()
    work(runtime)
    fields = runtime.breakers._fields("hook")
    assert fields["state"] == "open" and float(fields["delay"]) == pytest.approx(0.5)  # not doubled
    assert 25 < float(fields["probe_at"]) - time.time() <= 30
    assert runtime.breakers.status(["hook"])["hook"].held == 2


def test_a_probe_whose_payload_is_refused_is_dead_and_the_next_is_probed_at_once(breaker_env, sample) -> None:
    runtime, hook, _, _ = breaker_env(Reply(404, "gone"))
    first, second = open_with_two_held(runtime, hook, sample)
    hook.script.append(Reply(422, "unprocessable"))  # the first probe's answer, then 200s
    hook.default = Reply(200, "ok")
    runtime.breakers.tick()
    work(runtime)
    assert runtime.store.delivery(first.id, "hook").state == DEAD
    runtime.breakers.tick()  # due at once
    work(runtime)
    assert runtime.store.delivery(second.id, "hook").state == DELIVERED
    assert runtime.breakers.status(["hook"])["hook"].state == "closed"


@pytest.mark.parametrize("state", ["open", "probing", "paused"])
def test_metrics_and_status_say_each_state(breaker_env, sample, state) -> None:
    from relay.metrics import scrape

    runtime, hook, _, _ = breaker_env(Reply(404, "gone"))
    open_with_two_held(runtime, hook, sample)
    if state == "probing":
        runtime.breakers.tick()  # the probe's job is queued, not run: probing
    elif state == "paused":
        runtime.breakers.pause("hook")
    text = scrape(runtime.redis, runtime.queue, ["hook"]).decode()
    for each in ("closed", "open", "probing", "paused"):
        assert f'relay_target_state{{state="{each}",target="hook"}} {1.0 if each == state else 0.0}' in text
    assert 'relay_deliveries_held{target="hook"} 2.0' in text
    status = runtime.breakers.status(["hook"])["hook"]
    assert (status.state, status.held) == (state, 2) and status.since.startswith("20")
    assert status.reason == ("paused by hand" if state == "paused" else "HTTP 404: gone")


def test_held_deliveries_are_not_taken_for_lost_jobs(breaker_env, sample) -> None:
    """They have no job on purpose: the reconcile step (lost jobs) leaves them to their breaker."""
    from relay.worker.reconcile import reconcile

    runtime, hook, _, _ = breaker_env(Reply(404, "gone"))
    open_with_two_held(runtime, hook, sample)
    assert reconcile(runtime.store, runtime.queue, ["hook"], after=0, now=time.time() + 3600) == 0
    assert runtime.queue.count == 0 and runtime.breakers.status(["hook"])["hook"].held == 2
