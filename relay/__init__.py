"""suno-relay: Suno callbacks (lyrics, songs, files) → team chats and signed webhooks.

Importing the package imports nothing else: the worker, the CLI and :mod:`relay.suno` do not
load Flask. The web app's factory lives in :mod:`relay.web` (``from relay import create_app``
still works, lazily)."""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from relay.web import create_app

        return create_app
    raise AttributeError(f"module 'relay' has no attribute {name!r}")
