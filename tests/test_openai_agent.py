"""The OpenAI-compatible agent in the text protocol, against the loopback server of ``fake_openai``.

The server scripts protocol replies with the closing tag stripped, as servers do when they stop
on it, so the tests also prove the agent puts the tag back. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosaic_gym import ToolEnv
from mosaic_gym.agent import AgentConfigError, AgentRuntimeError, Turn
from mosaic_gym.agents.openai_agent import STOP, OpenAIAgent, convert_messages, restore_stop
from mosaic_gym.agents.registry import AgentOptions, make_agent
from mosaic_gym.cli.main import main
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, load_records, run_eval
from mosaic_gym.rollout import EpisodeSpec, make_turn
from tests.fake_openai import PROXY_VARIABLES, FakeOpenAI, loopback_only


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_only(monkeypatch)


def _turns(count: int) -> list[Turn]:
    turns = []
    for seed in range(count):
        env = ToolEnv("files", split="heldout")
        observation, info = env.reset(seed=seed)
        turns.append(make_turn(env, observation, info, info["tools"], EpisodeSpec(seed), slot=seed))
    return turns


def _error_lines(stderr: str) -> list[str]:
    """stderr without the progress bar, which the eval command draws before the agent is built."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line and not line.startswith("eval ")]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_eval_through_the_endpoint_parses_every_reply(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    config = EvalConfig(
        agent="openai", model="fake", base_url=openai_server.url, episodes=5, envs=("mosaic_gym/Files-v0",)
    )
    metrics = run_eval(config, tmp_path)
    assert metrics["overall"]["episodes"] == 5
    records = load_records(tmp_path / TRAJECTORIES)
    steps = [step for record in records.values() for step in record["steps"]]
    assert len(steps) == 10 and all(step["format_error"] is None for step in steps)
    assert {step["text"].rsplit("</", 1)[-1] for step in steps} == {"tool_call>", "answer>"}, "closing tags restored"
    assert len(openai_server.requests) == 10, "one per reply: the preflight found the model in the listing"
    for request in openai_server.requests:
        assert request["stop"] == STOP and request["model"] == "fake" and request["seed"] == 0
        assert request["temperature"] == 0.0 and request["messages"][0]["role"] == "system"
        assert {m["role"] for m in request["messages"]} <= {"system", "user", "assistant"}
    second = [r for r in openai_server.requests if len(r["messages"]) == 4]
    assert len(second) == 5
    tool_message = second[0]["messages"][3]
    assert tool_message["role"] == "user" and tool_message["content"].startswith("Tool output (list_folder):\n")
    assert second[0]["messages"][2]["content"].endswith("</tool_call>"), "the restored tag is in the history sent"
    assert all(header == "Bearer not-needed" for header in openai_server.authorizations)


def test_replies_come_back_in_order_with_the_concurrency_limit_kept(openai_server: FakeOpenAI) -> None:
    openai_server.delay = 0.15
    openai_server.reply = lambda messages: f"<think>{len(messages[1]['content'])}</think><answer>ok"
    agent = OpenAIAgent(openai_server.url, "fake", concurrency=3)
    turns = _turns(9)
    started = time.monotonic()
    replies = agent.act_batch(turns)
    elapsed = time.monotonic() - started
    assert openai_server.max_in_flight == 3, "never more than the limit, and the limit is used"
    assert elapsed < 9 * openai_server.delay, "requests ran concurrently"
    for turn, reply in zip(turns, replies, strict=True):
        assert reply == f"<think>{len(turn.messages[1]['content'])}</think><answer>ok</answer>"
    assert agent.tokens_used == {turn.slot: 7 for turn in turns}
    agent.act_batch(turns[:1])
    assert agent.tokens_used[turns[0].slot] == 7, "step 0 again: a new episode starts the count afresh"


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
    openai_server: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--agent", "openai", "--model", "nope", "--base-url", openai_server.url, "--out", str(tmp_path)]
    assert main(argv) == 2
    expected = f"mosaic-gym eval: error: model 'nope' not found at {openai_server.url}; it serves: fake"
    assert _error_lines(capsys.readouterr().err) == [expected]


def test_a_wrong_api_key_is_one_line(openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    openai_server.api_key = "secret"
    monkeypatch.setenv("MY_KEY", "wrong")
    with pytest.raises(AgentRuntimeError, match=r"refused the API key \(401\); set it in \$MY_KEY") as caught:
        OpenAIAgent(openai_server.url, "fake", api_key_env="MY_KEY", max_retries=0)
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("MY_KEY", "secret")
    OpenAIAgent(openai_server.url, "fake", api_key_env="MY_KEY")
    assert openai_server.authorizations[-1] == "Bearer secret"


def test_a_server_slower_than_the_timeout_is_one_line(openai_server: FakeOpenAI) -> None:
    agent = OpenAIAgent(openai_server.url, "fake", timeout=0.3, max_retries=0)
    openai_server.delay = 5.0
    started = time.monotonic()
    with pytest.raises(AgentRuntimeError, match=r"no reply from .* within 0.3 s") as caught:
        agent.act_batch(_turns(2))
    assert "\n" not in str(caught.value) and time.monotonic() - started < 3


def test_a_url_without_the_api_root_says_so(openai_server: FakeOpenAI) -> None:
    with pytest.raises(AgentRuntimeError, match="usually ends in /v1"):
        OpenAIAgent(openai_server.url.removesuffix("/v1"), "fake", max_retries=0)


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
