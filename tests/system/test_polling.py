"""Polling through the real processes: no public URL, and a provider callback racing a poll."""

from __future__ import annotations

import time

import redis
import requests

from tests.conftest import SUNO_KEY, TOKEN
from tests.support import FakeSuno, Procfile
from tests.support import run_cli as cli


def processes_env(redis_url: str, suno: FakeSuno, slack, **extra: str) -> dict[str, str]:
    """Settings for real processes polling the fake provider every second, from the start."""
    redis.Redis.from_url(redis_url).flushdb()
    return {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_WEBHOOK_URL": slack.url,
        "SUNO_API_BASE": suno.url,
        "SUNO_API_KEY": SUNO_KEY,
        "RELAY_POLL_INTERVAL": "1s",
        "RELAY_POLL_GRACE": "0",
        **extra,
    }


def test_without_a_public_url_lyrics_arrive_by_polling(tmp_path, redis_url, suno, receivers, sample) -> None:
    """The README's promise: no public URL, `submit` from the CLI, lyrics in Slack by polling;
    real web and worker processes."""
    slack = receivers()
    env = processes_env(redis_url, suno, slack, RELAY_MODE="poll")
    processes = Procfile(env, tmp_path)
    try:
        processes.start("worker")
        result = cli(env, "submit", "a song about rain")
        assert result.returncode == 0, result.stderr
        [task_id] = suno.tasks
        slack.wait_for(1, timeout=30)
        assert slack.received[0].json()["blocks"][0]["text"]["text"] == f"Song {task_id}"
        gets = [path for method, path, _ in suno.requests if method == "GET"]
        assert len(gets) == 3  # PENDING, PENDING, SUCCESS: then it stopped polling
    finally:
        processes.stop()


def test_provider_callback_and_polling_deliver_once_across_processes(tmp_path, redis_url, suno, receivers) -> None:
    """Real web and worker: the relay submits with its own callback URL, the provider calls it
    back while the relay is polling the same task; Slack gets the lyrics once."""
    slack = receivers()
    processes = Procfile(processes_env(redis_url, suno, slack), tmp_path)
    processes.env["RELAY_PUBLIC_URL"] = processes.base_url
    suno.default_script = ["PENDING", "SUCCESS"]
    try:
        processes.start("web")
        processes.start("worker")
        response = requests.post(
            f"{processes.base_url}/tasks", json={"prompt": "a song"}, headers={"X-Relay-Token": TOKEN}, timeout=10
        )
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        assert suno.tasks[task_id]["callBackUrl"] == f"{processes.base_url}/callbacks/suno/lyrics?token={TOKEN}"
        assert suno.fire_callback(task_id).json()["status"] in ("received", "duplicate")
        slack.wait_for(1, timeout=30)
        time.sleep(3.0)  # polling ran meanwhile (every second); a second delivery would show by now
        assert len(slack.received) == 1
        assert f"Song {task_id}" in slack.received[0].json()["blocks"][0]["text"]["text"]
    finally:
        processes.stop()
