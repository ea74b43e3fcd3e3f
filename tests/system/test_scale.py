"""Many processes on one Redis (issue 24): 2 web processes (WEB_CONCURRENCY=2 each) and 4 worker
processes; 1,000 callbacks, a fifth of them sent twice at the same moment to different web
processes: every callback reaches each target exactly once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from relay.dev import RedisServer
from tests.conftest import TOKEN
from tests.support import Procfile, Receiver, post_lyrics

CALLBACKS = 1000


def test_two_web_and_four_worker_processes_deliver_each_callback_once_per_target(tmp_path) -> None:
    server = RedisServer().start()
    first, second = Receiver(), Receiver()
    env = {
        "REDIS_URL": server.url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": f"{first.url}#name=one&rate=10000/1s, {second.url}#name=two&rate=10000/1s",
        "WEB_CONCURRENCY": "2",
        "RELAY_ACCESS_LOG": "0",
        "RELAY_WORKER_THREADS": "8",
    }
    procfile = Procfile(env, tmp_path)
    try:
        bases = procfile.start_many(web=2, worker=4)
        session = threading.local()

        def post(base: str, task_id: str) -> str:
            if not hasattr(session, "http"):
                session.http = requests.Session()
            answer = post_lyrics(base, task_id, session.http)
            assert answer.status_code == 200, answer.text
            return answer.json()["status"]

        twice = set(random.Random(24).sample(range(CALLBACKS), CALLBACKS // 5))
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            futures = []
            for n in range(CALLBACKS):
                task = f"scale-{n}"
                futures.append(pool.submit(post, bases[n % 2], task))
                if n in twice:  # the same callback to the other web process, at the same moment
                    futures.append(pool.submit(post, bases[(n + 1) % 2], task))
            answers = Counter(future.result() for future in futures)
        sent = time.monotonic() - started
        assert answers == {"received": CALLBACKS, "duplicate": len(twice)}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and min(len(first.received), len(second.received)) < CALLBACKS:
            time.sleep(0.2)
        time.sleep(2.0)  # a second delivery of anything would show by now
        for receiver in (first, second):
            counts = Counter(body.json()["task_id"] for body in receiver.received)
            assert len(counts) == CALLBACKS and set(counts.values()) == {1}, counts.most_common(3)
        drained = time.monotonic() - started
        print(f"\n{CALLBACKS} callbacks (+{len(twice)} concurrent duplicates) sent in {sent:.1f}s, "
              f"all delivered to both targets after {drained:.1f}s")  # fmt: skip
    finally:
        procfile.stop()
        first.close()
        second.close()
        server.stop()
