"""A small client for the Suno API: submit lyrics and music tasks, read their record-info.

The API answers HTTP 200 with its own ``code`` in the body, or an HTTP error; both are read. The
API key is sent as a bearer token and never appears in an error or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

MAX_PROMPT_WORDS = 200
MAX_MUSIC_PROMPT = 500  # characters, in non-custom mode
MUSIC_MODEL = "V4_5ALL"
RECORD_INFO = {
    "lyrics": "/api/v1/lyrics/record-info",
    "music": "/api/v1/generate/record-info",
    "wav": "/api/v1/wav/record-info",
    "stems": "/api/v1/vocal-removal/record-info",
    "video": "/api/v1/mp4/record-info",
    "cover": "/api/v1/suno/cover/record-info",
    "midi": "/api/v1/midi/record-info",
    "voice": "/api/v1/voice/record-info",  # a generate task
    "voice-validate": "/api/v1/voice/validate-info",  # a validate or regenerate task
}
# Post-processing a finished task: where each kind is started, and what it needs besides the task.
FILE_SUBMIT = {
    "wav": "/api/v1/wav/generate",  # taskId, audioId
    "stems": "/api/v1/vocal-removal/generate",  # taskId, audioId, type
    "video": "/api/v1/mp4/generate",  # taskId, audioId
    "cover": "/api/v1/suno/cover/generate",  # taskId
    "midi": "/api/v1/midi/generate",  # taskId (a stems task), audioId optional
}
STEM_TYPES = ("separate_vocal", "split_stem")
# The provider's documented codes, and whether waiting helps.
CODES: dict[int, tuple[str, bool]] = {
    400: ("bad parameters", False),
    401: ("unauthorized: check SUNO_API_KEY", False),
    404: ("not found", False),
    405: ("rate limited", True),
    413: ("prompt too long", False),
    429: ("insufficient credits", False),
    430: ("call frequency too high", True),
    455: ("provider under maintenance", True),
    500: ("provider internal error", True),
}


class SunoAPIError(Exception):
    """A failed API call. ``retryable`` says whether trying later can help."""

    def __init__(self, message: str, code: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass
class SunoClient:
    base_url: str
    api_key: str
    timeout: float = 10.0
    session: requests.Session | None = None

    def __post_init__(self) -> None:
        self.session = self.session or requests.Session()

    def __repr__(self) -> str:
        return f"<SunoClient {self.base_url}>"

    def submit(self, prompt: str, callback_url: str) -> str:
        """Start a lyrics task; returns its task id."""
        prompt = prompt.strip()
        if not prompt:
            raise SunoAPIError("the prompt is empty")
        if len(prompt.split()) > MAX_PROMPT_WORDS:
            raise SunoAPIError(f"the prompt is longer than {MAX_PROMPT_WORDS} words", code=413)
        data = self._call("POST", "/api/v1/lyrics", json={"prompt": prompt, "callBackUrl": callback_url})
        task_id = data.get("taskId") or data.get("task_id") if isinstance(data, dict) else None
        if not task_id:
            raise SunoAPIError("the provider answered without a task id", retryable=True)
        return str(task_id)

    def submit_music(self, prompt: str, callback_url: str) -> str:
        """Start a music task (non-custom mode: the provider writes lyrics and style from the
        prompt); returns its task id."""
        prompt = prompt.strip()
        if not prompt:
            raise SunoAPIError("the prompt is empty")
        if len(prompt) > MAX_MUSIC_PROMPT:
            raise SunoAPIError(f"the prompt is longer than {MAX_MUSIC_PROMPT} characters", code=413)
        body = {
            "prompt": prompt,
            "customMode": False,
            "instrumental": False,
            "model": MUSIC_MODEL,
            "callBackUrl": callback_url,
        }
        data = self._call("POST", "/api/v1/generate", json=body)
        task_id = data.get("taskId") or data.get("task_id") if isinstance(data, dict) else None
        if not task_id:
            raise SunoAPIError("the provider answered without a task id", retryable=True)
        return str(task_id)

    def submit_file(self, kind: str, task_id: str, audio_id: str, stem_type: str, callback_url: str) -> str:
        """Start a WAV, stems, video, cover or MIDI task from a finished one; its task id."""
        body: dict[str, Any] = {"taskId": task_id, "callBackUrl": callback_url}
        if audio_id:
            body["audioId"] = audio_id
        if kind == "stems":
            body["type"] = stem_type
        data = self._call("POST", FILE_SUBMIT[kind], json=body)
        new_id = data.get("taskId") or data.get("task_id") if isinstance(data, dict) else None
        if not new_id:
            raise SunoAPIError("the provider answered without a task id", retryable=True)
        return str(new_id)

    def record_info(self, task_id: str, kind: str = "lyrics") -> dict[str, Any]:
        """The task's details (``status`` PENDING, SUCCESS or a failure, ``response``, …)."""
        data = self._call("GET", RECORD_INFO[kind], params={"taskId": task_id})
        if not isinstance(data, dict):
            raise SunoAPIError("the provider answered without task details", retryable=True)
        return data

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if not self.api_key:
            raise SunoAPIError("SUNO_API_KEY is not set", code=401)
        headers = {"Authorization": f"Bearer {self.api_key}", "User-Agent": "suno-relay"}
        try:
            response = self.session.request(  # type: ignore[union-attr]  # always set by __post_init__
                method, self.base_url + path, headers=headers, timeout=(5.0, self.timeout), **kwargs
            )
        except requests.RequestException as exc:
            raise SunoAPIError(f"provider unreachable ({type(exc).__name__})", retryable=True) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, int):
            code = response.status_code
        if response.ok and code == 200:
            return body.get("data") if isinstance(body, dict) else None
        if code == 200:  # HTTP error with a body that says 200: trust the HTTP status
            code = response.status_code
        meaning, retryable = CODES.get(code, ("unexpected answer", code >= 500))
        message = body.get("msg") if isinstance(body, dict) and isinstance(body.get("msg"), str) else ""
        text = f"Suno API {code}: {meaning}" + (f" ({message[:200]})" if message else "")
        raise SunoAPIError(text, code=code, retryable=retryable)
