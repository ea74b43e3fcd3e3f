"""The Suno side: submitting, polling, signed callbacks. A fake provider API served for real."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import time

import pytest
from rq import SimpleWorker

from relay import create_app, jobs
from relay.polling import poll as polling
from relay.polling.client import SunoAPIError, SunoClient
from relay.polling.watchlist import NO_CALLBACK_URL, WATCHLIST
from relay.suno import event_id, from_record
from tests.conftest import SUNO_KEY, TOKEN
from tests.support import FakeSuno, nothing_recorded
from tests.support import run_cli as cli


@pytest.fixture
def relay_env(make_settings, redis_conn, receivers, suno, redis_url):
    slack = receivers()
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_WEBHOOK_URL": slack.url + "#rate=100/1s",
        "SUNO_API_BASE": suno.url,
        "SUNO_API_KEY": SUNO_KEY,
        "RELAY_PUBLIC_URL": "https://relay.example",
        "RELAY_POLL_INTERVAL": "30s",
    }

    def build(**extra: str):
        settings = make_settings(**{**env, **extra})
        return jobs.configure(settings, redis_conn), {**env, **extra}, slack

    return build


def work(runtime) -> None:
    SimpleWorker([runtime.queue], connection=runtime.redis).work(burst=True)


def scheduled_polls(runtime) -> list[tuple[str, float]]:
    registry = runtime.queue.scheduled_job_registry
    polls = []
    for job_id in registry.get_job_ids():
        job = runtime.queue.fetch_job(job_id)
        if job.func_name == "relay.jobs.poll":
            polls.append((job.args[0], registry.get_expiration_time(job).timestamp()))
    return polls


def test_client_errors_are_clear_and_never_show_the_key(suno) -> None:
    client = SunoClient(suno.url, SUNO_KEY)
    for code, retryable in [(405, True), (430, True), (455, True), (500, True), (413, False), (429, False)]:
        suno.errors.append(code)
        with pytest.raises(SunoAPIError) as caught:
            client.submit("a song", "https://relay.example/cb")
        assert caught.value.code == code and caught.value.retryable is retryable
        assert f"Suno API {code}" in str(caught.value) and SUNO_KEY not in str(caught.value)
    with pytest.raises(SunoAPIError, match="unauthorized: check SUNO_API_KEY"):
        SunoClient(suno.url, "wrong-key").submit("a song", "https://relay.example/cb")
    with pytest.raises(SunoAPIError, match="longer than 200 words"):
        client.submit("word " * 201, "https://relay.example/cb")
    with pytest.raises(SunoAPIError, match="unreachable"):
        SunoClient("http://127.0.0.1:9", SUNO_KEY).record_info("x")


def test_submit_from_the_cli_sends_our_callback_url_and_watches(relay_env, suno) -> None:
    runtime, env, _ = relay_env()
    result = cli(env, "submit", "a song about rain")
    assert result.returncode == 0, result.stderr
    [(task_id, task)] = suno.tasks.items()
    assert f"submitted: lyrics task {task_id}" in result.stdout
    assert task["prompt"] == "a song about rain"
    assert task["callBackUrl"] == f"https://relay.example/callbacks/suno/lyrics?token={TOKEN}"
    assert runtime.redis.zscore(WATCHLIST, task_id) is not None
    [(polled, due)] = scheduled_polls(runtime)
    assert polled == task_id and due >= time.time() + 25  # first poll after the grace period (30 s)
    status = cli(env, "status", task_id)
    assert status.returncode == 0 and "watching: next poll at 20" in status.stdout


def test_submit_needs_a_public_url_unless_polling(relay_env, suno) -> None:
    _, env, _ = relay_env(RELAY_PUBLIC_URL="")
    refused = cli(env, "submit", "a song")
    assert refused.returncode == 1 and "RELAY_PUBLIC_URL is not set" in refused.stderr and not suno.tasks
    _, env, _ = relay_env(RELAY_PUBLIC_URL="", RELAY_MODE="poll")
    assert cli(env, "submit", "a song").returncode == 0
    assert next(iter(suno.tasks.values()))["callBackUrl"] == NO_CALLBACK_URL


def test_poll_to_delivery(relay_env, suno) -> None:
    runtime, _, slack = relay_env()
    suno.add_task("t-poll", "PENDING", "SUCCESS")
    runtime.watchlist.add("t-poll", 0, 600)
    assert jobs.poll("t-poll") == "pending"
    assert [task for task, due in scheduled_polls(runtime)] == ["t-poll"]
    assert jobs.poll("t-poll") == "received"
    work(runtime)
    [message] = slack.received
    assert message.json()["blocks"][0]["text"]["text"] == "Song t-poll"
    assert runtime.redis.zscore(WATCHLIST, "t-poll") is None
    assert jobs.poll("t-poll") == "not watched"


@pytest.mark.parametrize("order", ["callback first", "poll first"])
def test_callback_and_poll_deliver_once(relay_env, suno, order) -> None:
    runtime, _, slack = relay_env()
    suno.add_task("t-both", "SUCCESS")
    runtime.watchlist.add("t-both", 0, 600)
    client = create_app(runtime.settings).test_client()
    url = f"/callbacks/suno/lyrics?token={TOKEN}"
    if order == "callback first":
        assert client.post(url, json=suno.callback_payload("t-both")).get_json()["status"] == "received"
        assert jobs.poll("t-both") == "not watched"  # the callback ended the watch
    else:
        assert jobs.poll("t-both") == "received"
        assert client.post(url, json=suno.callback_payload("t-both", camel=True)).get_json()["status"] == "duplicate"
    work(runtime)
    assert len(slack.received) == 1


@pytest.mark.parametrize(
    "status", ["CREATE_TASK_FAILED", "GENERATE_LYRICS_FAILED", "CALLBACK_EXCEPTION", "SENSITIVE_WORD_ERROR"]
)
def test_each_failure_status_gives_a_failure_notice(relay_env, suno, status) -> None:
    runtime, _, slack = relay_env()
    suno.add_task("t-fail", status)
    runtime.watchlist.add("t-fail", 0, 600)
    assert jobs.poll("t-fail") == "received"
    work(runtime)
    [message] = slack.received
    text = message.json()["text"]
    assert text.startswith("Lyrics generation failed:") and status in text and "failed: " in text


def test_callback_exception_with_lyrics_is_a_success() -> None:
    record = {"status": "CALLBACK_EXCEPTION", "response": {"data": FakeSuno.lyrics("t")}}
    event = from_record(record, "t")
    assert event is not None and event.type == "lyrics.completed" and event.id == event_id("t", "complete")
    assert from_record({"status": "PENDING"}, "t") is None


def test_deadline_gives_a_timed_out_notice(relay_env, suno) -> None:
    runtime, _, slack = relay_env()
    suno.add_task("t-slow", "PENDING")
    runtime.watchlist.add("t-slow", 0, 1)
    assert jobs.poll("t-slow") == "pending"
    time.sleep(1.1)
    assert jobs.poll("t-slow") == "timed out"
    work(runtime)
    [message] = slack.received
    assert "no result from the provider after 1 s" in message.json()["text"]
    assert runtime.redis.zscore(WATCHLIST, "t-slow") is None


def test_rate_limited_polling_backs_off_for_every_poller(relay_env, suno) -> None:
    runtime, _, _ = relay_env(RELAY_POLL_INTERVAL="2s")
    for task in ("a", "b"):
        suno.add_task(task, "PENDING")
        runtime.watchlist.add(task, 0, 600)
    suno.errors += [430, 455]
    assert jobs.poll("a").startswith("poll failed: Suno API 430")
    first_cooldown = runtime.redis.pttl(polling.PROVIDER_COOLDOWN)
    assert 1500 < first_cooldown <= 2000
    calls = len(suno.requests)
    assert jobs.poll("b") == "provider cooling down" and len(suno.requests) == calls  # b did not ask
    runtime.redis.delete(polling.PROVIDER_COOLDOWN)
    assert jobs.poll("b").startswith("poll failed: Suno API 455")
    assert 3500 < runtime.redis.pttl(polling.PROVIDER_COOLDOWN) <= 4000  # doubled
    runtime.redis.delete(polling.PROVIDER_COOLDOWN)
    assert jobs.poll("a") == "pending" and not runtime.redis.exists(polling.PROVIDER_ERRORS)
    assert "Suno API 455" in runtime.watchlist.get("b").last_error


def test_polls_share_one_rate(relay_env, suno) -> None:
    runtime, _, _ = relay_env(RELAY_POLL_RATE="4/1s")
    for n in range(4):
        suno.add_task(f"r{n}", "PENDING")
        runtime.watchlist.add(f"r{n}", 0, 600)
    for n in range(4):
        jobs.poll(f"r{n}")
    times = [at for method, path, at in suno.requests if method == "GET"]
    # Slots are 0.25 s apart; the receiver's clock sees them less a request's own jitter.
    assert all(later - earlier >= 0.2 for earlier, later in itertools.pairwise(times))
    assert times[-1] - times[0] >= 0.7


def test_lost_poll_is_requeued_by_the_sweeper(relay_env, suno) -> None:
    runtime, _, _ = relay_env(RELAY_POLL_INTERVAL="1s")
    runtime.redis.zadd(WATCHLIST, {"lost": time.time() - 120})
    runtime.redis.hset("relay:watch:lost", mapping={"since": time.time(), "deadline": time.time() + 600})
    assert runtime.watchlist.requeue_overdue(1.0) == ["lost"]
    assert runtime.watchlist.requeue_overdue(1.0) == []  # claimed once
    assert [runtime.queue.fetch_job(job_id).args for job_id in runtime.queue.job_ids] == [("lost",)]


def sign(key: str, task_id: str, timestamp: int) -> str:
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_signed_callbacks(relay_env, sample) -> None:
    runtime, _, _ = relay_env(SUNO_WEBHOOK_HMAC_KEY="hmac-secret")
    client = create_app(runtime.settings).test_client()
    url = f"/callbacks/suno/lyrics?token={TOKEN}"
    task_id = sample["data"]["task_id"]
    now = int(time.time())

    def post(headers):
        return client.post(url, json=sample, headers=headers)

    missing = post({})
    assert missing.status_code == 401 and "X-Webhook-Signature" in missing.get_json()["error"]
    wrong = post({"X-Webhook-Timestamp": str(now), "X-Webhook-Signature": sign("other", task_id, now)})
    assert wrong.status_code == 401 and "does not match" in wrong.get_json()["error"]
    stale = post(
        {"X-Webhook-Timestamp": str(now - 301), "X-Webhook-Signature": sign("hmac-secret", task_id, now - 301)}
    )
    assert stale.status_code == 401 and "5 minutes" in stale.get_json()["error"]
    assert nothing_recorded(runtime.redis)
    good = post({"X-Webhook-Timestamp": str(now), "X-Webhook-Signature": sign("hmac-secret", task_id, now)})
    assert good.status_code == 200 and good.get_json()["status"] == "received"


def test_post_tasks_submits_and_watches(relay_env, suno) -> None:
    runtime, _, _ = relay_env()
    client = create_app(runtime.settings).test_client()
    assert client.post("/tasks", json={"prompt": "x"}).status_code == 401
    headers = {"X-Relay-Token": TOKEN}
    bad = client.post("/tasks", json={"prompt": ""}, headers=headers)
    assert bad.status_code == 400 and "prompt" in bad.get_json()["error"]
    response = client.post("/tasks", json={"prompt": "a song about rain"}, headers=headers)
    assert response.status_code == 202
    task_id = response.get_json()["task_id"]
    assert suno.tasks[task_id]["prompt"] == "a song about rain"
    assert runtime.redis.zscore(WATCHLIST, task_id) is not None
    # Without RELAY_PUBLIC_URL, a client-supplied host never becomes the callback URL: refused.
    unrouted, _, _ = relay_env(RELAY_PUBLIC_URL="")
    behind_router = create_app(unrouted.settings).test_client()
    forwarded = {**headers, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "attacker.example.org"}
    refused = behind_router.post("/tasks", json={"prompt": "routed"}, headers=forwarded)
    assert refused.status_code == 400 and "RELAY_PUBLIC_URL" in refused.get_json()["error"]
    assert not any(task["prompt"] == "routed" for task in suno.tasks.values())
    suno.errors.append(455)
    upstream = client.post("/tasks", json={"prompt": "again"}, headers=headers)
    assert upstream.status_code == 502 and "455" in upstream.get_json()["error"]


def test_watch_an_existing_task_from_the_cli(relay_env, suno) -> None:
    runtime, env, slack = relay_env()
    suno.add_task("elsewhere", "SUCCESS")
    result = cli(env, "watch", "elsewhere")
    assert result.returncode == 0 and "watching lyrics task elsewhere" in result.stdout
    work(runtime)  # runs the poll, then the delivery it queued
    work(runtime)
    assert [m.json()["blocks"][0]["text"]["text"] for m in slack.received] == ["Song elsewhere"]
