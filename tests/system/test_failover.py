"""Failover under load (issue 24): 300 callbacks at about 20/s to 2 web processes with 2 worker
processes and 2 targets, on a Sentinel-managed Redis whose primary is SIGKILLed after the 100th;
the sentinels promote the replica and the killed node rejoins as its replica. The sender acts as
Suno does (a 503 or no answer is retried; a 200 is never sent again), faster.

Marked ``failover`` (about two minutes): ``make test`` and CI run it; ``make test-fast`` does not,
nor ``pytest -m "not failover"``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import redis
import requests

from relay.store.keys import task_key
from tests.conftest import TOKEN
from tests.sentinels import Sentinels
from tests.support import Procfile, Receiver, Reply, post_lyrics

pytestmark = pytest.mark.failover

CALLBACKS = 300
RATE = 20.0  # callbacks a second
KILL_AFTER = 100
SUNO_RETRY = 1.0  # Suno waits 15 s; the test need not


@dataclass
class Sent:
    """One callback as its sender saw it: every answer (sent at, answered at, status)."""

    task_id: str
    answers: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def acked_at(self) -> float | None:
        return next((answered for _, answered, status in self.answers if status == 200), None)


def send(base: str, sent: Sent, give_up_at: float) -> None:
    http = requests.Session()
    while time.monotonic() < give_up_at:
        started = time.monotonic()
        try:
            answer = post_lyrics(base, sent.task_id, http)
            status = answer.status_code
            assert status in (200, 503), (status, answer.text)
            if status == 503:
                assert answer.headers.get("Retry-After"), answer.headers
        except requests.ConnectionError:
            status = 0  # no answer: the web process is fine, so this would be a defect too
        sent.answers.append((started, time.monotonic(), status))
        if status == 200:
            return
        time.sleep(SUNO_RETRY)


@dataclass
class Run:
    sent: list[Sent]
    fault_at: float  # the cut, or the kill when nothing was cut
    kill_at: float
    promoted_at: float
    in_sync_at: float
    first: Receiver
    second: Receiver
    forgotten: list[str]  # acknowledged, yet the promoted primary has no record of them
    repeats: Counter  # how a repeat of each callback acknowledged within a second of the kill was answered


def failover_under_load(tmp_path, ack_replicas: str | None, cut_first: bool) -> Run:
    sentinels = Sentinels(tmp_path, link=cut_first, down_after_ms=3000)
    first, second = Receiver(Reply(200, "ok", delay=0.1)), Receiver()  # a chat service's pace, and a fast one
    env = {
        "REDIS_URL": sentinels.url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": f"{first.url}#name=one&rate=1000/1s, {second.url}#name=two&rate=1000/1s",
        "RELAY_BACKOFF": "0.5,1,1,1",
        "RELAY_ACCESS_LOG": "0",
        "WEB_CONCURRENCY": "2",
        **({"RELAY_ACK_REPLICAS": ack_replicas} if ack_replicas is not None else {}),
    }
    procfile = Procfile(env, tmp_path)
    try:
        bases = procfile.start_many(web=2, worker=2)
        sent = [Sent(f"fo-{n}") for n in range(CALLBACKS)]
        started = time.monotonic()
        give_up_at = started + CALLBACKS / RATE + 120
        fault_at = kill_at = 0.0
        switched: dict[str, float] = {}

        def switch() -> None:
            """The sentinels promote the replica; the killed node comes back (as a platform
            replaces it) and becomes the new primary's replica."""
            sentinels.wait_for_promotion()
            switched["promoted"] = time.monotonic()
            sentinels.rejoin_old_primary()
            while not sentinels.primary_has_replica_in_sync() and time.monotonic() < give_up_at:
                time.sleep(0.05)
            switched["in sync"] = time.monotonic()

        switching = threading.Thread(target=switch, daemon=True)
        with ThreadPoolExecutor(64) as pool:
            futures = []
            for n, one in enumerate(sent):
                time.sleep(max(0.0, started + n / RATE - time.monotonic()))
                if cut_first and n == KILL_AFTER - int(RATE / 2):  # half a second before the kill
                    assert sentinels.link is not None
                    sentinels.link.cut()
                    fault_at = time.monotonic()
                if n == KILL_AFTER:
                    sentinels.primary.send_signal(signal.SIGKILL)
                    kill_at = time.monotonic()
                    fault_at = fault_at or kill_at
                    switching.start()
                futures.append(pool.submit(send, bases[n % 2], one, give_up_at))
            switching.join()
            for future in futures:
                future.result()
        promoted_at, in_sync_at = switched["promoted"], switched["in sync"]
        acked = [one for one in sent if one.acked_at is not None]
        assert len(acked) == CALLBACKS, f"{CALLBACKS - len(acked)} callbacks never answered 200"
        promoted = redis.Redis(port=sentinels.primary_now())
        forgotten = [one.task_id for one in acked if not promoted.exists(task_key(one.task_id))]
        deadline = time.monotonic() + 120
        wanted = {one.task_id for one in acked} - set(forgotten)
        while time.monotonic() < deadline and not all(
            wanted <= {body.json()["task_id"] for body in receiver.received} for receiver in (first, second)
        ):
            time.sleep(0.2)
        # Suno repeats a callback now and then: those acknowledged within a second of the kill
        # are sent once more, as a repeat would come after the failover.
        repeats: Counter = Counter()
        for one in sent:
            if abs((one.acked_at or 0) - kill_at) < 1.0:
                again = post_lyrics(bases[0], one.task_id)
                repeats[again.json()["status"]] += 1
        time.sleep(3.0)  # a second delivery of anything would show by now
        return Run(sent, fault_at, kill_at, promoted_at, in_sync_at, first, second, forgotten, repeats)
    finally:
        procfile.stop()
        first.close()
        second.close()
        sentinels.close()


