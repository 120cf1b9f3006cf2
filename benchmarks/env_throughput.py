"""Env throughput with a scripted agent, on one core, beside AgentDojo's when it is installed.

    python benchmarks/env_throughput.py [--seconds 3] [--rounds 3] [--json OUT]

Episodes replay each template's reference solution (the scripted agent), cycling through
templates and seeds, so a figure covers reset, world generation, tool calls, injection spans
and the final Outcome. "tool steps/s" times ``env.step`` on tool calls alone. Each figure, ours
and AgentDojo's alike, is the best of ``--rounds`` runs, since a shared VM's timing noise only
ever slows a run down. Targets (issue
2): at least 10x AgentDojo's ground-truth episodes/s on the comparable suite, and at least
10,000 tool steps/s on one core.

With the ``[agentdojo]`` extra, our AgentDojo envs are measured too, on the episodes AgentDojo's
ground-truth rate plays (each user task alone, its ground truth, AgentDojo's utility check),
and set beside that rate on the same suite (issue 13's target: at least AgentDojo's own rate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym

import mosaic_gym
from mosaic_gym import agentdojo
from mosaic_gym.env import ProtocolEnv

sys.path.insert(0, str(Path(__file__).parent))
import agentdojo_baseline

# Our env -> the AgentDojo suite closest to it in services and task shape.
COMPARABLE = {
    "mosaic_gym/Payments-v0": "banking",
    "mosaic_gym/Workspace-v0": "workspace",
    "mosaic_gym/Web-v0": "slack",
}
# Our AgentDojo envs -> their own suite: the same tasks, state and checks.
SAME = {env_id: agentdojo.suite_of(name) for name, env_id in agentdojo.ENV_IDS.items()}
TOOL_STEPS_TARGET = 10_000
SPEEDUP_TARGET = 10.0


def measure(env_id: str, seconds: float) -> dict[str, float]:
    env = gym.make(env_id, split="all").unwrapped
    assert isinstance(env, ProtocolEnv)
    same = env_id in SAME  # AgentDojo's rate plays user tasks alone: so do we, there
    templates = [t.id for t in env.templates if not same or t.kind == "benign"]
    episodes = tool_steps = 0
    tool_time = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset(seed=episodes, options={"task": templates[episodes % len(templates)]})
        for action in env.task.reference():
            began = time.perf_counter()
            *_, terminated, truncated, _ = env.step(action)
            if action.kind == "tool_call":
                tool_time += time.perf_counter() - began
                tool_steps += 1
            if terminated or truncated:
                break
        episodes += 1
    elapsed = time.perf_counter() - start
    return {"episodes_per_s": episodes / elapsed, "tool_steps_per_s": tool_steps / max(tool_time, 1e-9)}


def best_of(rounds: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The highest value of each figure over ``rounds`` runs."""
    results = [run() for _ in range(rounds)]
    return {key: max(r[key] for r in results) for key in results[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per env")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds positive")
    env_ids = list(mosaic_gym.ENV_IDS.values()) + (list(SAME) if agentdojo.available() else [])
    ours = {env_id: best_of(args.rounds, lambda e=env_id: measure(e, args.seconds)) for env_id in env_ids}
    theirs: dict[str, float] = {}
    if agentdojo.available():
        suites = tuple(dict.fromkeys([*COMPARABLE.values(), *SAME.values()]))
        theirs = best_of(args.rounds, lambda: agentdojo_baseline.ground_truth_rates(suites, min_seconds=args.seconds))

    print(f"{'env':28} {'episodes/s':>11} {'tool steps/s':>13}   AgentDojo suite (episodes/s)   speed-up")
    for env_id, figures in ours.items():
        line = f"{env_id:28} {figures['episodes_per_s']:11.0f} {figures['tool_steps_per_s']:13.0f}"
        suite = COMPARABLE.get(env_id) or SAME.get(env_id)
        if suite and suite in theirs:
            speedup = figures["episodes_per_s"] / theirs[suite]
            target = 1.0 if env_id in SAME else SPEEDUP_TARGET
            line += f"   {suite:12} {theirs[suite]:13.1f}   {speedup:7.1f}x"
            line += "" if speedup >= target else f"  (below the {target:g}x target)"
        print(line)
    if not theirs:
        print(f"AgentDojo is not installed ({agentdojo.INSTALL}) - no comparison made.")
    slowest = min(f["tool_steps_per_s"] for f in ours.values())
    verdict = "meets" if slowest >= TOOL_STEPS_TARGET else "misses"
    print(f"slowest env: {slowest:.0f} tool steps/s on one core ({verdict} the {TOOL_STEPS_TARGET:,} target)")
    if args.json:
        args.json.write_text(json.dumps({"mosaic_gym": ours, "agentdojo": theirs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
