"""What a red team tried, through the real web process: another site's forms against /rq and /ui
(the browser adds the cached basic-auth credentials), GETs that change state, missing security
headers, requests that answered 500, task ids with a '/', and the client address a header claims."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from relay.dev import ROOT, RedisServer, procfile
from tests.conftest import TOKEN
from tests.support import Procfile

USER, PASSWORD = "ops", "a-long-dashboard-password"
EVIL = {
    "Origin": "https://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Content-Type": "application/x-www-form-urlencoded",
}


@pytest.fixture
def web(tmp_path):
    server = RedisServer().start()
    env = {
        "REDIS_URL": server.url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_DASHBOARD_USER": USER,
        "RELAY_DASHBOARD_PASSWORD": PASSWORD,
        "RELAY_WEBHOOK_URL": "http://127.0.0.1:9/hook#rate=1000/1s",
    }
    processes = Procfile(env, tmp_path)
    processes.start("web")
    try:
        yield processes, redis.Redis.from_url(server.url), server
    finally:
        processes.stop()
        server.stop()


def callback(base: str, task_id: str) -> requests.Response:
    body = {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": task_id,
            "data": [{"title": "T", "text": "la", "status": "complete", "error_message": ""}]}}  # fmt: skip
    return requests.post(f"{base}/callbacks/suno/lyrics?token={TOKEN}", json=body, timeout=10)


def snapshot(connection: redis.Redis) -> tuple:
    return (
        connection.llen("rq:queue:relay"),
        connection.zcard("rq:scheduled:relay"),
        len(connection.keys("rq:job:*")),
        connection.zcard("relay:dead"),
    )


STATE_CHANGING_RQ = [
    ("POST", "/rq/queue/relay/queued/empty"),
    ("POST", "/rq/queue/relay/scheduled/empty"),
    ("POST", "/rq/queue/relay/compact"),
    ("POST", "/rq/requeue/relay"),
    ("GET", "/rq/requeue/relay"),
    ("POST", "/rq/job/{job}/delete"),
    ("POST", "/rq/job/{job}/requeue"),
]


def test_another_sites_forms_and_gets_change_nothing(web) -> None:
    processes, connection, _ = web
    base = processes.base_url
    for n in range(3):
        assert callback(base, f"csrf-{n}").status_code == 200
    job = connection.lrange("rq:queue:relay", 0, 0)[0].decode()
    before = snapshot(connection)
    for method, path in STATE_CHANGING_RQ:
        for headers in (EVIL, {}):  # cross-site, and even same-site: /rq is read-only
            answer = requests.request(
                method, base + path.format(job=job), auth=(USER, PASSWORD), headers=headers, timeout=5
            )
            assert answer.status_code == 403 and "read-only" in answer.json()["error"], (
                method,
                path,
                answer.text[:200],
            )
    for path in ("/ui/replay", "/ui/discard"):
        forged = requests.post(base + path, data={"all": "1"}, auth=(USER, PASSWORD), headers=EVIL, timeout=5)
        assert forged.status_code == 403, path
        as_get = requests.get(base + path, params={"all": "1"}, auth=(USER, PASSWORD), timeout=5)
        assert as_get.status_code == 405, path
    assert snapshot(connection) == before
    # The read-only views still work.
    assert requests.get(f"{base}/rq/0/data/queues.json", auth=(USER, PASSWORD), timeout=5).status_code == 200


PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def test_every_page_carries_the_security_headers(web) -> None:
    processes, _, _ = web
    base = processes.base_url
    callback(base, "headers-1")
    for path in ("/ui", "/ui/tasks", "/ui/tasks/headers-1", "/ui/dead", "/ui/tasks/nothing-here"):
        answer = requests.get(base + path, auth=(USER, PASSWORD), timeout=5)
        for name, value in PAGE_HEADERS.items():
            assert answer.headers.get(name) == value, (path, name)
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert answer.headers["Referrer-Policy"] in ("no-referrer", "same-origin")
    for path in ("/rq", "/rq/0/view/queues", "/rq/0/data/queues.json"):
        answer = requests.get(base + path, auth=(USER, PASSWORD), timeout=5, allow_redirects=False)
        for name, value in PAGE_HEADERS.items():
            assert answer.headers.get(name) == value, (path, name)
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_three_requests_that_answered_500(web) -> None:
    from relay import create_app
    from relay.config import Settings
    from relay.web.page import csrf_token

    processes, _, server = web
    base = processes.base_url
    with create_app(Settings.from_env(processes.env)).test_request_context():
        csrf = csrf_token(USER)  # what the page's forms carry
    answer = requests.post(
        f"{base}/ui/replay", data={"csrf": csrf, "event_id": "x", "next": "/ui\r\nSet-Cookie: x=1"},
        auth=(USER, PASSWORD), allow_redirects=False, timeout=5,
    )  # fmt: skip
    assert (
        answer.status_code == 303
        and "Set-Cookie" not in answer.headers
        and answer.headers["Location"].endswith("/ui/?done=nothing")
    ) or answer.headers["Location"].endswith("/ui?done=nothing")
    assert requests.post(f"{base}/rq/queue/relay/compact", auth=(USER, PASSWORD), timeout=5).status_code == 403
    server.process.send_signal(signal.SIGSTOP)  # a hung Redis
    try:
        started = time.monotonic()
        hung = requests.get(f"{base}/rq/0/data/queues.json", auth=(USER, PASSWORD), timeout=30)
        assert hung.status_code == 503 and hung.headers.get("Retry-After"), hung.text[:200]
        assert requests.get(f"{base}/ui", auth=(USER, PASSWORD), timeout=30).status_code == 503
        print(f"answered 503 after {time.monotonic() - started:.1f}s of a hung Redis")
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert "Traceback" not in processes.logs()


INTERNAL = [
    ("http://localhost:8080/hook", "a loopback address"),
    ("http://127.0.0.2/hook", "a loopback address"),
    ("http://[::1]:9/hook", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data", "a link-local address"),
    ("http://10.1.2.3/hook", "a private address"),
    ("http://192.168.0.10/hook", "a private address"),
    ("http://0.0.0.0/hook", "an unspecified address"),
    ("http://2130706433/hook", "a loopback address"),
]


@pytest.mark.parametrize("url, said", INTERNAL)
def test_check_warns_about_internal_targets(user_env, url, said) -> None:
    from tests.system.test_make_run import operator

    out = operator({**user_env, "REDIS_URL": "redis://127.0.0.1:1/0", "RELAY_WEBHOOK_URL": url}, "check").stdout
    [line] = [line for line in out.splitlines() if "inside its own network" in line]
    assert "target webhook:" in line and said in line


def test_a_target_that_is_the_relays_own_callback_url_is_refused(user_env, redis_url) -> None:
    from tests.system.test_make_run import operator

    env = {
        **user_env,
        "PATH": f"{Path(sys.executable).parent}:{user_env['PATH']}",
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_PUBLIC_URL": "https://relay.example.org",
        "SLACK_WEBHOOK_URL": "https://relay.example.org/callbacks/suno/music?token=x#name=loop",
    }
    expected = "suno-relay: configuration error: target loop points at this relay's own callback URL"
    check = operator(env, "check")
    assert check.returncode == 2 and check.stderr.startswith(expected)
    for line in ("web", "worker"):
        result = subprocess.run(procfile()[line], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and result.stderr.splitlines()[0].startswith(expected), (line, result.stderr)
