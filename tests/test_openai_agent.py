"""The OpenAI-compatible agent against a real HTTP server on loopback that speaks just enough of the API.

The server scripts protocol replies with the closing tag stripped, as servers do when they stop
on it, so the tests also prove the agent puts the tag back. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mosaic_gym import ToolEnv
from mosaic_gym.agents.base import AgentRuntimeError, Turn
from mosaic_gym.agents.openai_agent import STOP, OpenAIAgent, convert_messages, restore_stop
from mosaic_gym.agents.registry import AgentConfigError, AgentOptions, make_agent
from mosaic_gym.cli import main
from mosaic_gym.evaluation import TRAJECTORIES, EvalConfig, load_records, run_eval

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def scripted_reply(messages: list[dict[str, Any]]) -> str:
    """List the home folder first, then answer; both with the closing tag stripped."""
    if messages[-1]["content"].startswith("Tool output ("):
        return "<think>I have looked; report back.</think>\n<answer>Your home folder is listed above."
    return '<think>Look at the home folder first.</think>\n<tool_call>{"name": "list_folder", "arguments": {}}'


class FakeOpenAI:
    """GET /v1/models and POST /v1/chat/completions; records requests and counts those in flight."""

    def __init__(self, models: tuple[str, ...] = ("fake",)) -> None:
        self.models = models
        self.reply: Callable[[list[dict[str, Any]]], str] = scripted_reply
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
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake.closing.wait(fake.delay)
                    text = fake.reply(body["messages"])
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
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


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy may carry a request off this machine, and no real key goes anywhere."""
    for name in (*PROXY_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _turns(count: int) -> list[Turn]:
    turns = []
    for seed in range(count):
        env = ToolEnv("files", split="heldout")
        observation, info = env.reset(seed=seed)
        turns.append(Turn(env, observation, info, seed))
    return turns


def _error_lines(stderr: str) -> list[str]:
    """stderr without the progress bar, which the eval command draws before the agent is built."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line and not line.startswith("eval ")]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_eval_through_the_endpoint_parses_every_reply(server: FakeOpenAI, tmp_path: Path) -> None:
    config = EvalConfig(agent="openai", model="fake", base_url=server.url, episodes=5, envs=("mosaic_gym/Files-v0",))
    metrics = run_eval(config, tmp_path)
    assert metrics["overall"]["episodes"] == 5
    records = load_records(tmp_path / TRAJECTORIES)
    steps = [step for record in records.values() for step in record["steps"]]
    assert len(steps) == 10 and all(step["format_error"] is None for step in steps)
    assert {step["text"].rsplit("</", 1)[-1] for step in steps} == {"tool_call>", "answer>"}, "closing tags restored"
    assert len(server.requests) == 10, "one per reply: the preflight found the model in the listing"
    for request in server.requests:
        assert request["stop"] == STOP and request["model"] == "fake" and request["seed"] == 0
        assert request["temperature"] == 0.0 and request["messages"][0]["role"] == "system"
        assert {m["role"] for m in request["messages"]} <= {"system", "user", "assistant"}
    second = [r for r in server.requests if len(r["messages"]) == 4]
    assert len(second) == 5
    tool_message = second[0]["messages"][3]
    assert tool_message["role"] == "user" and tool_message["content"].startswith("Tool output (list_folder):\n")
    assert second[0]["messages"][2]["content"].endswith("</tool_call>"), "the restored tag is in the history sent"
    assert all(header == "Bearer not-needed" for header in server.authorizations)


def test_replies_come_back_in_order_with_the_concurrency_limit_kept(server: FakeOpenAI) -> None:
    server.delay = 0.15
    server.reply = lambda messages: f"<think>{len(messages[1]['content'])}</think><answer>ok"
    agent = OpenAIAgent(server.url, "fake", concurrency=3)
    turns = _turns(9)
    started = time.monotonic()
    replies = agent.act_batch(turns)
    elapsed = time.monotonic() - started
    assert server.max_in_flight == 3, "never more than the limit, and the limit is used"
    assert elapsed < 9 * server.delay, "requests ran concurrently"
    for turn, reply in zip(turns, replies, strict=True):
        assert reply == f"<think>{len(turn.info['messages'][1]['content'])}</think><answer>ok</answer>"
    assert agent.tokens_used == {id(turn.env): 7 for turn in turns}
    agent.act_batch(turns[:1])
    assert agent.tokens_used[id(turns[0].env)] == 7, "step 0 again: a new episode starts the count afresh"


def test_an_unreachable_endpoint_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    environment = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    command = [sys.executable, "-m", "mosaic_gym.cli", "eval", "--agent", "openai", "--model", "m", "--base-url", url]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "run")], capture_output=True, text=True, env=environment, timeout=60
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = _error_lines(result.stderr)
    assert line.startswith(f"mosaic-gym eval: error: cannot reach {url} (model 'm'): ") and "refused" in line


def test_an_unknown_model_is_one_line_naming_what_is_served(
    server: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--agent", "openai", "--model", "nope", "--base-url", server.url, "--out", str(tmp_path)]
    assert main(argv) == 2
    expected = f"mosaic-gym eval: error: model 'nope' not found at {server.url}; it serves: fake"
    assert _error_lines(capsys.readouterr().err) == [expected]


def test_a_wrong_api_key_is_one_line(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    server.api_key = "secret"
    monkeypatch.setenv("MY_KEY", "wrong")
    with pytest.raises(AgentRuntimeError, match=r"refused the API key \(401\); set it in \$MY_KEY") as caught:
        OpenAIAgent(server.url, "fake", api_key_env="MY_KEY", max_retries=0)
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("MY_KEY", "secret")
    OpenAIAgent(server.url, "fake", api_key_env="MY_KEY")
    assert server.authorizations[-1] == "Bearer secret"


def test_a_server_slower_than_the_timeout_is_one_line(server: FakeOpenAI) -> None:
    agent = OpenAIAgent(server.url, "fake", timeout=0.3, max_retries=0)
    server.delay = 5.0
    started = time.monotonic()
    with pytest.raises(AgentRuntimeError, match=r"no reply from .* within 0.3 s") as caught:
        agent.act_batch(_turns(2))
    assert "\n" not in str(caught.value) and time.monotonic() - started < 3


def test_a_url_without_the_api_root_says_so(server: FakeOpenAI) -> None:
    with pytest.raises(AgentRuntimeError, match="usually ends in /v1"):
        OpenAIAgent(server.url.removesuffix("/v1"), "fake", max_retries=0)


def test_the_registry_asks_for_model_and_base_url() -> None:
    with pytest.raises(AgentConfigError, match="needs --base-url and --model"):
        make_agent("openai", AgentOptions(model="m"))
    with pytest.raises(AgentConfigError, match="needs --base-url and --model"):
        make_agent("openai", AgentOptions(base_url="http://127.0.0.1:1/v1"))
    with pytest.raises(AgentConfigError, match="expected an http"):
        make_agent("openai", AgentOptions(model="m", base_url="127.0.0.1:8000"))


def test_tool_messages_become_user_messages() -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
        {"role": "tool", "name": "read_file", "content": "T"},
    ]
    assert convert_messages(messages)[3] == {"role": "user", "content": "Tool output (read_file):\nT"}
    assert convert_messages(messages)[:3] == messages[:3]


@pytest.mark.parametrize(
    ("text", "finish_reason", "expected"),
    [
        ("<think>p</think><answer>done", "stop", "<think>p</think><answer>done</answer>"),
        ("<think>p</think><refuse>no", "stop", "<think>p</think><refuse>no</refuse>"),
        ("<think>p</think><answer>done</answer>", "stop", "<think>p</think><answer>done</answer>"),
        ("<think>p</think><answer>cut", "length", "<think>p</think><answer>cut"),
        ("<think>unfinished", "stop", "<think>unfinished"),
        ("", "stop", ""),
    ],
)
def test_the_stripped_stop_tag_is_put_back_only_after_a_stop(text: str, finish_reason: str, expected: str) -> None:
    assert restore_stop(text, finish_reason) == expected
