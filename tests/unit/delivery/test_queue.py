"""The delivery job's writes the door builds itself, against what RQ's own enqueue_call writes for
the pinned RQ: field by field, so an RQ upgrade that changes them fails here, loudly."""

from __future__ import annotations

import json
import zlib

from relay.delivery.queue import BATCH_FIELD, delivery_queue, dispatch_writes, enqueue_delivery
from relay.store.scripts import record
from relay.worker.process import build_worker


def test_dispatch_writes_match_rq_field_by_field(make_settings, redis_conn) -> None:
    settings = make_settings()
    queue = delivery_queue(settings, redis_conn)
    theirs = record(redis_conn, lambda pipe: enqueue_delivery(queue, "evt_1", ["slack", "discord"], pipeline=pipe))
    ours = dispatch_writes(queue, "evt_1", ["slack", "discord"], "task-1")
    assert [command[0] for command in theirs] == [command[0] for command in ours]

    def fields(command: tuple) -> dict:
        return dict(zip(command[2::2], command[3::2], strict=True))

    their_job, our_job = fields(theirs[2]), fields(ours[2])
    assert json.loads(our_job.pop(BATCH_FIELD)) == ["evt_1", ["slack", "discord"], "task-1"]  # ours alone
    assert list(their_job) == list(our_job)  # the same fields, in the same order
    for name in their_job:
        mine, rq_s = our_job[name], their_job[name]
        if name in ("created_at", "enqueued_at"):
            assert len(mine) == len(rq_s) and mine[-1] == rq_s[-1] == "Z"
        elif name == "data":
            assert queue.serializer.loads(zlib.decompress(mine)) == queue.serializer.loads(zlib.decompress(rq_s))
        else:
            assert str(mine) == str(getattr(rq_s, "value", rq_s)), name
    assert theirs[0] == ours[0] and str(theirs[1][3]) in ("queued", "JobStatus.QUEUED")


def test_a_job_built_directly_runs(make_settings, redis_conn, receivers) -> None:
    from relay import jobs
    from relay.ingest import Ingest
    from relay.suno import normalise

    slack = receivers()
    settings = make_settings(SLACK_WEBHOOK_URL=slack.url + "#rate=100/1s")
    runtime = jobs.configure(settings, redis_conn)
    event = normalise({"code": 200, "data": {"task_id": "direct", "data": [{"text": "la", "title": "T"}]}})
    assert Ingest(settings, redis_conn, runtime.queue)(event)
    build_worker(settings, redis_conn).work(burst=True)
    assert len(slack.received) == 1


def test_a_batch_takes_one_event_per_task_from_the_head_of_the_queue(make_settings, redis_conn) -> None:
    """A running job takes queued first attempts along, in order, stopping at a task it already
    carries (a song's next stage starts after the earlier one) or at a job that is not a door's
    first attempt."""
    from relay.delivery.queue import Batches
    from relay.ingest import Ingest
    from relay.suno import normalise

    settings = make_settings(SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T/B/X")
    queue = delivery_queue(settings, redis_conn)
    ingest = Ingest(settings, redis_conn, queue)

    def event(task: str, failed: bool = False):
        if failed:  # another event of the same task
            return normalise({"code": 500, "msg": "boom", "data": {"callbackType": "error", "task_id": task}})
        return normalise({"code": 200, "data": {"task_id": task, "data": [{"text": "la", "title": "T"}]}})

    events = [event("a"), event("b"), event("c"), event("a", failed=True), event("d")]
    for item in events:
        assert ingest(item)
    running = redis_conn.lpop(queue.key).decode()  # task a's job, as a worker would hold it
    taken = Batches(queue).claim(running, 16)
    assert [(event_id, task) for event_id, _, task in taken] == [(events[1].id, "b"), (events[2].id, "c")]
    assert redis_conn.llen(queue.key) == 2  # task a's second event and what follows it stay jobs
    assert Batches(queue).claim(running, 16) == taken  # the same job again (a crash retry): what it held
    Batches(queue).release(running)
    enqueue_delivery(queue, "evt_retry", ["slack"], attempt=2)  # not a door's first attempt
    redis_conn.lpop(queue.key)  # task a's second event runs
    other = redis_conn.lpop(queue.key).decode()  # task d's, running now
    assert Batches(queue).claim(other, 16) == []  # the retry job at the head is not taken
