"""Stand-ins for chat services that edit their messages: a Discord webhook (``?wait=true`` answers
the message, ``PATCH …/messages/{id}`` edits it), a Telegram bot (``sendMessage`` answers its
``message_id``, ``editMessageText`` edits it) and Slack's Web API (``chat.postMessage`` answers
its ``ts``, ``chat.update`` edits it; errors as ``200 {"ok": false}``, ``ratelimited`` as 429).
Real HTTP on 127.0.0.1; every post and edit is recorded, messages can be deleted, and edits can
be made slow (a worker is killed during one)."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support import serve

_MESSAGE = re.compile(r"^/api/webhooks/(\d+)/([\w-]+)/messages/(\d+)$")


class ChatService:
    def __init__(self) -> None:
        self.messages: dict[str, Any] = {}  # id → the content it shows now
        self.posts: list[tuple[str, str, Any]] = []  # (id, where: the webhook or chat, content)
        self.edits: list[tuple[str, Any]] = []  # (id, content) of each edit that took
        self.edit_delay = 0.0
        self.editing = 0  # edits that arrived (a slow one is counted before it takes)
        self.slack_token = ""
        self.slack_errors: dict[str, list[str]] = {}  # channel → errors to answer, in order (the last stays)
        self.slack_calls: list[tuple[float, str, Any]] = []  # (when, method, body) of every Web API call
        self.ts = itertools.count(1)
        self.lock = threading.Lock()
        self.ids = itertools.count(1_000_000_000_000_000_001)
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

            def answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                content = self.body()
                if path.startswith("/api/chat."):
                    self.slack(path.removeprefix("/api/"), content)
                elif path.endswith("/sendMessage"):
                    message_id = service.post(str(content.get("chat_id")), content)
                    self.answer(200, {"ok": True, "result": {"message_id": message_id}})
                elif path.endswith("/editMessageText"):
                    found = service.edit(str(content.get("message_id")), content)
                    if found is None:
                        self.answer(400, {"ok": False, "error_code": 400,
                                          "description": "Bad Request: message to edit not found"})  # fmt: skip
                    else:
                        self.answer(200, {"ok": True, "result": {"message_id": content["message_id"]}})
                elif path.startswith("/api/webhooks/"):
                    message_id = service.post(path.split("/")[3], content)
                    self.answer(200, {"id": str(message_id), **content} if "wait=true" in self.path else {})
                else:
                    self.answer(404, {"message": "404: Not Found", "code": 0})

            def slack(self, method: str, content: Any) -> None:
                service.slack_calls.append((time.monotonic(), method, content))
                if self.headers.get("Authorization") != f"Bearer {service.slack_token}":
                    self.answer(200, {"ok": False, "error": "invalid_auth"})
                    return
                channel = str(content.get("channel"))
                errors = service.slack_errors.get(channel, [])
                error = (errors.pop(0) if len(errors) > 1 else errors[0]) if errors else ""
                if error == "ratelimited":
                    data = b'{"ok": false, "error": "ratelimited"}'
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif error:
                    self.answer(200, {"ok": False, "error": error})
                elif method == "chat.postMessage":
                    ts = f"{1_700_000_000 + next(service.ts)}.000100"
                    with service.lock:
                        service.messages[ts] = content
                        service.posts.append((ts, channel, content))
                    self.answer(200, {"ok": True, "channel": channel, "ts": ts})
                elif service.edit(str(content.get("ts")), content) is not None:
                    self.answer(200, {"ok": True, "channel": channel, "ts": content["ts"]})
                else:
                    self.answer(200, {"ok": False, "error": "message_not_found"})

            def do_PATCH(self) -> None:
                match = _MESSAGE.match(urlsplit(self.path).path)
                content = self.body()
                if match and service.edit(match[3], content) is not None:
                    self.answer(200, {"id": match[3], **content})
                else:
                    self.answer(404, {"message": "Unknown Message", "code": 10008})

            def log_message(self, *args: object) -> None:
                pass

        self.server = serve(Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def discord_url(self, number: int = 1) -> str:
        return f"{self.base}/api/webhooks/{number}/token-{number}-abcdefghijklmnop"

    def post(self, where: str, content: Any) -> int:
        with self.lock:
            message_id = next(self.ids)
            self.messages[str(message_id)] = content
            self.posts.append((str(message_id), where, content))
        return message_id

    def edit(self, message_id: str, content: Any) -> Any:
        with self.lock:
            self.editing += 1
        if self.edit_delay:
            time.sleep(self.edit_delay)
        with self.lock:
            if message_id not in self.messages:
                return None
            self.messages[message_id] = content
            self.edits.append((message_id, content))
            return content

    def delete(self, message_id: str) -> None:
        with self.lock:
            self.messages.pop(message_id, None)

    def posted(self, where: str) -> list[str]:
        """The ids of the messages posted to a webhook (its number) or a chat (its id)."""
        with self.lock:
            return [message_id for message_id, to, _ in self.posts if to == where]

    def edits_of(self, message_ids: list[str]) -> int:
        with self.lock:
            return sum(1 for message_id, _ in self.edits if message_id in message_ids)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
