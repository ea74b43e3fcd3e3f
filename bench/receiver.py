"""The bench's targets, in a process of its own: answers every POST at once, in one write
(headers and body together: no Nagle / delayed-ACK stall), and notes when each task arrived.
``/slow`` answers after 2 s, ``/slow8`` after 8 s. ``GET /arrivals`` returns ``{path: {task: unix time}}``.

Run: ``python bench/receiver.py PORT``."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TASK = re.compile(rb"bench-[a-z0-9-]+")
arrivals: dict[str, dict[str, float]] = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        now = time.time()
        if self.path == "/slow":
            time.sleep(2.0)
        elif self.path == "/slow8":  # inside the relay's 10 s POST deadline
            time.sleep(8.0)
        match = TASK.search(body)
        if match:
            with lock:
                arrivals.setdefault(self.path, {}).setdefault(match.group().decode(), now)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")

    def do_GET(self) -> None:
        with lock:
            payload = json.dumps(arrivals).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(payload)}\r\nContent-Type: application/json\r\n\r\n"
        self.wfile.write(head.encode() + payload)

    def do_DELETE(self) -> None:
        with lock:
            arrivals.clear()
        self.wfile.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    server.serve_forever()
