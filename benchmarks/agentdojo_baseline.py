"""AgentDojo ground-truth throughput, as a baseline for mosaic-gym's env throughput.

AgentDojo (``pip install 'mosaic-gym[agentdojo]'``) is an optional dependency: nothing in
mosaic-gym imports this module, and every AgentDojo import below happens inside a function, so
the project builds and tests without it. Importing AgentDojo needs no network and no API key (it imports the LLM
client libraries, but constructs no clients).

Run ``python benchmarks/agentdojo_baseline.py`` to print the rates.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Sequence

from mosaic_gym.agentdojo import available

DEFAULT_SUITES: tuple[str, ...] = ("workspace", "slack", "travel", "banking")


def ground_truth_rates(
    suites: Sequence[str] = DEFAULT_SUITES,
    benchmark_version: str = "v1.2",
    min_seconds: float = 2.0,
) -> dict[str, float]:
    """AgentDojo's ground-truth episodes per second for each suite (user tasks, no injection),
    measured in this process.

    Each episode is what AgentDojo's own ``benchmark.run_task_without_injection_tasks`` does,
    minus its trace logger: ``suite.run_task_with_pipeline(GroundTruthPipeline(task), task,
    injection_task=None, injections={})``, which loads the default environment from YAML, runs
    the task's ground-truth tool calls and checks utility. Whole passes over the user tasks are
    timed until ``min_seconds`` have passed, so every task weighs the same.
    """
    from agentdojo.agent_pipeline.ground_truth_pipeline import GroundTruthPipeline
    from agentdojo.task_suite.load_suites import get_suites

    all_suites = get_suites(benchmark_version)
    if not all_suites:
        raise ValueError(f"unknown AgentDojo benchmark version {benchmark_version!r}")
    rates: dict[str, float] = {}
    # AgentDojo warns and some task checks print on failure; keep the benchmark output clean.
    logging.getLogger("agentdojo").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for name in suites:
            suite = all_suites[name]
            tasks = list(suite.user_tasks.values())
            # Warm the once-per-process YAML file cache so it is not billed to the first pass.
            suite.load_and_inject_default_environment({})
            episodes = 0
            start = time.perf_counter()
            while True:
                for task in tasks:
                    suite.run_task_with_pipeline(GroundTruthPipeline(task), task, injection_task=None, injections={})
                episodes += len(tasks)
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            rates[name] = episodes / elapsed
    return rates


if __name__ == "__main__":
    if not available():
        raise SystemExit("AgentDojo is not installed: pip install 'mosaic-gym[agentdojo]'")
    for suite_name, rate in ground_truth_rates().items():
        print(f"agentdojo v1.2 {suite_name:<10} {rate:8.1f} ground-truth episodes/s")
