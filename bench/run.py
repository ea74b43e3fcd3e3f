"""`make bench`: the relay against its limits, each figure beside a baseline from the same run.

Starts a real redis-server, the real Procfile processes (gunicorn with the default config, N RQ
workers) and a local receiver for the Slack, Discord and webhook targets, drives load with wrk,
and prints a table (also written to bench/results/latest.md). Not a test: nothing here asserts.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
RESULTS = ROOT / "bench" / "results"
TASK = re.compile(rb"bench-[a-z0-9-]+")
UNLIMITED = "#rate=100000/1s"


class Receiver:
    """Answers at once (or after ``slow`` seconds on /slow) and notes when each task arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, dict[str, float]] = {}  # path → task → time.time()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                if self.path == "/slow":
                    time.sleep(2.0)
                match = TASK.search(body)
                if match:
                    with receiver.lock:
                        receiver.arrivals.setdefault(self.path, {}).setdefault(match.group().decode(), now)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 512
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self, path: str, prefix: str) -> int:
        with self.lock:
            return sum(task.startswith(prefix) for task in self.arrivals.get(path, {}))

    def reset(self) -> None:
        with self.lock:
            self.arrivals.clear()


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


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "processes.log").write_bytes(b"")
    started = time.time()
    find_wrk()
    server = RedisServer().start()
    connection = redis.Redis.from_url(server.url)
    receiver = Receiver()
    base_env = {
        "REDIS_URL": server.url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_WEBHOOK_URL": receiver.base + "/slack" + UNLIMITED,
        "DISCORD_WEBHOOK_URL": receiver.base + "/discord" + UNLIMITED,
        "RELAY_WEBHOOK_URL": receiver.base + "/webhook" + UNLIMITED,
    }
    processes = Processes(base_env)
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        # 1, 2: ingest, against the bare endpoint on the same gunicorn config (no workers running).
        # Interleaved, best of two rounds each: the machine is shared and its noise comes in gusts.
        print("1-2: ingest vs bare endpoint…", flush=True)
        bare, bare_port = processes.web("bench.bare:app")
        web, port = processes.web()
        runs: dict[str, list[dict[str, float]]] = {}
        for round_ in range(2):
            for name, target_port, distinct in [
                ("bare distinct", bare_port, True), ("relay distinct", port, True),
                ("bare dup", bare_port, False), ("relay dup", port, False),
            ]:  # fmt: skip
                runs.setdefault(name, []).append(wrk(target_port, distinct, f"{name.replace(' ', '-')}-{round_}"))
        processes.stop([bare])
        best = {name: max(results, key=lambda run: run["rps"]) for name, results in runs.items()}
        bare_distinct, relay_distinct = best["bare distinct"], best["relay distinct"]
        bare_dup, relay_dup = best["bare dup"], best["relay dup"]
        rows.append(
            compare("1 ingest, distinct tasks: callbacks/s", relay_distinct["rps"], bare_distinct["rps"], "≥ 0.6")
        )
        rows.append(compare("1 ingest p50 (ms)", relay_distinct["p50"], bare_distinct["p50"], ""))
        rows.append(compare("1 ingest p99 (ms)", relay_distinct["p99"], bare_distinct["p99"], "≤ 2"))
        rows.append(compare("2 duplicate storm: callbacks/s", relay_dup["rps"], bare_dup["rps"], "≥ 0.8"))
        errors = sum(run["errors"] for results in runs.values() for run in results)
        connection.flushdb()

        # 3: end to end, idle system.
        print("3: end to end, idle…", flush=True)
        workers = processes.workers(WORKERS)
        time.sleep(1.5)
        idle = end_to_end(receiver, port, "bench-idle-", 100, ["/slack", "/discord", "/webhook"], 0.05)
        idle_p50, idle_p99 = percentile(idle, 50), percentile(idle, 99)
        rows.append(("3 end to end, idle: p50 (ms)", f"{idle_p50:.1f}", "—", "—", "≤ 30 ms"))
        rows.append(("3 end to end, idle: p99 (ms)", f"{idle_p99:.1f}", "—", "—", "≤ 100 ms"))

        # 4: burst drain vs no-op jobs on the same workers.
        print(f"4: burst of {BURST} callbacks × 3 targets…", flush=True)
        begin = time.time()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda n: callback(port, f"bench-burst-{n}"), range(BURST)))
        while min(receiver.count(path, "bench-burst-") for path in ("/slack", "/discord", "/webhook")) < BURST:
            if time.time() - begin > 300:
                break
            time.sleep(0.05)
        drain = time.time() - begin
        delivered_cps = BURST / drain
        web_rss = max(peak_rss_mb(pid) for pid in children(web.pid))
        worker_rss = max(peak_rss_mb(worker.pid) for worker in workers)

        import rq

        queue = rq.Queue("relay", connection=connection)
        noop_jobs = BURST * 3
        with connection.pipeline() as pipe:
            for _ in range(noop_jobs):
                queue.enqueue_call("bench.noop.noop", result_ttl=0, pipeline=pipe)
            pipe.execute()
        begin = time.time()
        while queue.count or queue.started_job_registry.count:
            time.sleep(0.05)
        noop_jps = noop_jobs / (time.time() - begin)
        rows.append((f"4 burst drain: callbacks fully delivered/s ({BURST}×3)", f"{delivered_cps:.1f}",
                     f"{noop_jps:.1f} no-op jobs/s", f"{delivered_cps / noop_jps:.2f}", "≥ 0.8"))  # fmt: skip

        # 5: memory after the burst.
        rows.append(("5 peak RSS, one gunicorn worker (MB)", f"{web_rss:.0f}", "—", "—", "< 80"))
        rows.append(("5 peak RSS, one RQ worker (MB)", f"{worker_rss:.0f}", "—", "—", "< 80"))

        # 6: a slow target (2 s) beside the fast ones.
        print("6: one slow target…", flush=True)
        processes.stop([*workers, web])
        connection.flushdb()
        processes.env["RELAY_WEBHOOK_URL"] = receiver.base + "/slow" + UNLIMITED
        web, port = processes.web()
        workers = processes.workers(WORKERS)
        time.sleep(1.5)
        slowed = end_to_end(receiver, port, "bench-slow-", 40, ["/slack", "/discord"], 0.25)
        slow_p99 = percentile(slowed, 99)
        rows.append(("6 fast targets' p99 beside a slow one (ms)", f"{slow_p99:.1f}", f"{idle_p99:.1f} (fig. 3)",
                     f"{slow_p99 / idle_p99:.2f}", "≤ 2"))  # fmt: skip
    finally:
        processes.stop()
        server.stop()

    report = render(rows, errors, time.time() - started)
    print(report)
    (RESULTS / "latest.md").write_text(report)
    return 0


def compare(name: str, relay_value: float, baseline: float, target: str) -> tuple[str, str, str, str, str]:
    digits = 0 if relay_value >= 100 else 2
    return name, f"{relay_value:.{digits}f}", f"{baseline:.{digits}f}", f"{relay_value / baseline:.2f}", target


def render(rows: list[tuple[str, ...]], errors: int, elapsed: float) -> str:
    wrk_version = subprocess.run([find_wrk(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    versions = " · ".join(f"{name} {version(name)}" for name in ("flask", "gunicorn", "rq", "redis"))
    lines = [
        "# suno-relay benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · {versions} · {wrk_version.strip()}",
        f"gunicorn default config · {WORKERS} RQ workers · wrk -t2 -c16 -d{DURATION}, best of 2 interleaved rounds",
        "",
        "| figure | relay | baseline | ratio | target |",
        "|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
        f"Non-2xx answers during the load runs: {errors}. Whole run: {elapsed:.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
