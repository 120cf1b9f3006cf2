"""Seconds per trajectory of the RL stage, split into playing the episodes and the loss passes.

    python benchmarks/rl_step.py [--config full] [--warm-start runs/warm/warm_start] [--steps 2]
                                 [--out runs/bench-rl] [--threads N] [--set section.key=VALUE ...]
                                 [--every-position]

Trains ``--steps`` RL steps of the recipe (from a warm start when given, else from the base
model after a 1-step warm start) into a fresh folder, then reads the run's ``summary.json``
and ``rl/steps.jsonl``. Issue 11's target: hundreds of RL episodes within a 90-minute budget
on the 2-core CPU, i.e. a few seconds per trajectory. Reference (docs/results-log.md): the
standard-tier ``full`` recipe of 2026-11 took 216 s per step of 8 trajectories, 27 s each. On
the starter tier with every decision, a replay and the level reset (float32, 2026-12, session
12), playing took 54 s per trajectory before kept prompt starts and one batch across suites,
and 6.4 s after (with one thread, beside another arm). ``--every-position`` leaves TRL's fused
LM head projecting every position on CPU, as it did before session 27, to compare the loss
passes (:mod:`mosaic_gym.train.labelled_head`): one step of ``full`` from a starter warm start
took 185.4 s that way and 113.7 s without it, its loss passes 119 -> 58 s (session 27).
Since session 29 a step is timed from its start to the next's, so the level reset after it
counts (74-104 s of a 206 s both-tier ``full`` step); the figures above were timed without it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from mosaic_gym.train import policy
from mosaic_gym.train.config import load_config
from mosaic_gym.train.run import STEP_LOG, read_step_log, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="full")
    parser.add_argument("--warm-start", type=Path, help="a warm-start adapter folder (default: a 1-step SFT)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-rl"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any recipe override")
    parser.add_argument("--every-position", action="store_true", help="TRL's LM head over every position")
    args = parser.parse_args()
    if args.every_position:
        policy.project_labelled_positions_only = lambda: None
    overrides = ["--rl.steps", str(args.steps), "--rl.save_steps", str(args.steps), "--probe.episodes_per_kind", "0"]
    overrides += ["--warm_start", str(args.warm_start)] if args.warm_start else ["--sft.steps", "1"]
    if args.threads:
        overrides += ["--threads", str(args.threads)]
    for item in args.set:
        key, _, value = item.partition("=")
        overrides += [f"--{key}", value]
    config = load_config(args.config, overrides)
    shutil.rmtree(args.out, ignore_errors=True)
    summary = train(config, args.out)
    steps = read_step_log(args.out / "rl" / STEP_LOG)
    per_step = summary["rl"]["seconds_per_step"]
    rollout = statistics.mean(s["time/rollout_seconds"] for s in steps)
    trajectories = config.rl.trajectories_per_step
    print(f"{args.config}: {trajectories} trajectories per step, {len(steps)} steps")
    print(f"  seconds per step        {per_step:7.1f}")
    print(f"  seconds per trajectory  {per_step / trajectories:7.1f}")
    print(f"  playing the episodes    {rollout / per_step:7.0%}  ({rollout / trajectories:.1f} s per trajectory)")
    print(f"  the rest of the step    {1 - rollout / per_step:7.0%}  (loss passes, update, decision step, level reset)")
    print(f"  agent tokens/episode    {statistics.mean(s['episodes/mean_tokens'] for s in steps):7.0f}")
    print(f"  peak memory             {summary['peak_memory_gb']:7.2f} GB")


if __name__ == "__main__":
    main()
