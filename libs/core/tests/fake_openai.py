"""A small OpenAI-compatible HTTP server for tests, on 127.0.0.1 with a free port.

It answers, in the real OpenAI response formats:

- ``POST /v1/embeddings``: deterministic unit vectors seeded by the sha256 of each text
  (``fake_embedding``), as float lists or base64 little-endian float32 (``encoding_format``), honouring
  ``dimensions``; it rejects empty strings and more than 2,048 inputs like the real API.
- ``POST /v1/chat/completions``: a ``chat.completion`` with a ``usage`` block (tokens estimated at
  four characters each) whose assistant message is whatever ``responder(request_body)`` returns
  (default: echo the last user message; ``labelling_responder`` answers the labeller's interpreter
  and predictor prompts like a small, fast, deterministic LLM).
- ``GET /v1/models``: one model.

Tests can script failures (``fail_next(429, headers={"retry-after-ms": "10"})``), hang a request
past the client's timeout (``hang_next()``), slow every answer (``delay_s``) and inspect what was
sent (``requests``, ``chat_calls``, ``answered_chat_calls``). Requests are served on threads, so
hundreds may be in flight at once. Only the standard library is used, so any package's tests can
import this file. Usage::

    with serve_fake_openai(dim=32) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ChatResponder = Callable[[dict[str, Any]], str]
"""Turns a chat completion request body into the assistant's reply text."""

MAX_EMBEDDING_INPUTS = 2048


def fake_embedding(text: str, dim: int) -> list[float]:
    """The deterministic unit vector the fake server returns for `text`."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    generator = random.Random(seed)
    values = [generator.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(value * value for value in values))
    return [value / norm for value in values]


def echo_responder(body: dict[str, Any]) -> str:
    """The default chat responder: the content of the last user message."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


