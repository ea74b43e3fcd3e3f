"""`make bench`: the relay against its limits, each figure beside a baseline from the same run.

Starts a real redis-server, the real Procfile processes (gunicorn with the default config, N RQ
workers) and a local receiver for the Slack, Discord and webhook targets, drives load with wrk,
and prints a table (also written to bench/results/latest.md). Not a test: nothing here asserts.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.dev import RedisServer, free_port, procfile, wait_for_port  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
DURATION = os.environ.get("BENCH_DURATION", "5s")
BURST = int(os.environ.get("BENCH_BURST", "2000"))
SCALE_WORKERS = (1, 2, 4)  # figure 8: worker processes
RESULTS = ROOT / "bench" / "results"
UNLIMITED = "#rate=100000/1s"


class Receiver:
    """The targets, served by bench/receiver.py in a process of its own (one write per answer)."""

    def __init__(self, processes: Processes) -> None:
        port = free_port()
        self.process = processes.start([sys.executable, str(ROOT / "bench" / "receiver.py"), str(port)])
        wait_for_port(port)
        self.base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()

    @property
    def arrivals(self) -> dict[str, dict[str, float]]:
        return self.session.get(self.base + "/arrivals", timeout=30).json()

    def count(self, path: str, prefix: str) -> int:
        return sum(task.startswith(prefix) for task in self.arrivals.get(path, {}))

    def reset(self) -> None:
        self.session.delete(self.base + "/arrivals", timeout=10)


class Processes:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.started: list[subprocess.Popen] = []
        self.log = open(RESULTS / "processes.log", "ab")  # noqa: SIM115

    def start(self, argv: list[str], **env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            argv, env={**self.env, **env}, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(process)
        return process

    def web(self, app: str = "wsgi:app") -> tuple[subprocess.Popen, int]:
        port = free_port()
        argv = [arg if arg != "wsgi:app" else app for arg in procfile()["web"]]
        process = self.start(argv, PORT=str(port))
        wait_for_port(port, timeout=30)
        time.sleep(0.5)  # let every gunicorn worker boot
        return process, port

    def workers(self, count: int) -> list[subprocess.Popen]:
        return [self.start(procfile()["worker"]) for _ in range(count)]

    def stop(self, processes: list[subprocess.Popen] | None = None) -> None:
        for process in processes or self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes or self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def find_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package)…", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("make bench needs wrk: install it (apt-get install wrk, brew install wrk) and run again")
    return found


def wrk(port: int, distinct: bool, run: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/callbacks/suno/lyrics?token={TOKEN}"
    argv = [find_wrk(), "-t2", "-c16", f"-d{DURATION}", "--latency", "-s", str(ROOT / "bench" / "callbacks.lua"), url]
    env = {**os.environ, "DISTINCT": "1" if distinct else "0", "RUN": run}
    output = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "p50": percentiles["50"],
        "p99": percentiles["99"],
        "errors": int(errors.group(1)) if errors else 0,
    }


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def callback(port: int, task: str) -> float:
    payload = json.loads((ROOT / "examples" / "lyrics-complete.json").read_text())
    payload["data"]["task_id"] = task
    response = requests.post(
        f"http://127.0.0.1:{port}/callbacks/suno/lyrics", params={"token": TOKEN}, json=payload, timeout=10
    )
    response.raise_for_status()
    return time.time()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def end_to_end(receiver: Receiver, port: int, prefix: str, count: int, paths: list[str], pause: float) -> list[float]:
    """Callbacks one at a time; ms from each 200 to its arrival at each of ``paths``."""
    answered = {}
    for n in range(count):
        task = f"{prefix}{n}"
        answered[task] = callback(port, task)
        time.sleep(pause)
    deadline = time.time() + 60
    while time.time() < deadline and any(receiver.count(path, prefix) < count for path in paths):
        time.sleep(0.05)
    return [
        (receiver.arrivals[path][task] - answered[task]) * 1000
        for path in paths
        for task in answered
        if task in receiver.arrivals.get(path, {})
    ]


def peak_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return float("nan")
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def spread(values: list[float]) -> str:
    return f"{min(values):.0f}–{max(values):.0f}" if max(values) >= 100 else f"{min(values):.2f}–{max(values):.2f}"


def relay_round_trips(connection: redis.Redis) -> int:
    """The relay's own round trips so far: all of them are Lua steps (EVALSHA: the door's, each
    delivery's begin / progress / finish, the due-job mover, a batch's claim and release)."""
    stats = connection.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "processes.log").write_bytes(b"")
    started = time.time()
    find_wrk()
    server = RedisServer().start()
    connection = redis.Redis.from_url(server.url)
    processes = Processes({})
    receiver = Receiver(processes)
    processes.env.update(
        REDIS_URL=server.url,
        RELAY_CALLBACK_TOKEN=TOKEN,
        SLACK_WEBHOOK_URL=receiver.base + "/slack" + UNLIMITED,
        DISCORD_WEBHOOK_URL=receiver.base + "/discord" + UNLIMITED,
        RELAY_WEBHOOK_URL=receiver.base + "/webhook" + UNLIMITED,
    )
    rows: list[tuple[str, ...]] = []
    try:
        # 1, 2: ingest against the bare endpoint, each on ONE gunicorn worker (wrk's keep-alive
        # connections split unevenly between several), interleaved rounds, best and spread.
        print(f"1-2: ingest vs bare endpoint and the one-round-trip ceiling, {ROUNDS} interleaved rounds…", flush=True)
        processes.env["WEB_CONCURRENCY"] = "1"
        bare, bare_port = processes.web("bench.bare:app")
        ceiling, ceiling_port = processes.web("bench.ceiling:app")
        web, port = processes.web()
        runs: dict[str, list[dict[str, float]]] = {}
        for round_ in range(ROUNDS):
            for name, target_port, distinct in [
                ("bare distinct", bare_port, True), ("relay distinct", port, True),
                ("ceiling distinct", ceiling_port, True),
                ("bare dup", bare_port, False), ("relay dup", port, False),
            ]:  # fmt: skip
                runs.setdefault(name, []).append(wrk(target_port, distinct, f"{name.replace(' ', '-')}-{round_}"))
        processes.stop([bare, ceiling, web])

        def versus(name: str, baseline: str, goal: str, what: str = "rps", best: Callable = max) -> tuple:
            """The round with the best ratio: its two figures, the ratio, and the spread over rounds."""
            pairs = list(zip(runs[name], runs[baseline], strict=True))
            ratios = [ours[what] / theirs[what] for ours, theirs in pairs]
            ours, theirs = pairs[ratios.index(best(ratios))]
            digits = 0 if what == "rps" else 1
            return f"{ours[what]:.{digits}f}", f"{theirs[what]:.{digits}f}", f"{best(ratios):.2f}", spread(ratios), goal

        rows.append(("1 ingest, distinct tasks: callbacks/s", *versus("relay distinct", "bare distinct", "≥ 0.6")))
        rows.append(("1 ingest p99 (ms), relay vs bare", *versus("relay distinct", "bare distinct", "≤ 2", "p99", min)))
        rows.append(("1 the one-round-trip ceiling vs bare (callbacks/s)",
                     *versus("ceiling distinct", "bare distinct", "(0.65–0.75)")))  # fmt: skip
        rows.append(("1 ingest vs the one-round-trip ceiling (callbacks/s)",
                     *versus("relay distinct", "ceiling distinct", "—")))  # fmt: skip
        rows.append(("1 ingest p99 (ms), relay vs the ceiling",
                     *versus("relay distinct", "ceiling distinct", "—", "p99", min)))  # fmt: skip
        rows.append(("2 duplicate storm: callbacks/s", *versus("relay dup", "bare dup", "≥ 0.9")))
        errors = sum(run["errors"] for results in runs.values() for run in results)
        connection.flushdb()

        # 3-6: deliveries, the default web config and WORKERS RQ workers, started afresh each round.
        processes.env.pop("WEB_CONCURRENCY")
        results = []
        for round_ in range(ROUNDS):
            print(f"3-6: deliveries, round {round_ + 1} of {ROUNDS}…", flush=True)
            results.append(delivery_round(processes, receiver, connection, round_))
        column = {name: [result[name] for result in results] for name in results[0]}
        idle_p99 = min(column["idle_p99"])
        rows.append(("3 end to end, idle: p50 (ms)", f"{min(column['idle_p50']):.1f}", "—", "—",
                     spread(column["idle_p50"]), "≤ 30 ms"))  # fmt: skip
        rows.append(("3 end to end, idle: p99 (ms)", f"{idle_p99:.1f}", "—", "—", spread(column["idle_p99"]),
                     "≤ 100 ms"))  # fmt: skip
        drains = [r / b for r, b in zip(column["drain"], column["poster"], strict=True)]
        at = drains.index(max(drains))
        rows.append((f"4 burst drain: callbacks fully delivered/s ({BURST}×3)", f"{column['drain'][at]:.1f}",
                     f"{column['poster'][at]:.1f} (minimal poster)", f"{max(drains):.2f}", spread(drains),
                     "≥ 0.5"))  # fmt: skip
        rows.append(("4 relay's own Redis round trips per delivered message", f"{min(column['trips']):.2f}", "—",
                     "—", spread(column["trips"]), "≤ 2"))  # fmt: skip
        rows.append(("5 peak RSS, one gunicorn worker (MB)", f"{max(column['web_rss']):.0f}", "—", "—",
                     spread(column["web_rss"]), "< 80"))  # fmt: skip
        rows.append(("5 peak RSS, one RQ worker (MB)", f"{max(column['worker_rss']):.0f}", "—", "—",
                     spread(column["worker_rss"]), "< 80"))  # fmt: skip
        slowed = [slow / idle for slow, idle in zip(column["slow_p99"], column["idle_p99"], strict=True)]
        at = slowed.index(min(slowed))
        rows.append(("6 fast targets' p99 beside a slow one (ms)", f"{column['slow_p99'][at]:.1f}",
                     f"{column['idle_p99'][at]:.1f} (fig. 3, same round)", f"{min(slowed):.2f}", spread(slowed),
                     "≤ 2"))  # fmt: skip

        held = [slow / idle for slow, idle in zip(column["slow8_p90"], column["idle_p90"], strict=True)]
        at = held.index(min(held))
        rows.append(("6b fast targets' p90 beside a target answering after 8 s (ms)", f"{column['slow8_p90'][at]:.1f}",
                     f"{column['idle_p90'][at]:.1f} (fig. 3's p90, same round)", f"{min(held):.2f}", spread(held),
                     "≤ 2"))  # fmt: skip

        # 7: the operator page's records, their cost at the door, before/after in this run.
        print("7: the operator page's records at the door…", flush=True)
        costs = records_cost(processes.env)
        rows.append(("7 the door's Redis step, with the page's records (µs a callback)",
                     f"{min(costs['with']):.0f}", f"{min(costs['without']):.0f} (without)",
                     f"{min(costs['with']) / min(costs['without']):.2f}",
                     spread([w / o for w, o in zip(costs["with"], costs["without"], strict=True)]),
                     "no measurable cost"))  # fmt: skip

        # 8: more worker processes on one Redis (the same machine: 2 cores here).
        by_workers = drain_by_workers(processes, receiver, connection)
        for count in SCALE_WORKERS:
            ratios = [n / one for n, one in zip(by_workers[count], by_workers[1], strict=True)]
            at = ratios.index(max(ratios))
            rows.append((f"8 burst drain with {count} worker process(es) (callbacks/s)", f"{by_workers[count][at]:.1f}",
                         f"{by_workers[1][at]:.1f} (1 worker, same round)", f"{max(ratios):.2f}", spread(ratios),
                         "—"))  # fmt: skip
    finally:
        processes.stop()
        server.stop()

    report = render(rows, errors, time.time() - started)
    print(report)
    (RESULTS / "latest.md").write_text(report)
    return 0


def delivery_round(processes: Processes, receiver: Receiver, connection: redis.Redis, round_: int) -> dict:
    """Figures 3-6 once: fresh web and workers, an idle end to end, a burst beside the minimal
    poster, the peak memory, then a slow webhook target beside the fast ones."""
    figures: dict[str, float] = {}
    connection.flushdb()
    receiver.reset()
    processes.env["RELAY_WEBHOOK_URL"] = receiver.base + "/webhook" + UNLIMITED
    web, port = processes.web()
    workers = processes.workers(WORKERS)
    time.sleep(1.5)
    prefix = f"bench-r{round_}-"
    idle = end_to_end(receiver, port, f"{prefix}idle-", 100, ["/slack", "/discord", "/webhook"], 0.05)
    figures["idle_p50"], figures["idle_p99"] = percentile(idle, 50), percentile(idle, 99)

    before_calls = relay_round_trips(connection)
    figures["drain"] = drain(receiver, port, f"{prefix}burst-")
    # The relay's Lua steps per message, less the door's one per callback.
    figures["trips"] = (relay_round_trips(connection) - before_calls - BURST) / (BURST * 3)
    figures["web_rss"] = max(peak_rss_mb(pid) for pid in children(web.pid))
    figures["worker_rss"] = max(peak_rss_mb(worker.pid) for worker in workers)
    processes.stop([*workers, web])
    receiver.reset()  # the poster meets the receiver as the burst did
    poster = subprocess.run([sys.executable, str(ROOT / "bench" / "poster.py"), receiver.base, str(BURST)],
                            capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
    figures["poster"] = json.loads(poster.stdout.strip().splitlines()[-1])["callbacks_per_s"]

    connection.flushdb()
    processes.env["RELAY_WEBHOOK_URL"] = receiver.base + "/slow" + UNLIMITED
    web, port = processes.web()
    workers = processes.workers(WORKERS)
    time.sleep(1.5)
    slowed = end_to_end(receiver, port, f"{prefix}slow-", 80, ["/slack", "/discord"], 0.125)
    figures["slow_p99"] = percentile(slowed, 99)
    processes.stop([*workers, web])

    # 6b: the bulkhead: a target answering after 8 s (inside the POST deadline) beside the fast ones.
    connection.flushdb()
    processes.env["RELAY_WEBHOOK_URL"] = receiver.base + "/slow8" + UNLIMITED
    web, port = processes.web()
    workers = processes.workers(WORKERS)
    time.sleep(1.5)
    figures["idle_p90"] = percentile(idle, 90)
    beside = end_to_end(receiver, port, f"{prefix}slow8-", 40, ["/slack", "/discord"], 0.2)
    figures["slow8_p90"] = percentile(beside, 90)
    processes.stop([*workers, web])
    return figures


def drain(receiver: Receiver, port: int, prefix: str) -> float:
    """A burst of BURST callbacks: callbacks fully delivered (to all three targets) a second."""
    begin = time.time()
    send_burst(port, prefix, BURST)
    while min(receiver.count(path, prefix) for path in ("/slack", "/discord", "/webhook")) < BURST:
        if time.time() - begin > 300:
            break
        time.sleep(0.1)
    return BURST / (time.time() - begin)


def drain_by_workers(processes: Processes, receiver: Receiver, connection: redis.Redis) -> dict[int, list[float]]:
    """Figure 8: the burst drain with 1, 2 and 4 worker processes, interleaved rounds."""
    drains: dict[int, list[float]] = {count: [] for count in SCALE_WORKERS}
    processes.env["RELAY_WEBHOOK_URL"] = receiver.base + "/webhook" + UNLIMITED
    for round_ in range(ROUNDS):
        for count in SCALE_WORKERS:
            print(f"8: burst drain with {count} worker process(es), round {round_ + 1} of {ROUNDS}…", flush=True)
            connection.flushdb()
            receiver.reset()
            web, port = processes.web()
            workers = processes.workers(count)
            time.sleep(1.5)
            drains[count].append(drain(receiver, port, f"bench-scale{count}-r{round_}-"))
            processes.stop([*workers, web])
    return drains


def records_cost(env: dict[str, str], count: int = 3000) -> dict[str, list[float]]:
    """The door's Redis step (the script with every write) in this process, with the operator
    page's records (relay.activity.received) and with them left out, interleaved rounds: µs per
    new callback, one after another (building the writes, the round trip, Redis running them)."""
    from relay.config import Settings
    from relay.delivery.queue import delivery_queue
    from relay.ingest import Ingest
    from relay.store import activity
    from relay.suno import normalise

    settings = Settings.from_env(env)
    connection = redis.Redis.from_url(settings.redis_url)
    ingest = Ingest(settings, connection, delivery_queue(settings, connection))
    payload = json.loads((ROOT / "examples" / "lyrics-complete.json").read_text())
    received = activity.received
    costs: dict[str, list[float]] = {"with": [], "without": []}
    try:
        for round_ in range(ROUNDS):
            for name in ("with", "without"):
                activity.received = received if name == "with" else (lambda *args, **kwargs: None)
                events = []
                for n in range(count):
                    payload["data"]["task_id"] = f"bench-records-{name}-{round_}-{n}"
                    events.append(normalise(payload))
                started = time.perf_counter()
                for event in events:
                    ingest(event)
                costs[name].append((time.perf_counter() - started) / count * 1e6)
                connection.flushdb()
    finally:
        activity.received = received
    return costs


def send_burst(port: int, prefix: str, count: int, connections: int = 16) -> None:
    """``count`` callbacks at once over ``connections`` keep-alive connections. Requests are built
    up front and sent with http.client: the sender shares the 2 cores with the relay, and
    ``requests`` cost it about a millisecond of CPU a callback, taken from the relay's."""
    payload = json.loads((ROOT / "examples" / "lyrics-complete.json").read_text())
    path = f"/callbacks/suno/lyrics?token={TOKEN}"

    def body(n: int) -> bytes:
        payload["data"]["task_id"] = f"{prefix}{n}"
        return json.dumps(payload).encode()

    shares = [[body(n) for n in range(first, count, connections)] for first in range(connections)]

    def send(bodies: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for item in bodies:
            conn.request("POST", path, body=item, headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"burst callback answered {answer.status}")
        conn.close()

    with ThreadPoolExecutor(max_workers=connections) as pool:
        list(pool.map(send, shares))


def render(rows: list[tuple[str, ...]], errors: int, elapsed: float) -> str:
    wrk_version = subprocess.run([find_wrk(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    versions = " · ".join(f"{name} {version(name)}" for name in ("flask", "gunicorn", "rq", "redis"))
    lines = [
        "# suno-relay benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · {versions} · {wrk_version.strip()}",
        f"figures 1-2: one gunicorn worker each, wrk -t2 -c16 -d{DURATION} · figures 3-6: the default gunicorn "
        f"config, {WORKERS} worker processes · figure 8: 1, 2, 4 worker processes · {ROUNDS} interleaved "
        "rounds: each row shows the round with the best ratio (or figure), the spread is over all rounds",
        "",
        "| figure | relay | baseline | ratio | spread | goal |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
        f"Non-2xx answers during the load runs: {errors}. Whole run: {elapsed:.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
