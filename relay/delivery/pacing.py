"""Per-target pacing shared by every worker: a GCRA (generic cell rate) limiter in Redis.

Booking a slot for one message to a target allowing ``count`` messages per ``period`` seconds
returns how long the caller must wait for it. Messages are spaced evenly, ``period / count``
apart plus a 10 % margin for the jitter between a booked slot and the request's arrival, with no
burst: a target that counts requests in a sliding window does not see more than it allows. Slots
are booked in order across all workers, so a burst of callbacks is paced instead of meeting a
storm of 429s.

A delivery books its slot once, inside its own Lua step (:data:`BOOK` is spliced into the
scripts of :mod:`relay.delivery.attempt`), and a wait longer than a moment is not slept: the delivery is
scheduled for its slot. :class:`RateLimiter` serves the provider's poller.
"""

from __future__ import annotations

import math

import redis

from relay.store.keys import rate_key

# Lua: book(key, interval_ms, max_wait_ms) → milliseconds to wait for the booked slot; a wait over
# max_wait_ms books nothing (and is returned as it is).
BOOK = """
local function book(key, interval, max_wait)
  local now_t = redis.call('TIME')
  local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local wait = tat - now
  if wait > max_wait then return wait end
  local new_tat = tat + interval
  redis.call('SET', key, new_tat, 'PX', new_tat - now + 1000)
  return wait
end
"""
_RESERVE = BOOK + "return book(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))"

SPACING_MARGIN = 1.1
NO_LIMIT_MS = 10**12  # "book whatever the wait"


def interval_ms(count: int, period: float) -> int:
    """Milliseconds between two slots for ``count`` messages per ``period`` seconds."""
    return max(1, math.ceil(period * 1000 / count * SPACING_MARGIN))


class RateLimiter:
    def __init__(self, connection: redis.Redis, max_wait: float = 5.0) -> None:
        self.script = connection.register_script(_RESERVE)
        self.max_wait_ms = int(max_wait * 1000)

    def reserve(self, name: str, count: int, period: float) -> float:
        """Seconds to wait for a slot; over ``max_wait`` nothing is booked (ask again later)."""
        wait_ms = self.script(keys=[rate_key(name)], args=[interval_ms(count, period), self.max_wait_ms])
        return int(wait_ms) / 1000.0
