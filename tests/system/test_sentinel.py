"""A Sentinel-managed Redis (issue 24's first step): a primary and a replica, three real
`redis-server --sentinel` processes on loopback, the relay's web and worker processes and the CLI
pointed at `redis+sentinel://…`; the primary is SIGKILLed and the sentinels promote the replica:
every process follows it by itself and delivery goes on."""

from __future__ import annotations

import signal
import time

import pytest
import requests

from tests.conftest import SUNO_KEY, TOKEN
from tests.sentinels import SERVICE, Sentinels
from tests.support import Procfile, Receiver, log_entries, post_lyrics
from tests.support import run_cli as cli


@pytest.fixture
def sentinels(tmp_path):
    made = Sentinels(tmp_path)
    yield made
    made.close()


def test_every_process_follows_the_primary_through_a_failover(sentinels, tmp_path, suno) -> None:
    hook = Receiver()
    env = {
        "SUNO_API_BASE": suno.url,
        "SUNO_API_KEY": SUNO_KEY,
        "RELAY_POLL_INTERVAL": "1s",
        "RELAY_POLL_GRACE": "0",
        "REDIS_URL": sentinels.url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": hook.url + "#rate=1000/1s",
        "RELAY_BACKOFF": "0.5,0.5,0.5",
        "RELAY_ACCESS_LOG": "0",
        "RELAY_DASHBOARD_USER": "ops",
        "RELAY_DASHBOARD_PASSWORD": "a-long-dashboard-password",
        "WEB_CONCURRENCY": "1",  # one process behind the door, so its log lines can be counted
    }
    procfile = Procfile(env, tmp_path)
    try:
        checked = cli(env, "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"{SERVICE} db 0 via sentinels 127.0.0.1:" in checked.stdout
        assert "replicas: 1 confirm writes (RELAY_ACK_REPLICAS=1)" in checked.stdout
        procfile.start("web")
        procfile.start("worker")
        assert post_lyrics(procfile.base_url, "before").status_code == 200
        hook.wait_for(1, timeout=30)

        sentinels.primary.send_signal(signal.SIGKILL)
        started = time.monotonic()
        deadline = started + 60
        sentinels.wait_for_promotion()
        promoted = time.monotonic() - started
        sentinels.rejoin_old_primary()  # with RELAY_ACK_REPLICAS=1 the door needs a replica again

        answers = []
        while time.monotonic() < deadline:  # 503s until the new primary has a replica in sync, then 200
            answer = post_lyrics(procfile.base_url, "after")
            answers.append(answer.status_code)
            if answer.status_code == 200:
                break
            assert answer.status_code == 503 and answer.headers.get("Retry-After")
            time.sleep(0.5)
        assert answers[-1] == 200
        switch = time.monotonic() - started
        hook.wait_for(2, timeout=30)
        assert [body.json()["task_id"] for body in hook.received] == ["before", "after"]
        status = cli(env, "status", "after")
        assert status.returncode == 0 and "webhook" in status.stdout and "delivered at" in status.stdout
        # Every CLI command that uses Redis, on the new primary through the sentinels.
        suno.add_task("watched", "SUCCESS")
        for args in (("check",), ("dead",), ("pause", "webhook"), ("resume", "webhook"),
                     ("replay", "before", "--force"), ("submit", "a song"), ("watch", "watched"),
                     ("example", "--url", procfile.base_url)):  # fmt: skip
            said = cli({**env, "RELAY_MODE": "poll"}, *args)  # submit: no public URL here
            assert said.returncode == 0, (args, said.stdout, said.stderr)
        [submitted] = [task for task in suno.tasks if task != "watched"]
        hook.wait_for(6, timeout=60)  # replayed, submitted, watched (both polled by the worker), the example
        delivered = [body.json()["task_id"] for body in hook.received]
        assert delivered[:2] == ["before", "after"] and delivered.count("before") == 2, delivered
        assert {submitted, "watched"} <= set(delivered) and any(task.startswith("example-") for task in delivered)
        dashboard = requests.get(
            f"{procfile.base_url}/rq/0/data/queues.json", auth=("ops", "a-long-dashboard-password"), timeout=10
        )
        assert dashboard.status_code == 200 and "queues" in dashboard.json()
        ready = requests.get(f"{procfile.base_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        went, back = "redis unavailable; waiting for it", "redis available again"
        for name in ("worker-0", "web-0"):  # in each process: a line when the primary went, one naming the new one
            entries = log_entries((tmp_path / f"{name}.log").read_text())
            said = [entry for entry in entries if entry["logger"] == "relay.redis"]
            # One pair per switch: now and then the sentinels (down-after 1 s) flip a second time.
            assert said and [entry["event"] for entry in said] == [went, back] * (len(said) // 2), said
            assert said[-1]["primary"] == f"127.0.0.1:{sentinels.primary_now()}", said
        print(f"\npromoted after {promoted:.1f}s; 200 again after {switch:.1f}s; door answers meanwhile: {answers}")
    finally:
        procfile.stop()
        hook.close()


def test_a_frozen_replica_makes_the_door_answer_503_then_the_retry_is_a_duplicate(sentinels, tmp_path) -> None:
    """RELAY_ACK_REPLICAS (1 by default with a Sentinel URL): "received" means on the replica too."""
    hook = Receiver()
    env = {"REDIS_URL": sentinels.url, "RELAY_CALLBACK_TOKEN": TOKEN, "RELAY_WEBHOOK_URL": hook.url,
           "RELAY_ACCESS_LOG": "0", "RELAY_ACK_TIMEOUT": "300ms"}  # fmt: skip
    procfile = Procfile(env, tmp_path)
    replica = sentinels.replica
    try:
        procfile.start("web")
        procfile.start("worker")
        replica.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        frozen = post_lyrics(procfile.base_url, "frozen")
        waited = time.monotonic() - started
        assert frozen.status_code == 503 and frozen.headers.get("Retry-After"), frozen.text
        assert 0.25 < waited < 5, waited  # about RELAY_ACK_TIMEOUT
        replica.send_signal(signal.SIGCONT)
        time.sleep(0.5)
        again = post_lyrics(procfile.base_url, "frozen")
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        hook.wait_for(1, timeout=30)
        time.sleep(1.0)
        assert [body.json()["task_id"] for body in hook.received] == ["frozen"]
        print(f"\nthe door answered 503 after {waited:.2f}s with the replica frozen")
    finally:
        replica.send_signal(signal.SIGCONT)
        procfile.stop()
        hook.close()
