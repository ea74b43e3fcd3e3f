"""Test helpers: local HTTP receivers that stand in for Slack, Discord and webhook consumers, and
the real Procfile processes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from relay.dev import ROOT, free_port, procfile, wait_for_port

EXAMPLES = ROOT / "examples"


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A real HTTP server on a free port of 127.0.0.1, serving ``handler`` in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def lyrics_callback(task_id: str) -> dict:
    """The smallest finished-lyrics callback, for load and failover runs."""
    item = {"status": "complete", "title": f"Song {task_id}", "text": "la", "error_message": ""}
    return {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": task_id, "data": [item]}}


def post_lyrics(base: str, task_id: str, http: requests.Session | None = None) -> requests.Response:
    """POST :func:`lyrics_callback` to a web process at ``base``, with the tests' token."""
    from tests.conftest import TOKEN

    return (http or requests).post(
        f"{base}/callbacks/suno/lyrics", params={"token": TOKEN}, json=lyrics_callback(task_id), timeout=10
    )


def example(name: str) -> dict:
    """One of ``examples/<name>.json``, the provider's payloads as documented."""
    return json.loads((EXAMPLES / f"{name}.json").read_text())


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    """A real HTTP server on 127.0.0.1. Scripted replies are used in order, then ``default``."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self.replies: list[int] = []
        self.rule: Callable[[Receiver], Reply | None] | None = None
        self.current: Received | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                entry = Received(self.path, dict(self.headers.items()), body, time.monotonic())
                with receiver.lock:
                    receiver.current = entry  # what a rule may look at
                    reply = (receiver.rule and receiver.rule(receiver)) or (
                        receiver.script.pop(0) if receiver.script else receiver.default
                    )
                    receiver.attempts.append(entry)
                if reply.delay:
                    # A slow service: it takes the message only if the client is still there when
                    # it is done (a client that hung up sees no answer, so it must try again).
                    time.sleep(reply.delay)
                    if self.client_gone():
                        return
                with receiver.lock:
                    receiver.replies.append(reply.status)
                    if 200 <= reply.status < 300:
                        receiver.received.append(entry)
                payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

            def client_gone(self) -> bool:
                ready, _, _ = select.select([self.connection], [], [], 0)
                return bool(ready) and self.connection.recv(1, socket.MSG_PEEK) == b""

        self.attempts: list[Received] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return self.received
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries, got {len(self.received)} (replies {self.replies})")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m relay <args>`` as a user runs it, with ``env`` over this environment."""
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Procfile:
    """The Procfile's processes (real gunicorn, real RQ worker), started as the platform would."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.log_dir = log_dir
        self.processes: dict[str, list[subprocess.Popen]] = {}
        self.commands = procfile()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, port: int | None = None, **env: str) -> subprocess.Popen:
        """Start one more process of ``name``; a second web process needs a ``port`` of its own."""
        index = len(self.processes.setdefault(name, []))
        log = open(self.log_dir / f"{name}-{index}.log", "ab")  # noqa: SIM115 - owned by the process
        port = port or self.port
        process = subprocess.Popen(
            self.commands[name],
            env={**self.env, "PORT": str(port), **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a dyno: signals reach the RQ horse too
        )
        self.processes[name].append(process)
        if name == "web":
            wait_for_port(port, timeout=20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.05)
        return process

    def start_many(self, web: int, worker: int) -> list[str]:
        """``web`` web processes (each on a port of its own) and ``worker`` workers; the web
        processes' base URLs."""
        ports = [self.port] + [free_port() for _ in range(web - 1)]
        for port in ports:
            self.start("web", port=port)
        for _ in range(worker):
            self.start("worker")
        return [f"http://127.0.0.1:{port}" for port in ports]

    def signal(self, process: subprocess.Popen, sig: int) -> None:
        """Signal the process and every descendant (RQ's work horse has a process group of its
        own), as a platform does to every process of a dyno."""
        for pid in [*descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log")))

    def stop(self) -> None:
        for group in self.processes.values():
            for process in group:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGTERM)
        for group in self.processes.values():
            for process in group:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    found += [int(child), *descendants(int(child))]
        except FileNotFoundError:
            continue
    return found


FILE_RECORDS = {
    "/api/v1/wav/record-info": "wav",
    "/api/v1/vocal-removal/record-info": "stems",
    "/api/v1/mp4/record-info": "video",
    "/api/v1/suno/cover/record-info": "cover",
    "/api/v1/midi/record-info": "midi",
}


def voice_record(task_id: str, status: str) -> dict:
    """A Suno Voice task's details: ``status`` as the provider words it (wait_validating, success, …)."""
    failed = status in ("fail", "processing_validate_fail")
    return {
        "taskId": task_id,
        "status": status,
        "voiceId": f"voice_{task_id}" if status == "success" else None,
        "validateInfo": "Read aloud: the river sings at dawn" if status == "wait_validating" else None,
        "errorCode": 413 if failed else None,
        "errorMessage": "the sample is too short" if failed else None,
    }


