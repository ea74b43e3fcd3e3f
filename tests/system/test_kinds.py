"""Every Suno callback kind (music, WAV, stems, video, cover, MIDI) through the real web and worker
processes to every target's local receiver, and music polling against a fake provider over HTTP."""

from __future__ import annotations

import copy
import json
import re
import time

import pytest
import redis
import requests

from relay.suno import NORMALISERS
from relay.suno.music import music_event_id
from tests.conftest import TOKEN
from tests.support import FakeSuno, Procfile, Receiver, Reply, example

FAST = "#rate=1000/1s"
TELEGRAM_TOKEN = "123456789:AAEsecretTELEGRAMtokenABCDEFGH"


# Through the real processes to every target. ------------------------------------------------------


class Stack:
    """Web and worker processes with every kind of target, each on its own receiver."""

    def __init__(self, redis_url: str, tmp_path) -> None:
        redis.Redis.from_url(redis_url).flushdb()
        names = ("slack", "picky", "discord", "webhook", "teams", "telegram", "googlechat", "mattermost", "ntfy")
        self.receivers = {name: Receiver(default=Reply(204 if name == "discord" else 200, "ok")) for name in names}
        r = self.receivers
        env = {
            "REDIS_URL": redis_url,
            "RELAY_CALLBACK_TOKEN": TOKEN,
            "SLACK_WEBHOOK_URL": f"{r['slack'].url}{FAST}, {r['picky'].url}#name=picky&rate=1000/1s"
            "&only=music.completed|lyrics.completed",
            "DISCORD_WEBHOOK_URL": r["discord"].url + FAST,
            "RELAY_WEBHOOK_URL": r["webhook"].url + FAST,
            "TEAMS_WEBHOOK_URL": r["teams"].url + FAST,
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "TELEGRAM_CHAT_ID": "-1001234567890#rate=1000/1s",
            "TELEGRAM_API_BASE": r["telegram"].url.rsplit("/hook", 1)[0],
            "GOOGLE_CHAT_WEBHOOK_URL": r["googlechat"].url + "?key=k" + FAST,
            "MATTERMOST_WEBHOOK_URL": r["mattermost"].url + FAST,
            "NTFY_URL": r["ntfy"].url + FAST,
            "RELAY_ACCESS_LOG": "0",
        }
        self.processes = Procfile(env, tmp_path)
        self.processes.start("web")
        self.processes.start("worker")

    def send(self, kind: str, payload: dict) -> requests.Response:
        url = f"{self.processes.base_url}/callbacks/suno/{kind}"
        return requests.post(url, params={"token": TOKEN}, json=payload, timeout=10)

    def close(self) -> None:
        self.processes.stop()
        for receiver in self.receivers.values():
            receiver.close()


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    made = Stack(redis_url, tmp_path_factory.mktemp("kinds"))
    yield made
    made.close()


