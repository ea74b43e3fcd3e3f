"""Delivery jobs against real Redis and real local receivers, run by an in-process RQ worker."""

from __future__ import annotations

import json
import time

from relay import jobs
from relay.logs import configure_logging
from relay.store.state import DEAD, DELIVERED, RETRYING, Store, lock_key
from relay.suno import Event, Lyric, normalise
from tests.support import Reply, ingest, work


def scheduled(runtime) -> list:
    registry = runtime.queue.scheduled_job_registry
    return [(runtime.queue.fetch_job(job_id), registry.get_expiration_time(runtime.queue.fetch_job(job_id)))
            for job_id in registry.get_job_ids()]  # fmt: skip


def test_each_target_gets_its_message(relay_env, sample) -> None:
    runtime, slack, discord, webhook = relay_env()
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    assert slack.received[0].json()["blocks"][0]["text"]["text"] == "Starry Night Dreams"
    assert discord.received[0].json()["embeds"][0]["title"] == "Starry Night Dreams"
    assert webhook.received[0].json() == event.to_dict()
    states = Store(runtime.redis, 3600).deliveries(event.id)
    assert {name: state.state for name, state in states.items()} == dict.fromkeys(
        ["discord", "slack", "webhook"], DELIVERED
    )


def test_a_rerun_never_posts_twice_unless_forced(relay_env, sample) -> None:
    runtime, slack, _, _ = relay_env()
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    assert jobs.deliver(event.id, "slack") == "already delivered"
    assert len(slack.attempts) == 1
    assert jobs.deliver(event.id, "slack", force=True) == "delivered"
    assert len(slack.attempts) == 2


def test_one_failing_target_does_not_hold_back_the_others(relay_env, sample) -> None:
    runtime, slack, discord, webhook = relay_env()
    slack.script.append(Reply(500, "oops"))
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    assert len(discord.received) == 1 and len(webhook.received) == 1 and slack.received == []
    state = Store(runtime.redis, 3600).delivery(event.id, "slack")
    assert state.state == RETRYING and state.attempt == 1 and "HTTP 500" in state.reason and state.next_at
    [(job, _due)] = scheduled(runtime)
    assert job.args == (event.id, ["slack"]) and job.kwargs["attempt"] == 2
    # The retry posts to Slack only.
    assert jobs.deliver(event.id, "slack", attempt=2) == "delivered"
    assert len(slack.received) == 1 and len(discord.received) == 1 and len(webhook.received) == 1


def test_429_waits_as_long_as_asked(relay_env, sample) -> None:
    runtime, slack, _, _ = relay_env(RELAY_BACKOFF="1")
    slack.script.append(Reply(429, "rate_limited", {"Retry-After": "30"}))
    event = normalise(sample)
    ingest(runtime, event)
    before = time.time()
    jobs.deliver(event.id, "slack")
    [(_job, due)] = [entry for entry in scheduled(runtime) if entry[0].args[1] == ["slack"]]
    assert due.timestamp() >= before + 30


def test_a_refused_payload_is_dead_lettered_after_one_attempt(relay_env, sample) -> None:
    runtime, slack, discord, _ = relay_env()
    slack.script.append(Reply(400, "invalid_payload"))
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    assert len(slack.attempts) == 1 and len(discord.received) == 1
    state = Store(runtime.redis, 3600).delivery(event.id, "slack")
    assert state.state == DEAD and "invalid_payload" in state.reason
    assert Store(runtime.redis, 3600).dead_letters()[0][:2] == (event.id, "slack")
    assert not [entry for entry in scheduled(runtime) if entry[0].args[1] == ["slack"]]
    assert runtime.breakers.status(["slack"])["slack"].state == "closed"  # the target is fine


def test_a_target_that_is_gone_is_held_not_dead(relay_env, sample) -> None:
    runtime, slack, discord, _ = relay_env()
    slack.script.append(Reply(404, "no_service"))
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    assert len(slack.attempts) == 1 and len(discord.received) == 1
    assert Store(runtime.redis, 3600).delivery(event.id, "slack").state == "held"
    assert not Store(runtime.redis, 3600).dead_letters()
    assert not [entry for entry in scheduled(runtime) if entry[0].args[1] == ["slack"]]  # no retry burnt


def test_out_of_attempts_is_dead(relay_env, sample) -> None:
    runtime, slack, _, _ = relay_env(RELAY_MAX_ATTEMPTS="2")
    slack.default = Reply(503, "down")
    event = normalise(sample)
    ingest(runtime, event)
    assert jobs.deliver(event.id, "slack", attempt=1).startswith("retrying")
    assert jobs.deliver(event.id, "slack", attempt=2).startswith("dead")
    assert Store(runtime.redis, 3600).delivery(event.id, "slack").state == DEAD


def test_long_lyrics_resume_after_the_last_accepted_message(relay_env) -> None:
    runtime, slack, _, _ = relay_env()
    text = "\n\n".join(f"[Verse {n}]\n" + "word " * 500 for n in range(150))  # ~3 Slack messages
    event = Event("evt_long", "task-long", "complete", 200, "ok", "2026-01-01T00:00:00Z",
                  (Lyric("Long", text, "complete", ""),))  # fmt: skip
    ingest(runtime, event)
    parts = len(runtime.targets["slack"].render(runtime.store.load_event(event.id)))
    assert parts >= 3
    slack.script += [Reply(200, "ok"), Reply(500, "oops")]
    assert jobs.deliver(event.id, "slack").startswith("retrying")
    assert jobs.deliver(event.id, "slack", attempt=2) == "delivered"
    bodies = [json.dumps(entry.json()) for entry in slack.received]
    assert len(bodies) == parts and len(set(bodies)) == parts  # each part exactly once


