"""The OpenAI-compatible agent in the native protocol, against the loopback server of ``fake_openai``.

The server answers with ``tool_calls``, parallel calls, ``reasoning_content``, malformed
arguments, refusals, HTTP errors and delays; each is either read as the model's doing (an
action or a counted format error) or ends as one line for the user, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mosaic_gym import ToolEnv
from mosaic_gym.agent import AgentRuntimeError
from mosaic_gym.agents.openai_agent import OpenAIAgent, native_messages
from mosaic_gym.cli.main import main
from mosaic_gym.evaluation.compare import compare, format_table, load
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, load_records, run_eval
from mosaic_gym.native import NOT_EXECUTED, REFUSE_TOOL
from mosaic_gym.rollout import EpisodeSpec, Trajectory, rollout
from tests.fake_openai import FakeOpenAI, scripted_reply

FILES = ("mosaic_gym/Files-v0",)
Script = Callable[[list[dict[str, Any]]], dict[str, Any]]


def call(name: str, arguments: dict[str, Any] | str, id: str) -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id, "type": "function", "function": {"name": name, "arguments": raw}}


def look_then_answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A reasoning model: list the home folder, then answer once the tool result is back."""
    if messages[-1]["role"] == "tool":
        return {"content": "Your home folder is listed above.", "reasoning_content": "I have looked."}
    return {"content": None, "reasoning_content": "Look first.", "tool_calls": [call("list_folder", {}, "call_1")]}


def _play(server: FakeOpenAI, script: Script, task: str | None = None, **agent: Any) -> Trajectory:
    server.reply = script
    model = OpenAIAgent(server.url, "fake", protocol="native", max_retries=0, **agent)
    env = lambda: ToolEnv("files", split="all", protocol="native", max_steps=4)  # noqa: E731
    [trajectory] = rollout(model, env, [EpisodeSpec(seed=0, task=task)], batch_size=1)
    return trajectory


