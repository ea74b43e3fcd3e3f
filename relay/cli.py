"""``python -m relay …``: the worker and the operator's commands.

Every command reads the same environment variables as the web process (see README). With
``REDIS_URL`` unset and a ``make run`` of this folder running, the commands use its embedded
Redis (and its callback token), and say so. A configuration error is one line on stderr, naming
the variable (never its value), and exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import redis

if TYPE_CHECKING:
    import rq

    from relay.store.state import Store

from relay import __version__
from relay.config import ConfigError, Settings, startup_warnings
from relay.dev import RunLock, data_dir
from relay.logs import configure_logging, warn_at_start
from relay.polling.client import RECORD_INFO, STEM_TYPES
from relay.store.connection import connect, redis_location, unreachable, wait_for_replicas

CONFIG_ERROR = 2


def config_error(message: str) -> None:
    """One line naming the variable, exit status 2: the rule for every configuration error."""
    click.echo(f"suno-relay: configuration error: {message}", err=True)
    sys.exit(CONFIG_ERROR)


def relay_command() -> str:
    """How to run this program again, as the user can type it: ``python -m relay`` where that
    ``python`` is this one (a platform), else this interpreter's path (``.venv/bin/python``)."""
    executable = Path(sys.executable).absolute()
    found = shutil.which("python")
    if found and Path(found).absolute() == executable:
        return "python -m relay"
    try:
        return f"{executable.relative_to(Path.cwd())} -m relay"
    except ValueError:
        return f"{executable} -m relay"


class RelayGroup(click.Group):
    """A Redis that cannot be reached is one line naming REDIS_URL and exit status 2, whichever
    command met it (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except redis.RedisError as exc:
            settings = ctx.meta.get("relay.settings")
            click.echo(f"suno-relay: {unreachable(settings.redis_url if settings else '', exc)}", err=True)
            sys.exit(CONFIG_ERROR)


def load_settings() -> Settings:
    environ = dict(os.environ)
    if not environ.get("REDIS_URL"):
        running = RunLock().running()
        if running and running.get("redis_url"):
            environ["REDIS_URL"] = running["redis_url"]
            token_file = data_dir() / "callback-token"
            if not environ.get("RELAY_CALLBACK_TOKEN") and token_file.exists():
                environ["RELAY_CALLBACK_TOKEN"] = token_file.read_text().strip()
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        config_error(str(exc))
    context = click.get_current_context(silent=True)
    if context is not None:
        context.find_root().meta["relay.settings"] = settings
    return settings


def redis_used(settings: Settings) -> str:
    """Which Redis a command talks to: host, port, db; never a password."""
    embedded = not os.environ.get("REDIS_URL") and RunLock().running()
    return redis_location(settings.redis_url) + (", make run's embedded Redis" if embedded else "")


@click.group(cls=RelayGroup)
@click.version_option(__version__, prog_name="suno-relay", message="%(prog)s %(version)s")
def cli() -> None:
    """suno-relay: Suno callbacks (lyrics, songs, files) to team chats and signed webhooks."""


@cli.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty (tests, one-off drains).")
def worker(burst: bool) -> None:
    """Run an RQ worker that delivers events (the Procfile's `worker`)."""

    from relay import jobs
    from relay.store.outage import OUTAGE
    from relay.worker.process import build_worker
    from relay.worker.sweeper import Sweeper

    settings = load_settings()
    rq_level = configure_logging(settings.log_level, settings.log_format)
    if os.environ.get("RELAY_WARNINGS_SHOWN") != "1":  # make run's banner printed them
        warnings = startup_warnings(settings, os.environ, terminal=sys.stderr.isatty())
        warn_at_start("relay.worker", warnings, settings.log_level, settings.log_format)
    connection, rq_connection = worker_connections(settings)
    OUTAGE.wait_for(connection)  # a worker started before Redis (or with a TLS problem) waits
    runtime = jobs.configure(settings, connection, threads=settings.worker_threads)
    rq_worker = OUTAGE.call(lambda: build_worker(settings, rq_connection))
    OUTAGE.call(lambda: runtime.store.beat(rq_worker.name))  # counted as alive from the start
    OUTAGE.call(lambda: runtime.store.advertise(rq_worker.name, list(runtime.targets)))
    OUTAGE.call(lambda: runtime.breakers.sync_urls({spec.name: spec.url for spec in settings.targets}))
    sweeper = Sweeper(
        runtime.store, runtime.queue, runtime.watchlist, settings.poll_interval, rq_worker.name,
        targets=list(runtime.targets), reconcile_after=settings.reconcile_after, breakers=runtime.breakers,
    )  # fmt: skip
    sweeper.start()
    try:
        rq_worker.work(burst=burst, with_scheduler=False, logging_level=rq_level)
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


def _store_and_queue(settings: Settings) -> tuple[Store, rq.Queue]:
    from relay.runtime import build

    runtime = build(settings)  # the same composition root as web and worker
    return runtime.store, runtime.queue


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the same as GET /tasks/<task_id>).")
def status(task_id: str, as_json: bool) -> None:
    """Show a task's events and each target's delivery state."""
    from relay.admin import task_status

    settings = load_settings()
    click.echo(f"using redis {redis_used(settings)}", err=True)  # stderr: --json output stays parseable
    store, _ = _store_and_queue(settings)
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
    from relay.delivery.breaker import Breakers

    names = sorted({name for event in found["events"] for name in event["targets"]})
    for name, breaker in Breakers(settings, store.redis).status(names).items():
        click.echo(f"breaker {name:<16} {_breaker_line(breaker)}")


