"""Property tests: any text thrown at ``step`` comes back as an observation, never as an exception.

Text that ``parse`` rejects must give a ``Format error:`` observation, set ``info["format_error"]``,
cost the format-error penalty and be counted in the episode's ``Outcome.format_errors``. Text that
happens to parse (rare) must still not raise. One env serves every example (reset each time).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mosaic_gym import Action, ParseError, ToolEnv, parse, render
from mosaic_gym.outcome import PENALTY_FORMAT_ERROR
from mosaic_gym.protocol import MAX_TEXT_CHARS

ENV = ToolEnv("files", split="all", max_steps=40)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point, lone surrogates included (hypothesis leaves category Cs out by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=300)


def _is_plain(text: str) -> bool:
    """Whether ``Action`` accepts ``text`` as a message (no protocol tags in it)."""
    try:
        Action.answer(text, plan="x")
    except ValidationError:
        return False
    return True


# Messages a well-formed action can carry: text that happens to spell a tag is not one of them.
messages = st.text(max_size=20).filter(_is_plain)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FRAGMENTS = [
    "<think>",
    "</think>",
    "<safety_thoughts>",
    "</safety_thoughts>",
    "<tool_call>",
    "</tool_call>",
    "<refuse>",
    "</refuse>",
    "<answer>",
    "</answer>",
    "<think >",
    "</ think>",
    "<THINK>",
    "<tool_call/>",
    "<|im_end|>",
    '{"name":',
    '"read_file"',
    '"list_folder"',
    '"no_such_tool"',
    '"arguments":',
    '{"path": "~/Documents"}',
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    '"',
    "\\",
    "\\u003c",
    "NaN",
    "1" * 5_000,
    "[" * 3_000,
    "plan",
    "I will help.",
    " ",
    "\n",
    "\x00",
    "\ud800",
]
fragment = st.sampled_from(FRAGMENTS) | st.text(max_size=12) | json_values.map(json.dumps)
near_miss = st.lists(fragment, min_size=1, max_size=14).map("".join)
# Well-formed shells with a damaged inside, to get past the outer checks more often.
shell = st.builds(
    lambda plan, inside, tail: f"<think>{plan}</think>\n<tool_call>{inside}</tool_call>{tail}",
    st.sampled_from(["", "plan", " "]),
    near_miss | json_values.map(json.dumps),
    st.sampled_from(["", "</answer>", "<answer>x</answer>", " trailing"]),
)
# Valid replies, then damaged at a random place: near misses of every kind, and some that still parse.
valid_actions = st.one_of(
    st.builds(
        Action.call,
        st.sampled_from(["list_folder", "read_file", "search_files", "no_such_tool"]),
        st.dictionaries(st.sampled_from(["path", "query", "extra"]), json_values, max_size=2),
        plan=st.sampled_from(["Look around.", "x"]),
        safety_thoughts=st.sampled_from([None, "Reading is harmless."]),
    ),
    st.builds(Action.answer, messages, plan=st.just("Done.")),
    st.builds(Action.refuse, messages, plan=st.just("No.")),
)


def damage(text: str, position: int, piece: str, how: str) -> str:
    cut = position % (len(text) + 1)
    if how == "insert":
        return text[:cut] + piece + text[cut:]
    if how == "delete":
        return text[:cut] + text[cut + 1 + len(piece) % 8 :]
    if how == "swap":
        return text[cut:] + text[:cut]
    return text


damaged = st.builds(
    damage,
    valid_actions.map(render),
    st.integers(0, 10_000),
    fragment,
    st.sampled_from(["insert", "insert", "delete", "swap", "keep"]),
)
replies = any_text | near_miss | shell | damaged


def play(texts: list[str]) -> dict[str, Any]:
    """Step through ``texts`` on a fresh episode, checking each step; finish with an answer if still running."""
    ENV.reset(seed=0)
    format_errors = 0
    for text in texts:
        parsed = parse(text)
        observation, reward, terminated, truncated, info = ENV.step(text)
        assert isinstance(observation, str) and ENV.observation_space.contains(observation)
        if isinstance(parsed, ParseError):
            format_errors += 1
            assert observation == f"Format error: {parsed.message}"
            assert info["format_error"] == parsed.message
            assert info["action"] is None and info["journal"] == []
            if not (terminated or truncated):
                assert reward == pytest.approx(-PENALTY_FORMAT_ERROR)
        else:
            assert not observation.startswith("Format error:")
            assert info["format_error"] is None and render(info["action"]) == render(parsed)
        if terminated or truncated:
            break
    else:
        *_, terminated, _, info = ENV.step(Action.answer("done", plan="Finish."))
        assert terminated
    outcome = info["outcome"]
    assert outcome.format_errors == format_errors
    return info


@FUZZ
@given(text=replies)
def test_any_single_reply_is_answered_not_raised(text: str) -> None:
    play([text])


@FUZZ
@given(texts=st.lists(replies, min_size=1, max_size=6))
def test_format_errors_are_counted_over_an_episode(texts: list[str]) -> None:
    play(texts)


@settings(max_examples=40, deadline=None)
@given(text=any_text)
def test_plain_text_without_tags_is_a_format_error(text: str) -> None:
    assume("<" not in text)
    ENV.reset(seed=1)
    observation, _, terminated, truncated, info = ENV.step(text)
    encodable = not any("\ud800" <= c <= "\udfff" for c in text)
    expected = "No protocol blocks found." if encodable else "The reply contains invalid Unicode"
    assert observation.startswith("Format error: " + expected)
    assert info["format_error"] and not terminated and not truncated


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x" * (MAX_TEXT_CHARS + 1),
        "<think>" * 20_000,
        "<think>p</think><tool_call>" + "[" * 50_000 + "</tool_call>",
        '<think>p</think><tool_call>{"name": "read_file", "arguments": {"n": ' + "9" * 5_000 + "}}</tool_call>",
        "<think>p</think><answer>a</answer>" * 3,
        "\ud800<think>\udfff</think><answer>\x00</answer>",
    ],
    ids=["empty", "too-long", "many-open-tags", "deep-json", "huge-int", "three-answers", "surrogates"],
)
def test_adversarial_replies(text: str) -> None:
    info = play([text])
    assert info["outcome"].steps >= 1


def test_budget_of_format_errors_truncates_with_all_counted() -> None:
    env = ToolEnv("files", split="all", max_steps=5)
    env.reset(seed=0)
    rewards = []
    for _ in range(5):
        _, reward, terminated, truncated, info = env.step("not protocol text")
        rewards.append(reward)
    assert truncated and not terminated
    assert info["outcome"].format_errors == 5 and info["outcome"].truncated
    assert all(r == pytest.approx(-PENALTY_FORMAT_ERROR) for r in rewards[:-1])
