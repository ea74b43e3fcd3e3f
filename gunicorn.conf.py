"""gunicorn settings, read from the environment like everything else (see README)."""

# The gevent worker patches the standard library; patching here, before anything imports ssl or
# socket, is what gevent asks for (and the master is unaffected in practice).
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402


def _check_configuration() -> None:
    """Check the configuration and the port before gunicorn says anything: one line naming the
    variable, exit 2. Then the start-up warnings, once for the process (this file is read by
    gunicorn's master only, not by each worker)."""
    from relay.config import ConfigError, Settings, check_port, startup_warnings

    try:
        settings = Settings.from_env()
        settings.require_auth()
        check_port(os.environ)
    except ConfigError as exc:
        if _metrics_dir:
            shutil.rmtree(_metrics_dir, ignore_errors=True)
        sys.stderr.write(f"suno-relay: configuration error: {exc}\n")
        sys.exit(2)
    if os.environ.get("RELAY_WARNINGS_SHOWN") != "1":  # make run's banner printed them
        from relay.logs import warn_at_start

        warnings = startup_warnings(settings, os.environ, terminal=sys.stderr.isatty())
        warn_at_start("relay.web", warnings, settings.log_level, settings.log_format)


# prometheus_client's multiprocess mode: every gunicorn worker writes its metrics to files here,
# and /metrics adds them up. Set before anything imports prometheus_client (relay does), which
# chooses its value store at import. A fresh folder at each start, so no stale counts; removed at exit.
_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = tempfile.mkdtemp(prefix="suno-relay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
_check_configuration()

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gevent with deadlines for slow clients, JSON errors: see relay/web/server.py.
worker_class = "relay.web.server.RelayWebWorker"
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
# Below the platform router's 30 s, and far below Suno's 15 s in practice: a callback is a few ms.
timeout = 20
graceful_timeout = 20
keepalive = 5  # must stay on: the header deadline applies inside gunicorn's keep-alive loop

from relay.logs import wants_text  # noqa: E402

_text = wants_text()  # a terminal (make run): human lines
# Off by default: the relay's own line records every callback, and the access log costs a tenth
# of the web process's time under load.
_access = os.environ.get("RELAY_ACCESS_LOG", "0") != "0"
accesslog = "-" if _access else None
# %(U)s is the path without its query string: the callback token travels as ?token=… and must
# never reach a log line.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
# gunicorn's own lines (start, stop, errors, access) as JSON like the relay's (text in a terminal).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "relay.logs.Formatter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        "gunicorn.error": {
            "handlers": ["stderr"],
            "level": "WARNING" if _text else os.environ.get("LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "gunicorn.access": {"handlers": ["stdout"], "level": "INFO" if _access else "WARNING", "propagate": False},
    },
}
# X-Forwarded-* headers are read by the app (werkzeug's ProxyFix, one hop: the platform's router).
# gunicorn's control socket lives in $HOME and would clash between several web processes on one
# machine; nothing here uses it.
control_socket_disable = True


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
