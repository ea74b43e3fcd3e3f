"""One delivery: an event to one target, as a small state machine kept in Redis.

    begin ──▶ send ──▶ (progress ──▶ send)* ──▶ finish

- **begin** (one Lua step): take the delivery's lock (or find it held), read its state, and unless
  the target already has the event: mark it in flight and book the first message's rate-limit
  slot. A target that already has it costs this one round trip.
- **progress** (one Lua step, between the messages of a long event): only while the lock is still
  ours: record the message the target just accepted, renew the lock, book the next slot.
- **finish** (one Lua step): only while the lock is not someone else's: the outcome (delivered,
  dead, retrying with its job, paced or handed back with its job), the in-flight mark dropped,
  the dead letters and the metrics, and the lock released, all at once.

So a one-message delivery costs two round trips, and a thread whose lock was taken over (it stalled
past the lock's lifetime) records nothing. Messages are rendered before the lock is taken, so the
lock's clock only runs while posting. Each step is retried through a Redis outage
(:mod:`relay.store.outage`): a message the target accepted is recorded once Redis answers again, never
posted again. A rate-limit wait longer than :data:`MAX_PACING_SLEEP` is not slept: the delivery is
scheduled for its booked slot and the thread is free. On SIGTERM a delivery finishes the message
in flight and hands the rest back, resuming after the last accepted message.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import rq

from relay.config import Settings
from relay.delivery.breaker import CLOSED, MAY_SEND, Breakers, hold_writes, unhold_writes
from relay.delivery.live import LiveMessage, is_live
from relay.delivery.pacing import BOOK, NO_LIMIT_MS, interval_ms, rate_key
from relay.delivery.queue import enqueue_delivery
from relay.metrics import record_delivery
from relay.store import activity
from relay.store.activity import iso
from relay.store.connection import wait_for_replicas
from relay.store.keys import BREAKER_DUE, HELD_SINCE, breaker_key, held_key, live_key, live_lock_key
from relay.store.outage import OUTAGE
from relay.store.scripts import REPLAY, pack, record
from relay.store.state import (
    DEAD,
    DEAD_LETTERS,
    DELIVERED,
    INFLIGHT,
    RETRYING,
    SENDING,
    DeliveryState,
    deliveries_key,
    event_key,
    lock_key,
)
from relay.suno import Event
from relay.targets import Target
from relay.targets.base import Outcome

log = logging.getLogger("relay.jobs")
# A rate-limit wait up to this long is slept; a longer one is scheduled instead.
MAX_PACING_SLEEP = 0.1
LOCK_MARGIN = 5.0
BUG_NOTE = "the target rejected our payload: a relay bug, please report it with this line"

_BEGIN = (
    BOOK
    + MAY_SEND
    + """
local event = ''
if ARGV[9] == '1' then
  event = redis.call('GET', KEYS[5])
  if not event then
    redis.call('ZREM', KEYS[3], ARGV[4])
    redis.call('ZREM', KEYS[7], ARGV[10])
    redis.call('ZREM', KEYS[9], ARGV[4])
    return {3, '', 0, '', 0}
  end
end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, '', redis.call('PTTL', KEYS[1]), '', 0} end
local state = redis.call('HGET', KEYS[2], ARGV[3]) or ''
if ARGV[6] ~= '1' and state ~= '' and cjson.decode(state)['state'] == 'delivered' then
  if holder then redis.call('DEL', KEYS[1]) end
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('ZREM', KEYS[7], ARGV[10])
  redis.call('ZREM', KEYS[9], ARGV[4])
  return {2, state, 0, '', 0}
end
local send = may_send(6, ARGV[3], ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12]))
if send == 0 then
  if holder then redis.call('DEL', KEYS[1]) end
  return {4, state, 0, event, 0}
