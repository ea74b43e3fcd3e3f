"""Posting to targets with a total deadline and a bounded answer.

``requests`` bounds each socket read, not a request: a target that trickles one byte every few
seconds, or streams an endless answer, could hold a delivery thread (and its lock) for ever, and a
huge answer would be read into memory whole. Here every POST has one deadline for the whole
exchange (connect, send, headers, body): a watchdog shuts the socket down when it passes, which
wakes the blocked read. Only the first :data:`MAX_ANSWER_BYTES` of an answer are read; that is
plenty to classify it, and the connection is then dropped instead of drained.

One watchdog thread serves every POST of the process (a heap of deadlines), and each target URL's
proxy settings (``HTTPS_PROXY``, ``NO_PROXY``) are read from the environment once, not at every
request as ``requests`` does by default: both were a good part of a POST's CPU.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

MAX_ANSWER_BYTES = 16 * 1024
_current = threading.local()  # the socket the calling thread is waiting on, for its watchdog


class DeadlinePassed(Exception):
    """The whole exchange took longer than its deadline."""


@dataclass
class Answer:
    """What a target said: status, headers and at most ``MAX_ANSWER_BYTES`` of the body."""

    status_code: int
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Watched:
    """Mixin for urllib3 connections: publish the socket before waiting on the answer."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        holder = getattr(_current, "holder", None)
        if holder is not None:
            holder.watch(self.sock)  # type: ignore[attr-defined]
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Holder:
    """One exchange's socket and whether its deadline fired."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.fired = False
        self.done = False

    def watch(self, sock: socket.socket | None) -> None:
        with self.lock:
            self.sock = sock
            if self.fired:
                self._shut()

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            self._shut()

    def _shut(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class _Watchdog(threading.Thread):
    """Fires each armed holder when its deadline passes; one thread for the whole process."""

    def __init__(self) -> None:
        super().__init__(name="relay-post-deadlines", daemon=True)
        self.condition = threading.Condition()
        self.heap: list[tuple[float, int, _Holder]] = []
        self.order = itertools.count()

    def arm(self, holder: _Holder, seconds: float) -> None:
        with self.condition:
            heapq.heappush(self.heap, (time.monotonic() + seconds, next(self.order), holder))
            self.condition.notify()

    def run(self) -> None:
        while True:
            with self.condition:
                while not self.heap:
                    self.condition.wait()
                due, _, holder = self.heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.condition.wait(wait)
                    continue
                heapq.heappop(self.heap)
            if not holder.done:
                holder.fire()


_watchdog_lock = threading.Lock()
_watchdog: _Watchdog | None = None


def _watch(holder: _Holder, seconds: float) -> None:
    global _watchdog
    if _watchdog is None or not _watchdog.is_alive():
        with _watchdog_lock:
            if _watchdog is None or not _watchdog.is_alive():
                _watchdog = _Watchdog()
                _watchdog.start()
    _watchdog.arm(holder, seconds)


@functools.lru_cache(maxsize=1024)
def _proxies(url: str) -> dict[str, str]:
    """The environment's proxies for ``url`` (NO_PROXY applied), read once per URL."""
    return requests.utils.get_environ_proxies(url)


class DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def new_session(pool_size: int = 10) -> requests.Session:
    """A session whose connections can be cut by :func:`post`'s deadline."""
    session = requests.Session()
    session.trust_env = False  # proxies come from _proxies(), once per URL
    adapter = DeadlineAdapter(pool_connections=8, pool_maxsize=max(10, pool_size))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def post(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    connect_timeout: float = 5.0,
) -> Answer:
    """POST ``body``; the whole exchange ends within ``deadline`` seconds or raises
    :class:`DeadlinePassed`. Other failures raise ``requests.RequestException``."""
    holder = _Holder()
    _current.holder = holder
    started = time.monotonic()
    _watch(holder, deadline)
    try:
        response = session.post(
            url,
            data=body,
            headers=headers,
            timeout=(min(connect_timeout, deadline), deadline),
            allow_redirects=False,
            stream=True,
            proxies=_proxies(url),
        )
        try:
            content = response.raw.read(MAX_ANSWER_BYTES, decode_content=True) or b""
        finally:
            response.close()  # not drained: an unread rest is dropped with the connection
        if holder.fired:
            raise DeadlinePassed(f"no complete answer within {deadline:g}s")
        return Answer(response.status_code, response.headers, content)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError, AttributeError) as exc:
        if holder.fired or time.monotonic() - started >= deadline:
            raise DeadlinePassed(f"no complete answer within {deadline:g}s") from None
        if isinstance(exc, requests.RequestException):
            raise
        raise requests.ConnectionError(type(exc).__name__) from None
    finally:
        holder.done = True  # the watchdog drops it when its time comes
        _current.holder = None