def wait_quiet(stack: Stack, seconds: float = 1.0, timeout: float = 30.0) -> None:
    """Until no receiver got anything for ``seconds``."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = sum(len(receiver.attempts) for receiver in stack.receivers.values())
        if count == last:
            return
        last = count
        time.sleep(seconds)


def test_music_stages_reach_each_target_once_in_order(stack) -> None:
    for stage in ("text", "first", "complete"):
        assert stack.send("music", example(f"music-{stage}")).json()["status"] == "received"
        assert stack.send("music", example(f"music-{stage}")).json()["status"] == "duplicate"
    stack.receivers["webhook"].wait_for(3)
    wait_quiet(stack)
    webhook = [entry.json() for entry in stack.receivers["webhook"].received]
    assert [body["type"] for body in webhook] == [
        "music.text",
        "music.first",
        "music.completed",
    ]  # every stage, in order
    assert webhook[2]["tracks"][0]["audio_url"] == "https://cdn.example.org/1.mp3"
    # Chat targets get the finished songs only, once each.
    for name in ("slack", "discord", "teams", "telegram", "googlechat", "mattermost", "ntfy", "picky"):
        got = stack.receivers[name].received
        assert len(got) == 1, (name, len(got))
        assert "https://cdn.example.org/1.mp3" in got[0].body.decode(), name
    # Links and covers where each service shows them.
    slack = stack.receivers["slack"].received[0].json()
    assert slack["blocks"][1]["accessory"] == {
        "type": "image",
        "image_url": "https://cdn.example.org/1.jpeg",
        "alt_text": "Iron Man",
    }
    assert "<https://cdn.example.org/1.mp3|Audio>" in slack["blocks"][1]["text"]["text"]
    assert "expire after about 14 days" in json.dumps(slack)
    discord = stack.receivers["discord"].received[0].json()
    assert discord["embeds"][0]["thumbnail"] == {"url": "https://cdn.example.org/1.jpeg"}
    assert "[Audio](https://cdn.example.org/1.mp3)" in discord["embeds"][0]["description"]
    teams = stack.receivers["teams"].received[0].json()["attachments"][0]["content"]["body"]
    assert {"type": "Image", "url": "https://cdn.example.org/1.jpeg", "altText": "Iron Man", "size": "Medium"} in teams
    telegram = stack.receivers["telegram"].received[0].json()
    assert telegram["link_preview_options"]["url"] == "https://cdn.example.org/1.jpeg"
    assert '<a href="https://cdn.example.org/1.mp3">Audio</a>' in telegram["text"]
    chat = stack.receivers["googlechat"].received[0].json()["cardsV2"][0]["card"]
    assert chat["header"]["imageUrl"] == "https://cdn.example.org/1.jpeg"
    assert {"image": {"imageUrl": "https://cdn.example.org/1.jpeg", "altText": "Iron Man"}} in chat["sections"][0][
        "widgets"
    ]
    assert "![cover](https://cdn.example.org/1.jpeg)" in stack.receivers["mattermost"].received[0].json()["text"]
    ntfy = {k.lower(): v for k, v in stack.receivers["ntfy"].received[0].headers.items()}
    assert ntfy["click"] == "https://cdn.example.org/1.mp3"


@pytest.mark.parametrize(
    "kind, name, shown",
    [
        ("wav", "wav-complete", "https://cdn.example.org/song.wav"),
        ("stems", "stems-complete", "https://cdn.example.org/drums.mp3"),
        ("video", "video-complete", "https://cdn.example.org/video.mp4"),
        ("video", "video-error", "Failed to download source"),
        ("cover", "cover-complete", "https://cdn.example.org/cover2.png"),
        ("midi", "midi-complete", "Electric Bass (finger)"),
        ("music", "music-error", "Audio generation failed"),
        ("voice", "voice-complete", "voice_7f3e2a91"),
        ("voice", "voice-validated", "Read aloud: the river sings at dawn"),
        ("voice", "voice-error", "the sample is too short to clone a voice"),
    ],
)
def test_file_kinds_and_failures_reach_every_target(stack, kind: str, name: str, shown: str) -> None:
    before = {key: len(receiver.received) for key, receiver in stack.receivers.items()}
    payload = example(name)
    response = stack.send(kind, payload)
    assert response.status_code == 200 and response.json()["status"] == "received", response.text
    event_type = NORMALISERS[kind](payload).type
    wanted = {key for key in stack.receivers if key != "picky" or event_type in ("music.completed", "lyrics.completed")}
    for key in wanted:
        got = stack.receivers[key].wait_for(before[key] + 1)
        body = got[-1].body.decode()
        visible = json.dumps(json.loads(body), ensure_ascii=False) if key != "ntfy" else body
        assert shown in visible.replace("\\\\", "").replace("\\", ""), (key, body[:300])  # markdown escapes
    wait_quiet(stack)
    for key in stack.receivers:
        assert len(stack.receivers[key].received) == before[key] + (key in wanted), key
    if kind == "cover":
        slack = stack.receivers["slack"].received[-1].json()
        assert slack["blocks"][1]["accessory"]["image_url"] == "https://cdn.example.org/cover1.png"


@pytest.mark.parametrize(
    "kind, code", [("music", 400), ("music", 408), ("music", 413), ("music", 500), ("music", 531),
                   ("video", 400), ("video", 500), ("wav", 500), ("stems", 500), ("cover", 500), ("midi", 500)],
)  # fmt: skip
def test_each_failure_code_is_a_failure_notice_everywhere(stack, kind: str, code: int) -> None:
    task_id = f"fail-{kind}-{code}"
    body = {"code": code, "msg": "", "data": {"callbackType": "error", "task_id": task_id, "data": None}}
    if kind == "midi":
        body = {"task_id": task_id, "code": code, "msg": "", "data": {"state": "failed"}}
    before = {key: len(receiver.received) for key, receiver in stack.receivers.items()}
    assert stack.send(kind, body).json()["status"] == "received"
    for key, receiver in stack.receivers.items():
        if key == "picky":
            continue
        got = receiver.wait_for(before[key] + 1)
        assert task_id in got[-1].body.decode().replace("\\", ""), key  # markdown escapes aside
    webhook = stack.receivers["webhook"].received[-1].json()
    assert webhook["type"] == f"{kind}.failed" and webhook["code"] == code


def test_an_unknown_kind_is_404(stack) -> None:
    response = stack.send("karaoke", example("wav-complete"))
    assert response.status_code == 404 and "music" in response.json()["error"]


# Music polling through a fake provider over HTTP. -----------------------------------------------


def test_music_polling_reaches_the_same_events(redis_url, tmp_path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    suno, webhook, slack = FakeSuno("music-key"), Receiver(), Receiver()
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": webhook.url + FAST,
        "SLACK_WEBHOOK_URL": slack.url + FAST,
        "SUNO_API_BASE": suno.url,
        "SUNO_API_KEY": "music-key",
        "RELAY_MODE": "poll",
        "RELAY_POLL_INTERVAL": "1s",
        "RELAY_POLL_GRACE": "0",
        "RELAY_QUEUE": "music-polling",  # the module's other stack still runs a worker on this Redis
    }
    processes = Procfile(env, tmp_path)
    try:
        processes.start("worker")
        from tests.support import run_cli

        result = run_cli(env, "submit", "--music", "a song about the sea")
        assert result.returncode == 0, result.stderr
        [(task_id, task)] = suno.tasks.items()
        assert (
            task["kind"] == "music"
            and task["body"]["customMode"] is False
            and task["body"]["prompt"] == "a song about the sea"
        )
        task["script"] = ["PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "SUCCESS"]
        webhook.wait_for(3, timeout=30)
        types = [entry.json()["type"] for entry in webhook.received]
        assert types == ["music.text", "music.first", "music.completed"]
        assert webhook.received[2].json()["id"] == music_event_id(task_id, "complete")
        slack.wait_for(1)
        time.sleep(2.5)  # polling stopped: nothing more arrives
        assert len(webhook.received) == 3 and len(slack.received) == 1
        assert re.search(r"cdn\.example\.org/" + task_id + r"-1\.mp3", slack.received[0].body.decode())
        # A callback of the same stage afterwards is a duplicate.
        processes.start("web")
        callback = copy.deepcopy(example("music-complete"))
        callback["data"]["task_id"] = task_id
        answer = requests.post(
            f"{processes.base_url}/callbacks/suno/music", params={"token": TOKEN}, json=callback, timeout=10
        )
        assert answer.json()["status"] == "duplicate"
    finally:
        processes.stop()
        for closing in (suno, webhook, slack):
            closing.close()


def test_sixty_songs_reach_every_chat_target_with_a_note_for_the_rest(stack) -> None:
    """Through the real processes: every chat target shows what fits and says how many songs it
    left out, the footer kept."""
    from tests.unit.targets.test_rendering import sixty_songs

    body = sixty_songs()
    body["data"]["task_id"] = "sixtysongs"
    before = {name: len(receiver.received) for name, receiver in stack.receivers.items()}
    assert stack.send("music", body).json()["status"] == "received"
    wait_quiet(stack)
    for name in ("slack", "discord", "teams", "telegram", "googlechat", "mattermost", "ntfy"):
        got = [entry.body.decode() for entry in stack.receivers[name].received[before[name] :]]
        text = "".join(got)
        assert re.search(r"… and \d+ more songs", text), name
        assert "sixtysongs" in text and "expire" in text, name  # the footer (Google Chat's is the card's subtitle)
