"""`template=` (issue 26) through the real processes: one Liquid template on every chat kind, a
JSON body on a generic webhook; each arrives as written, escaped for its service and split
within its limits; the webhook's body is what `preview` printed and verifies; what must not run
is refused at start in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis
import requests
from standardwebhooks.webhooks import Webhook

from relay.dev import ROOT
from tests.conftest import TOKEN
from tests.support import Procfile, Receiver, Reply, example, run_cli

FAST = "rate=1000/1s"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TELEGRAM_TOKEN = "123456789:AAEsecretTELEGRAMtokenABCDEFGH"
CHAT = "🎵 {{ title }} <!channel> @everyone @channel <b>x</b> & more\n{% for l in lyrics %}{{ l.text }}{% endfor %}"
BODY = (
    '{"song": {{ title | json }}, "task": {{ task_id | json }}, "stanza": '
    "{% if lyrics.size > 0 %}{{ lyrics[0].first_stanza | json }}{% else %}null{% endif %}}"
)
KINDS = ("slack", "discord", "teams", "telegram", "googlechat", "mattermost", "ntfy", "apprise")


def long_lyrics() -> dict:
    payload = example("lyrics-complete")
    stanza = "\n".join(f"a line of a very long song, number {n}" for n in range(12))
    payload["data"]["data"][0]["text"] = "\n\n".join([stanza] * 40)  # about 17,000 characters
    payload["data"]["task_id"] = "templated-long"
    return payload


@pytest.fixture
def stack(redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    receivers = {name: Receiver(default=Reply(204, b"") if name == "discord" else None) for name in (*KINDS, "webhook")}
    r = receivers
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "SLACK_WEBHOOK_URL": f"{r['slack'].url}#{FAST}&template=chat",
        "DISCORD_WEBHOOK_URL": f"{r['discord'].url}#{FAST}&template=chat",
        "TEAMS_WEBHOOK_URL": f"{r['teams'].url}#{FAST}&template=chat",
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_CHAT_ID": f"-1001234567890#{FAST}&template=chat",
        "TELEGRAM_API_BASE": r["telegram"].url.rsplit("/hook", 1)[0],
        "GOOGLE_CHAT_WEBHOOK_URL": f"{r['googlechat'].url}?key=k#{FAST}&template=chat",
        "MATTERMOST_WEBHOOK_URL": f"{r['mattermost'].url}#{FAST}&template=chat",
        "NTFY_URL": f"{r['ntfy'].url}#{FAST}&template=chat",
        "APPRISE_URLS": f"json://{r['apprise'].url.removeprefix('http://')}#{FAST}&template=chat",
        "RELAY_WEBHOOK_URL": f"{r['webhook'].url}#{FAST}&template=body&only=lyrics",
        "RELAY_WEBHOOK_SECRET": SECRET,
        "RELAY_TEMPLATE_CHAT": CHAT,
        "RELAY_TEMPLATE_BODY": BODY,
        "RELAY_ACCESS_LOG": "0",
    }
    procfile = Procfile(env, tmp_path)
    try:
        procfile.start("web")
        procfile.start("worker")
        yield procfile, receivers, env
    finally:
        procfile.stop()
        for receiver in receivers.values():
            receiver.close()


def test_a_template_arrives_as_written_escaped_and_split_on_every_kind(stack, tmp_path) -> None:
    procfile, receivers, env = stack
    payload = long_lyrics()
    answer = requests.post(f"{procfile.base_url}/callbacks/suno/lyrics", params={"token": TOKEN}, json=payload,
                           timeout=10)  # fmt: skip
    assert answer.status_code == 200
    line = "a line of a very long song, number 11"

    def text_of(name: str) -> str:
        return "".join(body.body.decode() for body in list(receivers[name].received))

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(text_of(name).count(line) >= 40 for name in KINDS):
        time.sleep(0.2)
    receivers["webhook"].wait_for(1)
    time.sleep(1.0)  # anything sent twice would show by now
    text = {name: text_of(name) for name in KINDS}
    for name in KINDS:  # nothing lost: every stanza's last line, 40 times, split as each service needs
        assert text[name].count(line) == 40, (name, len(receivers[name].received))
    assert all(len(receivers[name].received) >= 2 for name in ("discord", "telegram", "ntfy", "mattermost"))
    # Escaped for each service: nobody is pinged, markup shows as written.
    assert "&lt;!channel&gt;" in text["slack"] and "<!channel>" not in text["slack"]
    assert all(json.loads(body.body)["allowed_mentions"] == {"parse": []} for body in receivers["discord"].received)
    assert "&lt;b&gt;x&lt;/b&gt; &amp; more" in text["telegram"]
    assert "@\u200beveryone" in text["mattermost"] or "@\u200bchannel" in text["mattermost"]
    for body in receivers["telegram"].received:
        assert len(json.loads(body.body)["text"]) <= 4096
    for body in receivers["slack"].received:
        for block in json.loads(body.body)["blocks"]:
            assert block["type"] != "section" or len(block["text"]["text"]) <= 3000
    # The webhook's body is the template's JSON, as preview printed it, signed.
    [hook] = receivers["webhook"].received
    file = tmp_path / "callback.json"
    file.write_text(json.dumps(payload))
    printed = run_cli(env, "preview", "--target", "webhook", str(file))
    assert printed.returncode == 0, printed.stderr
    assert hook.body.decode() == printed.stdout.splitlines()[1]
    stanza = "\n".join(f"a line of a very long song, number {n}" for n in range(12))
    assert json.loads(hook.body) == {"song": "Starry Night Dreams", "task": "templated-long", "stanza": stanza}
    Webhook(SECRET).verify(hook.body, hook.headers)  # raises when the signature does not match
    for secret in (TELEGRAM_TOKEN, SECRET, "key=k"):
        assert secret not in printed.stdout


REFUSED = [
    ("{{ settings }}", "'settings' is undefined"),
    ("{{ env }}", "'env' is undefined"),
    ("{{ lyrics.__class__.__mro__ }}", "lyrics.__class__ is undefined"),
    ("{% for l in lyrics %}{{ l.__class__.__init__.__globals__ }}{% endfor %}", "l.__class__ is undefined"),
    ("{% include 'README.md' %}", "unexpected tag 'include'"),
    (
        "{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..10) %}x{% endfor %}{% endfor %}{% endfor %}",
        "loop iteration limit reached",
    ),
    (
        "{% for a in (1..1000) %}{% for b in (1..100) %}{{ lyrics[0].text }}{% endfor %}{% endfor %}",
        "limit reached",
    ),  # about 10 MB of output
    ("line one\n{% if title %}", "line 2: expected tag endif"),
    ("{{ title | nofilter }}", "unknown filter 'nofilter'"),
]


@pytest.mark.parametrize("source, said", REFUSED)
def test_what_must_not_run_is_refused_at_start_in_one_line_leaking_nothing(source: str, said: str) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "RELAY_CALLBACK_TOKEN": TOKEN, "RELAY_TEMPLATE_X": source,
           "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secretpart#template=x&only=lyrics"}  # fmt: skip
    checked = run_cli(env, "check")
    assert checked.returncode == 2 and checked.stdout == ""
    [line] = checked.stderr.splitlines()
    assert line.startswith("suno-relay: configuration error: RELAY_TEMPLATE_X: line ") and said in line, line
    assert "secretpart" not in line and "Traceback" not in checked.stderr


def test_web_and_worker_refuse_a_broken_template_at_start(tmp_path) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "RELAY_CALLBACK_TOKEN": TOKEN, "RELAY_TEMPLATE_X": "{% if %}",
           "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secretpart#template=x"}  # fmt: skip
    procfile = Procfile(env, tmp_path)
    for name in ("web", "worker"):
        started = subprocess.run(procfile.commands[name], env={**procfile.env}, cwd=ROOT, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        lines = [line for line in (started.stdout + started.stderr).splitlines() if "RELAY_TEMPLATE_X" in line]
        assert started.returncode == 2 and len(lines) == 1 and "line 1" in lines[0], (name, started.stderr[-500:])
        assert "Traceback" not in started.stderr


def test_a_render_failing_at_delivery_falls_back_with_a_log_line(redis_url, tmp_path) -> None:
    """Data the examples did not have: a second lyric. The target gets its own message."""
    redis.Redis.from_url(redis_url).flushdb()
    slack = Receiver()
    env = {"REDIS_URL": redis_url, "RELAY_CALLBACK_TOKEN": TOKEN, "RELAY_ACCESS_LOG": "0",
           "RELAY_TEMPLATE_X": "{% for l in lyrics %}{{ l.title }}{% endfor %}"
                               "{% if lyrics.size > 1 %}{{ lyrics[1].nope }}{% endif %}",
           "SLACK_WEBHOOK_URL": f"{slack.url}#template=x&only=lyrics&{FAST}"}  # fmt: skip
    procfile = Procfile(env, tmp_path)
    try:
        procfile.start("web")
        procfile.start("worker")
        payload = example("lyrics-complete")
        payload["data"]["data"].append({**payload["data"]["data"][0], "title": "Second"})
        answer = requests.post(f"{procfile.base_url}/callbacks/suno/lyrics", params={"token": TOKEN},
                               json=payload, timeout=10)  # fmt: skip
        assert answer.status_code == 200
        [delivered] = slack.wait_for(1, timeout=30)
        assert "Second" in delivered.body.decode()  # the relay's own message: both lyrics
        logs = procfile.logs()
        assert "template failed; sent the relay's own message" in logs and "RELAY_TEMPLATE_X: line 1" in logs
    finally:
        procfile.stop()
        slack.close()


def test_templates_do_not_reach_the_preview_of_a_bad_file(tmp_path) -> None:
    file = tmp_path / "bad.json"
    file.write_text("not json")
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1/0"}
    said = subprocess.run([sys.executable, "-m", "relay", "preview", str(file)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)  # fmt: skip
    assert said.returncode == 1 and "bad.json" in said.stderr and "Traceback" not in said.stderr
