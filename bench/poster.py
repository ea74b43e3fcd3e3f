"""The drain figure's baseline: a minimal poster. It renders the same messages the relay's Slack,
Discord and webhook targets would send for ``COUNT`` callbacks and posts them to the same
receiver, from two processes of 16 threads each over keep-alive ``requests`` sessions, with no
Redis and no queue. Prints the callbacks fully posted per second.

Run: ``python bench/poster.py RECEIVER_BASE COUNT``."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Process, Queue
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.config import TargetSpec  # noqa: E402
from relay.suno import normalise  # noqa: E402
from relay.targets import DiscordTarget, SlackTarget, WebhookTarget  # noqa: E402

PROCESSES, THREADS = 2, 16


def bodies(base: str, tasks: range) -> list[tuple[str, bytes]]:
    sample = json.loads((ROOT / "examples" / "lyrics-complete.json").read_text())
    targets = [cls(TargetSpec(kind=cls.kind, name=cls.kind)) for cls in (SlackTarget, DiscordTarget, WebhookTarget)]
    posts = []
    for n in tasks:
        sample["data"]["task_id"] = f"bench-poster-{n}"
        event = normalise(sample)
        for target in targets:
            for message in target.render(event):
                posts.append((f"{base}/{target.kind}", json.dumps(message, ensure_ascii=False).encode()))
    return posts


def post_all(base: str, tasks: range, done: Queue) -> None:
    posts = bodies(base, tasks)
    local = threading.local()

    def post(item: tuple[str, bytes]) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        session.post(item[0], data=item[1], headers={"Content-Type": "application/json"}, timeout=10)

    done.put("ready")
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(post, posts))
    done.put("done")


def main() -> None:
    base, count = sys.argv[1], int(sys.argv[2])
    done: Queue = Queue()
    share = count // PROCESSES
    processes = [
        Process(target=post_all, args=(base, range(n * share, (n + 1) * share), done)) for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        done.get()  # rendered, ready to post
    started = time.time()
    for _ in processes:
        done.get()
    elapsed = time.time() - started
    for process in processes:
        process.join()
    print(json.dumps({"callbacks_per_s": share * PROCESSES / elapsed}))


if __name__ == "__main__":
    main()
