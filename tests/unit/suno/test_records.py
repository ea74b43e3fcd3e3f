"""relay.suno.records: record-info answers of the file kinds → the events their callbacks give."""

from __future__ import annotations

import pytest

from relay.suno import PayloadError
from relay.suno.records import from_record


def test_each_spelling_of_a_wav_result_is_the_same_event() -> None:
    camel = from_record("wav", {"successFlag": "SUCCESS", "response": {"audioWavUrl": "https://x.org/a.wav"}}, "t1")
    snake = from_record("wav", {"status": "success", "response": {"audio_wav_url": "https://x.org/a.wav"}}, "t1")
    assert camel is not None and snake is not None
    assert (camel.id, camel.type, camel.files) == (snake.id, snake.type, snake.files) == (
        camel.id, "wav.completed", (("WAV", "https://x.org/a.wav"),),
    )  # fmt: skip


def test_integer_flags_mean_what_they_mean_for_each_kind() -> None:
    assert from_record("cover", {"successFlag": 2}, "t") is None  # cover: still generating
    midi = from_record("midi", {"successFlag": 2, "errorMessage": "no stems"}, "t")
    assert midi is not None and midi.type == "midi.failed" and "no stems" in midi.message  # MIDI: creating failed
    with pytest.raises(PayloadError, match="means nothing documented for a wav task"):
        from_record("wav", {"successFlag": 1}, "t")


def test_a_lost_callback_with_its_result_is_a_success_and_without_it_a_failure() -> None:
    found = from_record(
        "video", {"successFlag": "CALLBACK_EXCEPTION", "response": {"videoUrl": "https://x.org/v"}}, "t"
    )
    assert found is not None and found.type == "video.completed"
    lost = from_record("video", {"successFlag": "CALLBACK_EXCEPTION", "response": None}, "t")
    assert lost is not None and lost.type == "video.failed" and lost.message == "callback exception"
    assert from_record("stems", {"successFlag": "PENDING"}, "t") is None
