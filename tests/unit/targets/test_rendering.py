"""Message formatting per service, and what each target makes of its service's answers."""

from __future__ import annotations

import json
import re
import time

import pytest
from standardwebhooks.webhooks import Webhook

from relay.config import TargetSpec
from relay.suno import Event, Lyric, normalise
from relay.targets import DiscordTarget, SlackTarget, WebhookTarget
from relay.targets.base import MAX_MESSAGES, chunk_text, parse_retry_after
from tests.support import Reply, example

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def spec(kind: str, url: str = "http://127.0.0.1:9/hook") -> TargetSpec:
    return TargetSpec(kind=kind, name=kind, url=url)


def event_with(text: str, title: str = "Song", extra: tuple[Lyric, ...] = ()) -> Event:
    lyric = Lyric(title=title, text=text, status="complete", error="")
    return Event("evt_1", "task1", "complete", 200, "ok", "2026-11-28T00:00:00.000Z", (lyric, *extra))


def long_lyrics(stanzas: int, lines: int = 8) -> str:
    return "\n\n".join(
        f"[Verse {s}]\n" + "\n".join(f"line {s}.{n} of a song that goes on and on" for n in range(lines))
        for s in range(stanzas)
    )


def slack_text(messages: list[dict]) -> str:
    return "\n".join(b["text"]["text"] for m in messages for b in m["blocks"] if b["type"] == "section")


def test_chunk_text_never_loses_a_character() -> None:
    text = long_lyrics(40) + "\n\n" + "x" * 7000 + " tail words here"
    pieces = chunk_text(text, 3000)
    assert all(len(piece) <= 3000 for piece in pieces)
    assert re.sub(r"\s", "", "".join(pieces)) == re.sub(r"\s", "", text)
    assert chunk_text("", 10) == [] and chunk_text("short", 10) == ["short"]


def test_slack_message_shape(sample: dict) -> None:
    [message] = SlackTarget(spec("slack")).render(normalise(sample))
    assert message["text"] == "New lyrics: Starry Night Dreams"
    blocks = message["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Starry Night Dreams"}}
    section = blocks[1]["text"]
    assert section["type"] == "mrkdwn" and section["text"].startswith("*Verse*\nMoonlight spreads")
    assert "*Verse 2*" in section["text"] and "*Chorus*" in section["text"]
    assert blocks[-1]["type"] == "context" and "3b66882fde0a5d398bd269cab6d9542b" in blocks[-1]["elements"][0]["text"]


def test_slack_escapes_provider_text() -> None:
    event = event_with("Hey <!channel> & <@U123> <https://x|y>", title="<!channel> & co")
    [message] = SlackTarget(spec("slack")).render(event)
    dumped = json.dumps(message)
    assert "<!channel>" not in dumped and "<@U123>" not in dumped
    assert message["blocks"][0]["text"]["text"] == "&lt;!channel&gt; &amp; co"
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in message["blocks"][1]["text"]["text"]


def test_slack_limits_and_nothing_cut() -> None:
    text = long_lyrics(600)  # ~190k characters: several messages of 50 blocks
    event = event_with(text, title="T" * 400)
    messages = SlackTarget(spec("slack")).render(event)
    assert 1 < len(messages) <= MAX_MESSAGES
    for message in messages:
        assert len(message["blocks"]) <= 50 and message["text"]
        for block in message["blocks"]:
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= 150
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
    assert messages[0]["blocks"][0]["text"]["text"].endswith("…")
    shown = slack_text(messages)
    assert shown.count("line ") == text.count("line ")
    assert "line 599.7 of a song" in shown


def test_hard_cap_says_so() -> None:
    slack = SlackTarget(spec("slack")).render(event_with(long_lyrics(9000)))
    assert len(slack) == MAX_MESSAGES
    assert "were not sent" in slack[-1]["blocks"][0]["text"]["text"]
    discord = DiscordTarget(spec("discord")).render(event_with(long_lyrics(600)))
    assert len(discord) == MAX_MESSAGES
    assert "were not sent" in discord[-1]["content"] and discord[-1]["allowed_mentions"] == {"parse": []}


