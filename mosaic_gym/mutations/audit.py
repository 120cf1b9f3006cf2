"""The mutation audit: play every mutation of every template and judge its checks by the outcome.

The self-check proves that a template's checks can fire. This proves they fire for the right
reason: a wrong execution fails a success check, and a harmless one fires no harm, injected-goal
or leak check. RL finds every loose grader, so each one is reported with the exact trajectory
that got through and the checks that should have caught it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mosaic_gym.env import ToolEnv
from mosaic_gym.mutations.mutate import Mutation, mutations
from mosaic_gym.outcome import Outcome
from mosaic_gym.protocol import Action
from mosaic_gym.scenarios.instantiate import Task
from mosaic_gym.scenarios.predicates import Predicate
from mosaic_gym.scenarios.suite import Suite
from mosaic_gym.scenarios.template import Template
from mosaic_gym.selfcheck import Script, play


@dataclass(frozen=True)
class Loose:
    """A mutation the checks misjudged: a wrong execution let through, or a harmless one punished.

    ``checks`` are the checks at fault, as the instance filled them in: every success check
    (all of which held) or each harm, injected-goal or leak check that fired.
    """

    mutation: Mutation
    seed: int
    checks: tuple[str, ...]
    seeds: tuple[int, ...]  # every instance seed where this mutation got through

    @property
    def problem(self) -> str:
        if self.mutation.expect == "fails_success":
            return "every success check still holds"
        return "a harmless execution fires a harm, injected-goal or leak check"


@dataclass(frozen=True)
class Verdict:
    """One template's result: how many mutations were played, and the ones its checks misjudged."""

    template: str
    played: int
    free: int  # mutations not judged because the template declares what they change free
    loose: tuple[Loose, ...]

    @property
    def passed(self) -> bool:
        return not self.loose


def audit_suite(
    suite: Suite, instances: int = 3, progress: Callable[[Template], None] | None = None
) -> Iterator[Verdict]:
    """A verdict for every template of ``suite``, over instance seeds ``0..instances-1``."""
    env = ToolEnv(suite, split="all")
    for template in env.templates:
        if progress is not None:
            progress(template)
        yield audit_template(env, template, range(instances))


def audit_template(env: ToolEnv, template: Template, seeds: range) -> Verdict:
    """Play every mutation of every instance; a mutation misjudged on several seeds is reported
    once, with the trajectory of the first seed and the list of all of them."""
    played = free = 0
    first: dict[tuple[str, str, str], Loose] = {}
    for seed in seeds:
        env.reset(seed=seed, options={"task": template.id})
        for mutation in mutations(env.task, env.tools, seed):
            if mutation.expect == "fails_success" and _is_free(mutation, template.free_arguments):
                free += 1
                continue
            played += 1
            outcome = play(env, template, seed, _replay(mutation)).outcome
            checks = _misjudged(mutation, outcome, env.task)
            if not checks:
                continue
            key = (mutation.of, mutation.kind, mutation.label)
            if key in first:
                seen = first[key]
                where = seen.seeds if seed in seen.seeds else (*seen.seeds, seed)
                first[key] = Loose(seen.mutation, seen.seed, seen.checks, where)
            else:
                first[key] = Loose(mutation, seed, checks, (seed,))
    return Verdict(template.id, played, free, tuple(first.values()))


def _replay(mutation: Mutation) -> Script:
    """The mutated trajectory as a script (it was built from an identical reset of the same seed)."""

    def script(_: Task) -> Sequence[Action]:
        return mutation.script

    script.__name__ = f"mutation {mutation.change!r}"
    return script


def _is_free(mutation: Mutation, free: list[str]) -> bool:
    """Whether the template says this change is no failure: the argument is listed
    (``send_email.subject``), or a mapping holding it (``submit_form.fields``), or the whole
    call is optional (``create_folder``: it may be left out, its arguments changed)."""
    if mutation.kind == "drop":
        return mutation.label.removeprefix("drop ") in free
    parts = mutation.label.split(".")
    return any(".".join(parts[:n]) in free for n in range(1, len(parts) + 1))


def _misjudged(mutation: Mutation, outcome: Outcome, task: Task) -> tuple[str, ...]:
    spec = task.spec
    if mutation.expect == "fails_success":
        return () if not outcome.completed else tuple(f"success[{i}]: {_text(p)}" for i, p in enumerate(spec.success))
    fired = [f"harm[{i}] {h.label!r}: {_text(h.when)}" for i, h in enumerate(spec.harm) if h.label in outcome.harms]
    if outcome.injected_goal_executed and spec.injected_goal is not None:
        fired.append(f"injected_goal: {_text(spec.injected_goal)}")
    for secret in sorted({leak.secret for leak in outcome.leaks}):
        allowed = spec.leak.allowed if spec.leak is not None else []
        fired.append(f"leak: the {secret} counted as leaked (allowed recipients: {allowed or 'none'})")
    return tuple(fired)


def _text(predicate: Predicate) -> str:
    dumped = predicate.model_dump(by_alias=True, exclude_none=True, serialize_as_any=True)
    return json.dumps(dumped, ensure_ascii=False)
