"""The native protocol: how a tool-calling reply maps onto one Action, and the chat it leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from mosaic_gym import Action, ParseError, ToolEnv
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, load_records, run_eval
from mosaic_gym.native import (
    NO_PLAN,
    PROTOCOLS,
    REFUSE_TOOL,
    NativeCall,
    NativeReply,
    parse_native,
    render_native,
)
from tests.test_protocol import actions


def _read(reply: NativeReply) -> Action | ParseError:
    return parse_native(reply, step=1).action


def _call(name: str, arguments: Any, id: str = "") -> NativeCall:
    return NativeCall(name, arguments if isinstance(arguments, str) else json.dumps(arguments), id)


@settings(max_examples=300, deadline=None)
@given(action=actions.filter(lambda a: a.kind != "answer" or a.message))
def test_every_action_with_a_non_empty_answer_reads_back_from_its_native_form(action: Action) -> None:
    assert _read(render_native(action, step=3)) == action


def test_an_empty_answer_has_no_native_form_it_is_a_format_error() -> None:
    reply = render_native(Action.answer("", plan="p"), step=1)
    assert isinstance(_read(reply), ParseError)


@pytest.mark.parametrize(
    ("reply", "plan"),
    [
        (NativeReply(content="Done.", reasoning="The folder is listed."), "The folder is listed."),
        (NativeReply(content="<think>The folder is listed.</think>\n\nDone."), "The folder is listed."),
        # The chat template prefilled "<think>": only its closing tag is generated.
        (NativeReply(content="The folder is listed.\n</think>\n\nDone."), "The folder is listed."),
        (NativeReply(content="Done."), NO_PLAN),
        (NativeReply(content="<think>a</think>Done.", reasoning="b"), "b\n\na"),
        (NativeReply(content="Done.", reasoning="reasoning may say <answer> or </tool_call>"), None),
    ],
)
def test_reasoning_or_a_leading_think_block_is_the_plan_never_a_format_error(
    reply: NativeReply, plan: str | None
) -> None:
    action = _read(reply)
    assert isinstance(action, Action) and action.kind == "answer" and action.message == "Done."
    if plan is not None:
        assert action.plan == plan
    else:
        assert action.plan == "reasoning may say [answer] or [/tool_call]"


def test_text_beside_a_call_joins_the_plan_and_a_safety_block_is_the_check() -> None:
    reply = NativeReply(
        content="I will pay the invoice.\n<safety_thoughts>The user asked; it cannot be undone.</safety_thoughts>",
        reasoning="Pay it.",
        tool_calls=(_call("pay", {"to": "ACME", "amount": 10}),),
    )
    action = _read(reply)
    assert action == Action.call(
        "pay",
        {"to": "ACME", "amount": 10},
        plan="Pay it.\n\nI will pay the invoice.",
        safety_thoughts="The user asked; it cannot be undone.",
    )


def test_refusal_is_the_refuse_tool_and_text_is_never_a_refusal() -> None:
    refused = _read(NativeReply(tool_calls=(_call(REFUSE_TOOL, {"reason": "It would leak data."}),)))
    assert isinstance(refused, Action) and refused.kind == "refuse" and refused.message == "It would leak data."
    declined = _read(NativeReply(content="I'm sorry, but I can't help with that."))
    assert isinstance(declined, Action) and declined.kind == "answer", "a refusal in plain text is an answer"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (NativeReply(), "The reply is empty"),
        (NativeReply(content="  <think>only thinking</think>  "), "The reply is empty"),
        (NativeReply(reasoning="thinking, then nothing"), "The reply is empty"),
        (NativeReply(tool_calls=(_call("send_email", '{"to": ["a@b.c"], "body": '),)), "are not valid JSON"),
        (NativeReply(tool_calls=(_call("send_email", "[1, 2]"),)), "must be a JSON object"),
        (NativeReply(tool_calls=(_call(" ", {}),)), "has no tool name"),
        (NativeReply(tool_calls=(_call(REFUSE_TOOL, {"why": "x"}),)), 'a "reason" string'),
        (NativeReply(tool_calls=(_call(REFUSE_TOOL, {}),)), 'a "reason" string'),
        (NativeReply(content='<tool_call>{"name": "list_folder", "arguments": {}}</tool_call>'), "writes a tool call"),
        (NativeReply(content='[TOOL_CALLS][{"name": "list_folder", "arguments": {}}]'), "writes a tool call"),
        (NativeReply(content='{"name": "list_folder", "parameters": {}}'), "writes a tool call"),
        (NativeReply(content="<think>p</think><refuse>No.</refuse>"), "the tag <refuse> of the text protocol"),
        (NativeReply(content="x" * 100_001), "keep it under"),
        (NativeReply(content="bad \ud800 unicode"), "cannot be read"),
    ],
)
def test_malformed_replies_are_format_errors_that_say_what_to_fix(reply: NativeReply, message: str) -> None:
    error = _read(reply)
    assert isinstance(error, ParseError) and message in error.message and "\n" not in error.message


def test_a_malformed_call_anywhere_in_the_reply_fails_the_whole_reply() -> None:
    reply = NativeReply(tool_calls=(_call("list_folder", {}), _call("read_file", "{oops")))
    assert isinstance(_read(reply), ParseError)


def test_calls_get_ids_when_they_have_none_or_repeat_one() -> None:
    reply = NativeReply(tool_calls=(_call("a", {}, "x"), _call("b", {}, "x"), _call("c", {})))
    ids = [call.id for call in parse_native(reply, step=7).reply.tool_calls]
    assert ids == ["x", "c00070001", "c00070002"]
    assert all(len(i) == 9 and i.isalnum() for i in ids[1:]), "Mistral's templates want nine letters and digits"


# -- the env, natively -----------------------------------------------------------------------


def _native_env() -> tuple[ToolEnv, dict[str, Any]]:
    env = ToolEnv("files", split="all", protocol="native")
    _, info = env.reset(seed=0)
    return env, info


def test_the_native_env_offers_flagged_schemas_and_refuse_and_no_text_protocol() -> None:
    env, info = _native_env()
    names = [tool["function"]["name"] for tool in info["tools"]]
    assert names == [*env.tools, REFUSE_TOOL]
    delete = next(t for t in info["tools"] if t["function"]["name"] == "empty_trash")["function"]
    assert delete["description"].startswith("[IRREVERSIBLE, destructive]")
    system = info["messages"][0]["content"]
    assert "refuse tool" in system and "<tool_call>" not in system and "<answer>" not in system
    assert info["protocol"] == "native"
    text_env = ToolEnv("files", split="all")
    _, text_info = text_env.reset(seed=0)
    assert text_info["protocol"] == "text" and REFUSE_TOOL not in [t["function"]["name"] for t in text_info["tools"]]


def test_one_call_per_reply_the_first_runs_and_every_other_call_is_answered_not_executed() -> None:
    env, _ = _native_env()
    reply = NativeReply(
        reasoning="Look around.",
        tool_calls=(
            _call("list_folder", {}, "call_a"),
            _call(REFUSE_TOOL, {"reason": "no"}, "call_b"),
            _call("list_folder", {"path": "~/Documents"}, "call_c"),
        ),
    )
    observation, _, terminated, _, info = env.step(reply)
    assert not terminated, "the refuse call came second and did not run"
    assert info["action"] == Action.call("list_folder", {}, plan="Look around.")
    assert [entry.tool for entry in info["journal"]] == ["list_folder"]
    assistant, *results = info["messages"][-4:]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b", "call_c"]
    assert [(m["role"], m["tool_call_id"]) for m in results] == [
        ("tool", "call_a"),
        ("tool", "call_b"),
        ("tool", "call_c"),
    ]
    assert results[0]["content"] == observation
    assert all(m["content"].startswith("Not executed: one tool call per reply") for m in results[1:])
    assert info["reply"]["tool_calls"] == assistant["tool_calls"]


def test_a_format_error_leaves_the_calls_out_of_the_chat_and_keeps_them_in_the_reply() -> None:
    env, _ = _native_env()
    observation, _, _, _, info = env.step(NativeReply(content="Sending.", tool_calls=(_call("send_email", "{bad"),)))
    assert observation.startswith("Format error: The arguments of the call to 'send_email' are not valid JSON")
    assert info["messages"][-2] == {"role": "assistant", "content": "Sending."}
    assert info["messages"][-1] == {"role": "user", "content": observation}
    assert info["reply"]["tool_calls"][0]["function"]["arguments"] == "{bad"
    assert info["format_error"] and info["action"] is None


def test_refusing_ends_the_episode_with_the_call_answered_and_text_ends_it_as_an_answer() -> None:
    env, _ = _native_env()
    _, _, terminated, _, info = env.step(NativeReply(tool_calls=(_call(REFUSE_TOOL, {"reason": "Harmful."}, "r1"),)))
    assert terminated and info["outcome"].refused and info["outcome"].refusal_step == 1
    assert info["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "r1",
        "name": REFUSE_TOOL,
        "content": "Episode over: you refused the task.",
    }
    env, _ = _native_env()
    _, _, terminated, _, info = env.step("I won't do that.")
    assert terminated and not info["outcome"].refused and info["outcome"].answered


def test_render_shows_native_calls() -> None:
    env = ToolEnv("files", split="all", protocol="native", render_mode="ansi")
    env.reset(seed=0)
    env.step(NativeReply(content="Looking.", tool_calls=(_call("list_folder", {}),)))
    assert "[assistant] Looking.\n-> list_folder({})" in str(env.render())


def test_protocol_mismatches_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="protocol must be 'text' or 'native'"):
        ToolEnv("files", protocol="json")  # type: ignore[arg-type]
    env = ToolEnv("files", split="all")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="needs an env made with protocol='native'"):
        env.step(NativeReply(content="hi"))


def test_scripted_agents_measure_the_same_under_both_protocols(tmp_path: Path) -> None:
    """The protocol changes how a model is addressed, not what is measured: on the same episodes,
    every metric of every scripted agent is identical, though each native step went through
    the native form (a reply with tool calls) and back."""
    for agent in ("oracle", "naive", "refuse", "random"):
        metrics = {}
        for protocol in PROTOCOLS:
            config = EvalConfig(agent=agent, episodes=20, seed=5, protocol=protocol)  # type: ignore[arg-type]
            metrics[protocol] = run_eval(config, tmp_path / agent / protocol)
            records = load_records(tmp_path / agent / protocol / TRAJECTORIES).values()
            replies = [step["reply"] for record in records for step in record["steps"]]
            assert all((reply is not None) == (protocol == "native") for reply in replies)
        for block in ("overall", "by_suite", "by_kind", "by_attack"):
            assert metrics["text"][block] == metrics["native"][block], (agent, block)
        assert metrics["text"]["overall"]["episodes"] == 20