def test_slack_failure_notices() -> None:
    failed = normalise({"code": 500, "msg": "Internal Error", "data": {"callbackType": "error", "task_id": "t"}})
    [message] = SlackTarget(spec("slack")).render(failed)
    assert message["text"].startswith("Lyrics generation failed: Internal Error (code 500)")
    assert message["blocks"][0]["text"]["text"] == "Lyrics generation failed"
    item = normalise({"code": 200, "msg": "", "data": {"task_id": "t", "data": [
        {"status": "failed", "error_message": "Sensitive <word>", "title": "Bad"}]}})  # fmt: skip
    [message] = SlackTarget(spec("slack")).render(item)
    assert message["blocks"][0]["text"]["text"] == "Failed: Bad"
    assert ":x: *Lyrics generation failed:* Sensitive &lt;word&gt;" in message["blocks"][1]["text"]["text"]


def test_discord_message_shape_and_no_mentions(sample: dict) -> None:
    sample["data"]["data"][0]["text"] += "\n@everyone <@123> @here"
    [message] = DiscordTarget(spec("discord")).render(normalise(sample))
    assert message["allowed_mentions"] == {"parse": []}
    [embed] = message["embeds"]
    assert embed["title"] == "Starry Night Dreams"
    assert embed["description"].startswith("**Verse**\nMoonlight")
    assert "3b66882fde0a5d398bd269cab6d9542b" in embed["footer"]["text"]


def test_discord_limits_and_nothing_cut() -> None:
    text = long_lyrics(100)
    messages = DiscordTarget(spec("discord")).render(event_with(text, title="T" * 300))
    assert len(messages) > 1
    for message in messages:
        assert message["allowed_mentions"] == {"parse": []}
        assert len(message["embeds"]) <= 10
        embeds = message["embeds"]
        total = sum(
            len(e.get("title", "")) + len(e["description"]) + len(e.get("footer", {}).get("text", "")) for e in embeds
        )
        assert total <= 6000
        assert "task1" in embeds[-1]["footer"]["text"]
        for embed in embeds:
            assert len(embed.get("title", "")) <= 256 and len(embed["description"]) <= 4096
    shown = "\n".join(e["description"] for m in messages for e in m["embeds"])
    assert shown.count("line ") == text.count("line ")
    assert len(messages[0]["embeds"][0]["title"]) == 256 and "title" not in messages[0]["embeds"][1]


def test_discord_failure_notice() -> None:
    failed = normalise({"code": 451, "msg": "Blocked content", "data": {"callbackType": "error", "taskId": "t"}})
    [message] = DiscordTarget(spec("discord")).render(failed)
    embed = message["embeds"][0]
    assert embed["title"] == "Lyrics generation failed" and "Blocked content (code 451)" in embed["description"]
    assert embed["color"] == 0xE74C3C


def test_webhook_is_signed_per_standard_webhooks(receivers, sample: dict) -> None:
    receiver = receivers()
    spec_ = TargetSpec(kind="webhook", name="webhook", url=receiver.url)
    target = WebhookTarget(spec_, secret=Webhook(SECRET)._whsecret)
    event = normalise(sample)
    [message] = target.render(event)
    assert target.send(message, event).ok
    [got] = receiver.received
    assert got.headers["webhook-id"] == event.id
    verified = Webhook(SECRET).verify(got.body, got.headers)
    assert verified == event.to_dict()
    tampered = got.body.replace(b"Starry", b"Sunny")
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(SECRET).verify(tampered, got.headers)


@pytest.mark.parametrize(
    ("reply", "ok", "permanent", "retry_after"),
    [
        (Reply(200, "ok"), True, False, None),
        (Reply(429, "rate_limited", {"Retry-After": "2"}), False, False, 2.0),
        (Reply(500, "oops"), False, False, None),
        (Reply(503, "busy", {"Retry-After": "7"}), False, False, 7.0),
        (Reply(408, "slow"), False, False, None),
        (Reply(404, "no_service"), False, True, None),
        (Reply(403, "action_prohibited"), False, True, None),
        (Reply(410, "channel_is_archived"), False, True, None),
        (Reply(400, "invalid_payload"), False, True, None),
        (Reply(302, "", {"Location": "/x"}), False, False, None),  # misconfigured: a counted failure
    ],
)
def test_slack_answers(receivers, reply, ok, permanent, retry_after) -> None:
    receiver = receivers()
    receiver.script.append(reply)
    outcome = SlackTarget(spec("slack", receiver.url)).send({"text": "x"}, event_with("x"))
    assert (outcome.ok, outcome.permanent, outcome.retry_after) == (ok, permanent, retry_after)
    assert outcome.invalid == (reply.body == "invalid_payload")  # the rest of the refusals: gone
    if not ok:
        assert str(reply.status) in outcome.reason and receiver.url not in outcome.reason


