"""A target's breaker, shared by every worker through Redis (docs/delivery.md, "When a target
is down").

    closed ──(RELAY_BREAKER_FAILURES failures in a row, or "gone")──▶ open ──(probe due)──▶ probing
    probing ──(delivered)──▶ closed      probing ──(failed)──▶ open, the next probe twice as late
    pause ──▶ paused (open, never probed) ──resume──▶ closed

While it is not closed, a delivery to the target is *held* (:func:`hold_writes`, from the
delivery's begin step, :mod:`relay.delivery.attempt`): no thread, no attempt, no dead letter, an
entry in ``relay:held:<target>`` by its callback's arrival. A probe is the oldest held delivery
(started by the sweeper's :meth:`Breakers.tick`); when it is delivered the breaker closes and
:func:`relay.jobs.release` sends the held ones in arrival order, at the target's rate. Every
transition is one Lua step, so two workers never both open, probe or close a breaker; opening
and closing emit an alert event (``relay.target.paused`` / ``relay.target.resumed``) delivered
like any other to the targets whose ``only=`` asks for alerts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from relay.config import Settings
from relay.store import activity
from relay.store.keys import (
    BREAKER_DUE,
    DEAD_LETTERS,
    HELD_SINCE,
    INFLIGHT,
    breaker_key,
    deliveries_key,
    event_key,
    held_key,
    text,
)
from relay.store.state import HELD, DeliveryState
from relay.suno.event import Event, alert
from relay.suno.parsing import event_id

log = logging.getLogger("relay.breaker")

CLOSED, OPEN, PROBING, PAUSED = "closed", "open", "probing", "paused"
STATES = (CLOSED, OPEN, PROBING, PAUSED)

# Lua, spliced into the delivery's begin step: may this delivery be sent now? 1: yes; 2: yes, as
# the probe (the breaker is open, its probe is due and nothing is held: this one becomes the
# probe, watched like one the sweeper starts); 0: no, hold it. KEYS[b], KEYS[b+1], KEYS[b+2]:
# the breaker, the held set, BREAKER_DUE.
MAY_SEND = """
local function may_send(b, target, event_id, now, watchdog)
  local f = redis.call('HMGET', KEYS[b], 'state', 'probe', 'probe_at')
  local state = f[1] or 'closed'
  if state == 'closed' then return 1 end
  if state == 'probing' and f[2] == event_id then return 2 end
  if state == 'open' and tonumber(f[3] or '0') <= now and redis.call('ZCARD', KEYS[b + 1]) == 0 then
    redis.call('HSET', KEYS[b], 'state', 'probing', 'probe', event_id, 'probe_started', now)
    redis.call('ZADD', KEYS[b + 2], now + watchdog, target)
    return 2
  end
  return 0
end
"""

# A counted failure (not a 429, not a refused payload). KEYS: breaker, due. ARGV: target,
# threshold, gone, reason, now, first probe delay, max delay, event id, now (RFC 3339).
# Returns the state after, or 'opened' when this failure opened it.
_FAILED = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local now = tonumber(ARGV[5])
if state == 'closed' then
  local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if ARGV[3] == '1' or n >= tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'state', 'open', 'since', ARGV[9], 'opened_at', ARGV[5], 'reason', ARGV[4],
      'delay', ARGV[6], 'probe_at', now + tonumber(ARGV[6]), 'probe', '')
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[1])
    return 'opened'
  end
  return 'closed'
end
if state == 'probing' and redis.call('HGET', KEYS[1], 'probe') == ARGV[8] then
  local delay = math.min(tonumber(redis.call('HGET', KEYS[1], 'delay') or ARGV[6]) * 2, tonumber(ARGV[7]))
  redis.call('HSET', KEYS[1], 'state', 'open', 'delay', delay, 'probe_at', now + delay, 'probe', '', 'reason', ARGV[4])
  redis.call('ZADD', KEYS[2], now + delay, ARGV[1])
  return 'open'
end
if state == 'probing' then return 'probing' end
redis.call('HSET', KEYS[1], 'reason', ARGV[4])
return state
"""

