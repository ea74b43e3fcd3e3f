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
    from rq import Worker

    from relay import jobs
    from relay.queue import delivery_queue

    settings = load_settings()
    configure_logging(settings.log_level)
    connection = connect(settings)
    jobs.configure(settings, connection)
    queue = delivery_queue(settings, connection)
    # Default RQ worker: SIGTERM is a warm shutdown (the current delivery finishes; platforms
    # allow 30 s, far above RELAY_HTTP_TIMEOUT). Maintenance every 30 s re-queues jobs of
    # workers that died without a word (SIGKILL), see README "Delivery guarantees".
    rq_worker = Worker([queue], connection=connection, maintenance_interval=30)
    rq_worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)


def main() -> None:
    cli(prog_name="relay")


if __name__ == "__main__":
    sys.exit(main())
