"""A real HTTP server on loopback that speaks just enough of the OpenAI chat-completions API.

It answers GET /v1/models and POST /v1/chat/completions, records every request and counts those
in flight. ``reply(messages)`` scripts the answer: a string is the message text, a dict is the
whole message (``content``, ``tool_calls``, ``reasoning_content``...; ``finish_reason`` too).
``failures`` queues HTTP errors for the next requests. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def scripted_reply(messages: list[dict[str, Any]]) -> str | dict[str, Any]:
    """List the home folder first, then answer; both with the closing tag stripped."""
    if messages[-1]["content"].startswith("Tool output ("):
        return "<think>I have looked; report back.</think>\n<answer>Your home folder is listed above."
    return '<think>Look at the home folder first.</think>\n<tool_call>{"name": "list_folder", "arguments": {}}'


class FakeOpenAI:
    """GET /v1/models and POST /v1/chat/completions; records requests and counts those in flight."""

    def __init__(self, models: tuple[str, ...] = ("fake",)) -> None:
        self.models = models
        self.reply: Callable[[list[dict[str, Any]]], str | dict[str, Any]] = scripted_reply
        self.failures: list[tuple[int, dict[str, Any]]] = []  # (status, body) for the next completions
        self.delay = 0.0
        self.api_key: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path != "/v1/models":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in fake.models]
                self._send(200, {"object": "list", "data": data})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorized():
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                if body["model"] not in fake.models:
                    message = f"The model `{body['model']}` does not exist."
                    self._send(404, {"error": {"message": message, "type": "NotFoundError", "code": 404}})
                    return
                with fake._lock:
                    fake.requests.append(body)
                    failure = fake.failures.pop(0) if fake.failures else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake.closing.wait(fake.delay)
                    reply = fake.reply(body["messages"]) if failure is None else {}
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                if failure is not None:
                    self._send(*failure)
                    return
                message = {"role": "assistant", "content": reply} if isinstance(reply, str) else dict(reply)
                finish = message.pop("finish_reason", "tool_calls" if message.get("tool_calls") else "stop")
                choice = {"index": 0, "message": message, "finish_reason": finish}
                usage = {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
                response = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"]}
                self._send(200, {**response, "choices": [choice], "usage": usage})

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization", "")
                fake.authorizations.append(header)
                if fake.api_key is None or header == f"Bearer {fake.api_key}":
                    return True
                self._send(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}})
                return False

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler


def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy may carry a request off this machine, and no real key goes anywhere."""
    for name in (*PROXY_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