# The probe was paced (429: at ARGV[3]) or its payload refused (at once): open again, the delay
# unchanged. KEYS: breaker, due. ARGV: target, event id, probe at.
_REOPEN = """
local f = redis.call('HMGET', KEYS[1], 'state', 'probe')
if f[1] ~= 'probing' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'open', 'probe_at', ARGV[3], 'probe', '')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# The probe was delivered. KEYS: breaker, due, held. ARGV: target, event id, now, now (RFC 3339),
# release watchdog. Returns {held count, opened_at} or {-1}.
_CLOSE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'probe', 'opened_at')
if f[1] ~= 'probing' or f[2] ~= ARGV[2] then return {-1, ''} end
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'probe', '', 'since', ARGV[4],
  'reason', 'probe delivered')
local held = redis.call('ZCARD', KEYS[3])
if held > 0 then redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[5]), ARGV[1])
else redis.call('ZREM', KEYS[2], ARGV[1]) end
return {held, f[3] or ''}
"""

# By hand. KEYS: breaker, due, held. ARGV: target, now, now (RFC 3339), 'pause' | 'resume', watchdog.
# Returns {state before, held count, opened_at}.
_BY_HAND = """
local f = redis.call('HMGET', KEYS[1], 'state', 'opened_at')
local before = f[1] or 'closed'
local held = redis.call('ZCARD', KEYS[3])
if ARGV[4] == 'pause' then
  if before == 'closed' then
    redis.call('HSET', KEYS[1], 'since', ARGV[3], 'opened_at', ARGV[2])
    f[2] = ARGV[2]
  end
  redis.call('HSET', KEYS[1], 'state', 'paused', 'reason', 'paused by hand')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {before, held, f[2] or ''}
end
if before == 'closed' then return {before, held, ''} end
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'probe', '', 'since', ARGV[3],
  'reason', 'resumed by hand')
if held > 0 then redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[5]), ARGV[1]) end
return {before, held, f[2] or ''}
"""

# The sweeper's look at one due breaker. KEYS: breaker, held, due. ARGV: target, now, watchdog.
# Returns {'probe', event id} (send it), {'release'} (send the held ones) or {'none'}.
_TICK = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local now = tonumber(ARGV[2])
if state == 'open' then
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #head == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) return {'none'} end
  redis.call('HSET', KEYS[1], 'state', 'probing', 'probe', head[1], 'probe_started', now)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
  return {'probe', head[1]}
end
if state == 'probing' then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
  return {'probe', redis.call('HGET', KEYS[1], 'probe') or ''}
end
if state == 'closed' and redis.call('ZCARD', KEYS[2]) > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
  return {'release'}
end
redis.call('ZREM', KEYS[3], ARGV[1])
return {'none'}
"""

# A target's URL as the breaker remembers it at a worker's start: changed (same name, new URL)
# → probe at once. KEYS: breaker, due. ARGV: target, url hash, now.
_URL = """
local before = redis.call('HGET', KEYS[1], 'url')
redis.call('HSET', KEYS[1], 'url', ARGV[2])
if before and before ~= ARGV[2] and redis.call('HGET', KEYS[1], 'state') == 'open' then
  redis.call('HSET', KEYS[1], 'probe_at', ARGV[3], 'delay', redis.call('HGET', KEYS[1], 'delay') or 0)
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


def hold_writes(pipe: Any, event_id: str, target: str, state: DeliveryState, arrival: float, ttl: int) -> None:
    """The writes of a delivery held for its target's breaker: its state, its place among the
    held (by arrival), when it was first held (give-up counts from there), the in-flight mark
    dropped, fresh TTLs (it may wait days), the page's records."""
    member = f"{event_id}/{target}"
    state.state, state.next_at = HELD, None
    pipe.hset(deliveries_key(event_id), target, state.to_json())
    pipe.zadd(held_key(target), {event_id: arrival}, nx=True)
    pipe.zadd(HELD_SINCE, {member: time.time()}, nx=True)
    pipe.zrem(INFLIGHT, member)
    pipe.zrem(DEAD_LETTERS, member)  # a replay held again is not dead any more
    for key in (event_key(event_id), deliveries_key(event_id)):
        pipe.expire(key, ttl)
    activity.outcome(pipe, event_id, target, HELD, ttl, attempt=state.attempt, reason=state.reason)


