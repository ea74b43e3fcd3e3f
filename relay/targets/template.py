"""Messages shaped by the operator: ``template=<name>`` on a target, its source in
``RELAY_TEMPLATE_<NAME>`` (the name upper-cased, ``-`` as ``_``).

Liquid, through python-liquid: made for authors who are not trusted, it runs no code and sees
only the values it is given. Here those are plain JSON values (the normalised event, every field
present, and the helpers below), never a Python object, so no attribute of one can be reached;
an undefined variable, an unknown filter or tag is an error; ``include`` and ``render`` do not
exist (there is no file to read). Every render is bounded: :data:`LOOP_LIMIT` loop iterations
and :data:`OUTPUT_LIMIT` characters of output.

Each template is parsed and rendered when the configuration is read (web, worker, ``check``),
against every example in ``examples/`` of the event types its target receives: a problem is a
configuration error naming the variable, the line and the engine's first line. A render that
fails later (data the examples did not have) falls back to the target's own message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import liquid
from liquid import StrictUndefined

from relay.suno.event import Event
from relay.targets.spec import ConfigError

LOOP_LIMIT = 100_000
OUTPUT_LIMIT = 256 * 1024  # characters: the longest lyrics fit many times over
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def variable_of(name: str) -> str:
    """``RELAY_TEMPLATE_<NAME>`` for a ``template=<name>``."""
    return "RELAY_TEMPLATE_" + name.upper().replace("-", "_")


def first_stanza(text: object) -> str:
    """A lyric's first stanza (up to its first blank line)."""
    return str(text).strip("\n").partition("\n\n")[0]


def as_json(value: object) -> str:
    """A value as a JSON literal: ``"a \\"quoted\\" title"``, ``[1, 2]``, ``null``."""
    return json.dumps(value, ensure_ascii=False)


class _Environment(liquid.Environment):
    loop_iteration_limit = LOOP_LIMIT
    output_stream_limit = OUTPUT_LIMIT
    context_depth_limit = 8
    local_namespace_limit = OUTPUT_LIMIT


def _environment() -> liquid.Environment:
    env = _Environment(undefined=StrictUndefined)
    for tag in ("include", "render"):  # no file is ever read
        env.tags.pop(tag, None)
    env.filters["json"] = as_json
    env.filters["first_stanza"] = first_stanza
    return env


ENVIRONMENT = _environment()


def context(event: Event) -> dict[str, Any]:
    """What a template sees: the normalised event as plain JSON values, every field present
    (``kind`` on lyrics events, empty lists where the kind has none), ``title`` (the first
    lyric's or song's), and each lyric's ``first_stanza``."""
    body = json.loads(event.to_json())
    body.setdefault("kind", event.kind)
    for field in ("lyrics", "tracks", "files", "instruments"):
        body.setdefault(field, [])
    body.setdefault("voice", {})
    for item in body["lyrics"]:
        item["first_stanza"] = first_stanza(item["text"])
    titles = [item["title"] for item in [*body["lyrics"], *body["tracks"]] if item.get("title")]
    body["title"] = titles[0] if titles else ""
    return body


class TemplateFailed(Exception):
    """A render that failed: the one-line reason, naming the variable and the line."""


@dataclass(frozen=True)
class MessageTemplate:
    name: str
    source: str
    parsed: Any

    @property
    def variable(self) -> str:
        return variable_of(self.name)

    def render(self, event: Event) -> str:
        try:
            return str(self.parsed.render(**context(event)))
        except liquid.exceptions.LiquidError as exc:
            raise TemplateFailed(describe(self.variable, self.source, exc)) from None


def describe(variable: str, source: str, exc: Exception) -> str:
    """``RELAY_TEMPLATE_X: line 3: 'nope' is undefined``: the engine's first line only."""
    token = getattr(exc, "token", None)
    start = getattr(token, "start_index", -1) if token is not None else -1
    line = source.count("\n", 0, start) + 1 if start is not None and start >= 0 else source.count("\n") + 1
    said = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{variable}: line {line}: {said}"


def examples_for(wants: Callable[[str], bool]) -> list[Event]:
    """Every example callback whose event type the target receives, normalised."""
    from relay.suno import NORMALISERS

    found = []
    for path in sorted(EXAMPLES.glob("*.json")):
        kind = path.stem.split("-")[0]
        normaliser = NORMALISERS.get(kind)
        if normaliser is None:
            continue
        event = normaliser(json.loads(path.read_text()))
        if wants(event.type):
            found.append(event)
    return found


def load(name: str, env: dict[str, str] | Any, wants: Callable[[str], bool], json_body: bool) -> MessageTemplate:
    """Parse ``RELAY_TEMPLATE_<NAME>`` and render it against the examples; ConfigError, one line."""
    variable = variable_of(name)
    source = env.get(variable)
    if source is None or not source.strip():
        raise ConfigError(f"{variable} is not set (a target names template={name})")
    try:
        parsed = ENVIRONMENT.from_string(source)
    except liquid.exceptions.LiquidError as exc:
        raise ConfigError(describe(variable, source, exc)) from None
    template = MessageTemplate(name, source, parsed)
    for event in examples_for(wants):
        try:
            rendered = template.render(event)
        except TemplateFailed as exc:
            raise ConfigError(f"{exc} (rendering examples/ for {event.type})") from None
        if json_body:
            try:
                json.loads(rendered)
            except ValueError as exc:
                raise ConfigError(
                    f"{variable}: a webhook template must give JSON; for {event.type} it gave none ({exc})"
                ) from None
    return template
