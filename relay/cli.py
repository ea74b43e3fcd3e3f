"""``python -m relay …``: the worker and the operator's commands.

Every command reads the same environment variables as the web process (see README).
"""

from __future__ import annotations

import sys

import click

from relay.config import ConfigError, Settings
from relay.connection import connect
from relay.logs import configure_logging


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


@click.group()
def cli() -> None:
    """suno-relay: Suno lyrics callbacks to Slack, Discord and signed webhooks."""


@cli.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty (tests, one-off drains).")
def worker(burst: bool) -> None:
    """Run an RQ worker that delivers events (the Procfile's `worker`)."""
    from relay import jobs
    from relay.sweeper import Sweeper
    from relay.worker import build_worker

    settings = load_settings()
    configure_logging(settings.log_level)
    connection = connect(settings)
    runtime = jobs.configure(settings, connection)
    Sweeper(runtime.store, runtime.queue).start()
    build_worker(settings, connection).work(burst=burst, with_scheduler=True, logging_level=settings.log_level)


def main() -> None:
    cli(prog_name="relay")


if __name__ == "__main__":
    sys.exit(main())
