"""A Sentinel-managed Redis for the failover tests: a primary, a replica and three real
`redis-server --sentinel` processes on loopback, each in its own folder; optionally the replica
reaches its primary through a :class:`Link` the test can cut."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from relay.dev import free_port, redis_server_binary, wait_for_port

SERVICE = "relaymaster"


class Link:
    """TCP from a local port to ``target_port``, as a network between two nodes. ``cut()`` drops
    every byte both ways from then on while the connections stay open, as a partition does
    (nothing is closed, so neither side learns of it until its own timeouts)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.is_cut.set()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self.is_cut.is_set():
                    sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


class Sentinels:
    """Primary, replica, three sentinels. With ``link=True`` the replica replicates through a
    :class:`Link` (``self.link``); the sentinels then get a long failover-timeout, which is also
    how long they leave a replica that points elsewhere than the primary's address alone.
    ``down_after_ms``: a loaded machine can stall a node past 1 s, and a second failover then
    promotes the node that came back empty (seen in CI: every record gone); 3 s for load runs."""

    def __init__(self, tmp_path: Path, link: bool = False, down_after_ms: int = 1000) -> None:
        binary = redis_server_binary()
        self.processes: list[subprocess.Popen] = []
        self.primary_port, self.replica_port = free_port(), free_port()
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        self.primary_args = [binary, "--port", str(self.primary_port), *common]
        self.tmp_path = tmp_path
        self.primary = self._start(self.primary_args, tmp_path / "primary")
        self.link = Link(self.primary_port) if link else None
        upstream = self.link.port if self.link else self.primary_port
        self.replica = self._start(
            [binary, "--port", str(self.replica_port), *common, "--replicaof", "127.0.0.1", str(upstream)],
            tmp_path / "replica",
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        failover_timeout = 120_000 if link else 5000
        for port in self.sentinel_ports:
            folder = tmp_path / f"sentinel-{port}"
            folder.mkdir()
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} {failover_timeout}\n"
            )
            self._start([binary, str(conf), "--sentinel"], folder, wait=port)
        replica = redis.Redis(port=self.replica_port)
        deadline = time.monotonic() + 30
        while replica.info("replication").get("master_link_status") != "up" and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 30  # every sentinel knows the replica (it can be promoted)
        while time.monotonic() < deadline and not all(
            redis.Redis(port=port).sentinel_slaves(SERVICE) for port in self.sentinel_ports
        ):
            time.sleep(0.1)
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports) + f"/{SERVICE}/0"

    def _start(self, args: list[str], folder: Path, wait: int | None = None) -> subprocess.Popen:
        folder.mkdir(exist_ok=True)
        log = open(folder / "log", "ab")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(args, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        wait_for_port(wait or int(args[args.index("--port") + 1]))
        return process

    def rejoin_old_primary(self) -> None:
        """The killed node comes back (as a platform replaces it): the sentinels make it a replica."""
        self.primary = self._start(self.primary_args, self.tmp_path / "primary")

    def primary_now(self) -> int:
        answer = redis.Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(answer[1])

    def wait_for_promotion(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.primary_now() != self.replica_port and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.primary_now() == self.replica_port, "the sentinels did not promote the replica"

    def primary_has_replica_in_sync(self) -> bool:
        """The primary the sentinels name now (after a second failover, not the one promoted
        first: a 1 s down-after on a loaded machine now and then flips twice) has a replica online."""
        info = redis.Redis(port=self.primary_now(), socket_timeout=2).info("replication")
        return info.get("role") == "master" and any(
            isinstance(value, dict) and value.get("state") == "online"
            for key, value in info.items()
            if key.startswith("slave")
        )

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.link:
            self.link.close()
