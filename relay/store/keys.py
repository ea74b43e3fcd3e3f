"""Every Redis key the relay writes, in one place (RQ's own keys are RQ's). Nothing here holds a
secret: targets appear by name, tasks and events by id. What each key holds is said beside it;
which module reads and writes it, in that module.

Events, their deliveries and the dedup record (:mod:`relay.store.state`, :mod:`relay.ingest`,
:mod:`relay.delivery.attempt`), kept ``RELAY_DEDUP_TTL``:
"""

from __future__ import annotations


def text(reply: object) -> str:
    """A Redis reply as text: redis-py answers bytes (we never ask it to decode), typed bytes | str."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def event_key(event_id: str) -> str:
    """The normalised event (JSON); doubles as the dedup record."""
    return f"relay:event:{event_id}"


def task_key(task_id: str) -> str:
    """Set of the task's event ids (for status look-ups)."""
    return f"relay:task:{task_id}"


def deliveries_key(event_id: str) -> str:
    """Hash, target name → delivery state (JSON)."""
    return f"relay:deliveries:{event_id}"


def lock_key(event_id: str, target: str) -> str:
    """Held while one worker posts to one target."""
    return f"relay:lock:{event_id}:{target}"


def sweeps_key(event_id: str, target: str) -> str:
    """How often the sweeper handed this delivery on (a day): past MAX_SWEEPS it is dead."""
    return f"relay:sweeps:{event_id}/{target}"


DEAD_LETTERS = "relay:dead"  # sorted set of "<event id>/<target>" by time of death
INFLIGHT = "relay:inflight"  # sorted set of "<event id>/<target>" being posted, by when the lock runs out
WORKERS = "relay:workers"  # sorted set of worker names by their last heartbeat (seconds)
WORKER_TARGETS = "relay:worker-targets"  # hash: worker name → its target names, comma-separated
RECONCILE_LOCK = "relay:reconcile"  # the worker that last looked for lost jobs (relay.worker.reconcile)
BATCH_PREFIX = "relay:batch:"  # + job id: the first attempts a running job took along (relay.delivery.queue)


def rate_key(target: str) -> str:
    """A target's next free slot (relay.delivery.pacing)."""
    return f"relay:rate:{target}"


# A target's breaker (relay.delivery.breaker).
BREAKER_DUE = "relay:breaker-due"  # sorted set, target → when its breaker next needs a look (probe, release)
HELD_SINCE = "relay:held-since"  # sorted set of held "<event id>/<target>" by when first held (give-up)


def breaker_key(target: str) -> str:
    """Hash: the target's breaker: state, failures in a row, since, reason, probe timing, a keyed
    hash of its URL (never the URL)."""
    return f"relay:breaker:{target}"


def held_key(target: str) -> str:
    """Sorted set of the event ids held for an open target, by when their callback arrived."""
    return f"relay:held:{target}"


# A song that follows its task on a `stages=live` target (relay.delivery.live), kept RELAY_DEDUP_TTL.


def live_key(task_id: str, target: str) -> str:
    """Hash: the task's one message on the target: its id, the stage it shows, edits, the event."""
    return f"relay:live:{task_id}/{target}"


def live_lock_key(task_id: str, target: str) -> str:
    """Held while one stage of the task is shown on the target, so that two never post twice."""
    return f"relay:live-lock:{task_id}/{target}"


# The operator's page and `status` (relay.store.activity).
RECENT = "relay:recent"  # sorted set, task id → when its latest event arrived


def log_key(event_id: str) -> str:
    """List of the event's timeline entries (JSON)."""
    return f"relay:log:{event_id}"


def stats_key(bucket: int) -> str:
    """Hash of counts for one ten-minute bucket."""
    return f"relay:stats:{bucket}"


def target_key(name: str) -> str:
    """Hash: a target's last success, last failure and its reason."""
    return f"relay:target:{name}"


def waiting_key(name: str) -> str:
    """Sorted set of a target's pending event ids, by when each is due."""
    return f"relay:waiting:{name}"


# Metrics counted in Redis (relay.metrics).
DELIVERY_COUNTS = "relay:metrics:deliveries"  # hash "<target>|<outcome>" → count
DELIVERY_LATENCY = "relay:metrics:latency"  # hash "<target>|<bucket le>" → count; "<target>|sum" → ms

# Polling the provider (relay.watch, relay.polling).
WATCHLIST = "relay:watch"  # sorted set of watched task ids by their deadline
PROVIDER_COOLDOWN = "relay:suno:cooldown"  # set while the provider asked us to back off
PROVIDER_ERRORS = "relay:suno:errors"  # consecutive provider errors


def watch_key(task_id: str) -> str:
    """Hash: a watched task's kind, next poll, deadline, last error."""
    return f"relay:watch:{task_id}"