def _breaker_line(breaker: Any) -> str:
    """``closed`` or ``open since …: <reason> (3 held)``: what check and status show."""
    if not breaker.down:
        return f"closed{f' ({breaker.held} held, going out)' if breaker.held else ''}"
    return f"{breaker.state} since {breaker.since}: {breaker.reason} ({breaker.held} held)"


@cli.command()
@click.argument("name")
def pause(name: str) -> None:
    """Pause a target by hand: its deliveries are held (not sent, not dead) until `resume`."""
    runtime = _breaker_runtime(name)
    before = runtime.breakers.pause(name)
    held = runtime.breakers.status([name])[name].held
    click.echo(f"{name}: paused (was {before}); {held} deliveries held; `resume {name}` sends them")


@cli.command()
@click.argument("name")
def resume(name: str) -> None:
    """Close a target's breaker by hand: its held deliveries go out, oldest first."""
    runtime = _breaker_runtime(name)
    held = runtime.breakers.status([name])[name].held
    before = runtime.breakers.resume(name)
    click.echo(f"{name}: closed (was {before}); {held if before != 'closed' else 0} held deliveries going out")


def _breaker_runtime(name: str) -> Any:
    from relay.runtime import build

    settings = load_settings()
    if settings.target(name) is None:
        names = ", ".join(settings.target_names) or "none"
        raise click.UsageError(f"no target named {name!r} (configured: {names})")
    return build(settings)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dead(ctx: click.Context, as_json: bool) -> None:
    """List dead letters: deliveries that failed for good or ran out of attempts.

    `dead discard …` drops them."""
    from dataclasses import asdict

    from relay.admin import dead_letters

    if ctx.invoked_subcommand:
        return
    store, _ = _store_and_queue(load_settings())
    letters = dead_letters(store)
    if as_json:
        click.echo(json.dumps([asdict(letter) for letter in letters], indent=2))
        return
    if not letters:
        click.echo("no dead letters")
    for letter in letters:
        click.echo(f"{letter.died_at}  {letter.event_id}  task {letter.task_id}  {letter.target}: {letter.reason}")


@dead.command("discard")
@click.argument("reference", required=False)
@click.option("--target", "targets", multiple=True, help="Only this target's dead letters (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Every dead letter (of --target, if given).")
def discard(reference: str | None, targets: tuple[str, ...], everything: bool) -> None:
    """Drop dead letters: of an event or a task id, or --all (of a --target)."""
    from relay.admin import discard_dead

    if everything == bool(reference):
        raise click.UsageError("give an event id or a task id, or --all")
    store, _ = _store_and_queue(load_settings())
    dropped = discard_dead(store, reference, list(targets))
    click.echo(f"discarded {len(dropped)} dead letter(s)" + "".join(f"\n  {e}/{t}" for e, t in dropped))


