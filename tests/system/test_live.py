"""`stages=live` (issue 25) through the real web and worker processes: a music task's stages as
one message per live target, posted at the first stage and edited at each later one, ending as
the card a target without the option gets; on a Discord webhook and a Telegram bot, both served
by local stand-ins that record every post and edit (tests/chats.py)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import requests

from tests.chats import ChatService
from tests.conftest import TOKEN
from tests.support import Procfile, example

TELEGRAM_TOKEN = "123456789:AAE-live-stages-test-token-0123456789"
LIVE_CHAT, PLAIN_CHAT = "-1001", "-1002"


class Live:
    def __init__(self, procfile: Procfile, chat: ChatService) -> None:
        self.procfile, self.chat = procfile, chat

    def stage(self, name: str, task_id: str) -> dict:
        payload = example(f"music-{name}")
        payload["data"]["task_id"] = task_id
        answer = requests.post(
            f"{self.procfile.base_url}/callbacks/suno/music", params={"token": TOKEN}, json=payload, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def settled(self, task_id: str, timeout: float = 60, ends: frozenset = frozenset({"delivered"})) -> dict:
        """Wait until every delivery of the task is settled (delivered, or one of ``ends``); its status."""
        deadline = time.monotonic() + timeout
        status: dict = {}
        while time.monotonic() < deadline:
            answer = requests.get(f"{self.procfile.base_url}/tasks/{task_id}", headers={"X-Relay-Token": TOKEN},
                                  timeout=10)  # fmt: skip
            if answer.status_code == 200:
                status = answer.json()
                states = [target["state"] for event in status["events"] for target in event["targets"].values()]
                if states and set(states) <= ends:
                    return status
            time.sleep(0.1)
        raise AssertionError(f"not settled: {json.dumps(status)[:2000]}")

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            time.sleep(0.05)
        assert condition()

    def shows_the_completed_card(self) -> None:
        """The live Discord and Telegram messages show what the plain targets were sent."""
        [discord_live] = self.chat.posted("1") or [""]
        [plain_discord] = self.chat.posted("2")
        assert self.chat.messages[discord_live] == self.chat.messages[plain_discord]
        [telegram_live] = self.chat.posted(LIVE_CHAT)
        [plain_telegram] = self.chat.posted(PLAIN_CHAT)
        shown, plain = self.chat.messages[telegram_live], self.chat.messages[plain_telegram]
        assert (shown["text"], shown.get("link_preview_options")) == (plain["text"], plain.get("link_preview_options"))


def running(env: dict[str, str], tmp_path, chat: ChatService) -> Iterator[Live]:
    """A web and a worker process with ``env`` (fast retries, no access log), and the service."""
    procfile = Procfile({**env, "RELAY_BACKOFF": "0.5,0.5,0.5", "RELAY_ACCESS_LOG": "0"}, tmp_path)
    try:
        procfile.start("web")
        procfile.start("worker")
        yield Live(procfile, chat)
    finally:
        procfile.stop()
        chat.close()


@pytest.fixture
def live(redis_url, tmp_path) -> Iterator[Live]:
    redis.Redis.from_url(redis_url).flushdb()
    chat = ChatService()
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "DISCORD_WEBHOOK_URL": f"{chat.discord_url(1)}#name=live&stages=live&rate=100/1s,"
        f"{chat.discord_url(2)}#name=plain&rate=100/1s",
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_CHAT_ID": f"{LIVE_CHAT}#name=tglive&stages=live&rate=100/1s,{PLAIN_CHAT}#name=tgplain&rate=100/1s",
        "TELEGRAM_API_BASE": chat.base,
        "RELAY_HTTP_TIMEOUT": "2s",  # a killed worker's delivery is handed on within ~7 s
    }
    yield from running(env, tmp_path, chat)


def live_ids(live: Live) -> dict[str, list[str]]:
    return {"discord": live.chat.posted("1"), "telegram": live.chat.posted(LIVE_CHAT)}


def test_text_first_complete_is_one_post_and_two_edits_ending_as_the_completed_card(live) -> None:
    for stage in ("text", "first", "complete"):
        live.stage(stage, "live-1")
        live.settled("live-1")
    for ids in live_ids(live).values():
        assert len(ids) == 1 and live.chat.edits_of(ids) == 2, (ids, live.chat.edits)
    live.shows_the_completed_card()
    posts, edits = len(live.chat.posts), len(live.chat.edits)
    for stage in ("text", "first", "complete"):  # duplicates of each stage change nothing
        assert live.stage(stage, "live-1")["status"] == "duplicate"
    time.sleep(2.0)
    assert (len(live.chat.posts), len(live.chat.edits)) == (posts, edits)
    status = live.settled("live-1")
    shown = [event["targets"]["live"] for event in status["events"]]
    assert {target["message_id"] for target in shown} == set(live.chat.posted("1")) and shown[0]["edits"] == 2
    progress = [event for event in status["events"] if event["type"] in ("music.text", "music.first")]
    assert len(progress) == 2 and all(set(event["targets"]) == {"live", "tglive"} for event in progress)


def test_complete_before_first_never_moves_the_message_back(live) -> None:
    for stage in ("text", "complete", "first"):
        live.stage(stage, "live-2")
        live.settled("live-2")
    for ids in live_ids(live).values():
        assert len(ids) == 1 and live.chat.edits_of(ids) == 1  # text posted, complete edited, first skipped
    live.shows_the_completed_card()


def test_a_deleted_message_is_posted_anew_and_followed(live) -> None:
    live.stage("text", "live-3")
    live.settled("live-3")
    for ids in live_ids(live).values():
        live.chat.delete(ids[0])  # someone deleted the message in the chat
    live.stage("first", "live-3")
    live.settled("live-3")
    live.stage("complete", "live-3")
    live.settled("live-3")
    for ids in live_ids(live).values():
        assert len(ids) == 2 and live.chat.edits_of(ids[1:]) == 1, ids  # the new one followed
    discord_live, telegram_live = live.chat.posted("1")[1], live.chat.posted(LIVE_CHAT)[1]
    live.chat.posts = [post for post in live.chat.posts if post[0] in (discord_live, telegram_live)
                       or post[1] not in ("1", LIVE_CHAT)]  # fmt: skip
    live.shows_the_completed_card()


def test_a_worker_killed_during_an_edit_and_between_stages_still_gives_one_message(live) -> None:
    procfile = live.procfile
    live.stage("text", "live-4")
    live.settled("live-4")
    live.chat.edit_delay = 3.0
    editing = live.chat.editing
    live.stage("first", "live-4")
    live.wait_for(lambda: live.chat.editing > editing)  # an edit is on its way
    [worker] = procfile.processes["worker"]
    procfile.signal(worker, signal.SIGKILL)
    worker.wait()
    live.chat.edit_delay = 0.0
    procfile.start("worker")
    live.settled("live-4", timeout=90)  # the sweeper hands the stage on once the lock runs out
    procfile.signal(procfile.processes["worker"][-1], signal.SIGKILL)  # between two stages
    procfile.processes["worker"][-1].wait()
    live.stage("complete", "live-4")
    procfile.start("worker")
    live.settled("live-4", timeout=90)
    for ids in live_ids(live).values():
        assert len(ids) == 1, ids
    live.shows_the_completed_card()


SLACK_TOKEN = "xoxb-1234567890-abcdefghijklmnop"
LIVE_CHANNEL, PLAIN_CHANNEL, LYRICS_CHANNEL = "C0LIVE001", "C0PLAIN01", "C0LYRICS1"
CANNOT_POST = ("channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "token_revoked")


@pytest.fixture
def slack_bot(redis_url, tmp_path) -> Iterator[Live]:
    redis.Redis.from_url(redis_url).flushdb()
    chat = ChatService()
    chat.slack_token = SLACK_TOKEN
    broken = [f"C0BROKEN{n}" for n in range(len(CANNOT_POST))]
    for channel, error in zip(broken, CANNOT_POST, strict=True):
        chat.slack_errors[channel] = [error]
    channels = [f"{LIVE_CHANNEL}#name=live&stages=live&rate=100/1s", f"{PLAIN_CHANNEL}#name=plain&rate=100/1s",
                f"{LYRICS_CHANNEL}#name=lyrics&rate=100/1s&only=lyrics",
                *(f"{ch}#name=broken-{n}&rate=100/1s&only=lyrics" for n, ch in enumerate(broken))]  # fmt: skip
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_CHANNEL": ",".join(channels),
        "SLACK_API_BASE": f"{chat.base}/api",
    }
    yield from running(env, tmp_path, chat)


def test_slack_bot_live_message_is_posted_once_and_updated(slack_bot) -> None:
    chat = slack_bot.chat
    for stage in ("text", "first", "complete"):
        slack_bot.stage(stage, "bot-1")
        slack_bot.settled("bot-1")
    [shown] = chat.posted(LIVE_CHANNEL)
    [plain] = chat.posted(PLAIN_CHANNEL)
    assert chat.edits_of([shown]) == 2
    final = {key: value for key, value in chat.messages[shown].items() if key not in ("ts", "channel")}
    assert final == {key: value for key, value in chat.messages[plain].items() if key != "channel"}
    updates = [body for _, method, body in chat.slack_calls if method == "chat.update"]
    assert {(body["channel"], body["ts"]) for body in updates} == {(LIVE_CHANNEL, shown)}
    assert SLACK_TOKEN not in slack_bot.procfile.logs()


def test_slack_bot_threads_long_lyrics_and_dead_letters_what_it_cannot_post(slack_bot) -> None:
    chat = slack_bot.chat
    chat.slack_errors[LYRICS_CHANNEL] = ["ratelimited", ""]  # paced once, then taken
    stanzas = [f"[Verse {n}]\n" + "\n".join(f"line {n}.{m} " + "la " * 20 for m in range(6)) for n in range(30)]
    lyrics = "\n\n".join(stanzas)
    assert len(lyrics) >= 12_000
    payload = example("lyrics-complete")
    payload["data"]["task_id"] = "bot-long"
    payload["data"]["data"] = [{"text": lyrics, "title": "A long one", "status": "complete", "errorMessage": ""}]
    answer = requests.post(f"{slack_bot.procfile.base_url}/callbacks/suno/lyrics", params={"token": TOKEN},
                           json=payload, timeout=10)  # fmt: skip
    assert answer.status_code == 200
    status = slack_bot.settled("bot-long", ends=frozenset({"delivered", "dead"}))
    targets = status["events"][0]["targets"]
    assert targets["lyrics"]["state"] == "delivered"
    calls = [(when, body) for when, method, body in chat.slack_calls if body.get("channel") == LYRICS_CHANNEL]
    assert calls[1][0] - calls[0][0] >= 0.9  # ratelimited: came back after Retry-After, not sooner
    posted = [chat.messages[ts] for ts in chat.posted(LYRICS_CHANNEL)]
    channel_message, replies = posted[0], posted[1:]
    assert "thread_ts" not in channel_message and replies
    assert all(reply["thread_ts"] == chat.posted(LYRICS_CHANNEL)[0] and reply["reply_broadcast"] is False
               for reply in replies)  # fmt: skip
    sections = [
        block["text"]["text"] for message in posted for block in message["blocks"] if block["type"] == "section"
    ]
    assert len([block for block in channel_message["blocks"] if block["type"] == "section"]) == 1
    assert len(sections[0]) <= 3000
    assert "".join("".join(sections).split()) == "".join(lyrics.replace("[Verse ", "*Verse ").replace("]", "*").split())
    for n, error in enumerate(CANNOT_POST):  # each: dead after one attempt, saying what to fix
        assert targets[f"broken-{n}"]["state"] == "dead" and targets[f"broken-{n}"]["attempt"] == 1, targets
        assert error in targets[f"broken-{n}"]["reason"]
        assert len([1 for _, _, body in chat.slack_calls if body.get("channel") == f"C0BROKEN{n}"]) == 1
