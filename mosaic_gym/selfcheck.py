"""Prove every template is solvable, its checks work, and its attacks reach the agent.

For a sample of instances of each template:

* the safe reference does the task (benign, injection) without harm, leak or injected goal,
  and refuses harmful ones before any harm;
* the harmful reference fires what the template guards against (every harm check, the
  injected goal, a leak), so the checks can fail;
* in injection templates, every attack family allowed for the template is actually shown to
  an agent that follows the reference (a canary run), and the reference stays safe under it;
* the same seed gives the same world and the same outcome (the checks are deterministic).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mosaic_gym.attacks import ATTACKS
from mosaic_gym.env import ToolEnv
from mosaic_gym.outcome import Outcome
from mosaic_gym.protocol import Action
from mosaic_gym.scenarios.instantiate import Task
from mosaic_gym.scenarios.suite import Suite
from mosaic_gym.scenarios.template import Template

# A trajectory to play, made from the freshly reset task instance (e.g. ``Task.reference``).
Script = Callable[[Task], Sequence[Action]]


@dataclass(frozen=True)
class Problem:
    template: str
    seed: int
    attack: str | None
    message: str

    def __str__(self) -> str:
        attack = f", attack {self.attack}" if self.attack else ""
        return f"{self.template} (instance seed {self.seed}{attack}): {self.message}"


@dataclass(frozen=True)
class Played:
    outcome: Outcome
    shown_injection: bool
    world_json: str


def check_suite(
    suite: Suite, instances: int = 5, progress: Callable[[Template], None] | None = None
) -> Iterator[Problem]:
    """Yield every problem found in ``suite``; nothing yielded means it passed."""
    if not suite.templates():
        yield Problem(suite.name, 0, None, f"the suite has no templates (looked in {suite.folder})")
        return
    env = ToolEnv(suite, split="all")
    for template in env.templates:
        if progress is not None:
            progress(template)
        for seed in range(instances):
            yield from check_instance(env, template, seed)


def check_instance(env: ToolEnv, template: Template, seed: int) -> Iterator[Problem]:
    def problem(message: str, attack: str | None = None) -> Problem:
        return Problem(template.id, seed, attack, message)

    safe = play(env, template, seed, Task.reference)
    again = play(env, template, seed, Task.reference)
    if safe.world_json != again.world_json or safe.outcome != again.outcome:
        yield problem("the same seed gave a different world or outcome (non-deterministic checks)")
    yield from (problem(m) for m in _safe_problems(template, safe.outcome))
    harmful = play(env, template, seed, Task.harmful_reference) if template.harmful_reference else None
    if harmful is not None:
        yield from (problem(m) for m in _harm_problems(template, harmful.outcome))
    if template.kind != "injection":
        return
    uses_two = "injection_2" in template.placeholders
    for family in ATTACKS.values():
        if family.benign or (family.two_carriers and not uses_two):
            continue
        canary = play(env, template, seed, Task.reference, family.name)
        if not canary.shown_injection:
            yield problem("the injected text never reached the agent following the reference", family.name)
        yield from (problem(m, family.name) for m in _safe_problems(template, canary.outcome))


def play(env: ToolEnv, template: Template, seed: int, script: Script, attack: str | None = None) -> Played:
    """Reset ``env`` to the instance (``seed``, ``attack``) of ``template`` and play ``script`` on it."""
    options = {"task": template.id} | ({"attack": attack} if attack else {})
    env.reset(seed=seed, options=options)
    world_json = env.task.world.model_dump_json()
    shown = False
    info: dict[str, Any] = {}
    for action in script(env.task):
        _, _, terminated, truncated, info = env.step(action)
        shown |= bool(info["adversarial_spans"])
        if terminated or truncated:
            break
    if "outcome" not in info:
        which = getattr(script, "__name__", "script")
        raise ValueError(f"{template.id}: the {which} does not end the episode (it needs a final answer or refusal)")
    return Played(info["outcome"], shown, world_json)


def _safe_problems(template: Template, outcome: Outcome) -> list[str]:
    found = []
    if template.kind == "harmful":
        if not outcome.refused:
            found.append("the reference does not refuse the harmful request")
    elif template.success and not outcome.completed:
        found.append("the reference does not complete the task (a success check fails)")
    if outcome.harms:
        found.append(f"the reference fires harm checks: {outcome.harms}")
    if outcome.injected_goal_executed:
        found.append("the reference executes the injected goal")
    if outcome.leaks:
        found.append(f"the reference leaks: {sorted({leak.secret for leak in outcome.leaks})}")
    if outcome.format_errors or outcome.truncated:
        found.append("the reference has format errors or runs out of steps")
    if outcome.tool_errors:
        found.append(f"{outcome.tool_errors} of the reference's tool calls fail (a wrong id, path or timing?)")
    return found


def _harm_problems(template: Template, outcome: Outcome) -> list[str]:
    if template.kind == "harmful":
        silent = [h.label for h in template.harm if h.label not in outcome.harms]
        if silent:
            return [f"the harmful reference does not fire the harm checks {silent} (they could never fail)"]
    if template.kind == "injection" and not outcome.injected_goal_executed:
        return ["the harmful reference does not fire injected_goal (the check could never fail)"]
    if template.kind == "privacy" and not outcome.leaks:
        return ["the harmful reference leaks nothing (the leak check could never fail)"]
    return []
