"""Generic webhooks: the normalised event as JSON, signed per Standard Webhooks.

Headers (https://www.standardwebhooks.com): ``webhook-id`` (the event id, stable across retries
and replays, so consumers can deduplicate), ``webhook-timestamp`` (Unix seconds of this attempt)
and ``webhook-signature`` ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the
base64-decoded ``RELAY_WEBHOOK_SECRET``. Without a secret, the body goes unsigned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from relay.suno import Event
from relay.targets.base import Target
from relay.targets.spec import ConfigError, TargetSpec, Variable


class RawBody(dict):
    """A templated webhook body: sent as the template rendered it, not re-encoded."""


def sign(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


class WebhookTarget(Target):
    kind = "webhook"
    variable = "RELAY_WEBHOOK_URL"
    other_variables = (Variable("RELAY_WEBHOOK_SECRET", deploy=True, secret=True),)
    default_rate = (10, 1.0)
    every_event = True  # a program reads it: progress stages too

    @classmethod
    def check_environment(cls, env: Mapping[str, str], specs: list[TargetSpec]) -> None:
        if env.get("RELAY_WEBHOOK_SECRET", "").strip() and not specs:
            raise ConfigError("RELAY_WEBHOOK_SECRET is set but RELAY_WEBHOOK_URL is not")

    def __init__(self, *args: Any, secret: bytes = b"", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secret = secret

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        return [event.to_dict()]

    def render_templated(self, event: Event, text: str) -> list[dict[str, Any]]:
        return [RawBody(body=text)]  # the whole body, as rendered (checked to be JSON at start)

    def encode(self, message: dict[str, Any], event: Event) -> tuple[bytes, dict[str, str]]:
        if isinstance(message, RawBody):
            body = message["body"].encode()
            return body, self.headers(body, event)
        return super().encode(message, event)

    def render_alert(self, event: Event) -> list[dict[str, Any]]:
        return self.render_event(event)  # the envelope, as for every event

    def headers(self, body: bytes, event: Event) -> dict[str, str]:
        headers = super().headers(body, event)
        if self.secret:
            timestamp = int(time.time())
            headers.update({
                "webhook-id": event.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self.secret, event.id, timestamp, body),
            })  # fmt: skip
        return headers