FILE_SUBMITS = {path.replace("record-info", "generate"): kind for path, kind in FILE_RECORDS.items()}


def file_record(kind: str, task_id: str, status: str) -> dict:
    """The record-info ``data`` of a WAV, stems, video, cover or MIDI task, as the provider
    documents it: ``status`` is its ``successFlag`` (a number for MIDI and cover when it is one
    of digits); the result comes with SUCCESS and with CALLBACK_EXCEPTION (the callback failed)."""
    flag: str | int = int(status) if status.isdigit() else status
    done = flag in ("SUCCESS", "CALLBACK_EXCEPTION", 1)
    failed = (isinstance(flag, str) and flag.endswith("FAILED")) or flag in (3,) or (kind == "midi" and flag == 2)
    record: dict = {"taskId": task_id, "successFlag": flag, "errorCode": 500 if failed else None,
                    "errorMessage": f"{kind} failed at the provider" if failed else None}  # fmt: skip
    cdn = f"https://cdn.example.org/{task_id}"
    responses = {
        "wav": {"audioWavUrl": f"{cdn}.wav"},
        "stems": {
            "originUrl": f"{cdn}-origin.mp3",
            "vocalUrl": f"{cdn}-vocal.mp3",
            "instrumentalUrl": f"{cdn}-instrumental.mp3",
            "originData": [{"audioUrl": f"{cdn}-origin.mp3"}],
        },
        "video": {"videoUrl": f"{cdn}.mp4"},
        "cover": {"images": [f"{cdn}-1.png", f"{cdn}-2.png"]},
    }
    if kind == "midi":
        notes = [{"pitch": 60, "start": "0.5", "end": "1.0", "velocity": 90}]
        record["midiData"] = {"state": "complete", "instruments": [{"name": "Piano", "notes": notes}]} if done else None
    else:
        record["response"] = responses[kind] if done else None
    return record