# The labelling prompts' layout, as featurelens.interp.prompts writes it (PROMPT_VERSION interp-2026.11-1).
_FIRING_HEADER = "Documents on which the feature fires"
_NEGATIVE_HEADER = "Documents on which the feature does not fire"
_LABEL_LINE = re.compile(r"^Feature label: (.*)$", re.MULTILINE)
_FIRING_DOCUMENT = re.compile(r"^\d+\. \(activation \d+\) (.*)$")
_NUMBERED_DOCUMENT = re.compile(r"^(\d+)\. (.*)$")
_WORD = re.compile(r"[a-z][a-z0-9-]{3,}")
# Common words a label made of "distinctive words" should not be made of.
_STOPWORD_TEXT = """
about above after again against also among analysis approach based been before being below between
both could data different does doing done during each either even find first found from further
have having here however into itself just many method methods model models more most much must
neither only other over paper present presented propose proposed provide results same second several
should show shown since some studies study such than that their them then there these they this those
through thus under until used uses using very well were what when where which while with within
without would your
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
LABEL_WORDS = 3
"""Words in a label that ``labelling_responder`` writes."""


def _words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


def _user_text(body: dict[str, Any]) -> str:
    return "\n".join(
        message["content"]
        for message in body.get("messages", [])
        if message.get("role") == "user" and isinstance(message.get("content"), str)
    )


def labelling_responder(body: dict[str, Any]) -> str:
    """Answers featurelens's labelling prompts like a small deterministic LLM; echoes anything else.

    An interpreter prompt gets ``{"label": "w1 w2 w3"}``: the words found in the most firing
    documents and the fewest non-firing ones (ties: first seen). A predictor prompt gets
    ``{"predictions": [{"id": i, "score": s}, ...]}`` for every numbered document, ``s`` being
    0-10 by the share of the label's words the document contains.
    """
    text = _user_text(body)
    if _FIRING_HEADER in text:
        return json.dumps({"label": _label_from(text)})
    label = _LABEL_LINE.search(text)
    if label is not None:
        return json.dumps({"predictions": _predictions_for(label.group(1), text)})
    return echo_responder(body)


def _label_from(prompt: str) -> str:
    firing: list[str] = []
    negatives: list[str] = []
    section: list[str] | None = None
    for line in prompt.splitlines():
        if line.startswith(_FIRING_HEADER):
            section = firing
        elif line.startswith(_NEGATIVE_HEADER):
            section = negatives
        elif not line.strip():
            section = None if section is negatives else section
        elif section is firing:
            match = _FIRING_DOCUMENT.match(line)
            if match:
                firing.append(match.group(1))
        elif section is negatives:
            match = _NUMBERED_DOCUMENT.match(line)
            if match:
                negatives.append(match.group(2))
    firing_counts = Counter(word for document in firing for word in set(_words(document)))
    negative_counts = Counter(word for document in negatives for word in set(_words(document)))
    first_seen: dict[str, int] = {}
    for document in firing:
        for word in _words(document):
            first_seen.setdefault(word, len(first_seen))
    firing_share, negative_share = max(len(firing), 1), max(len(negatives), 1)
    scored = sorted(
        firing_counts,
        key=lambda word: (
            -(firing_counts[word] / firing_share - negative_counts[word] / negative_share),
            first_seen[word],
        ),
    )
    chosen = scored[:LABEL_WORDS] or ["unlabelled", "documents"]
    return " ".join(chosen)


def _predictions_for(label: str, prompt: str) -> list[dict[str, int]]:
    label_words = set(_words(label))
    predictions = []
    for line in prompt.splitlines():
        match = _NUMBERED_DOCUMENT.match(line)
        if match is None:
            continue
        shared = label_words.intersection(_words(match.group(2)))
        score = round(10 * len(shared) / len(label_words)) if label_words else 0
        predictions.append({"id": int(match.group(1)), "score": score})
    return predictions


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass(frozen=True)
class _Failure:
    status: int
    headers: dict[str, str]
    message: str


@dataclass(frozen=True)
class _Hang:
    seconds: float


@dataclass
class FakeOpenAI:
    """Handle on a running fake server (see `serve_fake_openai`)."""

    base_url: str
    """Base URL to give the openai client, ending in /v1."""
    dim: int
    """Default embedding dimension."""
    model: str
    """Model name reported in responses."""
    responder: ChatResponder = echo_responder
    """Produces chat completion replies; may be replaced while the server runs."""
    delay_s: float = 0.0
    """Seconds to wait before answering each request (interrupted when the server stops)."""
    api_key: str | None = None
    """When set, requests without `Authorization: Bearer <api_key>` get 401."""
    requests: list[RecordedRequest] = field(default_factory=list)
    answered_chat_calls: int = 0
    """Chat completion requests answered with 200 (scripted failures and hangs not counted)."""
    _failures: list[_Failure | _Hang] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def fail_next(
        self,
        status: int = 429,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        message: str = "Rate limit reached; please retry.",
    ) -> None:
        """Answer the next `times` requests with HTTP `status` and an OpenAI-style error body."""
        with self._lock:
            self._failures.extend([_Failure(status, dict(headers or {}), message)] * times)

    def hang_next(self, *, times: int = 1, seconds: float = 30.0) -> None:
        """Hold the next `times` requests for `seconds` (or until the server stops), then drop them
        unanswered: a client with a shorter timeout sees a timeout."""
        with self._lock:
            self._failures.extend([_Hang(seconds)] * times)

    def calls_to(self, path: str) -> int:
        """How many requests (failed ones included) reached `path`, e.g. "/v1/embeddings"."""
        with self._lock:
            return sum(1 for request in self.requests if request.path == path)

    @property
    def embedding_calls(self) -> int:
        """Requests to /v1/embeddings so far."""
        return self.calls_to("/v1/embeddings")

    @property
    def chat_calls(self) -> int:
        """Requests to /v1/chat/completions so far."""
        return self.calls_to("/v1/chat/completions")

    def embedding_for(self, text: str, dim: int | None = None) -> list[float]:
        """The vector this server returns for `text`."""
        return fake_embedding(text, dim or self.dim)

    def _record(self, request: RecordedRequest) -> _Failure | _Hang | None:
        with self._lock:
            self.requests.append(request)
            return self._failures.pop(0) if self._failures else None


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive as the openai client expects, and no Nagle delay (or every call costs ~40 ms).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        if not self._before_answer(None):
            return
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": self.server.fake.model, "object": "model", "created": 0, "owned_by": "fake"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send_error(404, f"Unknown path {self.path}", "invalid_request_error")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            self._send_error(400, "The request body is not valid JSON.", "invalid_request_error")
            return
        if not self._before_answer(body):
            return
        if self.path == "/v1/embeddings":
            self._embeddings(body)
        elif self.path == "/v1/chat/completions":
            self._chat(body, raw)
        else:
            self._send_error(404, f"Unknown path {self.path}", "invalid_request_error")

    def _before_answer(self, body: dict[str, Any] | None) -> bool:
        """Record the request, wait `delay_s`, apply auth and scripted failures; False when answered."""
        fake = self.server.fake
        headers = {name.lower(): value for name, value in self.headers.items()}
        failure = fake._record(RecordedRequest(self.command, self.path, headers, body))
        if isinstance(failure, _Hang):
            fake._stopping.wait(failure.seconds)
            self.close_connection = True
            return False
        if fake.delay_s > 0 and fake._stopping.wait(fake.delay_s):
            return False
        if fake.api_key is not None and headers.get("authorization") != f"Bearer {fake.api_key}":
            self._send_error(
                401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
            )
            return False
        if failure is not None:
            kind = "rate_limit_exceeded" if failure.status == 429 else "server_error"
            self._send_error(failure.status, failure.message, kind, headers=failure.headers)
            return False
        return True

    def _embeddings(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            self._send_error(400, "'input' must be a string or a list of strings.", "invalid_request_error")
            return
        if not texts or any(text == "" for text in texts):
            self._send_error(
                400, "'$.input' is invalid: empty strings are not allowed.", "invalid_request_error"
            )
            return
        if len(texts) > MAX_EMBEDDING_INPUTS:
            self._send_error(
                400, f"'$.input' must have at most {MAX_EMBEDDING_INPUTS} items.", "invalid_request_error"
            )
            return
        dim = int(body.get("dimensions") or fake.dim)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dim)
            embedding: list[float] | str = (
                base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii") if as_base64 else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(_approximate_tokens(text) for text in texts)
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", fake.model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _chat(self, body: dict[str, Any], raw: bytes) -> None:
        fake = self.server.fake
        if body.get("stream"):
            self._send_error(400, "The fake server does not stream.", "invalid_request_error")
            return
        content = fake.responder(body)
        # About four characters a token, plus a few per message for the role and separators.
        prompt_tokens = sum(
            _approximate_tokens(str(message.get("content") or "")) + 3 for message in body.get("messages", [])
        )
        completion_tokens = _approximate_tokens(content)
        with fake._lock:
            fake.answered_chat_calls += 1
        digest = hashlib.sha256(raw).hexdigest()[:24]
        self._send(
            200,
            {
                "id": f"chatcmpl-{digest}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": body.get("model", fake.model),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _send_error(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        error = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._send(status, error, headers)

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test); nothing to answer.
            pass


def _approximate_tokens(text: str) -> int:
    return len(text) // 4 + 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops connections when a client opens dozens at once.
    request_queue_size = 256

    def __init__(self, fake: FakeOpenAI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def serve_fake_openai(
    *,
    dim: int = 64,
    model: str = "fake-embedding-model",
    responder: ChatResponder | None = None,
    delay_s: float = 0.0,
    api_key: str | None = None,
) -> Iterator[FakeOpenAI]:
    """Run a fake OpenAI-compatible server on 127.0.0.1 for the duration of the `with` block."""
    fake = FakeOpenAI(
        base_url="",
        dim=dim,
        model=model,
        responder=responder or echo_responder,
        delay_s=delay_s,
        api_key=api_key,
    )
    server = _Server(fake)
    host, port = server.server_address[:2]
    fake.base_url = f"http://{host!s}:{port}/v1"
    # A short poll interval keeps shutdown (once per test) fast.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake._stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
