"""`make run` as a new user meets it: in a terminal (a pseudo-terminal here), Ctrl-C to stop,
started twice, with webhook URLs the second time, operator commands in another terminal without
REDIS_URL, a second `make run` beside the first, and configuration mistakes."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from relay.dev import ROOT, free_port
from tests.support import Reply

PYTHON = str(Path(sys.executable))


class Terminal:
    """``make run`` in a pseudo-terminal: what it prints, and Ctrl-C as a terminal sends it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a shell's foreground job
            os.chdir(ROOT)
            os.execvpe("make", ["make", "--no-print-directory", "run"], env)
        self.output = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text:
                return self.text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not printed within {timeout}s:\n{self.text[-3000:]}")

    def ctrl_c(self, timeout: float = 60.0) -> int:
        os.write(self.fd, b"\x03")  # the terminal turns it into SIGINT to the foreground group
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                time.sleep(0.2)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"make run did not stop within {timeout}s:\n{self.text[-3000:]}")


def leftovers(marker: str) -> list[str]:
    """Processes still running whose command line or environment mentions ``marker``."""
    found = []
    for process in psutil.process_iter(["cmdline", "pid"]):
        try:
            if process.pid == os.getpid():
                continue
            cmdline = " ".join(process.info["cmdline"] or [])
            if marker in cmdline or marker in process.environ().get("RELAY_DATA_DIR", ""):
                found.append(f"{process.pid} {cmdline}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def operator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`.venv/bin/python -m relay …` from another terminal: no REDIS_URL, no token in its env."""
    return subprocess.run([PYTHON, "-m", "relay", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_walkthrough_twice(user_env, receivers, sample) -> None:
    data = user_env["RELAY_DATA_DIR"]
    first = Terminal(user_env)
    try:
        banner = first.wait_for("Ctrl-C stops it.")
        url = re.search(r"callback URL: (\S+)", banner).group(1)
        response = requests.post(url, json=sample, timeout=10)
        assert response.json()["status"] == "received"
        first.wait_for("Moonlight spreads")
        assert requests.post(url, json=sample, timeout=10).json()["status"] == "duplicate"
        # A second `make run` in the same folder is refused, naming the first.
        second = subprocess.run(
            [PYTHON, "app.py"], env={**user_env, "PORT": str(free_port())}, cwd=ROOT,
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 2 and f"already running in {data} (pid" in second.stderr
    finally:
        code = first.ctrl_c()
    out = first.text
    assert code in (0, -2, 130) and "suno-relay stopped." in out  # make itself dies of the SIGINT
    assert "Traceback" not in out and not leftovers(data), leftovers(data)
    # Text lines in a terminal, not JSON.
    assert not [line for line in out.splitlines() if line.startswith('{"time"')]

    # The README's next step: start again with the webhook URLs, send an example.
    slack, discord = receivers(), receivers(default=Reply(204, ""))
    env = {**user_env, "SLACK_WEBHOOK_URL": slack.url, "DISCORD_WEBHOOK_URL": discord.url}
    again = Terminal(env)
    try:
        again.wait_for("Ctrl-C stops it.")
        sent = operator(user_env, "example")
        assert sent.returncode == 0, sent.stderr
        task_id = re.search(r"sent example task (\S+):", sent.stdout).group(1)
        assert slack.wait_for(1)[0].json()["blocks"][0]["text"]["text"] == "Starry Night Dreams"
        assert discord.wait_for(1)[0].json()["embeds"][0]["title"] == "Starry Night Dreams"
        status = operator(user_env, "status", task_id)
        assert status.returncode == 0 and "make run's embedded Redis" in status.stderr
        assert re.search(r"slack\s+delivered at", status.stdout) and "password" not in status.stderr
        check = operator(user_env, "check")
        assert "redis: ok, 127.0.0.1:" in check.stdout and "make run's embedded Redis" in check.stdout
        assert "(1 worker(s) alive" in check.stdout
        # A replay to a target the workers lack fails up front and leaves no dead letter.
        refused = operator(user_env, "replay", task_id, "--target", "teams")
        assert refused.returncode == 1 and "not configured on the running workers" in refused.stderr
        assert "no dead letters" in operator(user_env, "dead").stdout
    finally:
        code = again.ctrl_c()
    print(again.text)
    assert code in (0, -2, 130) and "suno-relay stopped." in again.text and "Traceback" not in again.text
    assert not leftovers(data), leftovers(data)


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"REDIS_URL": "redis://:pw-S3CRET@127.0.0.1:1/0"},
            "suno-relay: REDIS_URL: cannot connect to 127.0.0.1:1 db 0 (connection refused)",
        ),
        ({"RELAY_MODE": "sometimes"}, "suno-relay: configuration error: RELAY_MODE must be one of callback, poll"),
        (
            {"SLACK_WEBHOOK_URL": "hooks.slack.com/S3CRET"},
            "suno-relay: configuration error: SLACK_WEBHOOK_URL entry 1 is not an http(s) URL",
        ),
    ],
)
def test_configuration_errors_are_one_line_and_exit_2(user_env, env, expected) -> None:
    result = subprocess.run(
        [PYTHON, "app.py"], env={**user_env, **env}, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and result.stderr.splitlines() == [expected] and result.stdout == ""
    assert "S3CRET" not in result.stderr and not leftovers(user_env["RELAY_DATA_DIR"])
    cli = operator({**user_env, **env, "REDIS_URL": env.get("REDIS_URL", "redis://127.0.0.1:1/0")}, "dead")
    if "configuration error" in expected:
        assert cli.returncode == 2 and cli.stderr.splitlines() == [expected]


def test_a_webhook_url_that_does_not_look_like_its_service_is_warned_about(user_env) -> None:
    env = {
        **user_env,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DISCORD_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
    }
    check = operator(env, "check")
    assert "warning: target discord: hooks.slack.com is not a discord host" in check.stdout
    assert "T/B/X" not in check.stdout


def test_the_banner_says_how_to_start_in_each_mode(tmp_path) -> None:
    import app
    from relay.config import Settings

    env = {"PORT": "5000", "RELAY_CALLBACK_TOKEN": "t" * 20, "REDIS_URL": "redis://127.0.0.1:1/0"}
    callback = app.banner(env, Settings.from_env(env), None)
    assert "callback URL: http://localhost:5000/callbacks/suno/lyrics?token=" in callback and "curl" in callback
    poll = app.banner(env, Settings.from_env({**env, "RELAY_MODE": "poll"}), None)
    assert "relay submit" in poll and "curl" not in poll and "callback URL" not in poll
