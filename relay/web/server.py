"""The web process's gunicorn worker: gevent, with deadlines for slow clients, and JSON for every
answer gunicorn gives before Flask sees the request.

Why gevent: with threads, each connection that has not finished its request holds a thread, so a
few clients sending a byte every few seconds (no token needed) made every real callback wait.
Here each connection is a greenlet (``GUNICORN_WORKER_CONNECTIONS`` of them per process), and
two deadlines close the slow ones: the request line and headers must arrive within
:data:`HEADER_DEADLINE`, and the whole request (body and answer) within :data:`REQUEST_DEADLINE`.
A callback takes milliseconds; Suno gives up after 15 s anyway.

gunicorn answers some malformed requests itself (a bad request line, a URI or headers too
large): those answers are JSON too, and the log line says what was wrong without repeating the
request line, which holds the callback token.
"""

from __future__ import annotations

import json
import socket
import ssl

import gevent
from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.ggevent import GeventWorker

HEADER_DEADLINE = 10.0
REQUEST_DEADLINE = 15.0

# gunicorn's client errors → (status, reason, what the client is told). Never str(exc): it holds
# the request line or a header, and so possibly the token.
_CLIENT_ERRORS: list[tuple[type | tuple[type, ...], int, str, str]] = [
    # A header the application tried to send, or gunicorn's own configuration: our fault.
    (
        (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName, errors.ConfigurationProblem),
        500,
        "Internal Server Error",
        "internal error",
    ),
    (errors.LimitRequestLine, 414, "URI Too Long", "request line too long"),
    (errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "request headers too large"),
    (errors.UnsupportedTransferCoding, 501, "Not Implemented", "unsupported transfer coding"),
    (errors.ExpectationFailed, 417, "Expectation Failed", "unsupported Expect header"),
    (errors.ForbiddenProxyRequest, 403, "Forbidden", "proxy request forbidden"),
    (ssl.SSLError, 403, "Forbidden", "TLS error"),
    (errors.InvalidRequestLine, 400, "Bad Request", "malformed request line"),
    (errors.InvalidRequestMethod, 400, "Bad Request", "invalid method"),
    (errors.InvalidHTTPVersion, 400, "Bad Request", "invalid HTTP version"),
    ((errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding), 400, "Bad Request", "malformed header"),
    (
        (errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension),
        400,
        "Bad Request",
        "malformed chunked body",
    ),
    ((errors.InvalidProxyLine, errors.InvalidSchemeHeaders), 400, "Bad Request", "malformed proxy header"),
]


def classify(exc: BaseException) -> tuple[int, str, str]:
    for kinds, status, reason, message in _CLIENT_ERRORS:
        if isinstance(exc, kinds):
            return status, reason, message
    if isinstance(exc, errors.ParseException):
        return 400, "Bad Request", "malformed request"
    return 500, "Internal Server Error", "internal error"


def json_error(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class RelayWebWorker(GeventWorker):
    def timeout_ctx(self) -> gevent.Timeout:
        # gunicorn reads each request's line and headers inside this (keep-alive must be on).
        return gevent.Timeout(HEADER_DEADLINE, False)

    def handle_request(self, listener_name, req, sock, addr) -> bool:
        deadline = gevent.Timeout(REQUEST_DEADLINE)
        deadline.start()
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            self.log.info("closed a connection whose request took over %gs", REQUEST_DEADLINE)
            return False  # close it
        finally:
            deadline.cancel()

    def handle_error(self, req, client, addr, exc) -> None:
        status, reason, message = classify(exc)
        ip = (addr or ("", -1))[0]
        if status >= 500:
            # The path only: the query string holds the token.
            path = getattr(req, "path", None) or "(no request line read)"
            self.log.error("error handling request %s (%s)", path, type(exc).__name__, exc_info=True)
        else:
            self.log.warning("rejected by the HTTP parser: %s (ip=%s, %s)", message, ip, type(exc).__name__)
        try:
            util.write_nonblock(client, json_error(status, reason, message))
            _linger(client)
        except Exception:  # the client is gone
            self.log.debug("failed to send error message")


def _linger(client: socket.socket, budget: float = 0.5, most: int = 1 << 20) -> None:
    """Half-close, then read what the client still sends for a moment: closing with unread
    request bytes makes the kernel reset the connection, and the client may lose our answer."""
    client.shutdown(socket.SHUT_WR)
    with gevent.Timeout(budget, False):
        read = 0
        while read < most and (chunk := client.recv(65536)):
            read += len(chunk)
