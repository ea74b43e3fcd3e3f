"""rediss:// with a self-signed certificate: web, worker and CLI honour REDIS_TLS_VERIFY alike."""

from __future__ import annotations

import pytest
import redis
import trustme

from relay import create_app
from relay.config import Settings
from relay.dev import RedisServer
from relay.store.connection import connect
from tests.conftest import TOKEN
from tests.support import Procfile
from tests.support import run_cli as cli


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()  # a throw-away CA: the server's certificate is "self-signed" to any client
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        server = RedisServer(tls=(str(cert), str(key), str(ca_file))).start()
    except RuntimeError as exc:
        if "TLS" in str(exc) or "tls" in str(exc):
            pytest.skip(f"this redis-server was built without TLS: {exc}")
        raise
    yield server
    server.stop()


def test_verification_refuses_a_self_signed_certificate_unless_disabled(tls_redis) -> None:
    assert tls_redis.url.startswith("rediss://")
    strict = Settings.from_env({"REDIS_URL": tls_redis.url})
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate"):
        connect(strict).ping()
    relaxed = Settings.from_env({"REDIS_URL": tls_redis.url, "REDIS_TLS_VERIFY": "false"})
    assert connect(relaxed).ping()


def test_web_worker_and_cli_over_tls(tls_redis, receivers, tmp_path, sample) -> None:
    slack = receivers()
    env = {
        "REDIS_URL": tls_redis.url,
        "REDIS_TLS_VERIFY": "false",
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_WEBHOOK_URL": slack.url,
    }
    client = create_app(Settings.from_env(env)).test_client()
    response = client.post(f"/callbacks/suno/lyrics?token={TOKEN}", json=sample)
    assert response.status_code == 200 and response.get_json()["status"] == "received"
    processes = Procfile(env, tmp_path)
    try:
        processes.start("worker")
        slack.wait_for(1, timeout=30)
        check = cli(env, "check")
        assert check.returncode == 0 and "redis: ok" in check.stdout and "(1 worker(s) alive" in check.stdout
    finally:
        processes.stop()
    strict = cli({**env, "REDIS_TLS_VERIFY": "true"}, "check")
    assert strict.returncode == 1 and "redis: FAILED" in strict.stdout


def test_dashboard_over_tls(tls_redis) -> None:
    import base64

    env = {"REDIS_URL": tls_redis.url, "REDIS_TLS_VERIFY": "false", "RELAY_CALLBACK_TOKEN": TOKEN}
    env.update(RELAY_DASHBOARD_USER="ops", RELAY_DASHBOARD_PASSWORD="dash-secret")
    client = create_app(Settings.from_env(env)).test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:dash-secret").decode()}
    response = client.get("/rq/0/data/queues.json", headers=auth)
    assert response.status_code == 200 and "queues" in response.get_json()


def test_worker_with_a_failing_tls_check_says_why_once_and_waits(tls_redis, tmp_path) -> None:
    """REDIS_TLS_VERIFY=true against a self-signed certificate: one JSON line naming the setting
    and the certificate problem, no traceback, and the worker stays up (a platform would
    otherwise crash-loop it)."""
    import json
    import time

    env = {"REDIS_URL": tls_redis.url, "REDIS_TLS_VERIFY": "true", "RELAY_CALLBACK_TOKEN": TOKEN}
    processes = Procfile(env, tmp_path)
    try:
        worker = processes.start("worker")
        time.sleep(3.0)
        assert worker.poll() is None
        lines = [json.loads(line) for line in processes.logs().splitlines() if line.startswith("{")]
        [line] = [line for line in lines if line["level"] == "error"]
        assert "REDIS_TLS_VERIFY" in line["reason"] and "certificate" in line["reason"]
        assert "Traceback" not in processes.logs()
    finally:
        processes.stop()


def test_rediss_sentinel_reaches_a_tls_primary_for_web_cli_and_dashboard(tls_redis, tmp_path) -> None:
    """rediss+sentinel://: the sentinel answers in plain text where the primary is, the nodes
    speak TLS, verified as REDIS_TLS_VERIFY says (the sentinel itself reaches them over TLS)."""
    import base64
    import subprocess

    from relay.dev import free_port, redis_server_binary, wait_for_port

    cert, key, ca_file = tls_redis.tls
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ntls-replication yes\ntls-cert-file {cert}\ntls-key-file {key}\n"
        f"tls-ca-cert-file {ca_file}\nsentinel monitor tlsmaster 127.0.0.1 {tls_redis.port} 1\n"
    )
    sentinel = subprocess.Popen([redis_server_binary(), str(conf), "--sentinel"], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for_port(port)
        url = f"rediss+sentinel://127.0.0.1:{port}/tlsmaster/0"
        env = {"REDIS_URL": url, "REDIS_TLS_VERIFY": "false", "RELAY_CALLBACK_TOKEN": TOKEN,
               "RELAY_DASHBOARD_USER": "ops", "RELAY_DASHBOARD_PASSWORD": "dash-secret",
               "RELAY_ACK_REPLICAS": "0"}  # one node, no replica  # fmt: skip
        check = cli(env, "check")
        assert check.returncode == 0 and "tlsmaster db 0 via sentinels" in check.stdout and "(TLS)" in check.stdout
        client = create_app(Settings.from_env(env)).test_client()
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:dash-secret").decode()}
        response = client.get("/rq/0/data/queues.json", headers=auth)
        assert response.status_code == 200 and "queues" in response.get_json()
        assert client.get("/readyz").status_code in (200, 503)  # answered (no worker runs here)
        strict = cli({**env, "REDIS_TLS_VERIFY": "true"}, "check")
        assert strict.returncode == 1 and "redis: FAILED" in strict.stdout and "REDIS_TLS_VERIFY" in strict.stdout
        plain = cli({**env, "REDIS_URL": f"redis+sentinel://127.0.0.1:{port}/tlsmaster/0"}, "check")
        assert plain.returncode == 1 and "redis: FAILED" in plain.stdout
    finally:
        sentinel.kill()
        sentinel.wait()
