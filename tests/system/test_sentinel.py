"""A Sentinel-managed Redis (issue 24's first step): a primary and a replica, three real
`redis-server --sentinel` processes on loopback, the relay's web and worker processes and the CLI
pointed at `redis+sentinel://…`; the primary is SIGKILLed and the sentinels promote the replica:
every process follows it by itself and delivery goes on."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import redis
import requests

from relay.dev import free_port, redis_server_binary, wait_for_port
from tests.conftest import TOKEN
from tests.support import Procfile, Receiver
from tests.support import run_cli as cli

SERVICE = "relaymaster"


class Sentinels:
    """Primary, replica, three sentinels: real processes, each in its own folder."""

    def __init__(self, tmp_path) -> None:
        binary = redis_server_binary()
        self.processes: list[subprocess.Popen] = []
        self.primary_port, self.replica_port = free_port(), free_port()
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        self.primary_args = [binary, "--port", str(self.primary_port), *common]
        self.tmp_path = tmp_path
        self.primary = self._start(self.primary_args, tmp_path / "primary")
        self._start(
            [binary, "--port", str(self.replica_port), *common, "--replicaof", "127.0.0.1", str(self.primary_port)],
            tmp_path / "replica",
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        for port in self.sentinel_ports:
            folder = tmp_path / f"sentinel-{port}"
            folder.mkdir()
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 5000\n"
            )
            self._start([binary, str(conf), "--sentinel"], folder, wait=port)
        replica = redis.Redis(port=self.replica_port)
        deadline = time.monotonic() + 30
        while replica.info("replication").get("master_link_status") != "up" and time.monotonic() < deadline:
            time.sleep(0.1)
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports) + f"/{SERVICE}/0"

    def _start(self, args: list[str], folder, wait: int | None = None) -> subprocess.Popen:
        folder.mkdir(exist_ok=True)
        log = open(folder / "log", "ab")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(args, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        wait_for_port(wait or int(args[args.index("--port") + 1]))
        return process

    def rejoin_old_primary(self) -> None:
        """The killed node comes back (as a platform replaces it): the sentinels make it a replica."""
        self.primary = self._start(self.primary_args, self.tmp_path / "primary")

    def primary_now(self) -> int:
        answer = redis.Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(answer[1])

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def sentinels(tmp_path):
    made = Sentinels(tmp_path)
    yield made
    made.close()


def callback(base: str, task_id: str) -> requests.Response:
    item = {"status": "complete", "title": f"Song {task_id}", "text": "la", "error_message": ""}
    payload = {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": task_id, "data": [item]}}
    return requests.post(f"{base}/callbacks/suno/lyrics", params={"token": TOKEN}, json=payload, timeout=10)


def test_every_process_follows_the_primary_through_a_failover(sentinels, tmp_path) -> None:
    hook = Receiver()
    env = {
        "REDIS_URL": sentinels.url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": hook.url + "#rate=1000/1s",
        "RELAY_BACKOFF": "0.5,0.5,0.5",
        "RELAY_ACCESS_LOG": "0",
        "RELAY_DASHBOARD_USER": "ops",
        "RELAY_DASHBOARD_PASSWORD": "a-long-dashboard-password",
    }
    procfile = Procfile(env, tmp_path)
    try:
        checked = cli(env, "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"{SERVICE} db 0 via sentinels 127.0.0.1:" in checked.stdout
        procfile.start("web")
        procfile.start("worker")
        assert callback(procfile.base_url, "before").status_code == 200
        hook.wait_for(1, timeout=30)

        sentinels.primary.send_signal(signal.SIGKILL)
        started = time.monotonic()
        deadline = started + 60
        while sentinels.primary_now() != sentinels.replica_port and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sentinels.primary_now() == sentinels.replica_port, "the sentinels did not promote the replica"
        promoted = time.monotonic() - started
        sentinels.rejoin_old_primary()  # with RELAY_ACK_REPLICAS=1 the door needs a replica again

        answers = []
        while time.monotonic() < deadline:  # 503s until the new primary has a replica in sync, then 200
            answer = callback(procfile.base_url, "after")
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
        dashboard = requests.get(
            f"{procfile.base_url}/rq/0/data/queues.json", auth=("ops", "a-long-dashboard-password"), timeout=10
        )
        assert dashboard.status_code == 200 and "queues" in dashboard.json()
        ready = requests.get(f"{procfile.base_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        worker_log = (tmp_path / "worker-0.log").read_text()
        assert "redis unavailable; waiting for it" in worker_log  # one line when the primary went
        assert f'"primary":"127.0.0.1:{sentinels.replica_port}"' in worker_log  # one naming the new one
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
    replica = sentinels.processes[1]
    try:
        procfile.start("web")
        procfile.start("worker")
        replica.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        frozen = callback(procfile.base_url, "frozen")
        waited = time.monotonic() - started
        assert frozen.status_code == 503 and frozen.headers.get("Retry-After"), frozen.text
        assert 0.25 < waited < 5, waited  # about RELAY_ACK_TIMEOUT
        replica.send_signal(signal.SIGCONT)
        time.sleep(0.5)
        again = callback(procfile.base_url, "frozen")
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        hook.wait_for(1, timeout=30)
        time.sleep(1.0)
        assert [body.json()["task_id"] for body in hook.received] == ["frozen"]
        print(f"\nthe door answered 503 after {waited:.2f}s with the replica frozen")
    finally:
        replica.send_signal(signal.SIGCONT)
        procfile.stop()
        hook.close()
