"""Callbacks that deliver files: WAV conversion, vocal separation (stems), music video, cover
images. Each gives a ``<kind>.completed`` event with its links, or ``<kind>.failed``.

- WAV: ``{"code", "msg", "data": {"audioWavUrl", "task_id"}}``;
- stems: ``{"code", "msg", "data": {"task_id", "vocal_removal_info": {"instrumental_url",
  "origin_url", "vocal_url", …}}}`` (the stem-split variant adds ``backing_vocals_url``,
  ``bass_url``, ``drums_url``, …; an older dialect names the object ``vocal_separation_info``);
- video: ``{"code", "msg", "data": {"task_id", "video_url"}}`` (null on failure; codes 200, 400,
  451 source download failed, 500);
- cover: ``{"code", "msg", "data": {"taskId", "images": [url, …]}}``.
"""

from __future__ import annotations

from typing import Any

from relay.suno.event import Event
from relay.suno.parsing import (
    MAX_MESSAGE,
    PayloadError,
    code,
    envelope,
    event_id,
    first,
    kind_of,
    now_rfc3339,
    task_id_of,
    text,
    url,
)

VIDEO_CODES = {400: "bad request", 451: "downloading the source failed", 500: "internal error"}


def _event(
    kind: str, payload: dict[str, Any], data: dict[str, Any], files: list[tuple[str, str]], received_at: str | None
) -> Event:
    task_id = task_id_of(data, "data")
    status_code = code(payload.get("code"))
    failed = status_code not in (None, 200) or not files
    stage = "error" if failed else "complete"
    message = text(payload.get("msg"), "msg", MAX_MESSAGE)
    if failed and not message and kind == "video":
        message = VIDEO_CODES.get(status_code or 0, "")
    return Event(
        id=event_id(task_id, f"{kind}.{stage}"),
        task_id=task_id,
        callback_type=stage,
        code=status_code,
        message=message,
        received_at=received_at or now_rfc3339(),
        kind=kind,
        files=tuple(files) if not failed else (),
    )


def normalise_wav(payload: Any, received_at: str | None = None) -> Event:
    data = envelope(payload)
    link = url(first(data, "audioWavUrl", "audio_wav_url"), "data.audioWavUrl")
    return _event("wav", payload, data, [("WAV", link)] if link else [], received_at)


def _stem_label(key: str) -> str:
    name = key.removesuffix("_url").removesuffix("Url").replace("_", " ").strip()
    return {"origin": "Original", "vocal": "Vocals", "instrumental": "Instrumental"}.get(name, name.capitalize())


def normalise_stems(payload: Any, received_at: str | None = None) -> Event:
    data = envelope(payload)
    info = first(data, "vocal_removal_info", "vocal_separation_info", "vocalRemovalInfo")
    if info is not None and not isinstance(info, dict):
        raise PayloadError(f"data.vocal_removal_info must be an object, got {kind_of(info)}")
    files = []
    for key, value in (info or {}).items():
        if isinstance(key, str) and key.lower().endswith("url"):
            link = url(value, f"data.vocal_removal_info.{key}")
            if link:
                files.append((_stem_label(key), link))
    return _event("stems", payload, data, files, received_at)


def normalise_video(payload: Any, received_at: str | None = None) -> Event:
    data = envelope(payload)
    link = url(first(data, "video_url", "videoUrl"), "data.video_url")
    return _event("video", payload, data, [("Video", link)] if link else [], received_at)


def normalise_cover(payload: Any, received_at: str | None = None) -> Event:
    data = envelope(payload)
    images = data.get("images")
    if images is not None and not isinstance(images, list):
        raise PayloadError(f"data.images must be an array, got {kind_of(images)}")
    links = [url(image, f"data.images[{n}]") for n, image in enumerate(images or [])]
    files = [(f"Cover {n}", link) for n, link in enumerate((link for link in links if link), start=1)]
    return _event("cover", payload, data, files, received_at)
