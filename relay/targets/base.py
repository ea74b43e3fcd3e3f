"""What every target shares: rendering an event into messages, posting them, and reading the answer.

A target knows nothing of Flask, Redis or RQ. It turns an :class:`~relay.suno.Event` into one or
more JSON messages (:meth:`Target.render`) and posts one message (:meth:`Target.send`), returning
an :class:`Outcome` that says whether to stop, retry (and not before when) or give up.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from relay.delivery import http
from relay.delivery.http import Answer
from relay.suno import Event, Lyric
from relay.suno.cards import (  # noqa: F401 - the targets' vocabulary, owned by relay.suno
    FILES_EXPIRE,
    KIND_TITLES,
    STAGES,
    Card,
    cards,
    duration_text,
    failure_text,
    files_note,
)
from relay.suno.event import RELAY
from relay.targets.spec import (
    COMMON_OPTIONS,
    ConfigError,
    TargetSpec,
    Variable,
    build_spec,
    entries,
    parse_options,
)
from relay.targets.template import TemplateFailed

log = logging.getLogger("relay.jobs")
# Nothing is cut silently: past this many messages for one event, the last message says how much
# was left out. 20 Slack messages hold ~3 MB of text, far beyond any lyrics.
MAX_MESSAGES = 20
MAX_RETRY_AFTER = 3600.0
# URL parts shorter than this are words ("api", "hooks"), not credentials, and are left as they are.
MIN_SECRET = 6
_WORD = re.compile(r"[a-z]{1,10}")  # "services", "webhooks": a path's words, not a credential
# A `[Tag]` alone on its line, at most 60 characters (a longer one is lyrics, not a label).
# Every quantifier is bounded or followed by a disjoint class: matching is linear in the text.
_SECTION_TAG = re.compile(r"^[ \t]*\[[ \t]*([^\[\]\s](?:[^\[\]\n]{0,58}[^\[\]\s])?)[ \t]*\][ \t]*$", re.MULTILINE)
_NEWLINES = re.compile(r"\n*")


# Answers that say the target is not there (its breaker opens at once), and answers that say the
# payload is wrong (a relay bug: that delivery is dead, the target is fine).
GONE_STATUSES = frozenset({401, 403, 404, 410})
INVALID_STATUSES = frozenset({400, 413, 422})


@dataclass(frozen=True)
class Outcome:
    """The result of one POST. ``reason`` is short and never holds the URL or a secret."""

    ok: bool
    reason: str = ""
    status: int | None = None
    permanent: bool = False  # trying again will not help: the target is gone, or refuses the payload
    retry_after: float | None = None  # seconds the target asked us to wait
    gone: bool = False  # the target says it is not there (404, a revoked token): its breaker opens
    missing: bool = False  # stages=live: the message to edit was deleted (post a new one)
    setup: bool = False  # refused for good by how the target is set up (a bot not in the channel): no bug

    @property
    def invalid(self) -> bool:
        """The target refuses this payload (400/413/422): a relay bug, dead at once, no count."""
        return self.permanent and not self.gone

    @classmethod
    def delivered(cls, status: int) -> Outcome:
        return cls(ok=True, reason=f"HTTP {status}", status=status)


class Target:
    """Base of every target. Subclasses set ``kind`` and implement :meth:`render_event`; they may
    override :meth:`encode` (a body that is not JSON), :meth:`url_for`, :meth:`classify` and
    :meth:`omitted` (the note that ends an event too long for :data:`MAX_MESSAGES`)."""

    kind: ClassVar[str] = ""

    # What the configuration knows of this kind (relay.config asks the registry, relay.targets):
    # the variable listing its targets (comma-separated), the other variables it reads, its
    # default `rate`, the hosts its URLs have (a warning otherwise), its own options after '#',
    # and whether it gets every event by default (progress stages too) or what a person reads.
    variable: ClassVar[str] = ""
    other_variables: ClassVar[tuple[Variable, ...]] = ()
    default_rate: ClassVar[tuple[int, float]] = (1, 1.0)
    expected_hosts: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[frozenset[str]] = frozenset()
    every_event: ClassVar[bool] = False
    live_capable: ClassVar[bool] = False  # can edit a message it sent: `stages=live` (send_live)

    @classmethod
    def variables(cls) -> tuple[Variable, ...]:
        """Every setting of this kind, for the configuration's registry of known variables."""
        return ((Variable(cls.variable, deploy=True, secret=True),) if cls.variable else ()) + cls.other_variables

    @classmethod
    def specs(cls, env: Mapping[str, str]) -> list[TargetSpec]:
        """This kind's targets in ``env``: one per entry of :attr:`variable`, options after '#'."""
        found = []
        for position, entry in enumerate(entries(env, cls.variable) if cls.variable else [], start=1):
            where = f"{cls.variable} entry {position}"
            parts = urlsplit(entry)
            cls.check_url(entry, parts, where)
            options = parse_options(parts.fragment, where, COMMON_OPTIONS | cls.options)
            url = urlunsplit(parts._replace(fragment=""))
            extra = cls.extra_of(env, options, where)
            found.append(
                build_spec(
                    cls.kind, position, where, options, url, extra, cls.default_rate, cls.every_event, cls.live_capable
                )
            )
        return found

    @classmethod
    def check_url(cls, entry: str, parts: Any, where: str) -> None:
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"{where} is not an http(s) URL")

    @classmethod
    def extra_of(cls, env: Mapping[str, str], options: Mapping[str, str], where: str) -> dict[str, str]:
        """Kind-specific values a target carries besides its URL (a token, a chat id)."""
        return {}

    @classmethod
    def check_environment(cls, env: Mapping[str, str], specs: list[TargetSpec]) -> None:
        """A setting of this kind that makes no sense as given (a secret without its target)."""

    @classmethod
    def where(cls, spec: TargetSpec) -> str:
        """Where it posts, as ``check`` shows it: the host only (the rest of a URL is a secret)."""
        return urlsplit(spec.url).hostname or "?"

    # Cards one message of this service shows with room to spare (its block, embed or size
    # limits); more become a last card saying how many were left out (fit_cards), never a cut.
    max_cards = 20
    # "<RELAY_PUBLIC_URL>/ui/tasks/" when the operator's page is on (build_targets sets it).
    page_base = ""

    def __init__(self, spec: TargetSpec, *, timeout: float = 10.0, client: http.Client | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.timeout = timeout  # the whole POST, connect to last byte of the answer
        self.client = client or http.Client()
        self.secrets = secret_parts(spec.url)

    def __repr__(self) -> str:  # never show the URL
        return f"<{type(self).__name__} {self.name}>"

    def render(self, event: Event) -> list[dict[str, Any]]:
        """The messages for ``event``, in the target's ``format`` (full, brief or title), or as
        its ``template=`` says (falling back to those when the template fails on this event)."""
        if event.kind == RELAY:
            return self.render_alert(event)
        if self.spec.template is not None:
            try:
                text = self.spec.template.render(event)
            except TemplateFailed as exc:
                log.warning("template failed; sent the relay's own message", extra={"target": self.name,
                            "event_id": event.id, "reason": str(exc)})  # fmt: skip
            else:
                messages = self.render_templated(event, text)
                return limit_messages(messages, self.omitted) if len(messages) > MAX_MESSAGES else messages
        shaped = shape(event, self.spec.format)
        if shaped.kind == "lyrics":
            messages = self.render_event(shaped)
        else:
            noun = "song" if shaped.kind == "music" else "item"
            found = fit_cards(cards(shaped), self.max_cards, self.page_url(shaped), noun)
            messages = self.render_cards(shaped, found)
        return limit_messages(messages, self.omitted) if len(messages) > MAX_MESSAGES else messages

    def render_templated(self, event: Event, text: str) -> list[dict[str, Any]]:
        """A template's ``text`` as the message after the relay's title: shown as one lyric of
        that title, so the kind escapes it for its service, splits it within its limits and adds
        its structure (title, footer) as for any lyrics."""
        title = templated_title(event)
        item = Lyric(title=title, text=text, status="complete", error="")
        stand_in = dataclasses.replace(event, kind="lyrics", lyrics=(item,), tracks=(), files=(), instruments=())
        return self.render_event(stand_in)

    def page_url(self, event: Event) -> str:
        """The task's page on the operator's page, when it is on and the relay knows its URL."""
        return f"{self.page_base}{quote(event.task_id, safe='')}" if self.page_base else ""

    def render_alert(self, event: Event) -> list[dict[str, Any]]:
        """The relay's own alert (a target paused or resumed) as one short notice."""
        return [self.notice(alert_text(event))]

    def notice(self, text: str) -> dict[str, Any]:
        """One short plain-text message. Kinds override it with their simplest message; this
        default shows the text as a titled item, which every kind renders."""
        item = Lyric(title=text, text="", status="complete", error="")
        stand_in = Event(id="", task_id="suno-relay", callback_type="alert", code=None, message="", received_at="")
        return self.render_event(dataclasses.replace(stand_in, lyrics=(item,)))[0]

    def render_cards(self, event: Event, found: list[Card]) -> list[dict[str, Any]]:
        """Songs and files (not lyrics): targets that show them as cards override this."""
        return self.render_event(event)

    def render_event(self, event: Event) -> list[dict[str, Any]]:
        raise NotImplementedError

    def omitted(self, count: int) -> dict[str, Any]:
        """The last message when ``count`` more were left out (targets that split override it)."""
        raise NotImplementedError(f"{self.kind} renders one message per event")

    def headers(self, body: bytes, event: Event) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": "suno-relay"}

    def encode(self, message: dict[str, Any], event: Event) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        return body, self.headers(body, event)

    def url_for(self, message: dict[str, Any]) -> str:
        return self.spec.url

    def send_in_order(
        self,
        messages: list[dict[str, Any]],
        event: Event,
        sent: int = 0,
        before_each: Callable[[int, str], None] = lambda sent, thread: None,
        thread: str = "",
    ) -> tuple[Outcome, int]:
        """Post ``messages[sent:]`` in order until one is refused; the last answer and how many
        were accepted. ``before_each(sent, thread)`` runs before every post (a delivery paces,
        records progress and may stop there by raising); ``check`` sends its test message with
        none. ``thread``: where the messages after the first go, for kinds that thread them
        (the first message's id, once it is posted)."""
        outcome = Outcome(ok=True, reason="nothing left to send")
        while sent < len(messages):
            before_each(sent, thread)
            outcome, thread = self.send_threaded(messages[sent], event, thread)
            if not outcome.ok:
                break
            sent += 1
        return outcome, sent

    def send_threaded(self, message: dict[str, Any], event: Event, thread: str) -> tuple[Outcome, str]:
        """Post one message of an event; kinds that thread the rest under the first override it
        (the outcome, and the thread from then on)."""
        return self.send(message, event), thread

    def send(self, message: dict[str, Any], event: Event) -> Outcome:
        return self.exchange(self.url_for(message), message, event)[0]

    def exchange(
        self, url: str, message: dict[str, Any], event: Event, method: str = "POST"
    ) -> tuple[Outcome, Answer | None]:
        """Send ``message`` to ``url``: the outcome, and the answer when there was one."""
        body, headers = self.encode(message, event)
        try:
            answer = http.post(self.client, url, body, headers, deadline=self.timeout, method=method)
        except http.DeadlinePassed:
            return Outcome(ok=False, reason=f"timeout (no complete answer within {self.timeout:g}s)"), None
        except http.PostFailed as exc:
            # Its kind only: the underlying error's text would include the URL, a secret.
            return Outcome(ok=False, reason=f"{'timeout' if exc.timeout else 'connection error'} ({exc.kind})"), None
        outcome = self.classify(answer)
        # The answer is the target's text: it may echo the URL (a 404 body with the path, say).
        return dataclasses.replace(outcome, reason=scrub(outcome.reason, self.secrets)), answer

    def send_live(self, message: dict[str, Any], event: Event, message_id: str) -> tuple[Outcome, str, bool]:
        """``stages=live`` (:mod:`relay.delivery.live`): edit message ``message_id`` to show
        ``message``, or post it when there is none yet or it was deleted. The outcome, the id of
        the message that shows it, and whether that was an edit."""
        if message_id:
            outcome = self.edit(message_id, message, event)
            if not outcome.missing:
                return outcome, message_id, True
        outcome, new_id = self.post_live(message, event)
        if outcome.ok and not new_id:
            return Outcome(ok=False, reason="the service did not say which message it posted"), "", False
        return outcome, new_id, False

    def post_live(self, message: dict[str, Any], event: Event) -> tuple[Outcome, str]:
        """Post a live message: the outcome and the new message's id (kinds that can edit)."""
        raise NotImplementedError(f"{self.kind} cannot edit its messages")

    def edit(self, message_id: str, message: dict[str, Any], event: Event) -> Outcome:
        """Replace the content of message ``message_id``; ``missing`` when it was deleted."""
        raise NotImplementedError(f"{self.kind} cannot edit its messages")

    def classify(self, response: Answer) -> Outcome:
        """Read the target's answer. Subclasses add what their service says in the body."""
        status = response.status_code
        if 200 <= status < 300:
            return Outcome.delivered(status)
        detail = self.describe_error(response)
        reason = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429 or status == 408 or status >= 500:
            return Outcome(ok=False, reason=reason, status=status, retry_after=self.retry_after(response))
        if status in GONE_STATUSES:
            return Outcome(ok=False, reason=reason, status=status, permanent=True, gone=True)
        if status in INVALID_STATUSES:
            return Outcome(ok=False, reason=reason, status=status, permanent=True)
        # Other 4xx (and 3xx: a webhook that redirects is misconfigured): a failure, counted.
        return Outcome(ok=False, reason=reason, status=status)

    def describe_error(self, response: Answer) -> str:
        return short_text(response.text)

    def retry_after(self, response: Answer) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"))


def answer_fields(answer: Answer | None) -> dict[str, Any]:
    """A service's JSON answer as an object; {} for no answer, not JSON, or not an object."""
    try:
        body = answer.json() if answer is not None else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def templated_title(event: Event) -> str:
    """The relay's title above a template's text: the first lyric's or song's title, else what
    the event is ("Suno music task failed")."""
    titles = [item.title for item in event.lyrics if item.title] + [
        track.title for track in event.tracks if track.title
    ]
    if titles:
        return titles[0]
    return f"Suno {event.kind} task {'failed' if event.failed else event.callback_type}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (``"2"``, ``"1.5"``) or an HTTP date; capped, never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def secret_parts(url: str) -> list[str]:
    """Every part of a target's URL that could be a credential: path segments, query values,
    user info, and the URL itself, each also percent-encoded. Longest first, for :func:`scrub`."""
    if not url:
        return []
    parts = urlsplit(url)
    found = {url, parts.path, parts.query, parts.netloc if "@" in parts.netloc else ""}
    found.update(segment for segment in parts.path.split("/") if len(segment) >= MIN_SECRET)
    found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True) if len(value) >= MIN_SECRET)
    found.update(unquote(part) for part in list(found))
    found.update(quote(part, safe="") for part in list(found))
    return sorted(
        (part for part in found if len(part) >= MIN_SECRET and not _WORD.fullmatch(part)), key=len, reverse=True
    )


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret part replaced by ``[redacted]``."""
    for part in secrets:
        if part in text:
            text = text.replace(part, "[redacted]")
    return text


def short_text(text: str, limit: int = 120) -> str:
    """A one-line excerpt of a target's answer, safe to log."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def chunk_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at the widest boundary that fits:
    blank lines (stanzas) first, then lines, then spaces, then anywhere. Nothing is dropped."""
    text = text.strip("\n")
    pieces: list[str] = []
    start, end = 0, len(text)
    while end - start > limit:
        cut = -1
        for separator in ("\n\n", "\n", " "):
            cut = text.rfind(separator, start, start + limit + 1)
            if cut > start:
                break
        if cut <= start:  # no boundary at all: cut anywhere, but not inside an HTML entity (`&amp;`)
            cut = start + limit
            amp = text.rfind("&", max(start, cut - 7), cut)
            if amp > start and ";" not in text[amp:cut]:
                cut = amp
            pieces.append(text[start:cut])
            start = cut
            continue
        pieces.append(text[start:cut].rstrip())
        start = _NEWLINES.match(text, cut + 1).end()  # type: ignore[union-attr]  # `\n*` always matches
    if text[start:].strip():
        pieces.append(text[start:])
    return [piece for piece in pieces if piece.strip()]


def label_sections(text: str, bold: str, closing: str | None = None) -> str:
    """``[Verse 2]`` alone on a line → the service's bold label (``*Verse 2*`` / ``**Verse 2**``).

    Linear in the text whatever it holds: the padding around a tag is ``[ \\t]*``, never ``\\s*``,
    which would match newlines and backtrack over every run of blank lines (and drop them)."""
    after = bold if closing is None else closing
    return _SECTION_TAG.sub(lambda match: bold + match[1] + after, text)


def alert_text(event: Event) -> str:
    """What a person reads of an alert: "⚠ slack-2 paused: HTTP 404 — 12 deliveries held"."""
    facts = dict(event.notice)
    target, held = facts.get("target", "?"), int(facts.get("held", 0))
    if event.type == "relay.target.paused":
        return f"⚠ {target} paused: {facts.get('reason', '')} — {held} deliveries held"
    return f"✓ {target} resumed — {held} held deliveries going out"


def truncate(text: str, limit: int, escape: Callable[[str], str] | None = None) -> str:
    """For titles only (lyrics are never truncated): a visible ellipsis marks the cut. With
    ``escape``, the escaped text fits ``limit``, and the cut falls between the characters a
    reader sees, never inside an escape (``&amp;``)."""
    if escape is None:
        return text if len(text) <= limit else text[: limit - 1] + "…"
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    size, kept = 1, 0  # the ellipsis
    for char in text:
        size += len(escape(char))
        if size > limit:
            break
        kept += 1
    return escape(text[:kept]) + "…"


def fit_cards(found: list[Card], most: int, page: str = "", noun: str = "item") -> list[Card]:
    """At most ``most`` cards: past that, the first ``most - 1`` and a card saying how many songs
    (or items) were left out, with the task's page where there is one. The footer (task id, the
    files-expire note) is each target's own and stays."""
    if len(found) <= most:
        return found
    shown = found[: most - 1]
    left = len(found) - len(shown)
    links = (("All of them on the relay's page", page),) if page else ()
    return [*shown, Card(title=f"… and {left} more {noun}{'s' if left != 1 else ''}", links=links)]


