"""Status, dead letters and replay: the CLI (as a user runs it) and GET /tasks/<task_id>."""

from __future__ import annotations

import json
import time

import pytest
from rq import SimpleWorker

from relay import create_app, jobs
from relay.ingest import Ingest
from relay.suno import normalise
from tests.conftest import TOKEN
from tests.support import Reply
from tests.support import run_cli as cli


@pytest.fixture
def relay_env(make_settings, redis_conn, receivers, redis_url):
    slack, discord = receivers(), receivers(default=Reply(204, ""))
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_WEBHOOK_URL": slack.url + "#rate=100/1s",
        "DISCORD_WEBHOOK_URL": discord.url + "#rate=100/1s",
        "RELAY_BACKOFF": "1",
    }
    settings = make_settings(**env)
    runtime = jobs.configure(settings, redis_conn)
    return runtime, env, slack, discord


def deliver_all(runtime, sample) -> str:
    event = normalise(sample)
    Ingest(runtime.settings, runtime.redis, runtime.queue)(event)
    SimpleWorker([runtime.queue], connection=runtime.redis).work(burst=True)
    return event.id


def test_status_shows_each_target(relay_env, sample) -> None:
    runtime, env, slack, _ = relay_env
    slack.script.append(Reply(400, "invalid_payload"))
    deliver_all(runtime, sample)
    result = cli(env, "status", sample["data"]["task_id"])
    assert result.returncode == 0, result.stderr
    assert "lyrics.completed (complete)" in result.stdout
    assert "discord          delivered at 20" in result.stdout
    assert "slack            dead: slack: invalid_payload (HTTP 400)" in result.stdout
    as_json = json.loads(cli(env, "status", sample["data"]["task_id"], "--json").stdout)
    assert as_json["events"][0]["targets"]["discord"]["state"] == "delivered"
    missing = cli(env, "status", "nope")
    assert missing.returncode == 1 and "no task nope" in missing.stderr


def test_retrying_status_names_attempt_and_time(relay_env, sample) -> None:
    runtime, env, slack, _ = relay_env
    slack.script.append(Reply(500, "oops"))
    deliver_all(runtime, sample)
    result = cli(env, "status", sample["data"]["task_id"])
    assert "slack            retrying (attempt 2, next at 20" in result.stdout and "HTTP 500" in result.stdout


def test_dead_letters_list_and_replay(relay_env, sample) -> None:
    runtime, env, slack, discord = relay_env
    slack.script.append(Reply(400, "invalid_payload"))
    event_id = deliver_all(runtime, sample)
    listed = cli(env, "dead")
    assert f"{event_id}  task {sample['data']['task_id']}  slack: slack: invalid_payload" in listed.stdout
    assert json.loads(cli(env, "dead", "--json").stdout)[0]["target"] == "slack"

    replayed = cli(env, "replay", "--dead")
    assert replayed.returncode == 0 and f"{event_id}: queued for slack" in replayed.stdout
    SimpleWorker([runtime.queue], connection=runtime.redis).work(burst=True)
    assert len(slack.received) == 1 and len(discord.received) == 1  # discord was not sent again
    assert cli(env, "dead").stdout.strip() == "no dead letters"


def test_replay_skips_delivered_targets_unless_forced(relay_env, sample) -> None:
    runtime, env, slack, discord = relay_env
    deliver_all(runtime, sample)
    task_id = sample["data"]["task_id"]
    plain = cli(env, "replay", task_id)
    assert "nothing to do" in plain.stdout
    forced = cli(env, "replay", task_id, "--target", "slack", "--force")
    assert "queued for slack" in forced.stdout
    SimpleWorker([runtime.queue], connection=runtime.redis).work(burst=True)
    assert len(slack.received) == 2 and len(discord.received) == 1
    assert "target(s) teams not configured" in cli(env, "replay", task_id, "--target", "teams").stderr


def test_tasks_endpoint_needs_the_token_header(relay_env, sample) -> None:
    runtime, _, slack, _ = relay_env
    slack.script.append(Reply(500, "oops"))
    deliver_all(runtime, sample)
    client = create_app(runtime.settings).test_client()
    task_id = sample["data"]["task_id"]
    assert client.get(f"/tasks/{task_id}").status_code == 401
    assert client.get(f"/tasks/{task_id}", query_string={"token": TOKEN}).status_code == 401
    response = client.get(f"/tasks/{task_id}", headers={"X-Relay-Token": TOKEN})
    assert response.status_code == 200
    targets = response.get_json()["events"][0]["targets"]
    assert targets["discord"]["state"] == "delivered" and targets["slack"]["state"] == "retrying"
    assert targets["slack"]["attempt"] == 1 and targets["slack"]["next_at"]
    assert client.get("/tasks/unknown", headers={"X-Relay-Token": TOKEN}).status_code == 404


