"""NaturalScore through a real OpenAI-compatible chat server on 127.0.0.1 that the test runs.

The server speaks the chat-completions wire format (POST /v1/chat/completions, a `choices` list);
each test scripts its answers and the server keeps every request it got, so the test checks what
went over the wire: model, rubric, frames as JPEG data URLs, the Bearer key.
"""

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from metrics.backends.natural import NATURAL_SCORE_RUBRIC, ChatNaturalScorer
from metrics.backends.registry import BackendRegistry, BackendSpec

FAST = {"retry_wait_s": 0.0, "retry_wait_max_s": 0.0, "timeout_s": 10.0}


class ChatServer:
    """A threaded chat-completions server; `answer(body, n)` -> (status, reply text or raw body) for the n-th request."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)})
                    number = len(server.requests)
                status, text = server.answer(server.requests[-1]["body"], number)
                if status == 200 and not text.startswith("RAW:"):
                    payload = {
                        "id": f"chatcmpl-{number}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": server.requests[-1]["body"]["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                    data = json.dumps(payload).encode()
                else:
                    data = text.removeprefix("RAW:").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def coloured_video(count, height=96, width=160):
    """Frame k is flat grey-ish colour (8k, 255 - 8k, 128): which frame a JPEG holds is readable after compression."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for k in range(count):
        frames[k] = (8 * k, 255 - 8 * k, 128)
    return frames


def decode_data_url(url):
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :]))).convert("RGB"))


def image_urls(body):
    (message,) = body["messages"]
    assert message["role"] == "user"
    return [part["image_url"]["url"] for part in message["content"] if part["type"] == "image_url"]


def test_request_carries_the_model_the_sampled_frames_as_jpeg_data_urls_the_rubric_and_the_bearer_key():
    with ChatServer(lambda body, n: (200, "4")) as server:
        scorer = ChatNaturalScorer(server.base_url, "judge-vl-1", api_key="sk-test-123", api_key_env=None, **FAST)
        frames = coloured_video(32, height=99)
        result = scorer.score(frames, "A man surfing.")

    assert len(server.requests) == 3  # three runs, as naturalscore_1..3
    for request in server.requests:
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["Authorization"] == "Bearer sk-test-123"
        body = request["body"]
        assert body["model"] == "judge-vl-1" and body["stream"] is False and "temperature" not in body
        content = body["messages"][0]["content"]
        # 16 images first, then the rubric as the one text part; the generation prompt is not sent
        assert [part["type"] for part in content] == ["image_url"] * 16 + ["text"]
        assert content[-1]["text"] == NATURAL_SCORE_RUBRIC
        assert "Output a score from 1 to 5" in content[-1]["text"] and "**5 — Definitely Real**" in content[-1]["text"]
        assert "A man surfing." not in json.dumps(body)
        # 32 frames, 16 sent: every second one; long side 512, short side 99 * 512 / 160 = 316.8 truncated
        expected = [2 * i for i in range(16)]
        for url, k in zip(image_urls(body), expected, strict=True):
            image = decode_data_url(url)
            assert image.shape == (316, 512, 3)
            assert np.abs(image.astype(int) - frames[k].astype(int)[:1, :1]).max() <= 3, k  # flat colour survives JPEG
    assert result.status == "scored" and result.value == 4.0
    assert result.frame_indices == tuple(range(0, 32, 2))
    assert result.replies == ["4", "4", "4"] and [run.attempts for run in result.runs] == [1, 1, 1]


def test_a_short_video_sends_the_frames_it_has_and_a_tall_one_is_resized_by_its_height():
    with ChatServer(lambda body, n: (200, "3")) as server:
        scorer = ChatNaturalScorer(server.base_url, "m", api_key_env=None, runs=1, **FAST)
        result = scorer.score(coloured_video(5, height=200, width=100))
    (request,) = server.requests
    images = [decode_data_url(url) for url in image_urls(request["body"])]
    assert [image.shape for image in images] == [(512, 256, 3)] * 5
    assert result.frame_indices == (0, 1, 2, 3, 4)
    assert "Authorization" not in request["headers"]  # api_key_env=None: a server without keys


def test_frames_are_area_averaged_down_to_the_long_side():
    # a one-pixel checkerboard at twice the size: an area resize averages each 2x2 block to flat 127.5 grey
    checker = (np.indices((512, 1024)).sum(axis=0) % 2 * 255).astype(np.uint8)
    frame = np.repeat(checker[:, :, None], 3, axis=2)
    with ChatServer(lambda body, n: (200, "3")) as server:
        ChatNaturalScorer(server.base_url, "m", api_key_env=None, runs=1, **FAST).score(np.stack([frame] * 16))
    image = decode_data_url(image_urls(server.requests[0]["body"])[0]).astype(float)
    assert image.shape == (256, 512, 3)
    assert abs(image.mean() - 127.5) < 2 and image.std() < 2  # a point sample would keep 0s and 255s