end
redis.call('ZREM', KEYS[7], ARGV[10])
redis.call('ZREM', KEYS[9], ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
local wait = 0
if tonumber(ARGV[7]) > 0 then wait = book(KEYS[4], tonumber(ARGV[7]), tonumber(ARGV[8])) end
return {1, state, wait, event, send - 1}
"""
)
# Hold a delivery whose target's breaker is not closed (unless it closed, or this became its probe
# meanwhile: 0, send it again; or another worker posts it now: 2). KEYS: lock, breaker, held, due.
_HOLD = (
    MAY_SEND
    + REPLAY
    + """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 2 end
if may_send(2, ARGV[5], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])) ~= 0 then return 0 end
replay(6)
if holder then redis.call('DEL', KEYS[1]) end
return 1
"""
)
_PROGRESS = (
    BOOK
    + """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
return book(KEYS[4], tonumber(ARGV[7]), tonumber(ARGV[8]))
"""
)
_FINISH = (
    REPLAY
    + """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
replay(2)
if holder then redis.call('DEL', KEYS[1]) end
return 1
"""
)


class LockLost(Exception):
    """Another worker took the delivery over while this one still worked on it."""


class _HandBack(Exception):
    """Stop posting now; the rest is scheduled ``delay`` seconds later."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay, self.reason = delay, reason


def lock_seconds(settings: Settings) -> float:
    """How long one worker may hold a delivery without renewing: one POST's deadline, a pacing
    sleep and a margin, no more, so that the lock of a killed worker frees itself soon and the
    sweeper can hand the delivery to another."""
    return settings.http_timeout + MAX_PACING_SLEEP + LOCK_MARGIN


def backoff_delay(settings: Settings, attempt: int) -> float:
    """Delay before attempt ``attempt + 1``: the ``RELAY_BACKOFF`` schedule, ±20 % jitter."""
    schedule = settings.backoff
    base = schedule[min(attempt, len(schedule)) - 1]
    return base * random.uniform(0.8, 1.2)


