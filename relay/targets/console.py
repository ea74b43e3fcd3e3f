"""The console target: with no target configured, formatted messages go to the log, so that a
first run shows the relay working."""

from __future__ import annotations

import logging
from typing import Any

from relay.suno import Event
from relay.targets.base import Outcome, Target, failure_text

log = logging.getLogger("relay.console")


class ConsoleTarget(Target):
    kind = "console"

    def render(self, event: Event) -> list[dict[str, Any]]:
        lines = [f"[{event.type}] Suno task {event.task_id} ({event.callback_type})"]
        if event.failed:
            lines.append(f"  failed: {failure_text(event)}")
        for item in event.lyrics:
            lines.append(f"  ── {item.title or 'Untitled lyrics'} ({item.status})")
            body = item.text if item.ok else f"error: {item.error or 'none given'}"
            lines += [f"  {line}" for line in body.splitlines()]
        return [{"text": "\n".join(lines)}]

    def send(self, message: dict[str, Any], event: Event) -> Outcome:
        log.info("console delivery\n%s", message["text"], extra={"task_id": event.task_id, "target": self.name})
        return Outcome(ok=True, reason="logged")
