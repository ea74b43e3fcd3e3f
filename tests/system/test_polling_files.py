"""Polling the kinds that deliver files (issue 27, first part): `watch --kind wav|stems|video|
cover|midi` through the real web and worker processes against the fake provider over HTTP, with
its word and number flags; each result is the event its callback gives, through the same door:
the callback that comes after is a duplicate, and the target gets it once."""

from __future__ import annotations

import time

import pytest
import redis
import requests

from relay.suno import NORMALISERS
from tests.conftest import SUNO_KEY, TOKEN
from tests.support import FakeSuno, Procfile, Receiver, example, voice_record
from tests.support import run_cli as cli

# kind, the provider's flags in turn, the event type it ends as
CASES = [
    ("wav", ["PENDING", "SUCCESS"], "wav.completed"),
    ("stems", ["PENDING", "CALLBACK_EXCEPTION"], "stems.completed"),  # the callback failed, the task did not
    ("video", ["PENDING", "GENERATE_MP4_FAILED"], "video.failed"),
    ("cover", ["0", "2", "1"], "cover.completed"),  # 2: still generating
    ("cover", ["PENDING", "GENERATE_COVER_FAILED"], "cover.failed"),  # the other provider's words
    ("midi", ["0", "1"], "midi.completed"),
    ("midi", ["2"], "midi.failed"),  # 2: creating the task failed (for MIDI)
    ("voice", ["processing", "success"], "voice.completed"),
    ("voice", ["processing", "fail"], "voice.failed"),
    ("voice-validate", ["validating", "wait_validating"], "voice.validated"),
    ("voice-validate", ["processing_validate_fail"], "voice.failed"),
]


@pytest.fixture(scope="module")
def polling(redis_url, tmp_path_factory):
    redis.Redis.from_url(redis_url).flushdb()
    suno, hook = FakeSuno(SUNO_KEY), Receiver()
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": hook.url + "#rate=1000/1s",
        "SUNO_API_BASE": suno.url,
        "SUNO_API_KEY": SUNO_KEY,
        "RELAY_POLL_INTERVAL": "1s",
        "RELAY_POLL_GRACE": "0",
        "RELAY_ACCESS_LOG": "0",
    }
    procfile = Procfile(env, tmp_path_factory.mktemp("files"))
    procfile.env["RELAY_PUBLIC_URL"] = procfile.base_url  # POST /tasks: the callback URL of each kind
    try:
        procfile.start("web")
        procfile.start("worker")
        yield procfile, suno, hook, env
    finally:
        procfile.stop()
        suno.close()
        hook.close()


def callback_of(kind: str, task_id: str, outcome: str) -> dict:
    """The callback the provider would have sent for this outcome (the example, this task)."""
    if kind.startswith("voice"):
        return {"code": 200, "msg": "success", "data": {**voice_record(task_id, VOICE_STATUS[kind, outcome])}}
    payload = example(f"{kind}-complete")
    holder = payload if kind == "midi" else payload["data"]
    for key in ("task_id", "taskId"):
        if key in holder:
            holder[key] = task_id
    if outcome == "failed":
        payload["code"] = 500
    return payload


VOICE_STATUS = {
    ("voice", "completed"): "success",
    ("voice", "failed"): "fail",
    ("voice-validate", "validated"): "wait_validating",
    ("voice-validate", "failed"): "processing_validate_fail",
}