def _since(rfc3339: str) -> float:
    return max(0.0, time.time() - datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


@dataclass
class Context:
    """What a delivery needs of the worker: settings, Redis (its own pool), the queue."""

    settings: Settings
    redis: redis.Redis
    queue: rq.Queue
    breakers: Breakers
    scripts: dict[str, Any] = field(default_factory=dict)

    def script(self, name: str, source: str) -> Any:
        if name not in self.scripts:
            self.scripts[name] = self.redis.register_script(source)
        return self.scripts[name]


class Delivery:
    """One attempt at delivering ``event`` to ``target``."""

    def __init__(
        self,
        ctx: Context,
        event_id: str,
        target: Target,
        attempt: int = 1,
        force: bool = False,
        booked: bool = False,
        event: Event | None = None,
    ) -> None:
        """``event``: when the caller has it; else ``begin`` reads it in the same round trip."""
        self.ctx, self.event_id, self.event, self.target = ctx, event_id, event, target
        self.attempt, self.force, self.booked = attempt, force, booked
        self.token = uuid.uuid4().hex
        self.member = f"{event_id}/{target.name}"
        keys = [lock_key(event_id, target.name), deliveries_key(event_id), INFLIGHT, rate_key(target.name)]
        breaker = [breaker_key(target.name), held_key(target.name), BREAKER_DUE, HELD_SINCE]
        self.keys = [*keys, event_key(event_id), *breaker]
        self.probe = False  # this delivery is its target's probe (relay.delivery.breaker)
        self.context: dict[str, Any] = {"event_id": event_id, "target": target.name, "attempt": attempt}
        if event is not None:
            self.context["task_id"] = event.task_id
        self.state = DeliveryState()
        self.wait = 0.0
        self.finish_also: list[Callable[[Any], None]] = []  # more writes for whichever step settles it
        self.unreplicated = False  # begin's WAIT found fewer replicas than RELAY_ACK_REPLICAS

    # The state machine's steps ------------------------------------------------------------

    def run(self, begun: Callable[[], None] = lambda: None) -> str:
        """Deliver what the target has not accepted yet; returns what happened. ``begun`` is
        called once the delivery is recorded in flight (or settled): the dispatching job waits
        for it, so that a worker dying before then leaves its job to RQ to run again."""
        # Rendering is linear in the event (milliseconds): before the lock when the event is at
        # hand, else just after begin read it, well inside the lock's lifetime.
        messages = self.target.render(self.event) if self.event is not None else None
        try:
            began = self._begin()
        finally:
            begun()
        if began is not None:
            return began
        assert self.event is not None
        if self.unreplicated:
            return self._hand_back(1.0, "the event is on no replica yet (RELAY_ACK_REPLICAS)")
        if messages is None:
            try:
                messages = self.target.render(self.event)
            except Exception:
                # A bug in rendering: release the lock at once; the in-flight mark stays, so the
                # sweeper hands the delivery on (and dead-letters one that keeps failing).
                self._finish(lambda pipe: None)
                raise
        started = time.monotonic()
        try:
            if is_live(self.target.spec.live, self.event):
                return self._show_live(messages)
            outcome, self.state.parts_sent = self.target.send_in_order(
                messages, self.event, self.state.parts_sent, self._before_each, self.state.thread
            )
        except _HandBack as stop:
            return self._hand_back(stop.delay, stop.reason)
        self.context["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        return self._settle(outcome)

    def _show_live(self, messages: list[dict[str, Any]]) -> str:
        """``stages=live`` (:mod:`relay.delivery.live`): this stage as the task's one message,
        then any further messages of the stage as usual."""
        assert self.event is not None
        event, name, connection = self.event, self.target.name, self.ctx.redis
        lock, key = live_lock_key(event.task_id, name), live_key(event.task_id, name)
        ttl_ms = int(lock_seconds(self.ctx.settings) * 1000)
        if not OUTAGE.call(lambda: connection.set(lock, self.token, nx=True, px=ttl_ms)):
            raise _HandBack(1.0, "another stage of this task is on its way to this target")
        self.finish_also.append(lambda pipe: pipe.delete(lock))  # released with the delivery's own
        shown = LiveMessage.from_redis(OUTAGE.call(lambda: connection.hgetall(key)))
        if shown.superseded_by_shown(event):
            self.context["note"] = "superseded: the message shows a later stage"
            return self._settle(Outcome(ok=True, reason="superseded"))
        if self.state.parts_sent == 0 or shown.event_id != event.id:
            self._before_each(0)  # its rate-limit slot
            outcome, message_id, edited = self.target.send_live(messages[0], event, shown.message_id)
            if not outcome.ok:
                return self._settle(outcome)
            shown = shown.shown(event, message_id, edited)
            ttl = self.ctx.settings.dedup_ttl

            def record(pipe: Any) -> None:
                pipe.hset(key, mapping=shown.mapping())
                pipe.expire(key, ttl)
                pipe.execute()

            OUTAGE.call(lambda: record(connection.pipeline(transaction=False)), _give_up())
        self.state.thread = shown.message_id  # the rest of the stage replies to the live message
        outcome, self.state.parts_sent = self.target.send_in_order(
            messages, event, max(self.state.parts_sent, 1), self._before_each, shown.message_id
        )
        return self._settle(outcome)

    def _before_each(self, sent: int, thread: str = "") -> None:
        """Between messages: record the one just accepted, and the thread the rest go to (or
        hand the rest back at shutdown); before every message: wait for its booked slot, or hand
        back a wait too long to sleep."""
        self.state.thread = thread or self.state.thread
        if sent > self.state.parts_sent:
            self.state.parts_sent = sent
            if OUTAGE.stopping.is_set():
                raise _HandBack(0, "handed back at shutdown")
            self._progress()
        if self.wait > MAX_PACING_SLEEP:
            raise _HandBack(self.wait, "paced by rate limit")
        time.sleep(self.wait)

    def _begin(self) -> str | None:
        """Lock, read, mark in flight, book; None when there is something to send."""
        settings = self.ctx.settings
        ttl = lock_seconds(settings)
        interval = 0 if self.booked else interval_ms(*self.target.spec.rate)
        args = [self.token, int(ttl * 1000), self.target.name, self.member, time.time() + ttl]
        args += [int(self.force), interval, NO_LIMIT_MS, int(self.event is None)]
        args += [self.event_id, time.time(), self.ctx.breakers.watchdog]
        begin = self.ctx.script("begin", _BEGIN)
        (taken, raw, number, raw_event, probe), confirmed = OUTAGE.call(lambda: self._begin_step(begin, args))
        if taken == 3:
            log.warning("event expired before delivery", extra=self.context)
            return "expired"
        if raw_event:
            self.event = Event.from_json(raw_event)
            self.context["task_id"] = self.event.task_id
        if taken == 0:
            # Another job is posting this delivery right now; look again once its lock must be gone.
            delay = max(int(number), 0) / 1000 + 1
            OUTAGE.call(
                lambda: enqueue_delivery(
                    self.ctx.queue, self.event_id, [self.target.name], attempt=self.attempt, delay=delay
                )
            )
            return "busy"
        if taken == 2:
            log.info("already delivered", extra=self.context)
            return "already delivered"
        self.state = DeliveryState.from_json(raw)
        if taken == 4:
            return self._hold_unlocked()
        self.probe = bool(probe)
        if self.probe:
            self.context["probe"] = True
        if self.force and self.state.state == DELIVERED:
            self.state.parts_sent = 0
        self.state.state, self.state.attempt, self.state.next_at = SENDING, self.attempt, None
        self.wait = int(number) / 1000
        self.unreplicated = confirmed < settings.ack_replicas
        return None

    def _begin_step(self, begin: Any, args: list[Any]) -> tuple[Any, int]:
        """Begin, and with RELAY_ACK_REPLICAS a ``WAIT`` on the same connection: replication is
        one ordered stream, so a replica that has begin's writes has the event the door wrote
        before them. An event only on the primary (its callback got a 503) is not posted: if a
        failover loses it, Suno's retry is stored afresh and delivered once, not twice."""
        if self.ctx.settings.ack_replicas <= 0:
            return begin(keys=self.keys, args=args), 0
        with self.ctx.redis.pipeline(transaction=False) as pipe:
            begin(keys=self.keys, args=args, client=pipe)
            wait_for_replicas(pipe, self.ctx.settings)
            result, confirmed = pipe.execute()
        return result, int(confirmed)

    def _progress(self) -> None:
        """Record the accepted message, renew the lock, book the next slot (one round trip)."""
        ttl = lock_seconds(self.ctx.settings)
        self.state.at = _now()
        args = [self.token, int(ttl * 1000), self.target.name, self.state.to_json(), self.member, time.time() + ttl]
        args += [interval_ms(*self.target.spec.rate), NO_LIMIT_MS]
        wait = OUTAGE.call(lambda: self._replicated("progress", _PROGRESS, self.keys, args), _give_up())
        if int(wait) < 0:
            log.error("lock lost: another worker took this delivery over", extra=self.context)
            raise LockLost(self.member)
        self.wait = int(wait) / 1000

    def _finish(self, write: Any) -> bool:
        """Apply ``write(pipeline)``'s commands and release the lock, unless another worker holds
        it now; retried through an outage. Returns False when the lock was lost."""

        def every_write(pipe: Any) -> None:
            write(pipe)
            for more in self.finish_also:
                more(pipe)

        commands = record(self.ctx.redis, every_write)
        args = [self.token, *pack(commands)]
        applied = OUTAGE.call(lambda: self._replicated("finish", _FINISH, self.keys[:1], args), _give_up())
        if not applied:
            log.error("lock lost: another worker took this delivery over; nothing recorded", extra=self.context)
        return bool(applied)

    def _replicated(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a step that records what a target accepted; with RELAY_ACK_REPLICAS, ``WAIT`` on
        the same connection, so a failover does not make the relay post it again. Not confirmed in
        time: recorded all the same (a post cannot be taken back), logged and counted."""
        script = self.ctx.script(name, source)
        settings = self.ctx.settings
        if settings.ack_replicas <= 0:
            return script(keys=keys, args=args)
        with self.ctx.redis.pipeline(transaction=False) as pipe:
            script(keys=keys, args=args, client=pipe)
            wait_for_replicas(pipe, settings)
            result, confirmed = pipe.execute()
        if int(confirmed) < settings.ack_replicas:
            log.warning("unconfirmed", extra={**self.context, "replicas": int(confirmed)})
            OUTAGE.call(lambda: record_delivery(self.ctx.redis, self.target.name, "unconfirmed"))
        return result

    # Outcomes ----------------------------------------------------------------------------------

    def _save(self, pipe: Any) -> None:
        self.state.at = _now()
        pipe.hset(deliveries_key(self.event_id), self.target.name, self.state.to_json())

    def _settle(self, outcome: Outcome) -> str:
        """Record the attempt's result: delivered, dead, or retrying at the right time."""
        settings, state, target = self.ctx.settings, self.state, self.target.name
        if outcome.ok:
            state.state, state.reason = DELIVERED, ""

            def delivered(pipe: Any) -> None:
                self._save(pipe)
                pipe.zrem(INFLIGHT, self.member)
                pipe.zrem(DEAD_LETTERS, self.member)
                pipe.hset(breaker_key(target), "failures", 0)  # a success ends a run of failures
                received = self.event.received_at if self.event is not None else None
                record_delivery(pipe, target, "delivered", _since(received) if received else None)
                activity.outcome(pipe, self.event_id, target, "delivered", settings.dedup_ttl, attempt=self.attempt)

            if self._finish(delivered):
                log.info("delivered", extra={**self.context, "messages": state.parts_sent})
                if self.probe:
                    OUTAGE.call(lambda: self.ctx.breakers.delivered(target, self.event_id))
            return "delivered"

        state.reason = outcome.reason
        breakers = self.ctx.breakers
        if outcome.status == 429 and self.probe:
            # Pacing, not a failure: the probe waits as asked, then goes again; the delay stays.
            wait = outcome.retry_after if outcome.retry_after is not None else self.ctx.settings.breaker_probe
            OUTAGE.call(lambda: breakers.reopen(target, self.event_id, time.time() + wait))
            return self._hold_locked()
        if outcome.status != 429 and not outcome.invalid:
            after = OUTAGE.call(lambda: breakers.failed(target, self.event_id, outcome.reason, outcome.gone))
            if after != CLOSED:
                held = self._hold_locked()
                if after == "opened":
                    OUTAGE.call(lambda: breakers.opened(target))
                return held
        if outcome.invalid or self.attempt >= settings.max_attempts:
            state.state = DEAD

            def dead(pipe: Any) -> None:
                self.state.at = _now()
                dead_writes(pipe, self.event_id, target, state, settings.dedup_ttl)

            if self._finish(dead):
                if outcome.invalid and not outcome.setup:
                    self.context["note"] = BUG_NOTE
                log.error("dead", extra={**self.context, "reason": outcome.reason})
                if self.probe:  # the target answered: probe the next held delivery at once
                    OUTAGE.call(lambda: breakers.reopen(target, self.event_id, time.time()))
            return f"dead: {outcome.reason}"

        delay = backoff_delay(settings, self.attempt)
        if outcome.status == 429:
            # Not a failure of the target: come back when asked (never sooner), not on the backoff.
            delay = (outcome.retry_after if outcome.retry_after is not None else delay) + random.uniform(0.05, 0.25)
        elif outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        self._schedule(delay, outcome.reason, "retrying", attempt=self.attempt + 1)
        return f"retrying in {delay:.1f}s: {outcome.reason}"

    def _hold_locked(self) -> str:
        """Hold this delivery (its target's breaker is not closed), releasing our lock."""
        arrival = self._arrival()
        ttl = self.ctx.settings.dedup_ttl
        if self._finish(lambda pipe: hold_writes(pipe, self.event_id, self.target.name, self.state, arrival, ttl)):
            log.warning("held", extra={**self.context, "reason": self.state.reason})
        return "held"

    def _hold_unlocked(self) -> str:
        """Begin found the breaker not closed: hold, unless it closed (or this became the probe)
        meanwhile, then go again at once."""
        arrival, ttl, name = self._arrival(), self.ctx.settings.dedup_ttl, self.target.name
        self.state.reason = self.state.reason or "held while the target is paused"
        commands = record(self.ctx.redis, lambda pipe: hold_writes(pipe, self.event_id, name, self.state, arrival, ttl))
        keys = [lock_key(self.event_id, name), breaker_key(name), held_key(name), BREAKER_DUE]
        args = [self.token, self.event_id, time.time(), self.ctx.breakers.watchdog, name, *pack(commands)]
        held = OUTAGE.call(lambda: self.ctx.script("hold", _HOLD)(keys=keys, args=args))
        if held == 0:
            OUTAGE.call(lambda: enqueue_delivery(self.ctx.queue, self.event_id, [name], attempt=self.attempt))
            return "sent on: the breaker closed"
        if held == 2:
            return "busy"
        log.info("held", extra=self.context)
        return "held"

    def _arrival(self) -> float:
        """When the event's callback arrived: held deliveries go out in that order."""
        received = self.event.received_at if self.event is not None else ""
        return time.time() - _since(received) if received else time.time()

    def _hand_back(self, delay: float, reason: str) -> str:
        """Not sent now: schedule the rest for ``delay`` (a booked slot, or at once at shutdown)."""
        self._schedule(delay, reason, "paced", attempt=self.attempt, booked=delay > 0)
        return reason

    def _schedule(self, delay: float, reason: str, outcome: str, attempt: int, booked: bool = False) -> None:
        state = self.state
        state.state, state.reason, state.next_at = RETRYING, reason, iso(time.time() + delay)

        def retry(pipe: Any) -> None:
            self._save(pipe)
            pipe.zrem(INFLIGHT, self.member)
            enqueue_delivery(
                self.ctx.queue, self.event_id, [self.target.name], attempt=attempt, delay=delay, booked=booked,
                force=self.force, pipeline=pipe,
            )  # fmt: skip
            record_delivery(pipe, self.target.name, outcome)
            activity.outcome(
                pipe, self.event_id, self.target.name, outcome, self.ctx.settings.dedup_ttl,
                attempt=self.attempt, reason=reason, due=time.time() + delay,
            )  # fmt: skip

        if self._finish(retry):
            extra = {**self.context, "reason": reason, "next_attempt": attempt, "delay_s": round(delay, 2)}
            log.log(logging.INFO if outcome == "paced" else logging.WARNING, "retrying", extra=extra)


def dead_writes(pipe: Any, event_id: str, target: str, state: DeliveryState, ttl: int) -> None:
    """The writes of a delivery that ends dead, whatever ended it (out of attempts, refused for
    good, swept too often, its target gone from the configuration): its state, the dead letter,
    the in-flight mark dropped, fresh TTLs (a dead letter lives at least as long as its event),
    the metric, and the page's records (timeline, the target's last failure, its waiting list)."""
    member = f"{event_id}/{target}"
    pipe.hset(deliveries_key(event_id), target, state.to_json())
    pipe.zrem(INFLIGHT, member)
    pipe.zadd(DEAD_LETTERS, {member: time.time()})
    unhold_writes(pipe, event_id, target)
    for key in (event_key(event_id), deliveries_key(event_id)):
        pipe.expire(key, ttl)
    record_delivery(pipe, target, "dead")
    activity.outcome(pipe, event_id, target, "dead", ttl, attempt=state.attempt, reason=state.reason)


def dead_letter(connection: redis.Redis, ttl: int, event_id: str, target: str, reason: str) -> DeliveryState:
    """Settle a delivery as dead outside an attempt (the sweeper, a target no longer configured):
    the same writes as an attempt's, in one transaction. Returns the state written."""
    raw = connection.hget(deliveries_key(event_id), target)
    state = DeliveryState.from_json(raw)
    state.state, state.reason, state.next_at, state.at = DEAD, reason, None, _now()
    with connection.pipeline(transaction=True) as pipe:
        dead_writes(pipe, event_id, target, state, ttl)
        pipe.execute()
    log.error("dead", extra={"event_id": event_id, "target": target, "attempt": state.attempt, "reason": reason})
    return state


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _give_up() -> float | None:
    """Through an outage a result is kept and retried until Redis answers; after SIGTERM only
    until the stop deadline (the platform's SIGKILL comes 30 s after SIGTERM)."""
    return OUTAGE.give_up_at
