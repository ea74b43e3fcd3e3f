"""relay.http's POST on urllib3's pools: connections kept alive, the environment's proxy used."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from relay.delivery import http


class _Server:
    """A local HTTP server noting each request's path and the client's port (its connection);
    HTTPS with ``tls`` (an ssl.SSLContext)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        seen: list[tuple[str, int]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append((self.path, self.client_address[1]))
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

            def log_message(self, *args: object) -> None:
                pass

        self.seen = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"http{'s' if tls else ''}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    yield running
    running.close()


def test_posts_keep_their_connection_alive(server) -> None:
    client = http.Client()
    answers = [
        http.post(client, server.url + "/hook", b"{}", {"Content-Type": "application/json"}, 5) for _ in range(20)
    ]
    assert [answer.status_code for answer in answers] == [200] * 20 and answers[0].content == b"ok"
    assert len({port for _, port in server.seen}) == 1  # one TCP connection for all twenty


def test_the_environments_proxy_is_used(server, monkeypatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    target = "http://hooks.example.invalid/services/proxied"  # not resolvable: only the proxy can answer
    answer = http.post(http.Client(), target, b"{}", {"Content-Type": "application/json"}, 5)
    assert answer.status_code == 200
    assert server.seen[-1][0] == target  # the proxy got the absolute URL


def test_a_refused_connection_says_so_without_the_url() -> None:
    with pytest.raises(http.PostFailed) as failed:
        http.post(http.Client(), "http://127.0.0.1:9/secret-path", b"{}", {}, 5)
    assert failed.value.kind == "ConnectionError" and not failed.value.timeout
    assert "secret-path" not in str(failed.value)


def test_a_certificate_no_trusted_authority_signed_is_refused() -> None:
    """Webhook URLs are secrets: never sent to a host whose certificate does not verify."""
    ca = trustme.CA()  # not in certifi's bundle
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = _Server(tls=context)
    try:
        with pytest.raises(http.PostFailed) as failed:
            http.post(http.Client(), server.url + "/secret-path", b"{}", {}, 5)
        assert failed.value.kind == "SSLError" and server.seen == []
    finally:
        server.close()
