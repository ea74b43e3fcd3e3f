"""Logs: one JSON object per line on stderr for platforms, or one short human line per event in a
terminal (``make run``).

``LOG_FORMAT``: ``json``, ``text``, or ``auto`` (the default: text when stderr is a terminal,
JSON otherwise, so a platform's log drain always gets JSON). Callers pass context with
``extra={...}`` (task_id, target, attempt, reason, …). Never pass a URL, token or secret:
nothing here could tell one from a task id.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
# What a person wants to see of an event in a terminal, in this order.
_TEXT_FIELDS = ("task_id", "type", "target", "attempt", "messages", "reason", "delay_s", "note", "down_s")


def wants_text(setting: str | None = None) -> bool:
    """True for human lines: ``LOG_FORMAT=text``, or ``auto`` with stderr on a terminal."""
    value = (setting or os.environ.get("LOG_FORMAT") or "auto").strip().lower()
    if value == "auto":
        return sys.stderr.isatty()
    return value == "text"


def _fields(record: logging.LogRecord) -> dict:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # what orjson cannot encode (a lone surrogate, a huge integer)
            return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01 delivered  task 3b66… target slack`` — one short line per event."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        parts = [f"{key}={fields[key]}" for key in _TEXT_FIELDS if fields.get(key) not in (None, "")]
        line = f"{when} {level}{record.getMessage()}" + (f"  ({', '.join(parts)})" if parts else "")
        if record.exc_info and record.levelno >= logging.ERROR:
            line += "\n" + self.formatException(record.exc_info)
        return line


class Formatter(logging.Formatter):
    """JSON or text, by ``LOG_FORMAT`` (gunicorn's log configuration names this class)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()
        self.chosen = TextFormatter() if wants_text() else JsonFormatter()

    def format(self, record: logging.LogRecord) -> str:
        return self.chosen.format(record)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str = "INFO", log_format: str | None = None) -> str:
    """Route the relay's and RQ's loggers through the chosen formatter (idempotent). Returns the
    level RQ's own loggers should run at: in a terminal, RQ's per-job lines are noise."""
    text = wants_text(log_format)
    # No line shows the pid, and reading it is a system call for every record.
    logging.logProcesses = False
    handler = StderrHandler()
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    rq_level = "WARNING" if text and level in ("DEBUG", "INFO") else level
    for name in ("relay", "rq.worker", "rq.scheduler", "rq.job"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(rq_level if name.startswith("rq.") else level)
        logger.propagate = False
    return rq_level


def warn_at_start(logger: str, warnings: list[str], level: str = "INFO", log_format: str | None = None) -> None:
    """The start-up warnings of a process, one log line each, in the relay's format."""
    if not warnings:
        return
    configure_logging(level, log_format)
    for warning in warnings:
        logging.getLogger(logger).warning(warning)
