"""Wall time of a whole scripted-agent eval: episodes, JSONL writing, metrics and reports.

    python benchmarks/eval_throughput.py [--episodes 1000]

Target (issue 4): 1,000 episodes in under a minute on the 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mosaic_gym.evaluation.run import EvalConfig, run_eval

TARGET_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    print(f"{'agent':8} {'episodes':>9} {'seconds':>8} {'episodes/s':>11}")
    for agent in ("oracle", "naive", "refuse", "random"):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            run_eval(EvalConfig(agent=agent, episodes=args.episodes), Path(out))
            seconds = time.perf_counter() - start
        verdict = "" if seconds < TARGET_SECONDS * args.episodes / 1000 else "  (over the 1,000-in-60s target)"
        print(f"{agent:8} {args.episodes:9d} {seconds:8.1f} {args.episodes / seconds:11.0f}{verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
