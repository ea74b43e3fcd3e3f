"""Beyond lyrics: every Suno callback kind's shapes, dialects and failure codes give the right event
(the same kinds through the real processes: tests/system/test_kinds.py)."""

from __future__ import annotations

import pytest

from relay.suno import NORMALISERS, PayloadError
from tests.support import example

FAST = "#rate=1000/1s"
TELEGRAM_TOKEN = "123456789:AAEsecretTELEGRAMtokenABCDEFGH"


# The model: every shape, dialect and failure code gives the right event. -----------------------


@pytest.mark.parametrize(
    "kind, name, expected",
    [
        ("music", "music-text", "music.text"),
        ("music", "music-first", "music.first"),
        ("music", "music-complete", "music.completed"),
        ("music", "music-error", "music.failed"),
        ("wav", "wav-complete", "wav.completed"),
        ("stems", "stems-complete", "stems.completed"),
        ("video", "video-complete", "video.completed"),
        ("video", "video-error", "video.failed"),
        ("cover", "cover-complete", "cover.completed"),
        ("midi", "midi-complete", "midi.completed"),
        ("lyrics", "lyrics-complete", "lyrics.completed"),
    ],
)
def test_every_shape_gives_its_event(kind: str, name: str, expected: str) -> None:
    event = NORMALISERS[kind](example(name))
    assert event.type == expected and event.kind == kind


@pytest.mark.parametrize("code", [400, 408, 413, 500, 501, 531])
def test_music_failure_codes(code: int) -> None:
    event = NORMALISERS["music"](
        {"code": code, "msg": "", "data": {"callbackType": "error", "task_id": "t", "data": []}}
    )
    assert event.type == "music.failed" and event.message  # the code's meaning when msg is empty


def test_dialects_and_details() -> None:
    camel = example("music-complete")
    camel["data"] = {"callbackType": "complete", "taskId": "t1", "data": [
        {"id": "a", "audioUrl": "https://x.org/a.mp3", "imageUrl": "https://x.org/a.png", "modelName": "m",
         "title": "T", "tags": "pop", "duration": "201.5", "unknown": {"ignored": True}}]}  # fmt: skip
    [track] = NORMALISERS["music"](camel).tracks
    assert (track.audio_url, track.image_url, track.model, track.duration) == (
        "https://x.org/a.mp3",
        "https://x.org/a.png",
        "m",
        201.5,
    )
    item = {"source_audio_url": "https://x.org/s.mp3", "source_stream_audio_url": "https://x.org/s"}
    item["source_image_url"] = "https://x.org/s.png"
    source = {"code": 200, "data": {"callbackType": "first", "task_id": "t2", "data": [item]}}
    [track] = NORMALISERS["music"](source).tracks
    assert (track.audio_url, track.stream_url, track.image_url) == (
        "https://x.org/s.mp3",
        "https://x.org/s",
        "https://x.org/s.png",
    )
    item = {
        "audio_url": "javascript:alert(1)",
        "image_url": "https://x.org/a b.png",
        "stream_audio_url": "https://x.org/ok",
    }
    hostile = {"code": 200, "data": {"callbackType": "complete", "task_id": "t3", "data": [item]}}
    [track] = NORMALISERS["music"](hostile).tracks
    assert track.audio_url == "" and track.image_url == "" and track.stream_url == "https://x.org/ok"
    older = {
        "code": 200,
        "data": {
            "task_id": "t4",
            "vocal_separation_info": {"vocal_url": "https://x.org/v.mp3", "bass_url": "https://x.org/b.mp3"},
        },
    }
    assert dict(NORMALISERS["stems"](older).files) == {"Vocals": "https://x.org/v.mp3", "Bass": "https://x.org/b.mp3"}
    split = example("stems-complete")
    split["data"]["vocal_removal_info"].update(
        backing_vocals_url="https://x.org/bv.mp3", woodwinds_url="https://x.org/w.mp3"
    )
    labels = dict(NORMALISERS["stems"](split).files)
    assert labels["Backing vocals"] == "https://x.org/bv.mp3" and "Woodwinds" in labels
    midi = example("midi-complete")
    assert NORMALISERS["midi"](midi).instruments == (("Drums", 2), ("Electric Bass (finger)", 1))
    assert NORMALISERS["midi"](midi).task_id == "5c79be8e9f76"
    assert NORMALISERS["cover"](example("cover-complete")).task_id == "21aee3c3c2a0"  # camelCase taskId
    wrong = [
        ("music", {"data": {"task_id": "t", "callbackType": "done"}}),
        ("cover", {"data": {"taskId": "t", "images": "x"}}),
        ("midi", {"code": 200, "data": {"instruments": [{}]}}),
    ]
    for kind, body in wrong:
        with pytest.raises(PayloadError):
            NORMALISERS[kind](body)


def test_the_same_task_id_in_two_kinds_is_two_events() -> None:
    wav = NORMALISERS["wav"]({"code": 200, "data": {"task_id": "same", "audioWavUrl": "https://x.org/a.wav"}})
    video = NORMALISERS["video"]({"code": 200, "data": {"task_id": "same", "video_url": "https://x.org/a.mp4"}})
    assert wav.id != video.id


def test_a_music_callback_with_a_code_other_than_200_is_a_failure_whatever_its_data_says() -> None:
    from relay.suno import NORMALISERS
    from tests.support import example

    payload = example("music-complete")
    payload["code"] = 500
    payload["data"]["error"] = "the section could not be replaced"
    event = NORMALISERS["music"](payload)
    complete = NORMALISERS["music"](example("music-complete"))
    assert event.type == "music.failed" and event.id != complete.id  # a later success is not a duplicate
    assert event.message.endswith(": the section could not be replaced")


def test_each_spelling_of_a_callback_normalises_to_the_same_event() -> None:
    pairs = [
        ("wav", {"code": 200, "data": {"task_id": "w", "audioWavUrl": "https://x.org/a.wav"}},
         {"code": 200, "data": {"taskId": "w", "audio_wav_url": "https://x.org/a.wav"}}),
        ("stems", {"code": 200, "data": {"task_id": "s", "vocal_removal_info": {"vocal_url": "https://x.org/v"}}},
         {"code": 200, "data": {"task_id": "s", "vocal_separation_info": {"vocal_url": "https://x.org/v"}}}),
        ("midi", {"code": 200, "task_id": "m", "data": {"instruments": [{"name": "Piano", "notes": [
            {"pitch": 60, "start": 0.5, "end": 1.0, "velocity": 90}]}]}},
         {"code": 200, "data": {"taskId": "m", "instruments": [{"name": "Piano", "notes": [
             {"pitch": 60, "start": "0.5", "end": "1.0", "velocity": 90}]}]}}),
        ("video", {"code": 200, "data": {"task_id": "v", "video_url": "https://x.org/v.mp4"}},
         {"code": 200, "data": {"taskId": "v", "videoUrl": "https://x.org/v.mp4"}}),
    ]  # fmt: skip
    for kind, one, other in pairs:
        first, second = NORMALISERS[kind](one), NORMALISERS[kind](other)
        assert (first.id, first.type, first.files, first.instruments) == (
            second.id, second.type, second.files, second.instruments,
        ), kind  # fmt: skip
        assert first.type == f"{kind}.completed"
