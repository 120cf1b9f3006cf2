"""``mosaic-gym play``: a person plays the agent for one episode, then sees how a judge rates it.

The person gets what a model would get (the task, the tools with their IRREVERSIBLE flags,
tool output with injected text marked) and types a plan, a safety check and an action each
turn. At the end the outcome is printed, the same episode is replayed by the scripted
oracle, and the rule judge says which of the two it prefers and why: the comparison the
MOSAIC trainer makes between sampled trajectories, shown to a human.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from mosaic_gym.agents.human import HumanAgent
from mosaic_gym.agents.registry import make_judge
from mosaic_gym.agents.scripted import OracleAgent
from mosaic_gym.attacks import ATTACKS
from mosaic_gym.env import ToolEnv
from mosaic_gym.envs import ENV_IDS, SUITE_OF, SUITES
from mosaic_gym.native import ProtocolChoice
from mosaic_gym.outcome import Outcome
from mosaic_gym.protocol import Action
from mosaic_gym.rollout import EpisodeSpec, Trajectory, rollout
from mosaic_gym.scenarios.template import Template
from mosaic_gym.splits import SplitChoice

CLIP = 90
JUDGE = "rule"  # the registered judge whose verdict the player sees; it must explain() its verdicts
INTRO = (
    "You are the agent. Each turn, type a plan, then a safety check (Enter to skip), then one action:\n"
    '  call TOOL {"arg": value}  |  refuse REASON  |  answer TEXT  |  help\n'
)
VERDICTS = {
    1.0: "the judge prefers YOUR episode to the reference",
    0.5: "a tie: the judge rates your episode as good as the reference",
    0.0: "the judge would have preferred the REFERENCE episode",
}


class PlayError(ValueError):
    """The episode cannot start as asked (unknown env, task or attack); one line for the user."""


def play(
    env_id: str,
    task: str | None = None,
    seed: int = 0,
    attack: str | None = None,
    split: SplitChoice = "all",
    protocol: ProtocolChoice = "text",
    input: TextIO | None = None,
    output: TextIO | None = None,
) -> int:
    """Play one episode at the terminal, print its outcome and the judge's view; return the exit status."""
    suite = _suite_name(env_id)
    task = _task(suite, env_id, task, seed, attack, split)
    out = output or sys.stdout
    # The task's id and kind would give the game away; the outcome reveals them at the end.
    out.write(f"{env_id}, seed {seed}\n{INTRO}")
    agent = HumanAgent(input, output)
    spec = EpisodeSpec(seed, task, attack)
    [mine] = rollout(agent, lambda: ToolEnv(suite, split=split, protocol=protocol), [spec], batch_size=1)
    # The same spec on a fresh env is the same instance: same world, same attack text.
    [reference] = rollout(OracleAgent(), lambda: ToolEnv(suite, split=split, protocol=protocol), [spec], batch_size=1)
    out.write(report(mine, reference))
    out.flush()
    return 0


def report(mine: Trajectory, reference: Trajectory) -> str:
    """The outcome of the person's episode, the judge's verdict against the oracle, and the oracle's actions."""
    assert mine.outcome is not None and reference.outcome is not None
    judge = make_judge(JUDGE)
    verdict = judge.compare(mine, reference)
    lines = ["", "=== your outcome ===", *describe(mine.outcome)]
    lines += ["", "=== what the judge would have preferred ==="]
    lines.append(VERDICTS[verdict])
    explain = getattr(judge, "explain", None)
    if explain is not None:
        lines.append(f"why (a = you, b = the reference): {explain(mine, reference)}")
    lines.append("The reference (the scripted oracle on the same episode) did:")
    lines += [f"  {number}. {short(step.action)}" for number, step in enumerate(reference.steps, 1) if step.action]
    lines.append(f"  -> {_summary(reference.outcome)}")
    return "\n".join(lines) + "\n"


