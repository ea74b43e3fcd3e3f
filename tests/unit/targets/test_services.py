"""Every team's chat: Teams, Telegram, Google Chat, Mattermost and ntfy against local receivers
that check each service's documented shape, and Apprise through a real Apprise plugin.

For each native service: a seed callback, a failure callback, 15,000-character lyrics (every
line arrives, in order, every message within the service's limits), hostile titles and lyrics
(nobody pinged, shown as text), the service's rate-limit answer honoured, its answer that the
target is gone holding the delivery at once with the service's reason, ``check --send-test``; and the ``format``
option for every kind.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from relay import jobs
from relay.config import Settings
from relay.delivery.queue import delivery_queue
from relay.ingest import Ingest
from relay.store.state import DELIVERED, HELD, RETRYING, Store
from relay.suno import Event, Lyric, normalise
from relay.targets import KINDS
from relay.targets.base import shape
from tests.support import Received, Reply
from tests.support import run_cli as cli

TELEGRAM_TOKEN = "123456789:AAEsecretTELEGRAMtokenABCDEFGH"
HOSTILE_TITLE = "<!channel> @everyone <at>x</at> <b>bold</b> & *md* <users/all>"
HOSTILE_TEXT = "[Verse]\n@here <!here> <users/all> <at>boss</at>\n*star* _under_ ~wave~ ||spoiler|| # H\n<b>x</b> & y"


@dataclass
class Service:
    kind: str
    env: Callable[[str], dict[str, str]]  # receiver URL → environment
    visible: Callable[[Received], str]  # what a reader sees of one message
    within_limits: Callable[[Received], bool]
    limited: Reply  # the service's rate-limit answer
    least_wait: float  # seconds that answer asks for (0: the relay's backoff)
    refused: Reply  # a permanent failure
    reason: str  # what the dead letter must say


def strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text.replace("<br>", "\n")))


def unescape_markdown(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")


def teams_text(entry: Received) -> str:
    body = entry.json()["attachments"][0]["content"]["body"]
    return unescape_markdown("\n".join(block["text"] for block in body)).replace("  \n", "\n")


def googlechat_text(entry: Received) -> str:
    widgets = entry.json()["cardsV2"][0]["card"]["sections"][0]["widgets"]
    return "\n".join(strip_tags(widget["textParagraph"]["text"]) for widget in widgets)


SERVICES = [
    Service(
        "teams",
        lambda url: {"TEAMS_WEBHOOK_URL": url + "?sig=TEAMSsecretSIG123"},
        teams_text,
        lambda entry: len(entry.body) <= 20_000,
        Reply(429, "{}", {"Retry-After": "7"}),
        7.0,
        Reply(400, json.dumps({"error": {"code": "WorkflowTriggerIsNotEnabled", "message": "flow off"}})),
        "WorkflowTriggerIsNotEnabled",
    ),
    Service(
        "telegram",
        lambda url: {
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "TELEGRAM_CHAT_ID": "-1001234567890#topic=42",
            "TELEGRAM_API_BASE": url.rsplit("/hook", 1)[0],
        },
        lambda entry: strip_tags(entry.json()["text"]),
        lambda entry: 1 <= len(strip_tags(entry.json()["text"])) <= 4096,
        Reply(429, json.dumps({"ok": False, "error_code": 429, "parameters": {"retry_after": 9}})),
        9.0,
        Reply(
            403, json.dumps({"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
        ),
        "bot was blocked",
    ),
    Service(
        "googlechat",
        lambda url: {"GOOGLE_CHAT_WEBHOOK_URL": url + "?key=GCHATsecretKEY&token=GCHATsecretTOKEN"},
        googlechat_text,
        lambda entry: len(entry.body) <= 32_000,
        Reply(429, json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}})),
        0.0,
        Reply(403, json.dumps({"error": {"code": 403, "message": "The caller does not have permission"}})),
        "HTTP 403",
    ),
    Service(
        "mattermost",
        lambda url: {"MATTERMOST_WEBHOOK_URL": url.replace("/hook", "/hooks/MMsecretKEY123")},
        lambda entry: unescape_markdown(entry.json()["text"]),
        lambda entry: len(entry.json()["text"]) <= 16_383,
        Reply(429, "rate limited", {"Retry-After": "5"}),
        5.0,
        Reply(
            400, json.dumps({"id": "web.incoming_webhook.disabled.app_error", "message": "Incoming webhooks disabled"})
        ),
        "HTTP 400",
    ),
    Service(
        "ntfy",
        lambda url: {"NTFY_URL": url.replace("/hook", "/NTFYsecretTOPIC"), "NTFY_TOKEN": "tk_NTFYsecretTOKEN"},
        lambda entry: unescape_markdown(entry.body.decode()),
        lambda entry: len(entry.body) <= 4096,
        Reply(429, json.dumps({"code": 42908, "http": 429, "error": "daily quota reached"})),
        3600.0,
        Reply(403, json.dumps({"code": 40301, "http": 403, "error": "forbidden"})),
        "HTTP 403",
    ),
]
BY_KIND = {service.kind: service for service in SERVICES}
SECRETS = ["TEAMSsecretSIG123", "AAEsecretTELEGRAMtoken", "GCHATsecret", "MMsecretKEY123", "NTFYsecret"]


@pytest.fixture
def service_env(make_settings, redis_conn, receivers):
    def build(kind: str, receiver_reply: Reply | None = None):
        receiver = receivers(default=receiver_reply or Reply(200, "ok"))
        env = BY_KIND[kind].env(receiver.url)
        for key in env:  # pacing has tests of its own
            if key.endswith(("_URL", "_URLS")) and key != "TELEGRAM_API_BASE":
                env[key] += "#rate=1000/1s"
        if "TELEGRAM_CHAT_ID" in env:
            env["TELEGRAM_CHAT_ID"] += "&rate=1000/1s"
        settings = make_settings(**env)
        runtime = jobs.configure(settings, redis_conn)
        return runtime, receiver, env

    return build


def deliver(runtime, event: Event) -> str:
    assert Ingest(runtime.settings, runtime.redis, delivery_queue(runtime.settings, runtime.redis))(event)
    [name] = runtime.targets
    return jobs.deliver(event.id, name)


def lyrics_event(task_id: str, text: str, title: str = "Song") -> Event:
    return normalise(
        {
            "code": 200,
            "data": {
                "callbackType": "complete",
                "task_id": task_id,
                "data": [{"status": "complete", "title": title, "text": text}],
            },
        }
    )


def numbered_lyrics(chars: int) -> tuple[str, list[str]]:
    stanzas, markers, n = [], [], 0
    while sum(map(len, stanzas)) < chars:
        lines = []
        for _ in range(6):
            markers.append(f"L{n:04d}")
            lines.append(f"L{n:04d} la la la the night goes on and on and on")
            n += 1
        stanzas.append(f"[Verse {len(stanzas) + 1}]\n" + "\n".join(lines))
    return "\n\n".join(stanzas), markers


@pytest.mark.parametrize("kind", BY_KIND)
def test_seed_and_failure_callbacks(service_env, sample, kind) -> None:
    runtime, receiver, _ = service_env(kind)
    assert deliver(runtime, normalise(sample)) == "delivered"
    [entry] = receiver.received
    shown = BY_KIND[kind].visible(entry)
    assert "Starry Night Dreams" in (shown + json.dumps(entry.json() if kind != "ntfy" else dict(entry.headers)))
    assert "Moonlight spreads" in shown and BY_KIND[kind].within_limits(entry)
    failed = normalise({"code": 500, "msg": "Internal Error - Please try again later",
                        "data": {"callbackType": "error", "task_id": "failed-1"}})  # fmt: skip
    assert deliver(runtime, failed) == "delivered"
    shown = BY_KIND[kind].visible(receiver.received[-1])
    assert "Please try again later" in shown and "500" in shown


def renamed(sample: dict, task_id: str) -> Event:
    return normalise({**sample, "data": {**sample["data"], "task_id": task_id}})


def test_service_shapes_as_documented(service_env, sample) -> None:
    runtime, teams, _ = service_env("teams")
    deliver(runtime, renamed(sample, "teams"))
    body = teams.received[0].json()
    assert body["type"] == "message" and "entities" not in json.dumps(body)
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive" and attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2" and card["msteams"] == {"width": "full"}
    assert all(block["type"] == "TextBlock" and block["wrap"] is True for block in card["body"])

    runtime, telegram, _ = service_env("telegram")
    deliver(runtime, renamed(sample, "telegram"))
    entry = telegram.received[0]
    assert entry.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
    body = entry.json()
    assert body["chat_id"] == "-1001234567890" and body["message_thread_id"] == 42
    assert body["parse_mode"] == "HTML" and body["link_preview_options"] == {"is_disabled": True}
    assert body["text"].startswith("<b>Starry Night Dreams</b>")

    runtime, chat, _ = service_env("googlechat")
    deliver(runtime, renamed(sample, "chat"))
    deliver(runtime, lyrics_event("chat-2", "la"))
    entry = chat.received[0]
    assert "messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD" in entry.path
    body = entry.json()
    assert body["text"] and body["cardsV2"][0]["card"]["header"]["title"] == "Starry Night Dreams"
    assert body["thread"]["threadKey"] and body["thread"]["threadKey"] != chat.received[1].json()["thread"]["threadKey"]

    runtime, mattermost, _ = service_env("mattermost")
    deliver(runtime, renamed(sample, "mattermost"))
    assert mattermost.received[0].json()["text"].startswith("#### Starry Night Dreams")

    runtime, ntfy, _ = service_env("ntfy")
    deliver(runtime, renamed(sample, "ntfy"))
    headers = {k.lower(): v for k, v in ntfy.received[0].headers.items()}
    assert headers["title"] == "Starry Night Dreams" and headers["markdown"] == "yes"
    assert headers["authorization"] == "Bearer tk_NTFYsecretTOKEN" and headers["tags"] and headers["priority"]
    deliver(runtime, lyrics_event("unicode", "la", title="Nuit étoilée ✨"))
    title = {k.lower(): v for k, v in ntfy.received[-1].headers.items()}["title"]
    assert title.startswith("=?utf-8?") and "Nuit" not in title  # RFC 2047


@pytest.mark.parametrize("kind", BY_KIND)
def test_long_lyrics_arrive_whole_in_order_within_limits(service_env, kind) -> None:
    runtime, receiver, _ = service_env(kind)
    text, markers = numbered_lyrics(15_000)
    assert deliver(runtime, lyrics_event("long", text)) == "delivered"
    assert len(receiver.received) >= 1
    assert all(BY_KIND[kind].within_limits(entry) for entry in receiver.received)
    shown = "\n".join(BY_KIND[kind].visible(entry) for entry in receiver.received)
    assert re.findall(r"L\d{4}", shown) == markers  # every line, once, in order


@pytest.mark.parametrize("kind", BY_KIND)
def test_hostile_text_pings_nobody_and_shows_as_written(service_env, kind) -> None:
    runtime, receiver, _ = service_env(kind)
    assert deliver(runtime, lyrics_event("hostile", HOSTILE_TEXT, title=HOSTILE_TITLE)) == "delivered"
    raw = "".join(entry.body.decode() for entry in receiver.received)
    shown = "\n".join(BY_KIND[kind].visible(entry) for entry in receiver.received)
    for phrase in ("*star* _under_ ~wave~ ||spoiler||", "<b>x</b> & y", "<at>boss</at>"):
        assert phrase in shown.replace("\u200b", ""), (phrase, shown)
    if kind == "teams":
        assert "entities" not in raw and "<at>" not in raw
    if kind == "telegram":
        tags = set(re.findall(r"<[^>]*>", "".join(entry.json()["text"] for entry in receiver.received)))
        assert tags <= {"<b>", "</b>", "<i>", "</i>"}, tags
    if kind == "googlechat":
        for entry in receiver.received:
            body = entry.json()
            assert "<users/" not in body["text"] and "<users/" not in json.dumps(body["cardsV2"])
    if kind == "mattermost":
        text = "".join(entry.json()["text"] for entry in receiver.received)
        for ping in ("@here", "@everyone", "@channel", "@all", "<!here>", "<!channel>"):
            assert ping not in text, ping


@pytest.mark.parametrize("kind", BY_KIND)
def test_rate_limit_answer_is_honoured(service_env, kind) -> None:
    service = BY_KIND[kind]
    runtime, _receiver, _ = service_env(kind, receiver_reply=service.limited)
    event = lyrics_event("limited", "la")
    before = time.time()
    assert deliver(runtime, event).startswith("retrying")
    state = Store(runtime.redis, 3600).delivery(event.id, next(iter(runtime.targets)))
    assert state.state == RETRYING
    registry = runtime.queue.scheduled_job_registry
    [job_id] = registry.get_job_ids()
    due = runtime.redis.zscore(registry.key, job_id)
    assert due >= before + service.least_wait
    if not service.least_wait:
        assert due <= before + 5  # the relay's backoff (1 s in tests, jittered)


@pytest.mark.parametrize("kind", BY_KIND)
def test_an_answer_that_the_target_is_gone_holds_it_at_once_with_the_reason(service_env, kind) -> None:
    """The service's own "this webhook/flow/chat is gone": the breaker opens on the first answer
    and the delivery is held, not dead (it goes out when the target is back)."""
    service = BY_KIND[kind]
    runtime, receiver, _ = service_env(kind, receiver_reply=service.refused)
    event = lyrics_event("refused", "la")
    assert deliver(runtime, event) == "held"
    name = next(iter(runtime.targets))
    state = Store(runtime.redis, 3600).delivery(event.id, name)
    assert state.state == HELD and service.reason in state.reason and len(receiver.attempts) == 1
    breaker = runtime.breakers.status([name])[name]
    assert breaker.state == "open" and service.reason in breaker.reason and breaker.held == 1
    assert not any(secret in state.reason or secret in breaker.reason for secret in SECRETS)


def test_telegram_migrated_group_names_the_new_chat_id(service_env) -> None:
    description = "Bad Request: group chat was upgraded to a supergroup chat"
    migrated = {
        "ok": False,
        "error_code": 400,
        "description": description,
        "parameters": {"migrate_to_chat_id": -1009876543210},
    }
    runtime, _, _ = service_env("telegram", receiver_reply=Reply(400, json.dumps(migrated)))
    event = lyrics_event("migrated", "la")
    deliver(runtime, event)
    state = Store(runtime.redis, 3600).delivery(event.id, "telegram")
    assert state.state == HELD and "-1009876543210" in state.reason and "TELEGRAM_CHAT_ID" in state.reason


def test_ntfy_short_limit_is_retried_on_the_backoff(service_env) -> None:
    runtime, _, _ = service_env("ntfy", receiver_reply=Reply(429, json.dumps({"code": 42901, "http": 429})))
    event = lyrics_event("short", "la")
    before = time.time()
    deliver(runtime, event)
    registry = runtime.queue.scheduled_job_registry
    [job_id] = registry.get_job_ids()
    assert runtime.redis.zscore(registry.key, job_id) <= before + 5


@pytest.mark.parametrize("kind", BY_KIND)
def test_check_send_test_reaches_each_service(service_env, redis_url, kind) -> None:
    _, receiver, env = service_env(kind)
    from tests.conftest import TOKEN

    result = cli({**env, "REDIS_URL": redis_url, "RELAY_CALLBACK_TOKEN": TOKEN}, "check", "--send-test")
    assert "ok" in result.stdout and len(receiver.received) >= 1, result.stdout + result.stderr
    assert "test message from suno-relay" in BY_KIND[kind].visible(receiver.received[0])
    assert not any(secret in result.stdout + result.stderr for secret in SECRETS)


# Apprise, through its real json:// plugin against a local receiver.


def test_apprise_delivers_once_and_retries_failures(make_settings, redis_conn, receivers, sample) -> None:
    receiver = receivers(default=Reply(500, "down"))
    host_port = receiver.url.split("//", 1)[1].split("/", 1)[0]
    settings = make_settings(APPRISE_URLS=f"json://{host_port}/apprise-in#rate=1000/1s")
    runtime = jobs.configure(settings, redis_conn)
    event = normalise(
        {**sample, "data": {**sample["data"], "data": [{**sample["data"]["data"][0], "title": "@everyone <!channel>"}]}}
    )
    assert deliver(runtime, event).startswith("retrying")
    assert Store(runtime.redis, 3600).delivery(event.id, "apprise").state == RETRYING
    receiver.default = Reply(200, "ok")
    assert jobs.deliver(event.id, "apprise", attempt=2) == "delivered"
    assert jobs.deliver(event.id, "apprise", attempt=3) == "already delivered"
    [entry] = receiver.received
    body = entry.json()
    assert (
        "Moonlight spreads" in body["message"]
        and "@everyone" not in body["title"]
        and "<!channel>" not in body["title"]
    )
    assert Store(runtime.redis, 3600).delivery(event.id, "apprise").state == DELIVERED


def test_an_unknown_apprise_url_is_a_configuration_error(make_settings) -> None:
    from relay.config import ConfigError

    with pytest.raises(ConfigError, match="APPRISE_URLS entry 1"):
        make_settings(APPRISE_URLS="nosuchservice://x")


# The format option, for every kind.

FORMAT_KINDS = [
    "slack",
    "discord",
    "webhook",
    "console",
    "teams",
    "telegram",
    "googlechat",
    "mattermost",
    "ntfy",
    "apprise",
]


def spec_for(kind: str, fmt: str):
    env = {
        "slack": {"SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/T/B/X#format={fmt}"},
        "discord": {"DISCORD_WEBHOOK_URL": f"https://discord.com/api/webhooks/1/x#format={fmt}"},
        "webhook": {"RELAY_WEBHOOK_URL": f"https://example.org/in#format={fmt}"},
        "teams": {"TEAMS_WEBHOOK_URL": f"https://x.logic.azure.com/w?sig=s#format={fmt}"},
        "telegram": {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_CHAT_ID": f"-100123#format={fmt}"},
        "googlechat": {
            "GOOGLE_CHAT_WEBHOOK_URL": f"https://chat.googleapis.com/v1/spaces/A/messages?key=k#format={fmt}"
        },
        "mattermost": {"MATTERMOST_WEBHOOK_URL": f"https://mm.example.org/hooks/abc#format={fmt}"},
        "ntfy": {"NTFY_URL": f"https://ntfy.sh/topic#format={fmt}"},
        "apprise": {"APPRISE_URLS": f"json://127.0.0.1:9/x#format={fmt}"},
        "console": {},
    }[kind]
    [spec] = Settings.from_env({"RELAY_CALLBACK_TOKEN": "x" * 20, **env}).targets
    return spec


@pytest.mark.parametrize("kind", FORMAT_KINDS)
def test_brief_and_title_formats(kind) -> None:
    text, markers = numbered_lyrics(3000)
    event = lyrics_event("fmt", text, title="The Title")
    rendered = {}
    for fmt in ("full", "brief", "title"):
        spec = spec_for(kind, fmt) if kind != "console" else None
        if spec is None:
            from relay.config import TargetSpec

            spec = TargetSpec(kind="console", name="console", format=fmt)
        target = KINDS[kind](spec)
        rendered[fmt] = json.dumps(target.render(event), ensure_ascii=False).replace("\\\\", "")  # markdown escapes
    assert all(marker in rendered["full"] for marker in markers)
    brief = rendered["brief"]
    assert "L0000" in brief and "L0005" in brief and "L0006" not in brief  # the first stanza only
    assert f"{len(markers) - 6} more line(s)" in brief
    title = rendered["title"]
    assert "The Title" in title and "L0000" not in title
    assert len(title) < len(brief) < len(rendered["full"])


def test_shape_keeps_failures_whole() -> None:
    failed = Lyric(title="T", text="", status="failed", error="boom")
    event = Event("e", "t", "complete", 200, "", "2026-01-01T00:00:00Z", (failed,))
    assert shape(event, "title") == event and shape(event, "brief") == event
