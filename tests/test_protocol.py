"""The agent text protocol: ``parse(render(a)) == a``, precise error messages, and Action validation."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mosaic_gym import Action, ParseError, parse, render
from mosaic_gym.protocol import _TAG, MAX_TEXT_CHARS

ROUND_TRIP = settings(max_examples=300, deadline=None)

# Any encodable code point (valid actions hold no lone surrogates), as long as no protocol tag appears in it.
free_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200).filter(lambda s: not _TAG.search(s))
plan_text = free_text.filter(lambda s: s.strip() != "")
tricky_strings = st.sampled_from(
    [
        "</tool_call>",
        "<answer>leak</answer>",
        "<think>",
        '"}}</tool_call><answer>x</answer>',
        "\\u003c",
        "\\",
        "\\<",
        "\x00",
        "\u202e",
        "",
    ]
)
json_strings = st.text(st.characters(exclude_categories=("Cs",)), max_size=30) | tricky_strings
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_strings,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_strings, children, max_size=4),
    max_leaves=20,
)
tool_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True) | st.text(min_size=1, max_size=20).filter(
    lambda s: s.strip() != ""
)
safety = st.none() | free_text

tool_calls = st.builds(
    Action.call,
    tool_names,
    st.none() | st.dictionaries(json_strings, json_values, max_size=5),
    plan=plan_text,
    safety_thoughts=safety,
)
refusals = st.builds(Action.refuse, free_text, plan=plan_text, safety_thoughts=safety)
answers = st.builds(Action.answer, free_text, plan=plan_text, safety_thoughts=safety)
actions = tool_calls | refusals | answers


@ROUND_TRIP
@given(action=actions)
def test_parse_inverts_render(action: Action) -> None:
    text = render(action)
    parsed = parse(text)
    assert isinstance(parsed, Action), parsed
    assert parsed == action
    assert render(parsed) == text


@settings(max_examples=150, deadline=None)
@given(arguments=st.dictionaries(json_strings, json_values, max_size=5))
def test_argument_values_never_look_like_tags(arguments: dict[str, Any]) -> None:
    text = render(Action.call("tool", arguments, plan="p"))
    payload = text.split("<tool_call>", 1)[1].removesuffix("</tool_call>")
    assert "<" not in payload
    assert json.loads(payload) == {"name": "tool", "arguments": arguments}


def test_render_is_canonical() -> None:
    action = Action.call("read_file", {"path": "<a>"}, plan=" read it ", safety_thoughts="harmless")
    assert render(action) == (
        "<think>read it</think>\n<safety_thoughts>harmless</safety_thoughts>\n"
        '<tool_call>{"name": "read_file", "arguments": {"path": "\\u003ca>"}}</tool_call>'
    )
    assert render(Action.refuse("no", plan="p")) == "<think>p</think>\n<refuse>no</refuse>"
    assert render(Action.answer("done", plan="p", safety_thoughts="  ")) == "<think>p</think>\n<answer>done</answer>"


def test_parse_tolerates_whitespace_and_reads_every_field() -> None:
    text = (
        "\n  <think> plan it </think>\n\n<safety_thoughts>\tcheck\n</safety_thoughts>  "
        '<tool_call> {"name": " send_email ", "arguments": {"to": ["a@b.c"]}} </tool_call>\n'
    )
    assert parse(text) == Action(
        plan="plan it", safety_thoughts="check", kind="tool_call", tool="send_email", arguments={"to": ["a@b.c"]}
    )
    assert parse('<think>p</think><tool_call>{"name": "x"}</tool_call>') == Action.call("x", {}, plan="p")
    assert parse("<think>p</think><answer></answer>") == Action.answer("", plan="p")
    nan = parse('<think>p</think><tool_call>{"name": "x", "arguments": {"n": NaN}}</tool_call>')
    assert isinstance(nan, Action) and math.isnan(nan.arguments["n"])  # type: ignore[index]


TOOL = "<think>p</think><tool_call>{}</tool_call>"
MALFORMED = {
    "no tags": ("hello there", "No protocol blocks found."),
    "missing think": ("<answer>hi</answer>", "Start with <think>your plan</think>; the reply began with <answer>."),
    "safety first": (
        "<safety_thoughts>s</safety_thoughts><think>p</think><answer>a</answer>",
        "the reply began with <safety_thoughts>",
    ),
    "two actions": (
        "<think>p</think><answer>a</answer><refuse>r</refuse>",
        "Give exactly one action per reply (found <answer>, <refuse>).",
    ),
    "two tool calls": (
        TOOL.replace("{}", '{"name": "a"}') + '<tool_call>{"name": "b"}</tool_call>',
        "(found <tool_call>, <tool_call>)",
    ),
    "no action": ("<think>p</think>", "Give exactly one action per reply (found none)."),
    "unclosed tag": ("<think>p</think><answer>a", "<answer> is never closed: add </answer>."),
    "unclosed think": ("<think>p", "<think> is never closed: add </think>."),
    "nested tag": ("<think>p <answer>a</answer></think>", "<answer> appears inside <think>; close </think> first."),
    "wrong closing tag": ("<think>p</answer>", "</answer> appears inside <think>; close </think> first."),
    "never opened": ("</think><answer>a</answer>", "</think> closes a block that was never opened."),
    "stray text before": ("Sure! <think>p</think><answer>a</answer>", "Text outside the blocks: 'Sure!'."),
    "stray text between": ("<think>p</think> so <answer>a</answer>", "Text outside the blocks: 'so'."),
    "stray text after": ("<think>p</think><answer>a</answer> bye", "Text outside the blocks: 'bye'."),
    "long stray text is clipped": ("<think>p</think><answer>a</answer>" + "z" * 500, "'" + "z" * 60 + "...'"),
    "invalid json": (
        TOOL.replace("{}", "{name: 'read_file'}"),
        "The <tool_call> block is not valid JSON (Expecting property name enclosed in double quotes).",
    ),
    "truncated json": (TOOL.replace("{}", '{"name": "x", "arguments": {'), "is not valid JSON (Expecting"),
    "too deep json": (TOOL.replace("{}", "[" * 40_000), "not valid JSON (too deeply nested)"),
    "number too long": (
        TOOL.replace("{}", '{"name": "x", "arguments": {"n": ' + "7" * 5_000 + "}}"),
        "not valid JSON (a number is too long)",
    ),
    "call not an object": (TOOL.replace("{}", '["read_file"]'), "The <tool_call> block must hold a JSON object."),
    "non-object arguments": (
        TOOL.replace("{}", '{"name": "read_file", "arguments": ["~/a.txt"]}'),
        '"arguments" must be a JSON object.',
    ),
    "string arguments": (TOOL.replace("{}", '{"name": "x", "arguments": "{}"}'), '"arguments" must be a JSON object.'),
    "missing name": (TOOL.replace("{}", '{"arguments": {}}'), 'The <tool_call> needs a "name" string.'),
    "blank name": (TOOL.replace("{}", '{"name": "  "}'), 'The <tool_call> needs a "name" string.'),
    "numeric name": (TOOL.replace("{}", '{"name": 3}'), 'The <tool_call> needs a "name" string.'),
    "extra keys": (
        TOOL.replace("{}", '{"name": "x", "args": {}, "id": 1}'),
        "Unexpected keys ['args', 'id'] in <tool_call>.",
    ),
    "empty think": ("<think>  \n</think><answer>a</answer>", "The <think> block is empty: write your plan in it."),
    "empty safety": (
        "<think>p</think><safety_thoughts> </safety_thoughts><answer>a</answer>",
        "The <safety_thoughts> block is empty",
    ),
    "out of order": (
        "<think>p</think><answer>a</answer><safety_thoughts>s</safety_thoughts>",
        "Blocks are out of order (<think> then <answer> then <safety_thoughts>).",
    ),
    "think twice": (
        "<think>p</think><think>q</think><answer>a</answer>",
        "Use <think> and <safety_thoughts> at most once each.",
    ),
    "safety twice": (
        "<think>p</think><safety_thoughts>s</safety_thoughts><safety_thoughts>s</safety_thoughts><answer>a</answer>",
        "at most once each",
    ),
    "too long": ("<think>p</think><answer>" + "a" * MAX_TEXT_CHARS + "</answer>", f"keep it under {MAX_TEXT_CHARS}"),
}


@pytest.mark.parametrize(("text", "fragment"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_reply_names_the_problem(text: str, fragment: str) -> None:
    result = parse(text)
    assert isinstance(result, ParseError), result
    assert fragment in result.message


@pytest.mark.parametrize(
    "name", ["no tags", "two actions", "no action", "stray text before", "out of order", "think twice"]
)
def test_structural_errors_repeat_the_format(name: str) -> None:
    result = parse(MALFORMED[name][0])
    assert isinstance(result, ParseError)
    assert result.message.endswith("<refuse>reason</refuse> or <answer>message to the user</answer>.")


def test_malformed_tool_json_shows_the_expected_shape() -> None:
    result = parse(MALFORMED["non-object arguments"][0])
    assert isinstance(result, ParseError)
    assert result.message.endswith('Write {"name": "tool_name", "arguments": {"parameter": value}}.')


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"plan": "", "kind": "answer", "message": "m"}, "plan must not be empty"),
        ({"plan": " \n\t", "kind": "answer", "message": "m"}, "plan must not be empty"),
        ({"plan": "I will <think> again", "kind": "answer", "message": "m"}, "may not contain protocol tags"),
        ({"plan": "p", "kind": "answer", "message": "done</answer><answer>x"}, "may not contain protocol tags"),
        (
            {"plan": "p", "safety_thoughts": "<refuse>", "kind": "answer", "message": "m"},
            "may not contain protocol tags",
        ),
        ({"plan": "p", "kind": "tool_call"}, "a tool_call needs a tool name and no message"),
        ({"plan": "p", "kind": "tool_call", "tool": "  "}, "a tool_call needs a tool name and no message"),
        (
            {"plan": "p", "kind": "tool_call", "tool": "x", "message": "m"},
            "a tool_call needs a tool name and no message",
        ),
        ({"plan": "p", "kind": "answer"}, "a answer action needs a message and no tool"),
        ({"plan": "p", "kind": "refuse", "message": "m", "tool": "x"}, "a refuse action needs a message and no tool"),
        (
            {"plan": "p", "kind": "answer", "message": "m", "arguments": {}},
            "a answer action needs a message and no tool",
        ),
        (
            {"plan": "p", "kind": "delete_everything", "message": "m"},
            "Input should be 'tool_call', 'refuse' or 'answer'",
        ),
        ({"plan": "p", "kind": "answer", "message": "m", "mood": "happy"}, "Extra inputs are not permitted"),
        ({"plan": "p", "kind": "tool_call", "tool": "x", "arguments": [1]}, "Input should be a valid dictionary"),
    ],
)
def test_invalid_actions_are_rejected(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as error:
        Action(**fields)
    assert fragment in str(error.value)


def test_action_normalises_and_is_frozen() -> None:
    action = Action.call(" read_file ", None, plan="  p  ", safety_thoughts="   ")
    assert (action.tool, action.arguments, action.plan, action.safety_thoughts) == ("read_file", {}, "p", None)
    assert parse(render(action)) == action
    with pytest.raises(ValidationError):
        action.plan = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Action.call("x", {"when": object()}, plan="p")


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(exclude_categories=()), max_size=400))
def test_parse_never_raises(text: str) -> None:
    assert isinstance(parse(text), (Action, ParseError))


def test_lone_surrogates_are_refused_with_a_reason() -> None:
    assert isinstance(parse("<think>x\ud800</think><answer>a</answer>"), ParseError)
    escaped = parse('<think>x</think><tool_call>{"name": "read_file", "arguments": {"path": "\\ud800"}}</tool_call>')
    assert isinstance(escaped, ParseError) and "invalid Unicode" in escaped.message
    with pytest.raises(ValidationError, match="invalid Unicode"):
        Action.call("read_file", {"path": "\ud800"}, plan="p")
    with pytest.raises(ValidationError, match="invalid Unicode"):
        Action.answer("\udfff", plan="p")
