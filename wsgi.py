"""gunicorn's entry point: ``gunicorn wsgi:app`` (see Procfile and gunicorn.conf.py)."""

import sys

from relay import create_app
from relay.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.stderr.write(f"suno-relay: configuration error: {exc}\n")
    raise SystemExit(3) from None  # gunicorn's "worker failed to boot": the master stops too