def test_native_eval_sends_tools_and_ids_and_records_reasoning_and_the_protocol(
    openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    openai_server.reply = look_then_answer
    config = EvalConfig(
        agent="openai", model="fake", base_url=openai_server.url, episodes=2, envs=FILES, protocol="native"
    )
    metrics = run_eval(config, tmp_path)
    assert metrics["run"]["protocol"] == "native" and metrics["overall"]["format_error_rate"]["value"] == 0
    probe, *requests = openai_server.requests
    assert probe["tools"][0]["function"]["name"] == REFUSE_TOOL and probe["max_tokens"] == 1, "preflight with a tool"
    assert len(requests) == 4
    for request in requests:
        assert "stop" not in request
        assert [t["function"]["name"] for t in request["tools"]][-1] == REFUSE_TOOL
    second = next(r for r in requests if len(r["messages"]) == 4)
    assert second["messages"][2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [call("list_folder", {}, "call_1")],
    }
    assert second["messages"][3]["role"] == "tool" and second["messages"][3]["tool_call_id"] == "call_1"
    assert set(second["messages"][3]) == {"role", "tool_call_id", "content"}, "no fields the API does not define"
    for record in load_records(tmp_path / TRAJECTORIES).values():
        assert record["protocol"] == "native"
        assert [step["plan"] for step in record["steps"]] == ["Look first.", "I have looked."]
        assert record["steps"][0]["reply"]["tool_calls"] == [call("list_folder", {}, "call_1")]
        assert record["outcome"]["answered"] and record["outcome"]["agent_tokens"] == 14, "7 tokens per reply"
    html = (tmp_path / "report.html").read_text()
    assert "plan (reasoning)" in html and "call_1" in html


def test_parallel_calls_run_the_first_and_answer_the_others_not_executed(openai_server: FakeOpenAI) -> None:
    def parallel(messages: list[dict[str, Any]]) -> dict[str, Any]:
        if messages[-1]["role"] == "tool":
            return {"content": "Done."}
        calls = [call("list_folder", {}, "a"), call("read_file", {"path": "~/x"}, "b"), call("list_folder", {}, "c")]
        return {"content": "", "tool_calls": calls}

    trajectory = _play(openai_server, parallel)
    assert [step.action.tool if step.action else None for step in trajectory.steps] == ["list_folder", None]
    assert [e.tool for e in trajectory.steps[0].journal] == ["list_folder"], "read_file never ran"
    history = openai_server.requests[-1]["messages"]
    assert [(m["role"], m.get("tool_call_id")) for m in history[2:]] == [
        ("assistant", None),
        ("tool", "a"),
        ("tool", "b"),
        ("tool", "c"),
    ]
    assert history[4]["content"] == NOT_EXECUTED.format(first="list_folder")
    assert trajectory.outcome is not None and trajectory.outcome.steps == 2 and trajectory.outcome.format_errors == 0


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"tool_calls": [call("read_file", '{"path": "~/a', "x")]}, "are not valid JSON"),
        ({"tool_calls": [call("read_file", '"~/a"', "x")]}, "must be a JSON object"),
        ({"content": '<tool_call>{"name": "list_folder", "arguments": {}}</tool_call>'}, "writes a tool call"),
        ({"content": "", "finish_reason": "length"}, "The reply is empty"),
    ],
)
def test_malformed_calls_are_the_models_format_errors_and_the_history_stays_valid(
    openai_server: FakeOpenAI, reply: dict[str, Any], error: str
) -> None:
    def once_bad(messages: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(reply) if len(messages) == 2 else {"content": "Giving up."}

    trajectory = _play(openai_server, once_bad)
    bad, answer = trajectory.steps
    assert bad.format_error is not None and error in bad.format_error and bad.action is None
    assert answer.action is not None and answer.action.kind == "answer"
    assert trajectory.outcome is not None and trajectory.outcome.format_errors == 1
    history = openai_server.requests[-1]["messages"]
    assert "tool_calls" not in history[2], "an unreadable call is never sent back to the server"
    assert history[3] == {"role": "user", "content": f"Format error: {bad.format_error}"}


def test_refusal_is_the_refuse_tool_and_a_declining_text_is_an_answer(openai_server: FakeOpenAI) -> None:
    harmful = "files.dox_ex_partner"
    refused = _play(
        openai_server,
        lambda m: {"content": "", "tool_calls": [call(REFUSE_TOOL, {"reason": "That would hurt someone."}, "r")]},
        harmful,
    )
    assert refused.outcome is not None and refused.outcome.refused and refused.outcome.refusal_step == 1
    declined = _play(openai_server, lambda m: {"content": "Sorry, I can't help with that."}, harmful)
    assert declined.outcome is not None and not declined.outcome.refused and declined.outcome.answered
    assert declined.outcome.harms == [], "no harm done, though no refusal counted"


@pytest.mark.parametrize(
    "reply",
    [
        {"content": "Done.", "reasoning": "ollama names it reasoning"},
        {"content": "<think>ollama names it reasoning</think>\nDone."},
        {"content": "ollama names it reasoning</think>\n\nDone."},
    ],
)
def test_reasoning_in_any_of_its_places_is_the_plan(openai_server: FakeOpenAI, reply: dict[str, Any]) -> None:
    [step] = _play(openai_server, lambda m: dict(reply)).steps
    assert step.action is not None and step.action.plan == "ollama names it reasoning"
    assert step.action.message == "Done." and step.format_error is None


def test_a_server_without_tool_calling_is_one_line_with_a_hint(
    openai_server: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    openai_server.failures = [(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})]
    argv = ["eval", "--agent", "openai", "--model", "fake", "--base-url", openai_server.url, "--protocol", "native"]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith(f"mosaic-gym eval: error: {openai_server.url} (model 'fake') answered 400: {message}")
    assert err[0].endswith("(--protocol native needs a server with tool calling on; see docs/agents.md)")


def test_server_errors_and_timeouts_mid_run_are_one_line(openai_server: FakeOpenAI) -> None:
    agent = OpenAIAgent(openai_server.url, "fake", protocol="native", max_retries=0, timeout=0.3)
    env = ToolEnv("files", split="all", protocol="native")
    env.reset(seed=0)
    openai_server.failures = [(500, {"error": {"message": "CUDA out of memory", "type": "InternalServerError"}})]
    with pytest.raises(AgentRuntimeError, match=r"answered 500: CUDA out of memory$") as caught:
        list(rollout(agent, lambda: env, [EpisodeSpec(seed=0)], batch_size=1))
    assert "\n" not in str(caught.value)
    openai_server.delay = 5.0
    with pytest.raises(AgentRuntimeError, match=r"no reply from .* within 0.3 s"):
        list(rollout(agent, lambda: env, [EpisodeSpec(seed=0)], batch_size=1))


def test_native_messages_keep_only_what_the_api_defines() -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "assistant", "content": "", "reasoning_content": "R", "tool_calls": [call("f", {}, "1")]},
        {"role": "tool", "tool_call_id": "1", "name": "f", "content": "T"},
    ]
    assert native_messages(messages) == [
        {"role": "system", "content": "S"},
        {"role": "assistant", "content": "", "tool_calls": [call("f", {}, "1")]},
        {"role": "tool", "tool_call_id": "1", "content": "T"},
    ]


def test_compare_puts_a_text_run_beside_a_native_run_of_the_same_model(
    openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    base = {"agent": "openai", "model": "fake", "base_url": openai_server.url, "episodes": 3, "envs": FILES}
    openai_server.reply = scripted_reply
    run_eval(EvalConfig(**base), tmp_path / "text")
    openai_server.reply = look_then_answer
    run_eval(EvalConfig(**base, protocol="native"), tmp_path / "native")
    comparison = compare([load(tmp_path / "text"), load(tmp_path / "native")])
    table = format_table(comparison)
    assert "note: runs differ in protocol: [1] text, [2] native" in table
    assert "openai:fake [native]" in table
    assert comparison.runs[0].overall["benign_completion_rate"] == comparison.runs[1].overall["benign_completion_rate"]
