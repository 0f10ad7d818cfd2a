"""NaturalScore: a vision-language chat model grades how real a video looks, 1 to 5, OpenS2V-Eval's protocol.

The protocol (OpenS2V-Eval's `get_naturalscore.py` and `merge_result.py`, read for this backend):
16 frames sampled at a fixed stride, each resized to a long side of 512 and sent as a base64 JPEG
`image_url` part of one user message, followed by a fixed rubric asking for the score only; the
reply text is the score. Each video is judged in 3 independent requests (`naturalscore_1..3`); the
video's NaturalScore is their mean. The benchmark's merge then clamps each video's mean to [1, 5]
and normalises the set's average as (x - 1) / 4 (metrics/opens2v.py), which this backend leaves to it.

Any server speaking the OpenAI chat-completions API answers it (OpenAI, Azure's OpenAI-compatible
route, vLLM, SGLang, llama.cpp, ...): plain HTTP through the standard library, no client package.
A failed request or a reply that is not a number is an error of that video naming the endpoint and
the reply, never a zero.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from metrics.backends.base import DIGEST_CHARS, check_images

logger = logging.getLogger(__name__)

PROTOCOL = "opens2v-naturalscore/1"  # bump when anything below that changes a score changes
DEFAULT_MODEL = "gpt-4o-2024-11-20"  # the judge OpenS2V-Eval's published NaturalScores come from
DEFAULT_BASE_URL = "https://api.openai.com/v1"
REPLY_CHARS = 2000  # of a reply or an error body kept in a record

# OpenS2V-Eval's rubric, verbatim: every score depends on this text, so it is data, not wording to improve.
# It says "16 extracted frames" whatever `num_frames` is, as the protocol sends it.
NATURAL_SCORE_RUBRIC = """
Your task is to determine how realistic the given video clip appears, based on 16 extracted frames. Consider the following aspects in your evaluation:

- **Common sense consistency**: Are the objects, people, and interactions logically coherent in the context of the video?
- **Physical plausibility**: Do lighting, shadows, motion, and reflections obey the laws of physics? Are the objects in motion consistent with real-world physics?
- **Naturalness**: Does the visual quality (textures, details, proportions, etc.) resemble what we would expect in real life? Is there any unnatural visual distortion?
- **AI generation artifacts**: Are there signs of unnatural blurring, morphing, glitches, distortions, or inconsistencies across frames?

**If the video contains humans**, pay special attention to:
- Are the facial features realistic and anatomically correct (e.g., eyes, mouth, and nose proportions)?
- Do the body parts appear proportionate and natural in motion (e.g., arm and leg movements, hand gestures)?

If **no humans** are present in the video, you can focus on evaluating the realism of other visual aspects like object consistency, motion fluidity, and environmental plausibility without needing to specifically assess human-related elements.

Output a score from 1 to 5 based on the criteria below, followed by an explanation of the reasoning behind your score:

- **1 — Definitely AI-Generated**: Clear and frequent artifacts (e.g., blurry faces or objects, unnatural movements, inconsistent lighting), distorted shapes, implausible physics (e.g., impossible movements, lighting issues), and severe inconsistencies. Violates common sense or real-world logic. Faces and bodies may be unrealistic or distorted if humans are present.
- **2 — Likely AI-Generated**: Noticeable AI generation cues such as inconsistent anatomy, fluctuating object textures, or mild physical implausibility (e.g., unnatural hand positions or eye movements). Faces and bodies may appear unnatural or inconsistent if humans are present. Still clearly synthetic upon inspection.
- **3 — Uncertain / Borderline**: Mixed indicators — the video may appear mostly natural but contains subtle flaws or small anomalies that raise suspicion. Faces and bodies might show mild inconsistencies (e.g., slight distortion in facial features or body parts) if humans are present. Hard to determine definitively.
- **4 — Likely Real**: Mostly natural and physically plausible, with only minor and rare irregularities that might be explainable (e.g., slight compression, mild lighting inconsistencies). Faces and body parts are mostly natural, with only minor imperfections, if humans are present.
- **5 — Definitely Real**: Fully consistent with real-world physics, common sense, and appearance. No visible artifacts or signs of AI generation. Faces and body parts appear fully realistic, without any visible distortions or unnatural movements, if humans are present.