class FakeSuno:
    """The provider's API, served for real on 127.0.0.1: submit, record-info, and callbacks.

    Each task answers record-info from its script in order (the last entry repeats): by default
    PENDING twice, then SUCCESS. ``errors`` are provider error codes answered first, to anything.
    """

    def __init__(self, api_key: str = "suno-test-key") -> None:
        self.api_key = api_key
        self.tasks: dict[str, dict] = {}
        self.errors: list[int] = []
        self.requests: list[tuple[str, str, float]] = []  # (method, path, monotonic time)
        self.default_script = ["PENDING", "PENDING", "SUCCESS"]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, body: dict, status: int = 200) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def guarded(self) -> bool:
                fake.requests.append((self.command, self.path, time.monotonic()))
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self.reply({"code": 401, "msg": "Unauthorized"}, 401)
                    return False
                if fake.errors:
                    code = fake.errors.pop(0)
                    self.reply({"code": code, "msg": f"error {code}"})
                    return False
                return True

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.guarded():
                    return
                task_id = f"fake{len(fake.tasks) + 1:04d}"
                path = urlsplit(self.path).path
                kind = FILE_SUBMITS.get(path) or ("music" if path.startswith("/api/v1/generate") else "lyrics")
                fake.tasks[task_id] = {"prompt": body.get("prompt"), "callBackUrl": body.get("callBackUrl"),
                                       "script": list(fake.default_script), "kind": kind, "body": body}  # fmt: skip
                self.reply({"code": 200, "msg": "success", "data": {"taskId": task_id}})

            def do_GET(self) -> None:
                if not self.guarded():
                    return
                task_id = parse_qs(urlsplit(self.path).query).get("taskId", [""])[0]
                task = fake.tasks.get(task_id)
                if task is None:
                    self.reply({"code": 404, "msg": "task not found"})
                    return
                status = task["script"].pop(0) if len(task["script"]) > 1 else task["script"][0]
                path = urlsplit(self.path).path
                if path == "/api/v1/generate/record-info":
                    self.reply({"code": 200, "msg": "success", "data": fake.music_record(task_id, status)})
                elif path in ("/api/v1/voice/record-info", "/api/v1/voice/validate-info"):
                    self.reply({"code": 200, "msg": "success", "data": voice_record(task_id, status)})
                elif path in FILE_RECORDS:
                    self.reply(
                        {"code": 200, "msg": "success", "data": file_record(FILE_RECORDS[path], task_id, status)}
                    )
                else:
                    self.reply({"code": 200, "msg": "success", "data": fake.record(task_id, status)})

            def log_message(self, *args: object) -> None:
                pass

        self.server = serve(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_task(self, task_id: str, *script: str) -> None:
        self.tasks[task_id] = {"prompt": "", "callBackUrl": None, "script": list(script or self.default_script)}

    @staticmethod
    def lyrics(task_id: str) -> list[dict]:
        return [
            {
                "text": f"[Verse]\nlyrics of {task_id}",
                "title": f"Song {task_id}",
                "status": "complete",
                "errorMessage": "",
            }
        ]

    def record(self, task_id: str, status: str) -> dict:
        success = status == "SUCCESS"
        return {
            "taskId": task_id,
            "param": json.dumps({"prompt": self.tasks[task_id]["prompt"]}),
            "response": {"taskId": task_id, "data": self.lyrics(task_id) if success else None},
            "status": status,
            "type": "LYRICS",
            "errorCode": None if success or status == "PENDING" else 400,
            "errorMessage": None if success or status == "PENDING" else f"failed: {status.lower()}",
        }

    def music_record(self, task_id: str, status: str) -> dict:
        """The music record-info answer: camelCase ``sunoData``, audio only once SUCCESS."""
        songs = [
            {
                "id": f"{task_id}-{n}",
                "audioUrl": f"https://cdn.example.org/{task_id}-{n}.mp3" if status == "SUCCESS" else "",
                "streamAudioUrl": f"https://cdn.example.org/stream/{task_id}-{n}" if status != "TEXT_SUCCESS" else "",
                "imageUrl": f"https://cdn.example.org/{task_id}-{n}.jpeg",
                "prompt": "[Verse] la la",
                "modelName": "chirp-v4-5",
                "title": f"Song {task_id}",
                "tags": "pop",
                "createTime": "2026-11-28 00:00:00",
                "duration": 180.5 + n,
            }
            for n in (1, 2)
        ]
        failed = status.endswith(("FAILED", "ERROR"))
        return {
            "taskId": task_id,
            "status": status,
            "response": {"taskId": task_id, "sunoData": None if status == "PENDING" or failed else songs},
            "errorCode": 501 if failed else None,
            "errorMessage": "audio generation failed" if failed else None,
        }

    def callback_payload(self, task_id: str, camel: bool = False) -> dict:
        """The callback body for a finished task, in the snake_case or the camelCase dialect."""
        items = self.lyrics(task_id)
        if camel:
            return {
                "code": 200,
                "msg": "ok",
                "data": {"callbackType": "complete", "taskId": task_id, "lyricsData": items},
            }
        items = [{**item, "error_message": item.pop("errorMessage")} for item in items]
        return {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": task_id, "data": items}}

    def fire_callback(self, task_id: str, url: str | None = None) -> requests.Response:
        """POST the provider's callback for a finished task to its callBackUrl (or ``url``)."""
        payload = self.callback_payload(task_id)
        return requests.post(url or self.tasks[task_id]["callBackUrl"], json=payload, timeout=10)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RawReceiver:
    """A target that misbehaves below HTTP's level: it reads each POST, then answers by ``mode``:

    - ``trickle``: a 200 whose bytes come one every ``pace`` seconds (for ever, unless cut);
    - ``endless``: a 200 whose chunked body never ends;
    - ``huge``: a 200 announcing and sending ``size`` bytes as fast as the client reads.

    It counts POSTs, and how many were open at once (``most_open``).
    """

    def __init__(self, mode: str, pace: float = 0.5, size: int = 300 * 1024 * 1024) -> None:
        self.mode, self.pace, self.size = mode, pace, size
        self.posts: list[float] = []
        self.open = self.most_open = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while self._read_request(conn):
                with self.lock:
                    self.posts.append(time.monotonic())
                    self.open += 1
                    self.most_open = max(self.most_open, self.open)
                try:
                    self._answer(conn)
                except OSError:
                    return
                finally:
                    with self.lock:
                        self.open -= 1

    def _answer(self, conn: socket.socket) -> None:
        if self.mode == "trickle":
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000:
                conn.sendall(bytes([byte]))
                time.sleep(self.pace)
        elif self.mode == "endless":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
            while not self.closed:
                conn.sendall(chunk)
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
            block, sent = b"y" * 65536, 0
            while sent < self.size and not self.closed:
                conn.sendall(block)
                sent += len(block)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def nothing_recorded(connection) -> bool:
    """Nothing of a refused request is in Redis: at most the operator page's counts."""
    return all(key.startswith(b"relay:stats:") for key in connection.scan_iter())


def log_entries(text: str) -> list[dict]:
    """The JSON log lines of a process's output, parsed."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def ingest(runtime, event) -> None:
    """Record ``event`` and queue its deliveries as the door does."""
    from relay.delivery.queue import delivery_queue
    from relay.ingest import Ingest

    assert Ingest(runtime.settings, runtime.redis, delivery_queue(runtime.settings, runtime.redis))(event)


def work(runtime) -> None:
    """Run every job due on the runtime's queue in this process, as a worker would."""
    from rq import SimpleWorker

    SimpleWorker([runtime.queue], connection=runtime.redis).work(burst=True)