def test_check_validates_pings_and_sends_test_messages(relay_env, receivers) -> None:
    _, env, slack, _ = relay_env
    quiet = cli(env, "check")
    assert quiet.returncode == 0, quiet.stderr
    assert "configuration: ok" in quiet.stdout and "redis: ok" in quiet.stdout and "(0 worker(s) alive" in quiet.stdout
    assert "target slack" in quiet.stdout and "127.0.0.1" in quiet.stdout and "/hook" not in quiet.stdout
    assert slack.attempts == []  # nothing sent without --send-test

    gone = receivers(default=Reply(404, "no_service"))
    result = cli({**env, "RELAY_WEBHOOK_URL": gone.url + "/SECRETPATH"}, "check", "--send-test")
    assert result.returncode == 1
    assert "test message to slack: ok (HTTP 200)" in result.stdout
    assert "test message to discord: ok (HTTP 204)" in result.stdout
    assert "test message to webhook: FAILED (HTTP 404: no_service)" in result.stdout
    assert "suno-relay test message" in slack.received[0].json()["blocks"][0]["text"]["text"]
    assert "SECRETPATH" not in result.stdout + result.stderr


def test_check_reports_bad_configuration_and_unreachable_redis(relay_env) -> None:
    _, env, _, _ = relay_env
    bad = cli({**env, "DISCORD_WEBHOOK_URL": "nope"}, "check")
    assert bad.returncode == 2 and bad.stderr.splitlines() == [
        "suno-relay: configuration error: DISCORD_WEBHOOK_URL entry 1 is not an http(s) URL"
    ]
    down = cli({**env, "REDIS_URL": "redis://127.0.0.1:9/0"}, "check")
    assert down.returncode == 1 and "redis: FAILED" in down.stdout


def test_check_fails_when_fewer_replicas_confirm_than_the_door_waits_for(relay_env) -> None:
    """RELAY_ACK_REPLICAS=1 on a Redis without a replica: every callback would be a 503."""
    _, env, _, _ = relay_env
    said = cli({**env, "RELAY_ACK_REPLICAS": "1", "RELAY_ACK_TIMEOUT": "50ms"}, "check")
    assert said.returncode == 1, said.stdout
    assert "replicas: 0 confirm writes (RELAY_ACK_REPLICAS=1)" in said.stdout
    assert "FAILED: RELAY_ACK_REPLICAS=1 but 0 replica(s) confirm writes" in said.stdout


def test_overdue_retry_says_so() -> None:
    from relay.admin import describe
    from relay.store.state import RETRYING, DeliveryState

    late = DeliveryState(state=RETRYING, attempt=1, next_at="2026-01-01T00:00:00Z", reason="HTTP 500")
    assert "overdue by" in describe(late) and "was due at 2026-01-01T00:00:00Z" in describe(late)
    soon = DeliveryState(state=RETRYING, attempt=1, next_at="2999-01-01T00:00:00Z", reason="HTTP 500")
    assert "next at 2999" in describe(soon) and "overdue" not in describe(soon)


def test_dead_letters_can_be_discarded(relay_env, sample) -> None:
    runtime, env, slack, discord = relay_env
    slack.script.append(Reply(400, "invalid_payload"))
    discord.script.append(Reply(400, json.dumps({"message": "Invalid Form Body", "code": 50035})))
    event_id = deliver_all(runtime, sample)
    assert cli(env, "dead", "discard").returncode == 2  # neither a reference nor --all
    one = cli(env, "dead", "discard", sample["data"]["task_id"], "--target", "slack")
    assert one.returncode == 0 and f"discarded 1 dead letter(s)\n  {event_id}/slack" in one.stdout
    assert "slack" not in cli(env, "dead").stdout and "discord" in cli(env, "dead").stdout
    assert "discarded 1" in cli(env, "dead", "discard", "--all").stdout
    assert cli(env, "dead").stdout.strip() == "no dead letters"
    assert runtime.store.delivery(event_id, "slack").state == "dead"  # status still tells


def test_a_delivery_to_a_target_the_worker_lacks_is_dead_once_with_its_reason(relay_env, sample) -> None:
    from relay import jobs
    from relay.worker.sweeper import sweep

    runtime, _env, _slack, _discord = relay_env
    event_id = deliver_all(runtime, sample)
    runtime.redis.zadd("relay:inflight", {f"{event_id}/gone": time.time() - 1})
    assert jobs.deliver(event_id, "gone") == "dead"
    assert sweep(runtime.store, runtime.queue) == 0  # nothing left for the sweeper to loop on
    assert runtime.store.delivery(event_id, "gone").reason == "target is not configured on this worker"
