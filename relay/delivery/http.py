"""Posting to targets with a total deadline and a bounded answer.

A socket timeout bounds each read, not a request: a target that trickles one byte every few
seconds, or streams an endless answer, could hold a delivery thread (and its lock) for ever, and a
huge answer would be read into memory whole. Here every POST has one deadline for the whole
exchange (connect, send, headers, body): a watchdog shuts the socket down when it passes, which
wakes the blocked read. Only the first :data:`MAX_ANSWER_BYTES` of an answer are read; that is
plenty to classify it, and the connection is then dropped instead of drained.

Posts go through urllib3's connection pools directly (keep-alive, certifi's CA bundle, no retries,
no redirects): ``requests`` on top of them cost about 0.9 ms of CPU per POST here, most of a
delivery's. One watchdog thread serves every POST of the process (a heap of deadlines), and each
target URL's proxy settings (``HTTPS_PROXY``, ``NO_PROXY``) are read from the environment once.
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

import certifi
import requests.utils
import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProxyError, ReadTimeoutError, SSLError

MAX_ANSWER_BYTES = 16 * 1024
_current = threading.local()  # the socket the calling thread is waiting on, for its watchdog


class DeadlinePassed(Exception):
    """The whole exchange took longer than its deadline."""


class PostFailed(Exception):
    """No complete answer: ``kind`` says how (``ConnectionError``, ``SSLError``, ``ProxyError``,
    ``ConnectTimeout``, ``ReadTimeout``…), never the URL (a secret)."""

    def __init__(self, kind: str, timeout: bool = False) -> None:
        super().__init__(kind)
        self.kind, self.timeout = kind, timeout


@dataclass
class Answer:
    """What a target said: status, headers and at most ``MAX_ANSWER_BYTES`` of the body."""

    status_code: int
    headers: urllib3.HTTPHeaderDict = field(default_factory=urllib3.HTTPHeaderDict)
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
            holder.watch(self.sock)  # type: ignore[attr-defined]  # a mixin: its class has the socket
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]  # a mixin over urllib3's connections


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
        due = time.monotonic() + seconds
        with self.condition:
            earliest = self.heap[0][0] if self.heap else None
            heapq.heappush(self.heap, (due, next(self.order), holder))
            if earliest is None or due < earliest:
                # Only an earlier deadline needs the thread awake now: waking it for every POST
                # was a context switch each.
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
def _proxy(url: str) -> str | None:
    """The environment's proxy for ``url`` (NO_PROXY applied), read once per URL."""
    scheme = url.split(":", 1)[0].lower()
    proxies = requests.utils.get_environ_proxies(url)
    return proxies.get(scheme) or proxies.get("all")


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class Client:
    """The process's connections to its targets: keep-alive pools shared by every delivery
    thread (``pool_size`` connections per host), one more set per proxy."""

    def __init__(self, pool_size: int = 10) -> None:
        self.options: dict[str, Any] = {"num_pools": 16, "maxsize": max(10, pool_size), "ca_certs": certifi.where()}
        self.direct = self._manager(urllib3.PoolManager(**self.options))
        self.proxied: dict[str, urllib3.PoolManager] = {}
        self.lock = threading.Lock()

    @staticmethod
    def _manager(manager: urllib3.PoolManager) -> urllib3.PoolManager:
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def manager(self, url: str) -> urllib3.PoolManager:
        proxy = _proxy(url)
        if not proxy:
            return self.direct
        with self.lock:
            if proxy not in self.proxied:
                self.proxied[proxy] = self._manager(urllib3.ProxyManager(proxy, **self.options))
            return self.proxied[proxy]


def post(
    client: Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    connect_timeout: float = 5.0,
    method: str = "POST",
) -> Answer:
    """POST ``body`` (or PATCH it: an edit); the whole exchange ends within ``deadline`` seconds
    or raises :class:`DeadlinePassed`. Other failures raise :class:`PostFailed`."""
    holder = _Holder()
    _current.holder = holder
    started = time.monotonic()
    _watch(holder, deadline)
    try:
        response = client.manager(url).urlopen(
            method,
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=min(connect_timeout, deadline), read=deadline),
            retries=False,
            redirect=False,
            preload_content=False,
        )
        try:
            content = response.read(MAX_ANSWER_BYTES, decode_content=True) or b""
        finally:
            # A fully read answer leaves its connection in the pool; an unread rest is dropped
            # with the connection instead of drained.
            if response.length_remaining == 0:
                response.release_conn()
            else:
                response.close()
        if holder.fired:
            raise DeadlinePassed(f"no complete answer within {deadline:g}s")
        return Answer(response.status, response.headers, content)
    except (urllib3.exceptions.HTTPError, OSError, ValueError, AttributeError) as exc:
        if holder.fired or time.monotonic() - started >= deadline:
            raise DeadlinePassed(f"no complete answer within {deadline:g}s") from None
        raise _failure(exc) from None
    finally:
        holder.done = True  # the watchdog drops it when its time comes
        _current.holder = None


def _failure(exc: BaseException) -> PostFailed:
    if isinstance(exc, NewConnectionError):  # refused, unreachable (urllib3 files it under timeouts)
        return PostFailed("ConnectionError")
    if isinstance(exc, ConnectTimeoutError):
        return PostFailed("ConnectTimeout", timeout=True)
    if isinstance(exc, ReadTimeoutError):
        return PostFailed("ReadTimeout", timeout=True)
    if isinstance(exc, ProxyError):
        return PostFailed("ProxyError")
    if isinstance(exc, SSLError):
        return PostFailed("SSLError")
    return PostFailed("ConnectionError")