def delivered(receiver: Receiver) -> tuple[Counter, dict[str, float]]:
    """How often each task reached the receiver, and when first."""
    counts: Counter = Counter()
    first_at: dict[str, float] = {}
    for body in receiver.received:
        task_id = body.json()["task_id"]
        counts[task_id] += 1
        first_at.setdefault(task_id, body.at)
    return counts, first_at


def report(run: Run, label: str) -> dict[str, object]:
    """What the run shows, per target: lost, delivered twice (and whether each was allowed; a
    repeat that is answered "received" again is delivered twice, and is not allowed)."""
    facts: dict[str, object] = {}
    unavailable = [answered for one in run.sent for _, answered, status in one.answers if status != 200]
    if unavailable:
        since = [answered - run.fault_at for answered in unavailable]
        facts["503 window"] = f"{min(since):.1f}s to {max(since):.1f}s after the fault"
    facts["503s"] = len(unavailable)
    facts["promoted after"] = f"{run.promoted_at - run.kill_at:.1f}s"
    facts["replica in sync after"] = f"{run.in_sync_at - run.kill_at:.1f}s"
    facts["forgotten by the failover"] = len(run.forgotten)
    facts["repeats of those acknowledged within 1s of the kill"] = dict(run.repeats)
    acked_at = {one.task_id: one.acked_at for one in run.sent}
    for name, receiver in (("one", run.first), ("two", run.second)):
        counts, first_at = delivered(receiver)
        facts[f"{name}: lost"] = sorted(task for task in acked_at if task not in counts)
        twice = sorted(task for task, count in counts.items() if count > 1)
        facts[f"{name}: twice"] = twice
        # Allowed: acknowledged before the kill, and not yet recorded as delivered a second before it.
        facts[f"{name}: twice, not allowed"] = [
            task for task in twice if not ((acked_at[task] or 0) < run.kill_at and first_at[task] > run.kill_at - 1.0)
        ]
    print(f"\n{label}: " + "; ".join(f"{key} {value}" for key, value in facts.items()))
    return facts


def assert_the_switch_holds(run: Run, facts: dict[str, object]) -> None:
    for name in ("one", "two"):
        assert facts[f"{name}: lost"] == [], facts
        assert facts[f"{name}: twice, not allowed"] == [], facts
    for one in run.sent:
        for sent_at, answered, status in one.answers:
            if status == 200:
                continue
            assert status == 503, (one.task_id, status)  # never a refused connection or a 500
            assert answered >= run.fault_at, f"{one.task_id}: a 503 before the fault"
            # "plus a few seconds", several times looser for a loaded machine
            assert sent_at <= run.in_sync_at + 20, f"{one.task_id}: a 503 long after the switch"


def test_a_killed_primary_loses_no_acknowledged_callback(tmp_path) -> None:
    run = failover_under_load(tmp_path, ack_replicas=None, cut_first=False)
    facts = report(run, "primary SIGKILLed")
    assert run.forgotten == [] and set(run.repeats) == {"duplicate"}
    assert_the_switch_holds(run, facts)


def test_a_replica_cut_off_before_the_kill_loses_nothing_with_acks(tmp_path) -> None:
    """The replica stops receiving half a second before the kill: the primary holds writes it never
    replicated. RELAY_ACK_REPLICAS (1 with a Sentinel URL) never answered 200 for those."""
    run = failover_under_load(tmp_path, ack_replicas=None, cut_first=True)
    facts = report(run, "replica cut off, RELAY_ACK_REPLICAS=1")
    assert run.forgotten == [] and set(run.repeats) == {"duplicate"}
    assert_the_switch_holds(run, facts)


def test_without_acks_the_same_cut_forgets_acknowledged_callbacks(tmp_path) -> None:
    """What the setting buys: with RELAY_ACK_REPLICAS=0 the callbacks answered 200 during the cut are
    not on the promoted primary. Each is lost if it was not delivered before the kill, and is
    delivered again when Suno repeats it (its dedup record is gone too); the figures are printed."""
    run = failover_under_load(tmp_path, ack_replicas="0", cut_first=True)
    report(run, "replica cut off, RELAY_ACK_REPLICAS=0")
    acked_during_cut = [one.task_id for one in run.sent if run.fault_at <= (one.acked_at or 0) < run.kill_at + 1.0]
    assert acked_during_cut, "no callback was answered during the cut"
    assert run.forgotten and set(run.forgotten) <= set(acked_during_cut), (run.forgotten, acked_during_cut)
    # A forgotten one repeated is taken as new and sent again, unless the web process that
    # answers the repeat confirmed it itself within the last minute (relay.ingest's memory): the
    # repeats go to the first web process, and the odd-numbered callbacks first went to the other.
    # Each such repeat reached the targets again, or for the first time where the failover had
    # lost it: the figures are printed, as lost and twice.
    assert 0 < run.repeats["received"] <= len(run.forgotten), run.repeats