def _targets_known(store: Store, settings: Settings) -> tuple[set[str], str]:
    """The targets a replay can reach: the running workers' (they deliver it), else this shell's."""
    live = store.live_targets()
    if live is None:
        return set(settings.target_names), "this shell's configuration (no worker is running)"
    return live, "the running workers"


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
    known, source = _targets_known(store, settings)
    unknown = [name for name in targets if name not in known]
    if unknown:
        raise click.ClickException(
            f"target(s) {', '.join(unknown)} not configured on {source} (they have: "
            f"{', '.join(sorted(known)) or 'none'}): set its URL in the workers' environment and restart them"
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
        gone = [name for name in names if name not in known]
        if gone:
            click.echo(f"{event_id}: skipped {', '.join(gone)}: not configured on {source}")
            names = [name for name in names if name in known]
            if not names:
                continue
        try:
            queued = replay_event(store, queue, event_id, names or None, force=force, known=known)
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
@click.option("--target", "target_name", help="Only this target (its name).")
@click.option("--kind", default="lyrics", show_default=True, help="The callback's kind: lyrics, music, wav, …")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def preview(target_name: str | None, kind: str, file: str) -> None:
    """Print what each target would be sent for the callback body in FILE (JSON): the bodies as
    they would be posted, one per line. Nothing is posted, Redis is not used, and no URL, token
    or secret is printed (a template's output is what it renders)."""
    from pathlib import Path

    from relay.suno import NORMALISERS, PayloadError, parse_json
    from relay.targets import build_targets

    settings = load_settings()
    normaliser = NORMALISERS.get(kind)
    if normaliser is None:
        raise click.UsageError(f"--kind must be one of {', '.join(NORMALISERS)}")
    try:
        event = normaliser(parse_json(Path(file).read_bytes()))
    except PayloadError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    targets = build_targets(settings)
    if target_name is not None and target_name not in targets:
        raise click.UsageError(f"no target {target_name!r}: the targets are {', '.join(targets)}")
    for name, target in targets.items():
        if target_name not in (None, name):
            continue
        if not target.spec.wants(event.type):
            click.echo(f"# {name} ({target.kind}): does not receive {event.type}")
            continue
        messages = target.render(event)
        click.echo(f"# {name} ({target.kind}): {len(messages)} message(s)")
        for message in messages:
            click.echo(target.encode(message, event)[0].decode())


@cli.command()
@click.argument("prompt", required=False, default="")
@click.option("--music", is_flag=True, help="A song (music generation) instead of lyrics.")
@click.option("--wav", "made", flag_value="wav", help="A WAV of a song (--task, --audio).")
@click.option("--stems", "made", flag_value="stems", help="Separate a song's stems (--task, --audio, --type).")
@click.option("--video", "made", flag_value="video", help="A music video of a song (--task, --audio).")
@click.option("--cover", "made", flag_value="cover", help="Cover images for a music task (--task).")
@click.option("--midi", "made", flag_value="midi", help="MIDI from a stems task (--task, optional --audio).")
@click.option("--task", "source_task", default="", help="The finished task it is made from.")
@click.option("--audio", "audio_id", default="", help="Which song of it (its audio id).")
@click.option("--type", "stem_type", type=click.Choice(STEM_TYPES), default="separate_vocal", show_default=True)
def submit(prompt: str, music: bool, made: str | None, source_task: str, audio_id: str, stem_type: str) -> None:
    """Submit a lyrics (or, with --music, a music) task to Suno, with this relay's callback URL,
    and watch it; or, with --wav, --stems, --video, --cover or --midi, a task made from a
    finished one. The result reaches the targets by callback or, without one, by polling."""
    from relay import jobs
    from relay.polling.watchlist import FileRequest, SubmitError
    from relay.polling.watchlist import submit as submit_task

    if made is None and not prompt.strip():
        raise click.UsageError("give a prompt, or --wav/--stems/--video/--cover/--midi with --task")
    request = FileRequest(made, source_task, audio_id, stem_type) if made else None
    if request is not None and request.problem():
        raise click.UsageError(request.problem())
    settings = load_settings()
    if not settings.suno_api_key:
        config_error("SUNO_API_KEY is not set: submitting needs it")
    runtime = jobs.configure(settings, connect(settings))
    kind = made or ("music" if music else "lyrics")
    try:
        task_id = submit_task(settings, runtime.suno, runtime.watchlist, prompt, kind, request)
    except SubmitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"submitted: {kind} task {task_id}; watching it (status: {relay_command()} status {task_id})")


@cli.command()
@click.argument("task_id")
@click.option("--kind", type=click.Choice(list(RECORD_INFO)), default="lyrics", show_default=True)
def watch(task_id: str, kind: str) -> None:
    """Poll a task submitted elsewhere until its result arrives, then deliver it."""
    from relay import jobs

    settings = load_settings()
    if not settings.suno_api_key:
        config_error("SUNO_API_KEY is not set: polling needs it")
    runtime = jobs.configure(settings, connect(settings))
    runtime.watchlist.add(task_id, 0, settings.poll_deadline, kind)
    every = f"every {settings.poll_interval:g}s, for up to {settings.poll_deadline:g}s"
    click.echo(f"watching {kind} task {task_id} ({every})")