def unhold_writes(pipe: Any, event_id: str, target: str) -> None:
    """A delivery leaves the held set (delivered, dead, or sent on)."""
    pipe.zrem(held_key(target), event_id)
    pipe.zrem(HELD_SINCE, f"{event_id}/{target}")


@dataclass
class BreakerStatus:
    state: str
    since: str
    reason: str
    held: int

    @property
    def down(self) -> bool:
        return self.state != CLOSED


def status_of(connection: redis.Redis, targets: Sequence[str]) -> dict[str, BreakerStatus]:
    """Each target's breaker as check, status, the page and /metrics show it (one round trip)."""
    with connection.pipeline(transaction=False) as pipe:
        for target in targets:
            pipe.hmget(breaker_key(target), "state", "since", "reason")
            pipe.zcard(held_key(target))
        found = pipe.execute()
    status = {}
    for index, target in enumerate(targets):
        (state, since, reason), held = found[2 * index], found[2 * index + 1]
        status[target] = BreakerStatus(
            text(state) if state else CLOSED, text(since) if since else "", text(reason) if reason else "", int(held)
        )
    return status


def url_hash(settings: Settings, url: str) -> str:
    """A keyed hash of a target's URL, to notice a change (the URL itself never reaches Redis)."""
    key = (settings.callback_token or "suno-relay breaker").encode()
    return hmac.new(key, url.encode(), hashlib.sha256).hexdigest()[:32]


def _iso(timestamp: float) -> str:
    return activity.iso(timestamp)


