"""What happened, for the operator's page (:mod:`relay.web.page`) and ``status``: each event's timeline,
the recent tasks, counts per ten minutes, and each target's last success, last failure and
waiting deliveries.

Every write here is queued on the pipeline whose commands the relay's own atomic steps replay
(ingest, a delivery's finish; see :mod:`relay.store.scripts`), so it costs no round trip of its own,
and every key expires with ``RELAY_DEDUP_TTL`` (counts after a day). Names, times and reasons
only: never a URL or a secret.

- ``relay:log:<event id>``   list of JSON entries: received (by callback or poll), then each
  delivery attempt's outcome per target, with its reason and next retry;
- ``relay:recent``           sorted set, task id → when its latest event arrived;
- ``relay:stats:<bucket>``   hash of counts per ten minutes (received, duplicate, rejected,
  delivered, retrying, paced, dead);
- ``relay:target:<name>``    hash: last_success, last_failure, last_reason;
- ``relay:waiting:<name>``   sorted set of the target's pending event ids, by when each is due.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from relay.store.keys import RECENT, log_key, stats_key, target_key, text, waiting_key

BUCKET = 600  # seconds of one stats bucket
STATS_TTL = 86400 + BUCKET  # a day of buckets
MAX_LOG = 200
MAX_RECENT = 20_000
COUNTS = ("received", "duplicate", "rejected", "delivered", "retrying", "paced", "held", "dead")


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def count(pipe: Any, what: str, now: float | None = None) -> None:
    key = stats_key(int((time.time() if now is None else now) // BUCKET))
    pipe.hincrby(key, what, 1)
    pipe.expire(key, STATS_TTL)


def _entry(entry: dict[str, Any]) -> bytes | str:
    try:
        return orjson.dumps(entry)
    except TypeError:  # what orjson cannot encode (a lone surrogate in a target's answer)
        return json.dumps(entry, separators=(",", ":"))


def _log(pipe: Any, event_id: str, entry: dict[str, Any], ttl: int) -> None:
    key = log_key(event_id)
    pipe.rpush(key, _entry(entry))
    pipe.ltrim(key, -MAX_LOG, -1)
    pipe.expire(key, ttl)


def received(pipe: Any, event_id: str, task_id: str, source: str, targets: list[str], ttl: int) -> None:
    """Queue the records of a new event (inside ingest's script, which also counts it): its
    timeline's first entry (a new event's timeline is new: nothing to trim), the recent tasks,
    the targets' waiting lists."""
    now = time.time()
    key = log_key(event_id)
    pipe.rpush(key, _entry({"at": iso(now), "what": f"received by {source}"}))
    pipe.expire(key, ttl)
    pipe.zadd(RECENT, {task_id: now})
    for name in targets:
        pipe.zadd(waiting_key(name), {event_id: now})


def trim(connection: redis.Redis, targets: list[str], ttl: int, now: float | None = None) -> None:
    """Keep the indexes bounded (the sweeper's job, every few seconds: not on the hot path)."""
    now = time.time() if now is None else now
    with connection.pipeline(transaction=False) as pipe:
        pipe.zremrangebyrank(RECENT, 0, -MAX_RECENT - 1)  # the oldest go first
        pipe.zremrangebyscore(RECENT, 0, now - ttl)
        for name in targets:
            pipe.zremrangebyscore(waiting_key(name), 0, now - ttl)  # events that expired unsettled
        pipe.execute()


def outcome(
    pipe: Any,
    event_id: str,
    target: str,
    what: str,
    ttl: int,
    *,
    attempt: int = 0,
    reason: str = "",
    due: float | None = None,
) -> None:
    """Queue the records of a delivery's outcome (inside its finish step): ``what`` is delivered,
    retrying, paced, held or dead; ``due`` when it is tried again."""
    now = time.time()
    entry: dict[str, Any] = {"at": iso(now), "target": target, "what": what, "attempt": attempt}
    if reason:
        entry["reason"] = reason
    if due is not None:
        entry["next_at"] = iso(due)
    _log(pipe, event_id, entry, ttl)
    if what == "delivered":
        pipe.hset(target_key(target), "last_success", iso(now))
    elif what in ("retrying", "dead"):
        pipe.hset(target_key(target), mapping={"last_failure": iso(now), "last_reason": reason[:300]})
    pipe.expire(target_key(target), ttl)
    # A held delivery leaves the waiting index for its breaker's held set (relay:held:<target>),
    # which the page adds to "Waiting": the reconcile step looks for lost jobs in this index only.
    if due is None:
        pipe.zrem(waiting_key(target), event_id)
    else:
        pipe.zadd(waiting_key(target), {event_id: due})
    count(pipe, what, now)


# Reading, for the page and the CLI.


def timeline(connection: redis.Redis, event_id: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in connection.lrange(log_key(event_id), 0, -1)]


def counts(connection: redis.Redis, seconds: float, now: float | None = None) -> dict[str, int]:
    """Counts over the last ``seconds`` (whole ten-minute buckets)."""
    now = time.time() if now is None else now
    last = int(now // BUCKET)
    buckets = range(last - int(seconds // BUCKET) + 1, last + 1)
    with connection.pipeline(transaction=False) as pipe:
        for bucket in buckets:
            pipe.hgetall(stats_key(bucket))
        found = pipe.execute()
    totals = dict.fromkeys(COUNTS, 0)
    for stats in found:
        for key, value in stats.items():
            name = key.decode()
            totals[name] = totals.get(name, 0) + int(value)
    return totals


def target_status(connection: redis.Redis, names: list[str], now: float | None = None) -> dict[str, dict[str, Any]]:
    """Per target: last success, last failure and its reason, deliveries waiting, and when the
    next one that is backing off (or paced) is due."""
    now = time.time() if now is None else now
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(target_key(name))
            pipe.zcard(waiting_key(name))
            pipe.zrangebyscore(waiting_key(name), now + 1, "+inf", start=0, num=1, withscores=True)
        found = pipe.execute()
    status = {}
    for index, name in enumerate(names):
        fields, waiting, later = found[3 * index : 3 * index + 3]
        fields = {key.decode(): value.decode() for key, value in fields.items()}
        status[name] = {
            "last_success": fields.get("last_success", ""),
            "last_failure": fields.get("last_failure", ""),
            "last_reason": fields.get("last_reason", ""),
            "waiting": int(waiting),
            "next_due": iso(later[0][1]) if later else "",
        }
    return status


def recent_task_ids(connection: redis.Redis, limit: int, offset: int = 0) -> list[tuple[str, float]]:
    entries = connection.zrevrange(RECENT, offset, offset + limit - 1, withscores=True)
    return [(text(entry[0]), float(entry[1])) for entry in entries]