def test_a_delivery_in_progress_elsewhere_is_not_posted_again(relay_env, sample) -> None:
    runtime, slack, _, _ = relay_env()
    event = normalise(sample)
    ingest(runtime, event)
    runtime.redis.set(lock_key(event.id, "slack"), "other-worker", ex=60)
    assert jobs.deliver(event.id, "slack") == "busy"
    assert slack.attempts == []
    assert [entry for entry in scheduled(runtime) if entry[0].args[1] == ["slack"]]


def test_unknown_target_is_dead_not_lost(relay_env, sample) -> None:
    runtime, _, _, _ = relay_env()
    event = normalise(sample)
    ingest(runtime, event)
    assert jobs.deliver(event.id, "removed-target") == "dead"
    assert (event.id, "removed-target") in [letter[:2] for letter in runtime.store.dead_letters()]


def test_console_target_logs_the_message(make_settings, redis_conn, sample, capsys) -> None:
    settings = make_settings()
    configure_logging("INFO")
    runtime = jobs.configure(settings, redis_conn)
    assert list(runtime.targets) == ["console"]
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    printed = capsys.readouterr().out
    assert "[lyrics.completed] Suno task 3b66882fde0a5d398bd269cab6d9542b" in printed
    assert "Starry Night Dreams" in printed and "  Moonlight spreads across the windowsill" in printed


def test_filters_route_failures_only(make_settings, redis_conn, receivers) -> None:
    ops, everyone = receivers(), receivers()
    settings = make_settings(SLACK_WEBHOOK_URL=f"{ops.url}#name=ops&only=failed&rate=100/1s,{everyone.url}#rate=100/1s")
    runtime = jobs.configure(settings, redis_conn)
    ok = normalise(
        {"code": 200, "data": {"task_id": "a", "data": [{"text": "la", "title": "A", "status": "complete"}]}}
    )
    bad = normalise({"code": 500, "msg": "boom", "data": {"task_id": "b", "callbackType": "error"}})
    ingest(runtime, ok)
    ingest(runtime, bad)
    work(runtime)
    assert [entry.json()["text"] for entry in ops.received] == ["Lyrics generation failed: boom (code 500)"]
    assert len(everyone.received) == 2


def test_timeouts_and_refused_connections_are_retried(relay_env, sample) -> None:
    runtime, slack, discord, _ = relay_env(RELAY_HTTP_TIMEOUT="0.3")
    slack.script.append(Reply(200, "ok", delay=1.0))  # answers after our read timeout
    runtime.targets["discord"].spec = runtime.targets["discord"].spec.__class__(
        kind="discord", name="discord", url="http://127.0.0.1:9/nothing-listens", rate=(100, 1.0)
    )
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    states = runtime.store.deliveries(event.id)
    assert states["slack"].state == RETRYING and states["slack"].reason.startswith("timeout")
    assert states["discord"].state == RETRYING and states["discord"].reason.startswith("connection error")
    assert slack.received == [] and discord.received == []


def test_rejected_payload_is_logged_with_the_answer(relay_env, sample, capsys) -> None:
    runtime, slack, _, _ = relay_env()
    configure_logging("INFO")
    slack.script.append(Reply(400, "invalid_payload"))
    event = normalise(sample)
    ingest(runtime, event)
    work(runtime)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [dead] = [line for line in lines if line["event"] == "dead"]
    assert dead["target"] == "slack" and dead["task_id"] == event.task_id
    assert "invalid_payload" in dead["reason"] and "relay bug" in dead["note"]


def test_a_thread_that_lost_its_lock_records_nothing(relay_env, sample) -> None:
    """The lock is taken over while the POST is under way (the thread stalled past its lock's
    lifetime): the stale thread records no result, the new owner's state stands."""
    runtime, slack, _, _ = relay_env()
    event = normalise(sample)
    ingest(runtime, event)

    def take_over(_receiver):
        runtime.redis.set(lock_key(event.id, "slack"), "another-worker", px=60000)
        return None

    slack.rule = take_over
    assert jobs.deliver(event.id, "slack") == "delivered"  # the target took it…
    state = Store(runtime.redis, 3600).delivery(event.id, "slack")
    assert state.state == "queued"  # …but this thread no longer owned the delivery: nothing recorded
    assert runtime.redis.get(lock_key(event.id, "slack")) == b"another-worker"


def test_long_events_renew_the_lock_before_every_message(relay_env) -> None:
    runtime, _, discord, _ = relay_env()
    event = normalise(
        {
            "code": 200,
            "data": {
                "task_id": "long",
                "data": [
                    {
                        "title": "L",
                        "status": "complete",
                        "text": "\n\n".join(f"[Verse {n}]\n" + "la " * 900 for n in range(12)),
                    }
                ],
            },
        }
    )
    ingest(runtime, event)
    ttls = []
    discord.rule = lambda _r: ttls.append(runtime.redis.pttl(lock_key(event.id, "discord"))) or None
    assert jobs.deliver(event.id, "discord") == "delivered"
    assert len(ttls) >= 3 and all(ttl > (runtime.settings.http_timeout + 4) * 1000 for ttl in ttls)


def test_worker_threads_keep_their_own_redis_timeouts(make_settings) -> None:
    """RQ raises the socket timeout of its worker's connection (for long blocking pops); the
    delivery threads' connection keeps the relay's 5 s."""
    from relay.cli import worker_connections
    from relay.worker.process import build_worker

    settings = make_settings()
    jobs_connection, rq_connection = worker_connections(settings)
    build_worker(settings, rq_connection)
    assert rq_connection.connection_pool.connection_kwargs["socket_timeout"] > 5
    assert jobs_connection.connection_pool.connection_kwargs["socket_timeout"] == 5.0