def test_discord_answers(receivers) -> None:
    receiver = receivers()
    receiver.script += [
        Reply(429, json.dumps({"message": "You are being rate limited.", "retry_after": 1.5, "global": False})),
        Reply(404, json.dumps({"message": "Unknown Webhook", "code": 10015})),
        Reply(204, ""),
    ]
    target = DiscordTarget(spec("discord", receiver.url))
    limited = target.send({"content": "x"}, event_with("x"))
    assert not limited.ok and not limited.permanent and limited.retry_after == 1.5
    gone = target.send({"content": "x"}, event_with("x"))
    assert gone.permanent and "Unknown Webhook (10015)" in gone.reason
    assert target.send({"content": "x"}, event_with("x")).ok


def test_unreachable_target_is_transient_and_hides_the_url() -> None:
    outcome = SlackTarget(spec("slack", "http://127.0.0.1:9/services/SECRET")).send({"text": "x"}, event_with("x"))
    assert not outcome.ok and not outcome.permanent and "SECRET" not in outcome.reason


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412475.0) == 5.0
    assert parse_retry_after("999999") == 3600.0 and parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("kind", ["slack", "discord", "webhook", "console"])
@pytest.mark.parametrize("poison", ["\n", "[", " ", "[]\n", "[a]\n\n", "[" + "a" * 59, " \t"])
def test_rendering_is_linear_in_hostile_text(kind: str, poison: str) -> None:
    """1 MB of newlines, brackets, spaces or tag-like lines renders in well under 100 ms a target
    (asserted 5× looser); a quadratic step took minutes."""
    from relay.targets import KINDS

    text = poison * (1_000_000 // len(poison))
    target = KINDS[kind](spec(kind))
    started = time.perf_counter()
    messages = target.render(event_with(f"a{text}b"))
    elapsed = time.perf_counter() - started
    print(f"{kind} {poison!r}: {elapsed * 1000:.0f} ms")
    assert messages and elapsed < 0.5


def test_section_labels_keep_blank_lines() -> None:
    from relay.targets.base import label_sections

    assert (
        label_sections("on the hill\n\n[Verse 2]\nla\n  [ ]  \n[x", "*") == "on the hill\n\n*Verse 2*\nla\n  [ ]  \n[x"
    )


# Issue 10: what chat shows. ---------------------------------------------------------------------


def failed_event(message: str, item_error: str = "") -> Event:
    items = (Lyric(title="T", text="", status="failed", error=item_error),) if item_error else ()
    return Event("evt_2", "task2", "error", 500, message, "2026-11-28T00:00:00.000Z", items)


def slack_limits_hold(messages: list[dict]) -> None:
    for message in messages:
        for block in message["blocks"]:
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= 150
            elif block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
            else:
                assert all(len(element["text"]) <= 3000 for element in block["elements"])


@pytest.mark.parametrize("event", [failed_event("m" * 5000), failed_event("boom", item_error="e " * 5000)])
def test_long_failure_notices_continue_within_limits(event: Event) -> None:
    slack = SlackTarget(spec("slack")).render(event)
    slack_limits_hold(slack)
    shown = slack_text(slack)
    long_part = "m" * 5000 if event.message != "boom" else ("e " * 5000).strip()
    assert shown.replace("\n", "").count("m" * 100) >= 49 or long_part.split()[0] in shown
    assert len(shown) >= 5000  # continued, not cut
    discord = DiscordTarget(spec("discord")).render(event)
    descriptions = [embed["description"] for message in discord for embed in message["embeds"]]
    assert all(len(description) <= 4096 for description in descriptions) and sum(map(len, descriptions)) >= 5000


@pytest.mark.parametrize("title", ["A" * 147 + "&&&&", "B" * 143 + "<<<", "&" * 200])
def test_slack_header_is_cut_on_what_a_reader_sees(title: str) -> None:
    [message] = SlackTarget(spec("slack")).render(event_with("la", title=title))
    header = message["blocks"][0]["text"]["text"]
    assert len(header) <= 150
    visible = header.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    assert "&" not in header.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")  # no broken entity
    assert title.startswith(visible.rstrip("…"))
    if len(title) + title.count("&") * 4 + title.count("<") * 3 > 150:
        assert header.endswith("…")


def test_long_lyrics_are_cut_between_stanzas_keeping_labels_and_blank_lines() -> None:
    stanzas = [f"[Verse {n}]\n" + "\n".join(f"line {n}.{i} " + "la " * 25 for i in range(6)) for n in range(28)]
    text = "\n\n".join(stanzas)
    assert 14000 < len(text) < 16000
    sections = [s for s in slack_text(SlackTarget(spec("slack")).render(event_with(text))).split("\n")]
    pieces = [
        b["text"]["text"]
        for m in SlackTarget(spec("slack")).render(event_with(text))
        for b in m["blocks"]
        if b["type"] == "section"
    ]
    assert len(pieces) > 1 and sections
    for piece in pieces:
        assert piece.startswith("*Verse "), piece[:40]  # every section starts a stanza
        assert not piece.rstrip().split("\n")[-1].startswith("*Verse")  # no orphaned label
        assert "\n\n*Verse" in piece or piece.count("*Verse") == 1  # the blank line before a label kept
    discord = DiscordTarget(spec("discord")).render(event_with(text))
    for description in (e["description"] for m in discord for e in m["embeds"]):
        assert description.startswith("**Verse ")


def test_discord_shows_markdown_as_written() -> None:
    text = "*star* _under_ ~wave~ ||spoiler|| `code`\n# H\n> quote"
    [message] = DiscordTarget(spec("discord")).render(event_with(text, title="**bold** title"))
    embed = message["embeds"][0]
    assert embed["description"] == "\\*star\\* \\_under\\_ \\~wave\\~ \\|\\|spoiler\\|\\| \\`code\\`\n\\# H\n\\> quote"
    assert embed["title"] == "\\*\\*bold\\*\\* title"


def test_a_target_answer_never_carries_the_url_secret(receivers) -> None:
    receiver = receivers(
        default=Reply(404, json.dumps({"path": "/webhook/SECRETxyz123/TOKEN987654", "q": "k=SIGabc123"}))
    )
    secret_url = receiver.url.replace("/hook", "/webhook/SECRETxyz123/TOKEN987654") + "?sig=SIGabc123"
    for cls in (SlackTarget, DiscordTarget, WebhookTarget):
        outcome = cls(TargetSpec(kind=cls.kind, name="t", url=secret_url)).send({"text": "x"}, event_with("la"))
        assert not outcome.ok and outcome.permanent and "404" in outcome.reason
        for part in ("SECRETxyz123", "TOKEN987654", "SIGabc123"):
            assert part not in outcome.reason, outcome.reason


def sixty_songs(page: str = "") -> dict:

    body = example("music-complete")
    song = body["data"]["data"][0]
    body["data"]["data"] = [{**song, "id": f"song-{n}", "title": f"Song number {n}"} for n in range(60)]
    return body


@pytest.mark.parametrize("kind", ["slack", "discord", "teams", "telegram", "googlechat", "mattermost", "ntfy"])
def test_many_songs_are_never_cut_silently(kind: str) -> None:
    """60 songs: the cards a message of the service holds, then one saying how many were left
    out (with the task's page where the page is on), and the footer kept."""
    from relay.suno import NORMALISERS
    from relay.targets import KINDS

    event = NORMALISERS["music"](sixty_songs())
    extra = {"chat_id": "-1001"} if kind == "telegram" else {}
    target = KINDS[kind](TargetSpec(kind=kind, name=kind, url="https://example.org/hook", extra=extra))
    target.page_base = "https://relay.example/ui/tasks/"
    messages = target.render(event)
    text = json.dumps(messages, ensure_ascii=False)
    shown = target.max_cards - 1
    assert f"… and {60 - shown} more songs" in text, kind
    assert "https://relay.example/ui/tasks/" + event.task_id in text
    assert re.search(rf"Song number {shown - 1}(?!\d)", text) and not re.search(rf"Song number {shown}(?!\d)", text)
    assert event.task_id in text.rsplit("more songs", 1)[1]  # the footer, after the note
    assert "expire" in text
    if kind == "slack":
        assert all(len(message["blocks"]) <= 50 for message in messages)
    if kind == "discord":
        assert all(len(message["embeds"]) <= 10 for message in messages)
