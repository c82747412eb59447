"""A real OpenAI-compatible HTTP server for tests: `/v1/completions`, `/v1/chat/completions` (streamed as server-sent
events, like vLLM) and `/v1/models`, on 127.0.0.1 with a free port, in a background thread (stdlib http.server, so
every byte on the wire — including a connection cut mid-stream — is under the test's control).

    with OpenAIStub(api_key="sk-test") as stub:
        stub.script(Fail(500), Stream(["안녕하세요, ", "반가워요."]))   # first request 500, second streams
        gen = OpenAIGenerator(stub.url, model="counselor", api_key="sk-test")
        ...
        stub.requests[-1].body["prompt"]

Replies are used in order of `script`, then `default` (a Korean answer in several chunks) for every other request.
The stub streams the scripted chunks verbatim: it does not apply `stop` (so client-side stop handling is what a
test sees) and does not count tokens. A request for a model not in `models` gets vLLM's 404; with `api_key` set, a
request without `Authorization: Bearer <api_key>` gets 401.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, Sequence

ANSWER_CHUNKS: tuple[str, ...] = (
    "진로 고민을 나눠 주셔서 고마워요. ",
    "영상기자는 방송국이나 신문사에서 ",
    "뉴스 영상을 촬영하고 편집하는 일을 해요. ",
    "관심이 있다면 학교 방송부 활동부터 시작해 보세요.",
)
ANSWER = "".join(ANSWER_CHUNKS)


@dataclass(frozen=True)
class Stream:
    """A streamed completion: one SSE event per chunk, a final event with `finish_reason`, then `data: [DONE]`."""

    chunks: Sequence[str] = ANSWER_CHUNKS
    finish_reason: str | None = "stop"  # None: no final event
    done: bool = True  # send `data: [DONE]`
    first_byte_delay: float = 0.0  # seconds before the status line
    chunk_delay: float = 0.0  # seconds before each chunk
    cut_after: int | None = None  # close the connection abruptly (no end of the chunked body) after N chunks
    stall_after: int | None = None  # go silent for `stall_s` seconds after N chunks (a stuck server)
    stall_s: float = 0.0
    raw: Sequence[str] | None = None  # send these `data:` payloads verbatim instead of chunks (malformed streams)


@dataclass(frozen=True)
class Fail:
    """An HTTP error with an OpenAI-style error body (or `body` verbatim)."""

    status: int
    message: str = "stub failure"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass(frozen=True)
class Raw:
    """Any response: status, content type and body as given (a server that ignores `stream`, an HTML page...)."""

    body: str
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


Reply = Stream | Fail | Raw | Drop


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None


def whole_completion(text: str, *, chat: bool = False, model: str = "counselor") -> Raw:
    """A non-streamed answer (what a server that ignores `stream: true` sends)."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    obj = {"id": "cmpl-stub", "object": "chat.completion" if chat else "text_completion", "created": 0,
           "model": model, "choices": [choice]}
    return Raw(json.dumps(obj, ensure_ascii=False))


class OpenAIStub:
    def __init__(self, *, models: Sequence[str] = ("counselor",), api_key: str | None = None,
                 default: Reply = Stream()) -> None:
        self.models, self.api_key, self.default = tuple(models), api_key, default
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        assert self._server is not None, "start the stub first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The OpenAI API root, `http://127.0.0.1:PORT/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "OpenAIStub":
        handler = type("StubHandler", (_Handler,), {"stub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes handlers sleeping in a delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "OpenAIStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ scripting

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order (then `default`)."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    def posts(self) -> list[Recorded]:
        """The recorded completion requests (not `GET /v1/models`)."""
        return [r for r in self.requests if r.method == "POST"]

    def _record(self, record: Recorded) -> None:
        with self._lock:
            self.requests.append(record)

    def _next(self) -> Reply:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection is dropped after this
    stub: OpenAIStub

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True  # the client went away (timed out, or stopped reading at a stop string)

    # ------------------------------------------------------------ endpoints

    def _get(self) -> None:
        self.stub._record(Recorded("GET", self.path, self._headers(), None))
        if self.path.rstrip("/") != "/v1/models":
            return self._json(404, {"detail": "Not Found"})
        if not self._authorized():
            return self._unauthorized()
        self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "stub"}
                                                     for m in self.stub.models]})

    def _post(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.stub._record(Recorded("POST", self.path, self._headers(), body))
        chat = self.path == "/v1/chat/completions"
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            return self._json(404, {"detail": "Not Found"})
        if not self._authorized():
            return self._unauthorized()
        if not isinstance(body, dict):
            return self._json(400, {"object": "error", "message": "body is not a JSON object", "code": 400})
        if body.get("model") not in self.stub.models:
            return self._json(404, {"object": "error", "message": f"The model `{body.get('model')}` does not exist.",
                                    "type": "NotFoundError", "param": None, "code": 404})
        reply = self.stub._next()
        if isinstance(reply, Drop):
            self._cut()
        elif isinstance(reply, Fail):
            payload = reply.body if reply.body is not None else json.dumps(
                {"error": {"message": reply.message, "type": "stub_error", "code": reply.status}}, ensure_ascii=False)
            self._send(reply.status, "application/json", payload.encode(), reply.headers)
        elif isinstance(reply, Raw):
            self._send(reply.status, reply.content_type, reply.body.encode())
        else:
            self._stream(reply, chat, str(body["model"]))

    def _stream(self, reply: Stream, chat: bool, model: str) -> None:
        if reply.first_byte_delay and self.stub._closing.wait(reply.first_byte_delay):
            return self._cut()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        obj: dict[str, Any] = {"id": "cmpl-stub", "object": "chat.completion.chunk" if chat else "text_completion",
                               "created": 0, "model": model}

        def event(choice: dict[str, Any]) -> str:
            return json.dumps({**obj, "choices": [{"index": 0, "logprobs": None, **choice}]}, ensure_ascii=False)

        self._chunk(b": stub keep-alive comment\n\n")
        if reply.raw is not None:
            payloads = list(reply.raw)
        else:
            payloads = [event({"delta": {"role": "assistant", "content": ""}, "finish_reason": None})] if chat else []
            payloads += [event({"delta": {"content": c}, "finish_reason": None} if chat
                               else {"text": c, "finish_reason": None}) for c in reply.chunks]
        sent = 0
        for payload in payloads:
            if reply.cut_after is not None and sent >= reply.cut_after:
                return self._cut()
            if reply.chunk_delay and self.stub._closing.wait(reply.chunk_delay):
                return self._cut()
            if sent == reply.stall_after and self.stub._closing.wait(reply.stall_s):
                return self._cut()
            self._chunk(f"data: {payload}\n\n".encode())
            sent += 1
        if reply.cut_after is not None:
            return self._cut()
        if reply.raw is None and reply.finish_reason is not None:
            last = {"delta": {}} if chat else {"text": ""}
            self._chunk(f"data: {event({**last, 'finish_reason': reply.finish_reason})}\n\n".encode())
        if reply.done:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ------------------------------------------------------------ wire helpers

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _authorized(self) -> bool:
        return self.stub.api_key is None or self.headers.get("Authorization") == f"Bearer {self.stub.api_key}"

    def _unauthorized(self) -> None:
        self._json(401, {"error": "Unauthorized"})

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, "application/json", json.dumps(obj, ensure_ascii=False).encode())

    def _send(self, status: int, ctype: str, data: bytes, headers: Mapping[str, str] = {}) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _cut(self) -> None:
        """Close the connection at once, mid-response (a crashed or restarted server)."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