@cli.command()
@click.option("--send-test", is_flag=True, help="Send a clearly labelled test message to every target.")
def check(send_test: bool) -> None:
    """Check the configuration and Redis; with --send-test, every target too.

    The first thing to run after setting a webhook URL. Exits 1 if anything failed.
    """
    from relay.store.state import WORKER_SILENCE, Store
    from relay.targets import KINDS

    settings = load_settings()
    click.echo("configuration: ok")
    for warning in startup_warnings(settings, os.environ, terminal=False):
        click.echo(f"  warning: {warning}")
    failed = False
    for spec in settings.targets:
        where = KINDS[spec.kind].where(spec)  # the host only (Apprise: its scheme): the rest is a secret
        only = "|".join(spec.only) if spec.only else "default events"
        live = ", stages=live" if spec.live else ""
        click.echo(f"  target {spec.name:<14} {spec.kind:<8} {where}  ({only}, {spec.rate[0]}/{spec.rate[1]:g}s{live})")
    if not settings.callback_token:
        click.echo("  warning: RELAY_CALLBACK_TOKEN is not set (the web process needs it)")
    try:
        connection = connect(settings)
        connection.ping()
        workers = Store(connection, settings.dedup_ttl).live_workers()
        latest = f", latest heartbeat {workers[0][1]:.1f}s ago" if workers else ""
        alive = f"{len(workers)} worker(s) alive: heartbeat within {WORKER_SILENCE:g}s{latest}"
        click.echo(f"redis: ok, {redis_used(settings)} ({alive})")
        if not workers:
            click.echo("  warning: no worker is running: callbacks would be acknowledged but not delivered")
        if settings.ack_replicas:
            # WAIT with nothing written answers how many replicas are connected and caught up.
            with connection.pipeline(transaction=False) as pipe:
                wait_for_replicas(pipe, settings)
                [confirming] = pipe.execute()
            click.echo(f"  replicas: {confirming} confirm writes (RELAY_ACK_REPLICAS={settings.ack_replicas})")
            if confirming < settings.ack_replicas:
                click.echo(
                    f"  FAILED: RELAY_ACK_REPLICAS={settings.ack_replicas} but {confirming} replica(s) confirm writes: "
                    "the door would answer 503 to every callback (set it to what the Redis has, or 0)"
                )
                failed = True
        from relay.delivery.breaker import Breakers

        for name, breaker in Breakers(settings, connection).status(list(settings.target_names)).items():
            click.echo(f"  breaker {name:<13} {_breaker_line(breaker)}")
    except redis.RedisError as exc:
        from relay.store.outage import describe

        click.echo(f"redis: FAILED, {redis_used(settings)} ({describe(exc)})")
        failed = True
    if send_test:
        failed = _send_test_messages(settings) or failed
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--failed", is_flag=True, help="The failed-task example (examples/lyrics-error.json).")
@click.option("--url", help="The relay's base URL (default: RELAY_PUBLIC_URL, else http://localhost:$PORT).")
def example(failed: bool, url: str | None) -> None:
    """Send an example callback with a fresh task id, through the running web process: every
    target configured now gets it, however often you try."""
    import requests

    from relay.dev import ROOT

    settings = load_settings()
    running = RunLock().running() or {}
    base = url or settings.public_url or f"http://localhost:{running.get('port') or os.environ.get('PORT', '5000')}"
    payload = json.loads((ROOT / "examples" / ("lyrics-error.json" if failed else "lyrics-complete.json")).read_text())
    task_id = f"example-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
    payload["data"]["task_id"] = task_id
    headers = {"X-Relay-Token": settings.callback_token} if settings.callback_token else {}
    try:
        response = requests.post(f"{base.rstrip('/')}/callbacks/suno/lyrics", json=payload, headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach the relay at {base} ({type(exc).__name__}): is it running?") from None
    if response.status_code != 200:
        raise click.ClickException(f"the relay answered {response.status_code}: {response.text[:200]}")
    click.echo(f"sent example task {task_id}: {response.json()['status']} (status: {relay_command()} status {task_id})")


def _send_test_messages(settings: Settings) -> bool:
    from relay.suno import Event, Lyric, event_id, now_rfc3339
    from relay.targets import build_targets

    task_id = f"relay-check-{int(time.time())}"
    text = "[Test]\nThis is a test message from suno-relay's check command.\nIf you can read this, this target works."
    lyric = Lyric(title="suno-relay test message", text=text, status="complete", error="")
    event = Event(event_id(task_id, "test"), task_id, "test", 200, "test message", now_rfc3339(), (lyric,))
    failed = False
    for name, target in build_targets(settings).items():
        messages = target.render(event)
        outcome, sent = target.send_in_order(messages, event)
        if messages and sent == len(messages):
            click.echo(f"test message to {name}: ok ({outcome.reason})")
        else:
            failed = True
            click.echo(f"test message to {name}: FAILED ({outcome.reason if messages else 'nothing to send'})")
    return failed


def main() -> None:
    cli(prog_name="relay")


if __name__ == "__main__":
    main()
