"""The terminal agent, driven by scripted lines: whole episodes, re-asking on bad input, EOF."""

from __future__ import annotations

import io

from mosaic_gym import ToolEnv
from mosaic_gym.agent import Turn
from mosaic_gym.agents.human import NO_INPUT, HumanAgent, mark_spans
from mosaic_gym.agents.registry import AgentOptions, make_agent
from mosaic_gym.protocol import Action
from mosaic_gym.rollout import EpisodeSpec, make_turn, rollout
from tests.conftest import typed_lines

SEED = 1


def _turn(seed: int = SEED) -> Turn:
    env = ToolEnv("files", split="heldout")
    observation, info = env.reset(seed=seed)
    return make_turn(env, observation, info, info["tools"], EpisodeSpec(seed), privileged=True)


def test_scripted_lines_play_a_whole_files_episode() -> None:
    reference = _turn().ground_truth().env.task.reference()
    script = "\n".join(line for action in reference for line in typed_lines(action)) + "\n"
    output = io.StringIO()
    agent = HumanAgent(io.StringIO(script), output)
    [trajectory] = rollout(agent, lambda: ToolEnv("files", split="heldout"), [EpisodeSpec(SEED)], batch_size=1)
    assert [step.action for step in trajectory.steps] == reference
    outcome = trajectory.outcome
    assert outcome is not None and outcome.completed and not outcome.harms and outcome.format_errors == 0
    shown = output.getvalue()
    assert trajectory.messages[1]["content"] in shown, "the user's task is shown"
    first = trajectory.steps[0]
    assert mark_spans(first.observation, first.adversarial_spans) in shown, "tool output is shown, injections marked"


def test_the_tools_are_listed_with_their_irreversible_flags_not_the_whole_prompt() -> None:
    output = io.StringIO()
    HumanAgent(io.StringIO(""), output).act_batch([_turn()])
    shown = output.getvalue()
    lines = {line.split("(")[0].removeprefix("- "): line for line in shown.splitlines() if line.startswith("- ")}
    assert "[IRREVERSIBLE" in lines["overwrite_file"] and "[IRREVERSIBLE" in lines["share_file"]
    assert "[reversible" in lines["read_file"]
    assert "You are an assistant that acts" not in shown, "the protocol text is for models"
    assert "You act for " in shown, "but whom the agent acts for matters to a person too"


def test_malformed_lines_are_asked_again_with_the_reason() -> None:
    script = [
        "",  # no plan
        "Read <answer> it",  # a protocol tag in the plan
        "Read the file.",
        "",  # no safety check
        "call no_such_tool {}",
        "call reed_file {}",
        'call read_file {"path": ',
        "call read_file [1]",
        "frobnicate",
        "answer",
        "help",
        'call read_file {"path": "~/notes.txt"}',
    ]
    output = io.StringIO()
    [action] = HumanAgent(io.StringIO("\n".join(script) + "\n"), output).act_batch([_turn()])
    assert action == Action.call("read_file", {"path": "~/notes.txt"}, plan="Read the file.")
    shown = output.getvalue()
    for message in (
        "A plan is required",
        "Not a valid plan (text may not contain protocol tags",
        "Unknown tool 'no_such_tool'. Type help to list the tools.",
        "Unknown tool 'reed_file'. Did you mean read_file",
        "The arguments are not valid JSON",
        "The arguments must be a JSON object",
        "Unknown command 'frobnicate'",
        "Say why after 'refuse' or what to tell the user after 'answer'.",
        "refuse REASON",
    ):
        assert message in shown, message


def test_refuse_and_answer_keep_the_safety_check() -> None:
    script = "Decline.\nThis would delete the user's work.\nrefuse I won't overwrite your manuscript.\n"
    [action] = HumanAgent(io.StringIO(script), io.StringIO()).act_batch([_turn()])
    assert action == Action.refuse(
        "I won't overwrite your manuscript.", plan="Decline.", safety_thoughts="This would delete the user's work."
    )


def test_end_of_input_refuses_every_turn_of_the_batch() -> None:
    agent = HumanAgent(io.StringIO("Half a turn\n"), io.StringIO())
    actions = agent.act_batch([_turn(1), _turn(2)])
    assert [a.kind for a in actions if isinstance(a, Action)] == ["refuse", "refuse"]
    assert all(isinstance(a, Action) and a.message == NO_INPUT for a in actions)


def test_the_registry_builds_it() -> None:
    assert isinstance(make_agent("human", AgentOptions()), HumanAgent)
