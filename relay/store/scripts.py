"""Lua on Redis: writes recorded in Python, replayed atomically behind a condition.

The relay's atomic steps (a new callback, a delivery's settlement) are "if <condition> then do
these writes". The writes are built in Python, RQ's job writes included, by recording them on a
pipeline that is never sent (:func:`record`); a script checks the condition and replays them
(:data:`REPLAY`), so that no client ever sees the condition met without the writes, or the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

# Lua: run the commands packed in ARGV from position ARGV[first] on (see pack()).
REPLAY = """
local function replay(first)
  local i = first + 1
  for _ = 1, tonumber(ARGV[first]) do
    local argc = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + argc))
    i = i + argc + 1
  end
end
"""


def record(connection: redis.Redis, write: Callable[[Any], None]) -> list[tuple]:
    """The commands ``write(pipeline)`` queues, without sending them."""
    recorder = connection.pipeline(transaction=True)
    try:
        recorder.multi()
        write(recorder)
        return [args for args, _options in recorder.command_stack]
    finally:
        recorder.reset()


class Recorder(redis.commands.CoreCommands):
    """Collects what redis-py's command methods build and sends nothing: a cheaper
    :func:`record` (no pipeline) for writes that are the relay's own; writes made by RQ's code go
    through :func:`record` and a real pipeline."""

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def execute_command(self, *args: Any, **options: Any) -> Recorder:
        self.commands.append(args)
        return self


def pack(commands: list[tuple]) -> list:
    """Commands as script arguments: their count, then each one's length and parts."""
    packed: list = [len(commands)]
    for command in commands:
        packed += [len(command), *command]  # redis-py encodes every part when it sends them
    return packed
