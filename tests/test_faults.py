"""Fault injection against real processes: gunicorn and RQ workers from the Procfile, a real
redis-server of each test's own, and local receivers that misbehave on command.

Backoff is shortened for tests (RELAY_BACKOFF=1,1,1); nothing else is faked.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from relay.dev import RedisServer, free_port
from relay.store import DEAD, DELIVERED, Store
from relay.suno import event_id
from tests.conftest import TOKEN
from tests.support import Procfile, Receiver, Reply

FAST = "#rate=1000/1s"  # pacing is tested on its own (test 8)


class Stack:
    """One relay: its own redis-server, Procfile processes and three receivers."""

    def __init__(self, tmp_path, redis_dir=None, slack_rate: str = FAST, **env: str) -> None:
        self.redis_server = RedisServer(redis_dir).start()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        self.slack, self.discord, self.webhook = Receiver(), Receiver(default=Reply(204, "")), Receiver()
        settings = {
            "REDIS_URL": self.redis_server.url,
            "RELAY_CALLBACK_TOKEN": TOKEN,
            "SLACK_WEBHOOK_URL": self.slack.url + slack_rate,
            "DISCORD_WEBHOOK_URL": self.discord.url + FAST,
            "RELAY_WEBHOOK_URL": self.webhook.url + FAST,
            "RELAY_BACKOFF": "1,1,1",
            "RELAY_HTTP_TIMEOUT": "5",
            "WEB_CONCURRENCY": "2",
            "RELAY_ACCESS_LOG": "0",
            **env,
        }
        self.procfile = Procfile({k: v for k, v in settings.items() if v}, tmp_path)
        self.store = Store(self.redis, 3600)

    def callback(self, task_id: str, port: int | None = None) -> requests.Response:
        payload = {
            "code": 200,
            "msg": "All generated successfully.",
            "data": {
                "callbackType": "complete",
                "task_id": task_id,
                "data": [
                    {"status": "complete", "title": f"Song {task_id}", "text": "[Verse]\nla la", "error_message": ""}
                ],
            },
        }
        url = f"http://127.0.0.1:{port or self.procfile.port}/callbacks/suno/lyrics"
        return requests.post(url, params={"token": TOKEN}, json=payload, timeout=10)

    def settled(self, task_ids: list[str], timeout: float = 60.0) -> None:
        """Wait until every delivery of these tasks is delivered or dead."""
        deadline = time.monotonic() + timeout
        pending: list = []
        while time.monotonic() < deadline:
            pending = [
                (task, name, state.state)
                for task in task_ids
                for name, state in self.store.deliveries(event_id(task, "complete")).items()
                if state.state not in (DELIVERED, DEAD)
            ]
            if not pending:
                return
            time.sleep(0.1)
        raise AssertionError(f"not settled after {timeout}s: {pending[:5]} … ({len(pending)} pending)")

    def close(self) -> None:
        self.procfile.stop()
        for receiver in (self.slack, self.discord, self.webhook):
            receiver.close()
        self.redis_server.stop()


@pytest.fixture
def make_stack(tmp_path) -> Iterator:
    stacks: list[Stack] = []

    def make(**kwargs) -> Stack:
        stack = Stack(tmp_path, **kwargs)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def started(stack: Stack, workers: int = 1) -> Stack:
    stack.procfile.start("web")
    for _ in range(workers):
        stack.procfile.start("worker")
    return stack


def slow_delivery_under_way(stack: Stack, task_id: str):
    """Web and one worker; Slack answers after 3 s; returns once the POST to Slack has begun."""
    stack.slack.default = Reply(200, "ok", delay=3.0)
    stack.procfile.start("web")
    worker = stack.procfile.start("worker")
    stack.callback(task_id)
    deadline = time.monotonic() + 10
    while not stack.slack.attempts and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stack.slack.attempts, "the slow POST never started"
    return stack, worker


def titles(receiver: Receiver) -> list[str]:
    found = []
    for entry in receiver.received:
        body = entry.json()
        if "blocks" in body:
            found.append(body["blocks"][0]["text"]["text"])
        elif "embeds" in body:
            found.append(body["embeds"][0]["title"])
        else:
            found.append(body["lyrics"][0]["title"])
    return found


def test_1_slack_429_retry_after_is_honoured(make_stack) -> None:
    stack = started(make_stack())
    limited = Reply(429, "rate_limited", {"Retry-After": "2"})
    stack.slack.script += [limited, copy.deepcopy(limited)]
    assert stack.callback("t1").json()["status"] == "received"
    stack.settled(["t1"])
    assert titles(stack.slack) == ["Song t1"]
    first, second, third = (entry.at for entry in stack.slack.attempts)
    assert second - first >= 2.0 and third - second >= 2.0


def test_2_discord_429_json_retry_after_is_honoured(make_stack) -> None:
    stack = started(make_stack())
    body = json.dumps({"message": "You are being rate limited.", "retry_after": 1.5, "global": False})
    stack.discord.script.append(Reply(429, body, {"Content-Type": "application/json"}))
    stack.callback("t2")
    stack.settled(["t2"])
    assert titles(stack.discord) == ["Song t2"]
    first, second = (entry.at for entry in stack.discord.attempts)
    assert second - first >= 1.5


def test_3_server_errors_are_retried_without_holding_back_others(make_stack) -> None:
    stack = started(make_stack())
    stack.webhook.script += [Reply(500, "oops") for _ in range(3)]
    sent = time.monotonic()
    stack.callback("t3")
    stack.settled(["t3"])
    assert titles(stack.webhook) == ["Song t3"] and len(stack.webhook.attempts) == 4
    assert titles(stack.slack) == ["Song t3"] and titles(stack.discord) == ["Song t3"]
    # The others were not held back by the webhook's failures (its retries took 3+ s).
    assert stack.slack.received[0].at - sent < 2.0 and stack.discord.received[0].at - sent < 2.0
    assert stack.webhook.received[0].at - sent >= 3.0


def test_4_permanent_failure_is_dead_lettered_once(make_stack) -> None:
    stack = started(make_stack())
    stack.slack.script.append(Reply(404, "no_service"))
    stack.callback("t4")
    stack.settled(["t4"])
    time.sleep(1.5)  # a wrongly scheduled retry would come within this (backoff is 1 s)
    assert len(stack.slack.attempts) == 1 and stack.slack.received == []
    assert titles(stack.discord) == ["Song t4"]
    evt = event_id("t4", "complete")
    state = stack.store.delivery(evt, "slack")
    assert state.state == DEAD and "no_service" in state.reason
    assert [(e, t) for e, t, _ in stack.store.dead_letters()] == [(evt, "slack")]


def test_5_worker_killed_mid_delivery_is_completed_once(make_stack) -> None:
    stack, worker = slow_delivery_under_way(make_stack(), "t5")
    time.sleep(0.5)
    stack.procfile.signal(worker, signal.SIGKILL)
    worker.wait()
    time.sleep(3.0)
    assert stack.slack.received == []  # the slow target saw the client hang up: not delivered
    stack.slack.default = Reply(200, "ok")
    killed_at = time.monotonic()
    stack.procfile.start("worker")
    stack.slack.wait_for(1, timeout=60)
    assert stack.slack.received[0].at - killed_at < 120
    stack.settled(["t5"])
    time.sleep(1.0)
    assert titles(stack.slack) == ["Song t5"]
    assert titles(stack.discord) == ["Song t5"] and titles(stack.webhook) == ["Song t5"]


def test_6_redis_restart_loses_no_acknowledged_callback(make_stack, tmp_path) -> None:
    stack = started(make_stack(redis_dir=tmp_path / "redis", RELAY_MAX_ATTEMPTS="100"))
    stack.slack.default = Reply(503, "down")  # deliveries wait in retries while Redis goes away
    acknowledged = [f"r{n}" for n in range(10)]
    assert all(stack.callback(task).json()["status"] == "received" for task in acknowledged)
    stack.redis_server.stop()
    refused = [stack.callback(f"down{n}") for n in range(5)]
    assert [response.status_code for response in refused] == [503] * 5
    assert all(response.headers["Retry-After"] for response in refused)
    stack.redis_server.start()
    stack.slack.default = Reply(200, "ok")
    stack.settled(acknowledged, timeout=90)
    for worker in stack.procfile.processes["worker"]:
        assert worker.poll() is None, "the worker died with Redis"
    assert sorted(titles(stack.slack)) == sorted(f"Song {task}" for task in acknowledged)
    assert sorted(titles(stack.discord)) == sorted(f"Song {task}" for task in acknowledged)


def test_7_many_duplicates_across_processes_deliver_once_each(make_stack) -> None:
    stack = make_stack()
    second_port = free_port()
    stack.procfile.start("web")
    stack.procfile.start("web", port=second_port)
    stack.procfile.start("worker")
    stack.procfile.start("worker")
    tasks = [f"dup{n}" for n in range(200)]
    sends = [(task, port) for task in tasks for port in (None, second_port, None, second_port, None)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda args: stack.callback(*args), sends))
    assert all(response.status_code == 200 for response in responses)
    statuses = [response.json()["status"] for response in responses]
    assert statuses.count("received") == 200 and statuses.count("duplicate") == 800
    stack.settled(tasks, timeout=120)
    time.sleep(1.0)
    for receiver in (stack.slack, stack.discord, stack.webhook):
        got = titles(receiver)
        assert len(got) == 200 and set(got) == {f"Song {task}" for task in tasks}


def test_8_paced_delivery_meets_few_429s(make_stack) -> None:
    """Scaled ×10 in time: a Slack that allows 10 requests a second (sliding window) and a relay
    configured for 10/s; the real defaults (1/s) would take 100 s for the same proof."""
    stack = make_stack(slack_rate="#rate=10/1s", DISCORD_WEBHOOK_URL="", RELAY_WEBHOOK_URL="")
    window: deque[float] = deque()

    def sliding_window(receiver: Receiver) -> Reply | None:
        now = time.monotonic()
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= 10:
            return Reply(429, "rate_limited", {"Retry-After": "1"})
        window.append(now)
        return None

    stack.slack.rule = sliding_window
    started(stack, workers=2)
    tasks = [f"burst{n}" for n in range(100)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(r.status_code == 200 for r in pool.map(stack.callback, tasks))
    stack.settled(tasks, timeout=120)
    assert sorted(titles(stack.slack)) == sorted(f"Song {task}" for task in tasks)
    limited = stack.slack.replies.count(429)
    print(f"429s: {limited} of {len(stack.slack.replies)} requests")
    assert limited / len(stack.slack.replies) < 0.05, f"{limited} of {len(stack.slack.replies)} were 429"


def test_9_sigterm_lets_the_current_delivery_finish(make_stack) -> None:
    """A deploy: SIGTERM to every process of the worker's dyno during a slow delivery."""
    stack, worker = slow_delivery_under_way(make_stack(), "t9")
    stack.procfile.signal(worker, signal.SIGTERM)
    assert worker.wait(timeout=25) == 0  # warm shutdown, within the platforms' 30 s
    assert titles(stack.slack) == ["Song t9"]  # the slow target got it: the POST was not cut
    assert stack.store.delivery(event_id("t9", "complete"), "slack").state == DELIVERED
