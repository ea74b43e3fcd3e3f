"""Payload dialects → one normalised event (pure: no Redis, no HTTP)."""

from __future__ import annotations

import copy
import json

import pytest

from relay.suno import COMPLETED, FAILED, Event, PayloadError, event_id, normalise, parse_json

RECEIVED = "2026-11-28T06:00:00.000Z"


def dialects(sample: dict) -> list[dict]:
    """The same callback in every published shape."""
    camel = copy.deepcopy(sample)
    camel["data"]["taskId"] = camel["data"].pop("task_id")
    lyrics_data = copy.deepcopy(sample)
    lyrics_data["data"]["lyricsData"] = lyrics_data["data"].pop("data")
    error_camel = copy.deepcopy(sample)
    for item in error_camel["data"]["data"]:
        item["errorMessage"] = item.pop("error_message")
    extras = copy.deepcopy(sample)
    extras["unexpected"] = {"nested": [1, 2]}
    extras["data"]["model"] = "v5"
    extras["data"]["data"][0]["audio_url"] = "https://example.invalid/a.mp3"
    all_camel = copy.deepcopy(camel)
    all_camel["data"]["lyricsData"] = all_camel["data"].pop("data")
    return [sample, camel, lyrics_data, error_camel, extras, all_camel]


def test_every_dialect_gives_the_same_event(sample: dict) -> None:
    events = [normalise(payload, RECEIVED) for payload in dialects(sample)]
    assert all(event == events[0] for event in events)
    event = events[0]
    assert event.task_id == "3b66882fde0a5d398bd269cab6d9542b"
    assert event.type == COMPLETED and event.callback_type == "complete" and event.code == 200
    assert event.lyrics[0].title == "Starry Night Dreams" and event.lyrics[0].text.startswith("[Verse]\nMoonlight")
    assert b"unexpected" not in event.to_json() and b"audio_url" not in event.to_json()


def test_normalised_event_has_the_documented_shape(sample: dict) -> None:
    body = normalise(sample, RECEIVED).to_dict()
    assert list(body) == ["type", "id", "task_id", "callback_type", "code", "message", "received_at", "lyrics"]
    assert body["id"] == event_id(body["task_id"], "complete")
    assert body["lyrics"] == [
        {"title": "Starry Night Dreams", "text": sample["data"]["data"][0]["text"], "status": "complete", "error": ""}
    ]
    assert Event.from_json(json.dumps(body)) == normalise(sample, RECEIVED)


@pytest.mark.parametrize("lyrics", [None, "absent"])
@pytest.mark.parametrize("code", [400, 451, 500])
def test_error_callback_without_lyrics(lyrics: object, code: int) -> None:
    payload = {
        "code": code,
        "msg": "Internal Error - Please try again later",
        "data": {"callbackType": "error", "taskId": "t1"},
    }
    if lyrics is None:
        payload["data"]["data"] = None
    event = normalise(payload, RECEIVED)
    assert event.type == FAILED and event.callback_type == "error" and event.code == code
    assert event.message == "Internal Error - Please try again later" and event.lyrics == ()
    assert event.id != event_id("t1", "complete")  # a later success of the same task is a new event


def test_callback_type_inferred_when_absent() -> None:
    error = normalise({"code": 500, "msg": "boom", "data": {"task_id": "t"}})
    assert error.callback_type == "error"
    complete = normalise({"code": 200, "msg": "ok", "data": {"task_id": "t", "data": [{"text": "la", "title": "x"}]}})
    assert complete.callback_type == "complete" and complete.type == COMPLETED


def test_variants_and_failed_items() -> None:
    payload = {
        "code": 200,
        "msg": "partly",
        "data": {
            "callbackType": "COMPLETE",
            "task_id": 12345,
            "data": [
                {"status": "failed", "errorMessage": "Sensitive word", "title": "A", "text": ""},
                {"status": "complete", "text": "la la", "title": "  B  "},
                {"status": "SUCCESS", "text": "da", "title": None},
            ],
        },
    }
    event = normalise(payload)
    assert event.task_id == "12345" and event.callback_type == "complete"
    assert [item.status for item in event.lyrics] == ["failed", "complete", "complete"]
    assert event.lyrics[0].error == "Sensitive word" and event.lyrics[1].title == "B" and event.lyrics[2].title == ""
    assert event.type == COMPLETED  # at least one item complete
    only_failed = copy.deepcopy(payload)
    only_failed["data"]["data"] = payload["data"]["data"][:1]
    assert normalise(only_failed).type == FAILED


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "body must be a JSON object, got an array"),
        ("text", "body must be a JSON object, got a string"),
        ({"code": 200}, "data must be an object holding task_id"),
        ({"data": []}, "data must be an object holding task_id, got an array"),
        ({"data": {"callbackType": "complete"}}, "data.task_id (or data.taskId) is missing"),
        ({"data": {"task_id": "  "}}, "data.task_id is empty"),
        ({"data": {"task_id": {"a": 1}}}, "data.task_id must be a string, got an object"),
        ({"data": {"task_id": True}}, "data.task_id must be a string, got a boolean"),
        ({"data": {"task_id": "x" * 201}}, "data.task_id must be at most 200 printable characters"),
        ({"data": {"task_id": "t", "data": {"text": "x"}}}, "data.data must be an array or null, got an object"),
        ({"data": {"task_id": "t", "lyricsData": ["x"]}}, "data.lyricsData[0] must be an object, got a string"),
        ({"data": {"task_id": "t", "data": [{"text": ["x"]}]}}, "data.data[0].text must be a string, got an array"),
        ({"code": "abc", "data": {"task_id": "t"}}, "code must be an integer"),
        ({"code": "--5", "data": {"task_id": "t"}}, "code must be an integer"),
        ({"code": "²", "data": {"task_id": "t"}}, "code must be an integer"),
        ({"code": "9" * 5000, "data": {"task_id": "t"}}, "code must be an integer"),
        ({"code": 200.5, "data": {"task_id": "t"}}, "code must be an integer"),
        ({"data": {"task_id": "t", "callbackType": "x" * 5000}}, "data.callbackType must be one of"),
        ({"data": {"task_id": "t\ud83c"}}, "data.task_id must be at most"),
        ({"data": {"task_id": "t\x00"}}, "data.task_id must be at most"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(payload: object, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        normalise(payload)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not UTF-8"),
        (b'{"code": NaN}', "body is not valid JSON: NaN"),
        (b"[" * 100000 + b"]" * 100000, "body is not valid JSON"),
        (b'{"code": 1' + b"0" * 5000 + b"}", "body is not valid JSON"),
    ],
)
def test_bad_json_is_a_payload_error(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_json(body)
    assert str(caught.value).startswith(message)


def test_utf8_bom_and_unicode_are_accepted() -> None:
    payload = parse_json('\ufeff{"data": {"task_id": "t", "data": [{"title": "Ünïcödé 🎵", "text": "x"}]}}'.encode())
    assert normalise(payload).lyrics[0].title == "Ünïcödé 🎵"
