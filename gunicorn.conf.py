"""gunicorn settings, read from the environment like everything else (see README)."""

import os
import sys
import tempfile

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
# Below the platform router's 30 s, and far below Suno's 15 s in practice: a callback is a few ms.
timeout = 20
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("RELAY_ACCESS_LOG", "1") != "0" else None
# %(U)s is the path without its query string: the callback token travels as ?token=… and must
# never reach a log line.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
# X-Forwarded-* headers are read by the app (werkzeug's ProxyFix, one hop: the platform's router).
# gunicorn's control socket lives in $HOME and would clash between several web processes on one
# machine; nothing here uses it.
control_socket_disable = True


# prometheus_client's multiprocess mode: every gunicorn worker writes its metrics to files here,
# and /metrics adds them up. A fresh folder at each start, so no stale counts.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="suno-relay-metrics-"))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_starting(server):
    """Check the configuration once, in the master, with a clear message instead of a traceback."""
    from relay.config import ConfigError, Settings

    try:
        Settings.from_env().require_auth()
    except ConfigError as exc:
        sys.stderr.write(f"suno-relay: configuration error: {exc}\n")
        sys.exit(2)