Please only return the score (1-5), no additional explanation.
"""  # noqa: E501

ERROR_CODES = ("request_failed", "reply_malformed", "reply_not_a_score")
_RETRIED_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_HTTP_HINTS = {401: " (check the key in `api_key_env`)", 403: " (check the key in `api_key_env`)", 404: " (check `base_url` and `model`)"}


@dataclass(frozen=True)
class NaturalRun:
    """One request of a video: what the model answered, or why there is no answer.

    Args:
        reply: The reply text as the server returned it (None when no reply came).
        value: The reply read as a number (None unless it is one).
        attempts: Requests sent for this run (retries included).
        error: Why the run has no value, naming the endpoint and the reply; None when it has one.
        error_code: One of `ERROR_CODES`, or None.
    """

    reply: str | None
    value: float | None
    attempts: int
    error: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class NaturalScore:
    """One video's NaturalScore and its evidence.

    Args:
        value: Mean of the runs' values (unclamped; the benchmark's merge clamps to [1, 5]); None
            when any run failed, then `error` says which and why.
        runs: Every run, in order, with the model's reply.
        frame_indices: Indices of the frames sent, in the order sent.
        error: The video's error message (the first failed run's), None when scored.
        error_code: One of `ERROR_CODES`, or None.
    """

    value: float | None
    runs: tuple[NaturalRun, ...]
    frame_indices: tuple[int, ...]
    error: str | None = None
    error_code: str | None = None

    @property
    def status(self) -> str:
        return "scored" if self.error is None else "error"

    @property
    def replies(self) -> list[str | None]:
        return [run.reply for run in self.runs]


def sample_frame_indices(total: int, num_frames: int) -> list[int]:
    """The protocol's frames of a `total`-frame video: every `max(total // num_frames, 1)`-th from 0,
    `num_frames` of them, those past the end dropped (a short video sends fewer)."""
    stride = max(total // num_frames, 1)
    return [index * stride for index in range(num_frames) if index * stride < total]


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Area-resize so the longer side is `long_side`, the other scaled and truncated to an integer (up or down)."""
    import cv2

    height, width = image.shape[:2]
    if height >= width:
        size = (int(width * long_side / height), long_side)
    else:
        size = (long_side, int(height * long_side / width))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def jpeg_data_url(image: np.ndarray, quality: int) -> str:
    """uint8 RGB -> `data:image/jpeg;base64,...` (OpenCV's encoder, as the protocol's frames are)."""
    import cv2

    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a frame of shape {image.shape}.")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def parse_score(reply: str) -> float | None:
    """The reply as the protocol reads it: the whole stripped text is one finite number, else None.

    Out-of-range numbers are kept (the merge clamps the video's mean to [1, 5]).
    """
    try:
        value = float(reply.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would resend the Authorization header to wherever it points; report it instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Failure(Exception):
    def __init__(self, message: str, code: str, *, retry: bool, reply: str | None = None) -> None:
        super().__init__(message)
        self.code, self.retry, self.reply = code, retry, reply


class ChatNaturalScorer:
    """NaturalScore from any OpenAI-compatible chat-completions endpoint.

    Args:
        base_url (str, default "https://api.openai.com/v1"): The API root; requests go to
            `<base_url>/chat/completions` (e.g. "http://gpu-host:8000/v1" for a vLLM server).
        model (str, default "gpt-4o-2024-11-20"): The model name the server knows; OpenS2V-Eval's
            published scores are this one's.
        api_key (str, optional): The key, sent as `Authorization: Bearer`. Prefer `api_key_env`:
            a key in a config file ends up wherever the config is copied.
        api_key_env (str or None, default "OPENAI_API_KEY"): Environment variable holding the key
            when `api_key` is not given; None for a server that takes no key.
        num_frames (int, default 16): Frames sent per request (protocol: 16).
        long_side (int, default 512): Long side each frame is resized to (protocol: 512).
        jpeg_quality (int, default 95): JPEG quality (protocol: OpenCV's default, 95).
        runs (int, default 3): Independent requests per video, averaged (protocol: 3).
        temperature (float, optional): Sampling temperature; None sends none, as the protocol
            does (the server's default: 1 on OpenAI's API).
        timeout_s (float, default 120): Seconds one request may take.
        retries (int, default 4): Further attempts after a failed request (connection error,
            timeout, HTTP 408/409/425/429/5xx, a body that is not a chat completion); the protocol
            makes 5 attempts. Other HTTP errors (400, 401, 404, ...) and a reply that is not a
            number are not retried.
        retry_wait_s (float, default 2): Wait before the first retry, doubled for each next one.
        retry_wait_max_s (float, default 10): Longest wait between attempts.

    `digest` covers what changes a score (model, protocol, rubric, frames, resize, JPEG quality,
    runs, temperature), not the server, key, timeouts or retries: moving the same model to another
    server keeps the scores, a change of model re-scores.

    Example:
        >>> scorer = ChatNaturalScorer("http://localhost:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct", api_key_env=None)
        >>> result = scorer.score(frames)  # uint8 RGB (F, H, W, 3)
        >>> result.value, result.replies
        (4.0, ['4', '4', '4'])
    """

    weight_free = True  # a judge behind an endpoint: nothing to stage

    name = "openai-chat"

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        *,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        num_frames: int = 16,
        long_side: int = 512,
        jpeg_quality: int = 95,
        runs: int = 3,
        temperature: float | None = None,
        timeout_s: float = 120.0,
        retries: int = 4,
        retry_wait_s: float = 2.0,
        retry_wait_max_s: float = 10.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(str(base_url))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"`base_url` must be an http(s) URL such as {DEFAULT_BASE_URL!r} or 'http://host:8000/v1', got {base_url!r}.")
        if not model or not isinstance(model, str):
            raise ValueError(f"`model` must be the model name the server serves, got {model!r}.")
        for option, value, low in (("num_frames", num_frames, 1), ("long_side", long_side, 1), ("runs", runs, 1), ("retries", retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{option}` must be an integer >= {low}, got {value!r}.")
        if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise ValueError(f"`jpeg_quality` must be an integer in [1, 100], got {jpeg_quality!r}.")
        if temperature is not None and not (isinstance(temperature, (int, float)) and 0 <= temperature <= 2):
            raise ValueError(f"`temperature` must be None (the server's default) or a number in [0, 2], got {temperature!r}.")
        for option, value in (("timeout_s", timeout_s), ("retry_wait_s", retry_wait_s), ("retry_wait_max_s", retry_wait_max_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (option == "timeout_s" and value == 0):
                raise ValueError(f"`{option}` must be a {'positive' if option == 'timeout_s' else 'non-negative'} number, got {value!r}.")
        if api_key is None and api_key_env is not None:
            api_key = os.environ.get(api_key_env) or None
            if api_key is None:
                raise ValueError(
                    f"NaturalScore's API key: environment variable `{api_key_env}` (option `api_key_env`) is not set. "
                    f"Export it with the key for {_redacted(base_url)}, or set `api_key_env: null` for a server that takes no key."
                )
        self.base_url = str(base_url).rstrip("/")
        self.endpoint = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.num_frames, self.long_side, self.jpeg_quality, self.runs = num_frames, long_side, jpeg_quality, runs
        self.temperature = None if temperature is None else float(temperature)
        self.timeout_s, self.retries = float(timeout_s), retries
        self.retry_wait_s, self.retry_wait_max_s = float(retry_wait_s), float(retry_wait_max_s)
        self.__api_key = api_key  # name-mangled and out of repr/describe/digest: a key must never reach a log
        self._opener = urllib.request.build_opener(_NoRedirects())
        self.digest = self._digest()

    def _digest(self) -> str:
        scoring = {
            "protocol": PROTOCOL,
            "model": self.model,
            "rubric_sha256": hashlib.sha256(NATURAL_SCORE_RUBRIC.encode()).hexdigest(),
            "num_frames": self.num_frames,
            "long_side": self.long_side,
            "jpeg_quality": self.jpeg_quality,
            "runs": self.runs,
            "temperature": self.temperature,
        }
        return f"sha256:{hashlib.sha256(json.dumps(scoring, sort_keys=True).encode()).hexdigest()[:DIGEST_CHARS]}"

    def __repr__(self) -> str:
        key = "<hidden>" if self.__api_key else None
        return (
            f"{type(self).__name__}(endpoint={_redacted(self.endpoint)!r}, model={self.model!r}, api_key={key}, "
            f"api_key_env={self.api_key_env!r}, digest={self.digest!r})"
        )

    def describe(self) -> dict:
        """Name, protocol, model, endpoint (without credentials) and digest; never the key."""
        return {
            "name": self.name,
            "version": PROTOCOL,
            "model": self.model,
            "weights": self.model,  # a served model: its name is all that identifies it
            "endpoint": _redacted(self.endpoint),
            "digest": self.digest,
            "num_frames": self.num_frames,
            "long_side": self.long_side,
            "jpeg_quality": self.jpeg_quality,
            "runs": self.runs,
            "temperature": self.temperature,
        }

    def request_body(self, frames: np.ndarray | Sequence[np.ndarray]) -> tuple[dict, list[int]]:
        """The chat-completions request of one video and the indices of the frames it carries."""
        frames = check_images(list(frames), "frames")
        indices = sample_frame_indices(len(frames), self.num_frames)
        content: list[dict] = [
            {"type": "image_url", "image_url": {"url": jpeg_data_url(resize_long_side(frames[i], self.long_side), self.jpeg_quality)}}
            for i in indices
        ]
        content.append({"type": "text", "text": NATURAL_SCORE_RUBRIC})
        body = {"model": self.model, "stream": False, "messages": [{"role": "user", "content": content}]}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body, indices

    def score(self, frames: np.ndarray | Sequence[np.ndarray], prompt: str | None = None) -> NaturalScore:
        """One video's NaturalScore: `runs` requests (sent at once), their mean, every reply kept.

        Args:
            frames: uint8 RGB (F, H, W, 3), every frame of the video.
            prompt: The generation prompt; the protocol judges realism alone and does not send it.

        Returns:
            A `NaturalScore`; a failed request or an unreadable reply makes it an error (value None)
            whose message names the endpoint and the reply. Bad `frames` raise ValueError.
        """
        body, indices = self.request_body(frames)
        payload = json.dumps(body).encode()
        with ThreadPoolExecutor(max_workers=self.runs) as pool:
            runs = tuple(pool.map(lambda number: self._run(payload, number), range(1, self.runs + 1)))
        failed = next((run for run in runs if run.error is not None), None)
        if failed is not None:
            return NaturalScore(None, runs, tuple(indices), failed.error, failed.error_code)
        return NaturalScore(float(np.mean([run.value for run in runs])), runs, tuple(indices))

    def _run(self, payload: bytes, number: int) -> NaturalRun:
        where = f"NaturalScore run {number}/{self.runs}: POST {_redacted(self.endpoint)} (model {self.model!r})"
        attempt = 0
        while True:
            attempt += 1
            try:
                reply = self._post(payload)
            except _Failure as failure:
                if failure.retry and attempt <= self.retries:
                    wait = min(self.retry_wait_max_s, self.retry_wait_s * 2 ** (attempt - 1))
                    logger.warning("%s failed (attempt %d of %d, retrying in %.1f s): %s", where, attempt, self.retries + 1, wait, failure)
                    time.sleep(wait)
                    continue
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                return NaturalRun(failure.reply, None, attempt, f"{where} failed{tries}: {failure}", failure.code)
            value = parse_score(reply)
            if value is None:
                message = (
                    f"{where} answered {_clip(reply)!r}, which is not a number: the rubric asks for the score (1-5) alone. "
                    f"Use a model that follows the instruction, or check that the server runs the model named."
                )
                return NaturalRun(reply, None, attempt, message, "reply_not_a_score")
            return NaturalRun(reply, value, attempt)

    def _post(self, payload: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        request = urllib.request.Request(self.endpoint, data=payload, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                text = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            detail = _error_body(error)
            message = f"HTTP {error.code} {error.reason}{_HTTP_HINTS.get(error.code, '')}: {detail or '(empty body)'}"
            raise _Failure(message, "request_failed", retry=error.code in _RETRIED_STATUSES, reply=detail or None) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise _Failure(
                f"no answer ({type(reason).__name__}: {reason}); is the server at `base_url` up?", "request_failed", retry=True
            ) from None
        return _reply_text(text)


def _reply_text(text: str) -> str:
    """`choices[0].message.content` of a chat completion (a string, or text parts some servers send)."""
    try:
        content = json.loads(text)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Failure(f"the body is not a chat completion: {_clip(text)!r}", "reply_malformed", retry=True, reply=_clip(text)) from None
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise _Failure(f"the completion has no text content: {_clip(text)!r}", "reply_malformed", retry=True, reply=_clip(text))
    return content


def _error_body(error: urllib.error.HTTPError) -> str:
    try:
        return _clip(error.read().decode("utf-8", errors="replace").strip())
    except (OSError, ValueError, AttributeError):  # no body, or the connection dropped while reading it
        return ""


def _clip(text: str) -> str:
    return text if len(text) <= REPLY_CHARS else text[:REPLY_CHARS] + f"... ({len(text)} characters)"


def _redacted(url: str) -> str:
    """`url` without user:password@ and query: what may go into a log or a record."""
    parts = urllib.parse.urlsplit(str(url))
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