def markdown_link(label: str, url: str) -> str:
    """``[label](url)``; the door let through no space, quote or angle bracket, parentheses are encoded."""
    return f"[{label}]({url.replace('(', '%28').replace(')', '%29')})"


OMITTED_NOTE = "⚠️ {count} more message(s) of lyrics were not sent: they exceed the relay's limit."


def shape(event: Event, fmt: str) -> Event:
    """The event as a target's ``format`` shows it: ``full`` (everything), ``brief`` (each item's
    first stanza and how many lines follow) or ``title`` (titles only: empty texts)."""
    if fmt == "full":
        return event
    items = []
    for item in event.lyrics:
        if not item.ok:
            items.append(item)
            continue
        if fmt == "title":
            items.append(dataclasses.replace(item, text=""))
            continue
        text = item.text.strip("\n")
        first, _, rest = text.partition("\n\n")
        more = len([line for line in rest.splitlines() if line.strip() and not _SECTION_TAG.fullmatch(line)])
        note = f"\n\n… {more} more line(s)" if more else ""
        items.append(dataclasses.replace(item, text=first + note))
    return dataclasses.replace(event, lyrics=tuple(items))


def limit_messages(messages: list[Any], omitted_note: Any) -> list[Any]:
    """Cap the number of messages; the caller's ``omitted_note(n)`` becomes the last message."""
    if len(messages) <= MAX_MESSAGES:
        return messages
    kept = messages[: MAX_MESSAGES - 1]
    return [*kept, omitted_note(len(messages) - len(kept))]