def test_the_video_value_is_the_mean_of_the_runs_replies():
    replies = {1: "3", 2: " 4\n", 3: "5.0"}
    with ChatServer(lambda body, n: (200, replies[n])) as server:
        result = ChatNaturalScorer(server.base_url, "m", api_key_env=None, **FAST).score(coloured_video(16))
    # runs go out at once, so which reply lands in which run varies; the mean does not
    assert sorted(result.replies) == sorted(replies.values())
    expected = sum(float(text) for text in replies.values()) / len(replies)
    assert result.value == pytest.approx(expected) == pytest.approx(4.0)
    assert sorted(run.value for run in result.runs) == [3.0, 4.0, 5.0]


def test_an_out_of_range_number_is_kept_for_the_merge_to_clamp():
    with ChatServer(lambda body, n: (200, "7")) as server:
        result = ChatNaturalScorer(server.base_url, "m", api_key_env=None, runs=2, **FAST).score(coloured_video(16))
    assert result.value == 7.0  # the benchmark merge clamps each video's mean to [1, 5]


def test_a_reply_that_is_not_a_number_is_an_error_naming_the_endpoint_and_the_reply_not_a_zero():
    garbage = "The video looks mostly real, I would say a four."
    with ChatServer(lambda body, n: (200, "4" if n != 2 else garbage)) as server:
        result = ChatNaturalScorer(server.base_url, "judge", api_key_env=None, retries=3, **FAST).score(coloured_video(16))
    assert len(server.requests) == 3  # a reply is an answer: not retried
    assert result.status == "error" and result.value is None and result.error_code == "reply_not_a_score"
    assert f"{server.base_url}/chat/completions" in result.error and garbage in result.error and "'judge'" in result.error
    assert garbage in result.replies and result.replies.count("4") == 2  # the good runs' evidence stays


def test_http_500_is_retried_and_then_recorded_as_the_video_error_with_the_server_body():
    with ChatServer(lambda body, n: (500, 'RAW:{"error": {"message": "model overloaded"}}')) as server:
        result = ChatNaturalScorer(server.base_url, "m", api_key_env=None, runs=2, retries=2, **FAST).score(coloured_video(16))
    assert len(server.requests) == 2 * 3  # two runs, three attempts each
    assert result.status == "error" and result.value is None and result.error_code == "request_failed"
    assert "HTTP 500" in result.error and "model overloaded" in result.error and "after 3 attempts" in result.error
    assert f"{server.base_url}/chat/completions" in result.error
    assert [run.attempts for run in result.runs] == [3, 3]


def test_a_transient_failure_is_retried_to_a_score():
    with ChatServer(lambda body, n: (503, "RAW:busy") if n == 1 else (200, "2")) as server:
        result = ChatNaturalScorer(server.base_url, "m", api_key_env=None, runs=1, retries=1, **FAST).score(coloured_video(16))
    assert result.value == 2.0 and result.runs[0].attempts == 2 and len(server.requests) == 2


def test_a_body_that_is_not_a_chat_completion_is_retried_then_an_error():
    with ChatServer(lambda body, n: (200, "RAW:<html>gateway</html>")) as server:
        result = ChatNaturalScorer(server.base_url, "m", api_key_env=None, runs=1, retries=1, **FAST).score(coloured_video(16))
    assert len(server.requests) == 2 and result.error_code == "reply_malformed" and "<html>gateway</html>" in result.error


def test_a_refused_key_is_not_retried_and_the_message_says_which_setting_to_check():
    with ChatServer(lambda body, n: (401, 'RAW:{"error": "invalid api key"}')) as server:
        result = ChatNaturalScorer(server.base_url, "m", api_key="wrong", runs=1, retries=4, **FAST).score(coloured_video(16))
    assert len(server.requests) == 1
    assert "HTTP 401" in result.error and "api_key_env" in result.error and "wrong" not in result.error


def test_a_server_that_is_down_or_too_slow_is_an_error_after_the_retries():
    with ChatServer(lambda body, n: (200, "4")) as server:
        url = server.base_url
    result = ChatNaturalScorer(url, "m", api_key_env=None, runs=1, retries=1, **FAST).score(coloured_video(16))  # closed port
    assert result.error_code == "request_failed" and "no answer" in result.error and result.runs[0].attempts == 2

    def slow(body, n):
        time.sleep(1.0)
        return 200, "4"

    with ChatServer(slow) as server:
        options = FAST | {"timeout_s": 0.2}
        result = ChatNaturalScorer(server.base_url, "m", api_key_env=None, runs=1, retries=1, **options).score(coloured_video(16))
    assert result.error_code == "request_failed" and "timed out" in result.error and len(server.requests) == 2