@pytest.mark.parametrize("kind, flags, ends_as", CASES)
def test_watch_polls_each_kind_to_the_event_its_callback_gives(polling, kind, flags, ends_as) -> None:
    procfile, suno, hook, env = polling
    task_id = f"poll-{kind}-{'-'.join(flags)}".lower()
    suno.add_task(task_id, *flags)
    before = len(hook.received)
    watched = cli(env, "watch", "--kind", kind, task_id)
    assert watched.returncode == 0, watched.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(hook.received) == before:
        time.sleep(0.1)
    [event] = [body.json() for body in hook.received[before:]]
    assert event["type"] == ends_as and event["task_id"] == task_id
    door = "voice" if kind.startswith("voice") else kind
    expected = NORMALISERS[door](callback_of(kind, task_id, ends_as.rpartition(".")[2]))
    assert event["id"] == expected.id  # the same event as the callback: one delivery for both paths
    if ends_as.endswith("completed"):
        assert event["files"] or event["instruments"] or event["voice"]["voice_id"]
    answer = requests.post(f"{procfile.base_url}/callbacks/suno/{door}", params={"token": TOKEN},
                           json=callback_of(kind, task_id, ends_as.rpartition(".")[2]), timeout=10)  # fmt: skip
    assert answer.status_code == 200 and answer.json()["status"] == "duplicate", answer.text
    gets = [path for method, path, _ in suno.requests if method == "GET" and f"taskId={task_id}" in path]
    assert len(gets) == len(flags)  # polled until the result, then no more
    time.sleep(1.5)
    assert len(hook.received) == before + 1


def test_submit_makes_a_stems_task_from_a_song_and_polls_it_to_the_targets(polling) -> None:
    _, suno, hook, env = polling
    before = len(hook.received)
    submitted = cli({**env, "RELAY_MODE": "poll"}, "submit", "--stems", "--task", "song-1", "--audio", "audio-1",
                    "--type", "split_stem")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    [(task_id, task)] = [(tid, task) for tid, task in suno.tasks.items() if task.get("kind") == "stems"]
    assert task["body"]["taskId"] == "song-1" and task["body"]["audioId"] == "audio-1"
    assert task["body"]["type"] == "split_stem"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(hook.received) == before:
        time.sleep(0.1)
    [event] = [body.json() for body in hook.received[before:]]
    assert (event["type"], event["task_id"]) == ("stems.completed", task_id) and event["files"]
    refused = cli({**env, "RELAY_MODE": "poll"}, "submit", "--wav", "--task", "song-1")
    assert refused.returncode == 2 and "audio id" in refused.stderr


def test_post_tasks_takes_the_kinds_made_from_a_finished_task(polling) -> None:
    procfile, suno, _, _ = polling
    headers = {"X-Relay-Token": TOKEN}
    answer = requests.post(f"{procfile.base_url}/tasks", headers=headers, timeout=10,
                           json={"kind": "cover", "task_id": "song-2"})  # fmt: skip
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    assert suno.tasks[task_id]["kind"] == "cover" and suno.tasks[task_id]["body"]["taskId"] == "song-2"
    assert suno.tasks[task_id]["callBackUrl"] == f"{procfile.base_url}/callbacks/suno/cover?token={TOKEN}"
    missing = requests.post(f"{procfile.base_url}/tasks", headers=headers, timeout=10,
                            json={"kind": "video", "task_id": "song-2"})  # fmt: skip
    assert missing.status_code == 400 and "audio_id" in missing.json()["error"]
    unknown = requests.post(f"{procfile.base_url}/tasks", headers=headers, timeout=10,
                            json={"kind": "karaoke", "task_id": "song-2"})  # fmt: skip
    assert unknown.status_code == 400 and "kind must be one of" in unknown.json()["error"]


def test_a_failing_provider_answer_is_a_failed_poll_not_the_tasks_result(polling) -> None:
    """430 and 500 from record-info back every poller off; the task's result still comes, once."""
    _, suno, hook, env = polling
    task_id = "poll-wav-after-errors"
    suno.add_task(task_id, "PENDING", "SUCCESS")
    before = len(hook.received)
    suno.errors.extend([430, 500])  # the next two answers, whatever they are asked
    assert cli(env, "watch", "--kind", "wav", task_id).returncode == 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(hook.received) == before:
        time.sleep(0.2)
    [event] = [body.json() for body in hook.received[before:]]
    assert (event["type"], event["task_id"]) == ("wav.completed", task_id)
    status = cli(env, "status", task_id)
    assert "webhook" in status.stdout and "delivered" in status.stdout
