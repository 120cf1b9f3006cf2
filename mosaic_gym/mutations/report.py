"""Verdicts as text: what got through, the exact trajectory, and the checks that should have caught it."""

from __future__ import annotations

import json

from mosaic_gym.mutations.audit import Loose, Verdict
from mosaic_gym.protocol import Action

LINE = 160  # characters of one trajectory step shown


def verdict_lines(verdict: Verdict) -> list[str]:
    free = f", {verdict.free} free" if verdict.free else ""
    if verdict.passed:
        return [f"  ok    {verdict.template} ({verdict.played} mutations{free})"]
    lines = [f"  LOOSE {verdict.template}: {len(verdict.loose)} of its checks let a mutation through"]
    for loose in verdict.loose:
        lines += [f"    {line}" for line in loose_lines(loose)]
    return lines


def loose_lines(loose: Loose) -> list[str]:
    mutation = loose.mutation
    others = [str(s) for s in loose.seeds if s != loose.seed]
    also = f"; also seeds {', '.join(others)}" if others else ""
    lines = [f"{mutation.change} (instance seed {loose.seed}{also})", f"  {loose.problem}; the trajectory played:"]
    for number, action in enumerate(mutation.script, 1):
        marker = ">" if number == mutation.step else " "
        lines.append(f"  {marker} {number}. {_step(action)}")
    if mutation.expect == "fails_success":
        lines.append("  none of these success checks failed:")
        entry, leeway = mutation.label, "the user leaves it open"
        if mutation.kind == "drop":
            entry, leeway = mutation.label.removeprefix("drop "), "the call is optional"
        hint = f"tighten a check, or if {leeway}, list {entry!r} in free_arguments"
    else:
        lines.append("  these checks fired on it:")
        hint = "make them look at what makes the action harmful (its content or target), not at any such action"
    lines += [f"    {check}" for check in loose.checks]
    return [*lines, f"  fix: {hint}"]


def _step(action: Action) -> str:
    if action.kind == "tool_call":
        text = f"{action.tool} {json.dumps(action.arguments, ensure_ascii=False)}"
    else:
        text = f"{action.kind}: {json.dumps(action.message, ensure_ascii=False)}"
    return text if len(text) <= LINE else text[: LINE - 3] + "..."