def test_the_key_comes_from_the_named_environment_variable_and_never_reaches_digest_repr_or_describe(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-0042")
    with ChatServer(lambda body, n: (200, "5")) as server:
        scorer = ChatNaturalScorer(server.base_url, "m", api_key_env="JUDGE_KEY", runs=1, **FAST)
        result = scorer.score(coloured_video(16))
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-secret-0042"
    for text in (scorer.digest, repr(scorer), str(scorer), json.dumps(scorer.describe()), repr(result)):
        assert "sk-secret-0042" not in text
    monkeypatch.setenv("JUDGE_KEY", "sk-another-key")
    assert ChatNaturalScorer(server.base_url, "m", api_key_env="JUDGE_KEY", runs=1, **FAST).digest == scorer.digest


def test_a_missing_key_variable_fails_at_construction_naming_it():
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR.*api_key_env: null"):
        ChatNaturalScorer("http://127.0.0.1:9/v1", "m", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(ValueError, match="base_url"):
        ChatNaturalScorer("127.0.0.1:9/v1", "m", api_key_env=None)


def test_the_digest_changes_with_what_changes_a_score_and_not_with_the_server_or_the_retries():
    base = ChatNaturalScorer("http://127.0.0.1:9/v1", "judge-a", api_key_env=None)
    same = [
        ChatNaturalScorer("https://other.example/v1/", "judge-a", api_key="k", api_key_env=None, timeout_s=5, retries=0, retry_wait_s=0),
    ]
    different = [
        ChatNaturalScorer("http://127.0.0.1:9/v1", "judge-b", api_key_env=None),
        ChatNaturalScorer("http://127.0.0.1:9/v1", "judge-a", api_key_env=None, num_frames=8),
        ChatNaturalScorer("http://127.0.0.1:9/v1", "judge-a", api_key_env=None, long_side=256),
        ChatNaturalScorer("http://127.0.0.1:9/v1", "judge-a", api_key_env=None, jpeg_quality=80),
        ChatNaturalScorer("http://127.0.0.1:9/v1", "judge-a", api_key_env=None, runs=1),
        ChatNaturalScorer("http://127.0.0.1:9/v1", "judge-a", api_key_env=None, temperature=0.0),
    ]
    assert all(other.digest == base.digest for other in same)
    assert len({base.digest, *(other.digest for other in different)}) == 1 + len(different)
    assert base.digest.startswith("sha256:") and base.describe()["digest"] == base.digest


def test_the_rubric_is_in_the_digest(monkeypatch):
    import metrics.backends.natural as natural

    before = ChatNaturalScorer("http://127.0.0.1:9/v1", "m", api_key_env=None).digest
    monkeypatch.setattr(natural, "NATURAL_SCORE_RUBRIC", natural.NATURAL_SCORE_RUBRIC.replace("1 to 5", "1 to 10"))
    assert ChatNaturalScorer("http://127.0.0.1:9/v1", "m", api_key_env=None).digest != before


def test_the_backend_builds_from_a_registry_entry_with_config_options(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    registry = BackendRegistry({"natural": {"openai-chat": "metrics.backends.natural:ChatNaturalScorer"}})
    with ChatServer(lambda body, n: (200, "1")) as server:
        spec = BackendSpec("openai-chat", {"base_url": server.base_url, "model": "m", "runs": 2, "temperature": 0.5} | FAST)
        scorer = registry.build("natural", spec, device="cpu")
        result = scorer.score(coloured_video(16))
    assert result.value == 1.0 and all(request["body"]["temperature"] == 0.5 for request in server.requests)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-env"  # OPENAI_API_KEY, the default variable
    assert registry.weights("natural", spec) == []  # a served model: nothing to stage
    with pytest.raises(ValueError, match="takes no"):
        registry.check("natural", BackendSpec("openai-chat", {"url": "x"}))


def test_frames_that_are_not_uint8_rgb_are_refused_before_any_request():
    scorer = ChatNaturalScorer("http://127.0.0.1:9/v1", "m", api_key_env=None)
    with pytest.raises(ValueError, match=r"`frames\[0\]` must be a uint8 RGB"):
        scorer.score(np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="`frames` is empty"):
        scorer.score([])
