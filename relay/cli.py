"""``python -m relay …``: the worker and the operator's commands.

Every command reads the same environment variables as the web process (see README).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

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
    from relay.outage import OUTAGE
    from relay.sweeper import Sweeper
    from relay.worker import build_worker

    settings = load_settings()
    configure_logging(settings.log_level)
    connection, rq_connection = worker_connections(settings)
    OUTAGE.wait_for(connection)  # a worker started before Redis (or with a TLS problem) waits
    runtime = jobs.configure(settings, connection, threads=settings.worker_threads)
    rq_worker = OUTAGE.call(lambda: build_worker(settings, rq_connection))
    OUTAGE.call(lambda: runtime.store.beat(rq_worker.name))  # counted as alive from the start
    sweeper = Sweeper(runtime.store, runtime.queue, runtime.watchlist, settings.poll_interval, rq_worker.name)
    sweeper.start()
    try:
        rq_worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level)
    finally:
        if runtime.pool:
            runtime.pool.shutdown()  # warm: each thread ends its message in flight and hands the rest back
        sweeper.stopped.set()
        with contextlib.suppress(Exception):
            runtime.store.forget_worker(rq_worker.name)


def worker_connections(settings: Settings):
    """The jobs' connection and RQ's: RQ raises the socket timeout of its own (for long blocking
    pops), and a hung Redis must not block a delivery thread for minutes."""
    return connect(settings), connect(settings)


def _store_and_queue(settings: Settings):
    from relay.queue import delivery_queue
    from relay.store import Store

    connection = connect(settings)
    return Store(connection, settings.dedup_ttl), delivery_queue(settings, connection)


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the same as GET /tasks/<task_id>).")
def status(task_id: str, as_json: bool) -> None:
    """Show a task's events and each target's delivery state."""
    from relay.admin import task_status

    store, _ = _store_and_queue(load_settings())
    found = task_status(store, task_id)
    if found is None:
        raise click.ClickException(f"no task {task_id} (unknown, or expired after RELAY_DEDUP_TTL)")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if "watching" in found:
        watching = found["watching"]
        click.echo(f"watching: next poll at {watching['next_poll_at']}, until {watching['deadline']}")
        if watching["last_error"]:
            click.echo(f"  last error: {watching['last_error']}")
    for event in found["events"]:
        click.echo(f"{event['event_id']}  {event['type']} ({event['callback_type']}), received {event['received_at']}")
        for name, target in event["targets"].items() or {"(no target wanted it)": {"summary": ""}}.items():
            click.echo(f"  {name:<16} {target['summary']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dead(as_json: bool) -> None:
    """List dead letters: deliveries that failed for good or ran out of attempts."""
    from dataclasses import asdict

    from relay.admin import dead_letters

    store, _ = _store_and_queue(load_settings())
    letters = dead_letters(store)
    if as_json:
        click.echo(json.dumps([asdict(letter) for letter in letters], indent=2))
        return
    if not letters:
        click.echo("no dead letters")
    for letter in letters:
        click.echo(f"{letter.died_at}  {letter.event_id}  task {letter.task_id}  {letter.target}: {letter.reason}")


@cli.command()
@click.argument("reference", required=False)
@click.option("--target", "targets", multiple=True, help="Only this target (repeatable).")
@click.option("--dead", "all_dead", is_flag=True, help="Replay every dead letter.")
@click.option("--force", is_flag=True, help="Send again even to targets that already got the event.")
def replay(reference: str | None, targets: tuple[str, ...], all_dead: bool, force: bool) -> None:
    """Queue an event (an event id, or every event of a task id) for delivery again.

    Targets that already got it are skipped unless --force.
    """
    from relay.admin import ReplayError, dead_letters, resolve_event_ids
    from relay.admin import replay as replay_event

    settings = load_settings()
    store, queue = _store_and_queue(settings)
    unknown = [name for name in targets if settings.target(name) is None]
    if unknown:
        raise click.ClickException(
            f"unknown target(s): {', '.join(unknown)} (configured: {', '.join(settings.target_names)})"
        )
    if all_dead == bool(reference):
        raise click.UsageError("give an event id or a task id, or --dead")
    if all_dead:
        work = [
            (letter.event_id, [letter.target])
            for letter in dead_letters(store)
            if not targets or letter.target in targets
        ]
    else:
        work = [(event_id, list(targets)) for event_id in resolve_event_ids(store, reference or "")]
        if not work:
            raise click.ClickException(f"no event or task {reference}")
    for event_id, names in work:
        try:
            queued = replay_event(store, queue, event_id, names or None, force=force)
        except ReplayError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"{event_id}: "
            + (
                f"queued for {', '.join(queued)}"
                if queued
                else "nothing to do (already delivered; --force sends again)"
            )
        )


@cli.command()
@click.argument("prompt")
def submit(prompt: str) -> None:
    """Submit a lyrics task to Suno (with this relay's callback URL) and watch it.

    The result reaches the targets by callback or, without one, by polling (RELAY_MODE=poll).
    """
    from relay import jobs
    from relay.watch import SubmitError
    from relay.watch import submit as submit_task

    settings = load_settings()
    runtime = jobs.configure(settings, connect(settings))
    try:
        task_id = submit_task(settings, runtime.suno, runtime.watchlist, prompt)
    except SubmitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"submitted: task {task_id}; watching it (status: python -m relay status {task_id})")


@cli.command()
@click.argument("task_id")
def watch(task_id: str) -> None:
    """Poll a task submitted elsewhere until its result arrives, then deliver it."""
    from relay import jobs

    settings = load_settings()
    if not settings.suno_api_key:
        raise click.ClickException("SUNO_API_KEY is not set: polling needs it")
    runtime = jobs.configure(settings, connect(settings))
    runtime.watchlist.add(task_id, 0, settings.poll_deadline)
    click.echo(f"watching task {task_id} (every {settings.poll_interval:g}s, for up to {settings.poll_deadline:g}s)")


@cli.command()
@click.option("--send-test", is_flag=True, help="Send a clearly labelled test message to every target.")
def check(send_test: bool) -> None:
    """Check the configuration and Redis; with --send-test, every target too.

    The first thing to run after setting a webhook URL. Exits 1 if anything failed.
    """
    from urllib.parse import urlsplit

    import redis

    from relay.store import WORKER_SILENCE, Store

    settings = load_settings()
    click.echo("configuration: ok")
    failed = False
    for spec in settings.targets:
        where = urlsplit(spec.url).hostname or "stdout"  # the host only: the rest of the URL is a secret
        only = spec.only or "all events"
        click.echo(f"  target {spec.name:<14} {spec.kind:<8} {where}  ({only}, {spec.rate[0]}/{spec.rate[1]:g}s)")
    if not settings.callback_token:
        click.echo("  warning: RELAY_CALLBACK_TOKEN is not set (the web process needs it)")
    try:
        connection = connect(settings)
        connection.ping()
        workers = Store(connection, settings.dedup_ttl).live_workers()
        latest = f", latest heartbeat {workers[0][1]:.1f}s ago" if workers else ""
        click.echo(f"redis: ok ({len(workers)} worker(s) alive: heartbeat within {WORKER_SILENCE:g}s{latest})")
        if not workers:
            click.echo("  warning: no worker is running: callbacks would be acknowledged but not delivered")
    except redis.RedisError as exc:
        from relay.outage import describe

        click.echo(f"redis: FAILED ({describe(exc)})")
        failed = True
    if send_test:
        failed = _send_test_messages(settings) or failed
    if failed:
        sys.exit(1)


def _send_test_messages(settings: Settings) -> bool:
    from relay.suno import Event, Lyric, event_id, now_rfc3339
    from relay.targets import build_targets

    task_id = f"relay-check-{int(time.time())}"
    text = "[Test]\nThis is a test message from suno-relay's check command.\nIf you can read this, this target works."
    lyric = Lyric(title="suno-relay test message", text=text, status="complete", error="")
    event = Event(event_id(task_id, "test"), task_id, "test", 200, "test message", now_rfc3339(), (lyric,))
    failed = False
    for name, target in build_targets(settings).items():
        outcome = None
        for message in target.render(event):
            outcome = target.send(message, event)
            if not outcome.ok:
                break
        if outcome and outcome.ok:
            click.echo(f"test message to {name}: ok ({outcome.reason})")
        else:
            failed = True
            click.echo(f"test message to {name}: FAILED ({outcome.reason if outcome else 'nothing to send'})")
    return failed


def main() -> None:
    cli(prog_name="relay")


if __name__ == "__main__":
    sys.exit(main())
