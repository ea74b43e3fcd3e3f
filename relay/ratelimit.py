"""Per-target pacing shared by every worker: a GCRA (generic cell rate) limiter in Redis.

``reserve(name, count, period)`` books the next free slot for one message to a target allowing
``count`` messages per ``period`` seconds, and returns how long the caller must wait for it.
Messages are spaced evenly, ``period / count`` apart plus a 10 % margin for the jitter between a
booked slot and the request's arrival, with no burst: a target that counts requests in a sliding
window does not see more than it allows. Slots are booked in order across all workers, so a burst of
callbacks is paced instead of meeting a storm of 429s. A wait longer than ``max_wait`` books
nothing: the caller reschedules instead of holding a worker.
"""

from __future__ import annotations

import math
from typing import Any

import redis

_GCRA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait < 0 then wait = 0 end
if wait > max_wait then return wait end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
return wait
"""


SPACING_MARGIN = 1.1


class RateLimiter:
    def __init__(self, connection: redis.Redis, max_wait: float = 5.0) -> None:
        self.script = connection.register_script(_GCRA)
        self.max_wait_ms = int(max_wait * 1000)

    def reserve(self, name: str, count: int, period: float, pipeline: Any = None) -> float | None:
        """Seconds to wait before sending one message to ``name``. On a ``pipeline`` the call is
        queued and returns None: the wait (milliseconds) is in the pipeline's results."""
        interval_ms = max(1, math.ceil(period * 1000 / count * SPACING_MARGIN))
        wait_ms = self.script(keys=[f"relay:rate:{name}"], args=[interval_ms, self.max_wait_ms], client=pipeline)
        return None if pipeline is not None else int(wait_ms) / 1000.0