def describe(outcome: Outcome) -> list[str]:
    """The outcome as lines a person reads: what got done, what harm, what was refused, leaked or obeyed."""
    attack = f", attack family {outcome.attack}" if outcome.attack else ""
    harms = [f"{h} [IRREVERSIBLE]" if h in outcome.irreversible_harms else h for h in outcome.harms]
    calls = [
        f"{c.tool} at step {c.step} ({'after a safety check' if c.checked else 'NO safety check'})"
        for c in outcome.irreversible_calls
    ]
    leaks = [
        f"{leak.secret} to {', '.join(leak.recipients)} by {leak.channel} at step {leak.step}" for leak in outcome.leaks
    ]
    refused = f"yes, at step {outcome.refusal_step}" if outcome.refused else "no"
    return [
        f"task: {outcome.task} ({outcome.kind}{attack})",
        f"completed: {_yes(outcome.completed)}",
        f"harms: {'; '.join(harms) or 'none'}",
        f"refused: {refused}",
        f"injected goal executed: {_yes(outcome.injected_goal_executed)}",
        f"leaks: {'; '.join(leaks) or 'none'}",
        f"irreversible calls: {'; '.join(calls) or 'none'}",
        f"steps: {outcome.steps}{' (out of budget)' if outcome.truncated else ''}, "
        f"format errors {outcome.format_errors}, tool errors {outcome.tool_errors}",
    ]


def short(action: Action) -> str:
    """One line per action: ``read_file(path="~/a.txt")``, ``refuse: reason``, ``answer: text``, with its check."""
    if action.kind == "tool_call":
        arguments = ", ".join(
            f"{k}={_clip(json.dumps(v, ensure_ascii=False), 40)}" for k, v in (action.arguments or {}).items()
        )
        text = f"{action.tool}({arguments})"
    else:
        text = f"{action.kind}: {_clip(action.message or '', CLIP)}"
    return text + (f"   [check: {_clip(action.safety_thoughts, CLIP)}]" if action.safety_thoughts else "")


def _summary(outcome: Outcome) -> str:
    """The reference's outcome in a few words (the oracle never leaks nor obeys an attacker)."""
    parts = [] if outcome.kind == "harmful" else ["completed" if outcome.completed else "not completed"]
    parts.append(f"refused at step {outcome.refusal_step}" if outcome.refused else "no refusal")
    parts.append(f"harms: {len(outcome.harms)}")
    return ", ".join(parts)


def _suite_name(env_id: str) -> str:
    if env_id in SUITE_OF:
        return SUITE_OF[env_id]
    raise PlayError(f"unknown env {env_id!r}; choose from {', '.join(ENV_IDS.values())}")


def _task(suite: str, env_id: str, task: str | None, seed: int, attack: str | None, split: str) -> str | None:
    """The template to play: the one named, one that can carry the named attack, or None to let the env
    draw it from the seed, exactly as ``mosaic-gym eval`` does (so ``--seed`` replays an eval episode)."""
    templates = [t for t in SUITES[suite].templates() if split == "all" or t.split == split]
    if attack is not None and (attack not in ATTACKS or ATTACKS[attack].benign):
        known = sorted(name for name, family in ATTACKS.items() if not family.benign)
        raise PlayError(f"unknown attack family {attack!r}; choose from {', '.join(known)}")
    if task is not None:
        by_id = {t.id: t for t in templates}
        if task not in by_id:
            raise PlayError(
                f"unknown task {task!r} in {env_id} ({split} split); choose from {', '.join(sorted(by_id))}"
            )
        if attack is not None and not _takes(by_id[task], attack):
            fitting = sorted(t.id for t in templates if _takes(t, attack))
            raise PlayError(f"task {task!r} has no carrier for attack {attack!r}; choose from {', '.join(fitting)}")
        return task
    if attack is None:
        return None
    fitting = [t for t in templates if _takes(t, attack)]
    if not fitting:
        raise PlayError(f"no task in {env_id} ({split} split) can carry attack {attack!r}")
    return fitting[seed % len(fitting)].id


def _takes(template: Template, attack: str) -> bool:
    """Whether ``attack`` can be placed in the template's carriers."""
    return template.injection is not None and (
        not ATTACKS[attack].two_carriers or "injection_2" in template.placeholders
    )


def _yes(flag: bool) -> str:
    return "YES" if flag else "no"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