class Breakers:
    """Every target's breaker, as one process sees them (each call is one Lua step)."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.settings, self.redis = settings, connection
        self.emit: Callable[[Event], object] = lambda event: None  # the runtime's ingest
        self.release: Callable[[str], object] = lambda target: None  # queue relay.jobs.release
        self.probe: Callable[[str, str, int], object] = lambda event_id, target, attempt: None  # queue it
        self.scripts: dict[str, Any] = {}

    def _run(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        if name not in self.scripts:
            self.scripts[name] = self.redis.register_script(source)
        return self.scripts[name](keys=keys, args=args)

    @property
    def watchdog(self) -> float:
        """How long a probe or a release may take before another worker starts it again (both
        are safe to run twice: a delivery's lock and state keep it to one post)."""
        return self.settings.http_timeout * 3 + 10

    # Outcomes of deliveries (from relay.delivery.attempt) ------------------------------------

    def failed(self, target: str, event_id: str, reason: str, gone: bool) -> str:
        """A counted failure; the state after ('opened' when this one opened it)."""
        settings, now = self.settings, time.time()
        args = [target, settings.breaker_failures, int(gone), reason[:300], now]
        args += [settings.breaker_probe, settings.breaker_probe_max, event_id, _iso(now)]
        return text(self._run("failed", _FAILED, [breaker_key(target), BREAKER_DUE], args))

    def opened(self, target: str) -> None:
        """After the delivery that opened it is held: tell whoever asked for alerts."""
        fields = self._fields(target)
        held = int(self.redis.zcard(held_key(target)))
        log.error("target paused", extra={"target": target, "reason": fields.get("reason", ""), "held": held})
        self._alert("target.paused", target, fields.get("opened_at", ""), fields.get("reason", ""),
                    fields.get("since", ""), held)  # fmt: skip

    def reopen(self, target: str, event_id: str, probe_at: float) -> None:
        self._run("reopen", _REOPEN, [breaker_key(target), BREAKER_DUE], [target, event_id, probe_at])

    def delivered(self, target: str, event_id: str) -> None:
        """The probe was delivered: close, tell, and send the held ones."""
        now = time.time()
        keys = [breaker_key(target), BREAKER_DUE, held_key(target)]
        held, opened_at = self._run("close", _CLOSE, keys, [target, event_id, now, _iso(now), self.watchdog])
        if int(held) < 0:
            return
        self._resumed(target, text(opened_at), "probe delivered", _iso(now), int(held))

    def _resumed(self, target: str, opened_at: str, reason: str, since: str, held: int) -> None:
        log.warning("target resumed", extra={"target": target, "reason": reason, "held": held})
        self._alert("target.resumed", target, opened_at, reason, since, held)
        if held:
            self.release(target)

    # By hand -------------------------------------------------------------------------------------

    def pause(self, target: str) -> str:
        now = time.time()
        keys = [breaker_key(target), BREAKER_DUE, held_key(target)]
        before, held, opened_at = self._run("by_hand", _BY_HAND, keys, [target, now, _iso(now), "pause", 0])
        if text(before) == CLOSED:
            log.error("target paused", extra={"target": target, "reason": "paused by hand", "held": int(held)})
            self._alert("target.paused", target, text(opened_at), "paused by hand", _iso(now), int(held))
        return text(before)

    def resume(self, target: str) -> str:
        now = time.time()
        keys = [breaker_key(target), BREAKER_DUE, held_key(target)]
        args = [target, now, _iso(now), "resume", self.watchdog]
        before, held, opened_at = self._run("by_hand", _BY_HAND, keys, args)
        if text(before) != CLOSED:
            self._resumed(target, text(opened_at), "resumed by hand", _iso(now), int(held))
        return text(before)

    # The sweeper's tick and a worker's start ---------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Start the probes and releases that are due (one read when none is)."""
        now = time.time() if now is None else now
        for raw in self.redis.zrangebyscore(BREAKER_DUE, 0, now, start=0, num=20):
            target = text(raw)
            keys = [breaker_key(target), held_key(target), BREAKER_DUE]
            found = self._run("tick", _TICK, keys, [target, now, self.watchdog])
            action = text(found[0])
            if action == "probe" and len(found) > 1 and text(found[1]):
                self._probe(text(found[1]), target)
            elif action == "release":
                self.release(target)

    def _probe(self, event_id: str, target: str) -> None:
        state = DeliveryState.from_json(self.redis.hget(deliveries_key(event_id), target))
        if state.state == "delivered":  # the probe went out, its worker died before closing
            self.delivered(target, event_id)
            return
        log.info("probing", extra={"target": target, "event_id": event_id})
        self.probe(event_id, target, state.attempt + 1)

    def give_up(self, now: float | None = None) -> None:
        """Dead-letter what was held longer than RELAY_BREAKER_GIVE_UP."""
        from relay.delivery.attempt import dead_letter  # the one way a delivery ends dead

        now = time.time() if now is None else now
        for raw in self.redis.zrangebyscore(HELD_SINCE, 0, now - self.settings.breaker_give_up, start=0, num=50):
            event, _, target = text(raw).partition("/")
            fields = self._fields(target)
            reason = f"target down since {fields.get('since', '?')}: {fields.get('reason', '')}"
            dead_letter(self.redis, self.settings.dedup_ttl, event, target, reason)

    def sync_urls(self, urls: dict[str, str]) -> list[str]:
        """At a worker's start: remember each target's URL hash; an open target whose URL
        changed is probed at once. Returns those targets."""
        changed = []
        for target, url in urls.items():
            args = [target, url_hash(self.settings, url), time.time()]
            if self._run("url", _URL, [breaker_key(target), BREAKER_DUE], args):
                log.warning("target's URL changed while paused: probing at once", extra={"target": target})
                changed.append(target)
        return changed

    # Reading -------------------------------------------------------------------------------------

    def _fields(self, target: str) -> dict[str, str]:
        return {text(key): text(value) for key, value in self.redis.hgetall(breaker_key(target)).items()}

    def status(self, targets: list[str]) -> dict[str, BreakerStatus]:
        return status_of(self.redis, targets)

    def _alert(self, kind: str, target: str, opened_at: str, reason: str, since: str, held: int) -> None:
        # One id per outage and type: a repeat (two workers, a rerun) is a duplicate at the door.
        alert_id = event_id(f"breaker\x00{target}\x00{opened_at}", kind)
        facts = {"target": target, "reason": reason, "since": since, "held": held}
        try:
            self.emit(alert(kind, alert_id, **facts))
        except redis.RedisError:
            log.warning("alert not recorded", extra={"target": target, "type": kind})
