"""The console target: with no target configured, formatted messages are printed to stdout (the
log stream on Heroku-like platforms), so that a first run shows the relay working."""

from __future__ import annotations

import sys
from typing import Any

from relay.suno import Event
from relay.targets.base import Outcome, Target, cards, failure_text
from relay.targets.spec import TargetSpec


class ConsoleTarget(Target):
    kind = "console"
    default_rate = (1000, 1.0)

    @classmethod
    def where(cls, spec: TargetSpec) -> str:
        return "stdout"

    def notice(self, text: str) -> dict[str, Any]:
        return {"text": f"[relay] {text}"}

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        if event.kind != "lyrics":
            lines = [f"[{event.type}] Suno task {event.task_id}"]
            for card in cards(event):
                lines.append(f"  ── {card.title}")
                lines += [f"  {label}: {value}" for label, value in card.facts]
                lines += [f"  {label}: {link}" for label, link in card.links]
            return [{"text": "\n".join(lines)}]
        lines = [f"[{event.type}] Suno task {event.task_id} ({event.callback_type})"]
        if event.failed:
            lines.append(f"  failed: {failure_text(event)}")
        for item in event.lyrics:
            lines.append(f"  ── {item.title or 'Untitled lyrics'} ({item.status})")
            body = item.text if item.ok else f"error: {item.error or 'none given'}"
            lines.append("  " + body.replace("\n", "\n  "))  # one pass, not one string per line
        return [{"text": "\n".join(lines)}]

    def send(self, message: dict[str, Any], event: Event) -> Outcome:
        # Plain text on stdout (the platform's log stream), readable as it is; the JSON log line
        # "delivered" follows from the job.
        print(f"\n{message['text']}\n", file=sys.stdout, flush=True)
        return Outcome(ok=True, reason="printed")
