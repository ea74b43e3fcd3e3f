"""End to end through the real Procfile processes: gunicorn (2 workers) and an RQ worker, a real
redis-server, and local Slack / Discord / webhook receivers."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from relay.dev import ROOT, free_port, procfile, wait_for_port
from tests.conftest import TOKEN
from tests.support import Procfile, Receiver, Reply

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
METRICS_TOKEN = "metrics-token-for-tests"


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    redis.Redis.from_url(redis_url).flushdb()
    slack, discord, webhook = Receiver(), Receiver(default=Reply(204, "")), Receiver()
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_WEBHOOK_URL": slack.url + "/T000/SLACKSECRET",
        "DISCORD_WEBHOOK_URL": discord.url + "/DISCORDSECRET",
        "RELAY_WEBHOOK_URL": webhook.url + "/WEBHOOKSECRET",
        "RELAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEB_CONCURRENCY": "2",
        "RELAY_METRICS_TOKEN": METRICS_TOKEN,
        "RELAY_ACCESS_LOG": "1",  # on, to check it shows paths without their query strings
    }
    processes = Procfile(env, tmp_path_factory.mktemp("logs"))
    processes.start("web")
    processes.start("worker")
    yield processes, slack, discord, webhook
    processes.stop()
    for receiver in (slack, discord, webhook):
        receiver.close()


def callback(processes: Procfile, payload: dict, token: str = TOKEN) -> requests.Response:
    return requests.post(
        f"{processes.base_url}/callbacks/suno/lyrics", params={"token": token}, json=payload, timeout=10
    )


def test_procfile_runs_the_relay(stack, sample) -> None:
    assert set(procfile()) == {"web", "worker"}
    processes, slack, discord, webhook = stack
    response = callback(processes, sample)
    assert response.status_code == 200 and response.json()["status"] == "received"
    assert slack.wait_for(1)[0].json()["blocks"][0]["text"]["text"] == "Starry Night Dreams"
    assert discord.wait_for(1)[0].json()["embeds"][0]["title"] == "Starry Night Dreams"
    assert webhook.wait_for(1)[0].json()["task_id"] == sample["data"]["task_id"]
    assert callback(processes, sample).json()["status"] == "duplicate"
    ready = requests.get(f"{processes.base_url}/readyz", timeout=5).json()
    assert ready["status"] == "ok" and ready["workers"] == 1 and "warning" not in ready


def test_concurrent_identical_callbacks_give_one_received(stack, sample) -> None:
    processes, slack, discord, _ = stack
    before_slack, before_discord = len(slack.received), len(discord.received)
    payload = copy.deepcopy(sample)
    payload["data"]["task_id"] = "concurrent-task-1"
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: callback(processes, payload), range(20)))
    statuses = sorted(response.json()["status"] for response in responses)
    assert all(response.status_code == 200 for response in responses)
    assert statuses.count("received") == 1 and statuses.count("duplicate") == 19
    slack.wait_for(before_slack + 1)
    discord.wait_for(before_discord + 1)
    # Give a stray second delivery time to show up before counting.
    callback(processes, {**sample, "data": {**sample["data"], "task_id": "marker-task"}})
    slack.wait_for(before_slack + 2)
    tasks = [entry.json()["blocks"][-1]["elements"][0]["text"] for entry in slack.received]
    assert sum("concurrent-task-1" in text for text in tasks) == 1


def test_bad_input_never_500(stack) -> None:
    processes = stack[0]
    url = f"{processes.base_url}/callbacks/suno/lyrics"
    for body in (b"", b"{", b"[]", b'{"data": 1}', b"\xff" * 10, b'{"data": {"task_id": []}}'):
        response = requests.post(url, params={"token": TOKEN}, data=body, timeout=5)
        assert response.status_code == 400 and response.json()["error"]
    assert requests.post(url, params={"token": "nope"}, data=b"{}", timeout=5).status_code == 401
    big = requests.post(url, params={"token": TOKEN}, data=b"x" * (1024 * 1024 + 10), timeout=10)
    assert big.status_code == 413 and "RELAY_MAX_BODY_BYTES" in big.json()["error"]


def test_logs_hold_no_secret(stack, sample) -> None:
    processes, slack = stack[0], stack[1]
    callback(processes, sample, token=TOKEN)
    callback(processes, sample, token="wrong-token-value")
    requests.post(f"{processes.base_url}/callbacks/suno/lyrics", params={"token": TOKEN}, data=b"[", timeout=5)
    slack.wait_for(1)
    logs = processes.logs()
    assert "/callbacks/suno/lyrics" in logs
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    seen = {entry["event"] for entry in events}
    assert {"received", "duplicate", "rejected", "delivered"} <= seen
    delivered = next(entry for entry in events if entry["event"] == "delivered")
    assert delivered["task_id"] and delivered["target"] and delivered["attempt"] == 1
    assert any(entry["event"] == "rejected" and "not valid JSON" in entry["reason"] for entry in events)
    for secret in (TOKEN, "wrong-token-value", "SLACKSECRET", "DISCORDSECRET", "WEBHOOKSECRET", WEBHOOK_SECRET):
        assert secret not in logs


def test_metrics_add_up_every_gunicorn_worker(stack, sample) -> None:
    processes = stack[0]

    def received() -> float:
        text = requests.get(
            f"{processes.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5
        ).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('relay_callbacks_total{outcome="received"}'))  # fmt: skip

    before = received()
    for n in range(12):  # spread over both gunicorn workers
        callback(processes, {**sample, "data": {**sample["data"], "task_id": f"metrics-{n}"}})
    assert all(received() - before == 12 for _ in range(4))  # whichever worker answers the scrape


def test_web_refuses_to_start_without_a_token(redis_url) -> None:
    env = {"PATH": str(ROOT / ".venv" / "bin") + ":/usr/bin:/bin", "REDIS_URL": redis_url, "PORT": "0"}
    env["PATH"] = f"{sys.executable.rsplit('/', 1)[0]}:{env['PATH']}"
    result = subprocess.run(procfile()["web"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # one line, before gunicorn says anything
    assert line.startswith("suno-relay: configuration error: RELAY_CALLBACK_TOKEN is not set")


def test_worker_refuses_bad_configuration(redis_url) -> None:
    env = {"REDIS_URL": redis_url, "SLACK_WEBHOOK_URL": "not-a-url-S3CR3T", "PATH": sys.executable.rsplit("/", 1)[0]}
    result = subprocess.run(procfile()["worker"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "suno-relay: configuration error: SLACK_WEBHOOK_URL entry 1 is not an http(s) URL"
    ]


def test_make_run_script_with_embedded_redis(tmp_path, sample) -> None:
    """What `make run` runs: embedded Redis, generated token, Procfile processes; operator commands
    through the same script find that Redis."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RELAY_CALLBACK_TOKEN")}
    env.update(PORT=str(port), RELAY_DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    runner = subprocess.Popen([sys.executable, "app.py"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30)
        token = (tmp_path / "callback-token").read_text().strip()
        url = f"http://127.0.0.1:{port}/callbacks/suno/lyrics"
        deadline = time.monotonic() + 20
        while True:
            try:
                response = requests.post(url, params={"token": token}, json=sample, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.json()["status"] == "received"
        while "Moonlight spreads" not in (tmp_path / "run.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        output = (tmp_path / "run.log").read_text()
        assert f"callback URL: http://localhost:{port}/callbacks/suno/lyrics?token={token}" in output
        assert "[lyrics.completed] Suno task 3b66882fde0a5d398bd269cab6d9542b" in output
        status = subprocess.run(
            [sys.executable, "app.py", "status", sample["data"]["task_id"]],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert "console          delivered at" in status.stdout, status.stderr
    finally:
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=40) == 0
    assert not (tmp_path / "run.lock").exists()  # released with the run
