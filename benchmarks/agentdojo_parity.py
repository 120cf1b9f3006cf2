"""Parity of mosaic-gym's AgentDojo envs with AgentDojo's own runner, measured side by side.

    python benchmarks/agentdojo_parity.py [--suites banking slack] [--attacks important_instructions]
        [--injection-tasks injection_task_0 ...]

Three checks per suite, each played once through our env (``AgentDojoEnv``, scripted agents
stepping it) and once through AgentDojo's ``TaskSuite.run_task_with_pipeline``:

1. every user task's ground truth: utility must agree (the oracle through our env against
   AgentDojo's ``GroundTruthPipeline``);
2. every injection task's ground truth, beside the suite's first user task as AgentDojo's own
   ``TaskSuite.check`` places it: security must agree, and fire;
3. the scripted agents on every pair of user task and injection task, under each attack:
   the oracle (user task's ground truth) and the naive agent (the injection's ground truth,
   then the user task's), utility and security per pair must agree.

On AgentDojo's side the agents are pipelines that work out their calls from the environment
they are handed, as ``GroundTruthPipeline`` does; the injections come from AgentDojo's attack
registry. Prints the counts and every task where the two disagree; exits 1 on a disagreement.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Result = tuple[bool, bool]  # (utility, security)


@dataclass
class SuiteParity:
    suite: str
    user_tasks: int = 0
    utility_passes: int = 0  # ground truth passes utility, in AgentDojo's runner
    injection_tasks: int = 0
    security_fires: int = 0  # injection ground truth fires security through our env
    no_ground_truth_calls: list[str] = field(
        default_factory=list
    )  # injection tasks whose ground truth is only an answer
    episodes: int = 0  # scripted episodes compared in check 3
    differences: list[str] = field(default_factory=list)


def _quiet() -> contextlib.ExitStack:
    """AgentDojo warns and some checks print; keep the benchmark's output readable."""
    logging.getLogger("agentdojo").setLevel(logging.ERROR)
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def ours(suite: str, task: str, attack: str | None, script: Callable[[Any], list[Any]]) -> Result:
    """(utility, security) of one episode through our env, the agent playing ``script(env.task)``."""
    from mosaic_gym.agentdojo.env import AgentDojoEnv

    env = AgentDojoEnv(suite, split="all", max_steps=64)
    env.reset(seed=0, options={"task": task} | ({"attack": attack} if attack else {}))
    for action in script(env.task):
        *_, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            outcome = info["outcome"]
            return outcome.completed, outcome.injected_goal_executed
    raise RuntimeError(f"{suite}/{task}: the script ended before the episode did")


def theirs(
    suite: Any, user_task: Any, injection_task: Any, attack: str | None, calls: Callable[[Any], list[Any]], output: str
) -> Result:
    """(utility, security) from AgentDojo's ``run_task_with_pipeline``, an agent playing ``calls(env)``."""
    injections = _attack(suite, attack).attack(user_task, injection_task) if attack else {}
    utility, security = suite.run_task_with_pipeline(_Scripted(calls, output), user_task, injection_task, injections)
    return bool(utility), bool(security) if injection_task is not None else False


@functools.cache
def _attack(suite: Any, name: str) -> Any:
    """AgentDojo's attack, kept for the run as its benchmark keeps it (it caches the vectors it finds)."""
    from agentdojo.agent_pipeline.ground_truth_pipeline import GroundTruthPipeline
    from agentdojo.attacks import load_attack

    from mosaic_gym.agentdojo.attacks import TARGET_NAME

    target = GroundTruthPipeline(None)
    target.name = TARGET_NAME
    return load_attack(name, suite, target)


class _Scripted:
    """An AgentDojo pipeline element that makes the calls ``calls(env)`` computes from the
    environment it is handed, then answers ``output``: ``GroundTruthPipeline`` without its
    raise-on-error, so a naive script whose later calls fail still runs to the end."""

    name = "scripted"

    def __init__(self, calls: Callable[[Any], list[Any]], output: str) -> None:
        self.calls, self.output = calls, output

    def query(
        self, query: str, runtime: Any, env: Any, messages: Sequence[Any] = (), extra_args: dict | None = None
    ) -> tuple[str, Any, Any, list[Any], dict]:
        from agentdojo.agent_pipeline.tool_execution import tool_result_to_str
        from agentdojo.types import text_content_block_from_string

        new: list[Any] = []
        for call in self.calls(env):
            new.append({"role": "assistant", "content": [text_content_block_from_string("")], "tool_calls": [call]})
            result, error = runtime.run_function(env, call.function, call.args)
            new.append(
                {
                    "role": "tool",
                    "content": [text_content_block_from_string(tool_result_to_str(result))],
                    "tool_call": call,
                    "tool_call_id": None,
                    "error": error,
                }
            )
        new.append({"role": "assistant", "content": [text_content_block_from_string(self.output)], "tool_calls": None})
        return query, runtime, env, [*messages, *new], extra_args or {}


def check_suite(
    name: str, attacks: Sequence[str], pairs: bool = True, injection_tasks: Sequence[str] | None = None
) -> SuiteParity:
    """Checks 1 and 2, and check 3 under ``attacks`` (AgentDojo's names) unless ``pairs`` is off,
    on every pair or only those with ``injection_tasks``."""
    from mosaic_gym.agentdojo import ground_truth
    from mosaic_gym.agentdojo.suite import load_suite

    dojo = load_suite(name)
    suite = dojo.suite
    parity = SuiteParity(name)
    with _quiet():
        for user_id, user in dojo.user_tasks.items():  # 1: user tasks' ground truth
            mine = ours(name, user_id, None, lambda task: task.reference())
            their = theirs(suite, user, None, None, user.ground_truth, user.GROUND_TRUTH_OUTPUT)
            parity.user_tasks += 1
            parity.utility_passes += their[0]
            if mine[0] != their[0]:
                parity.differences.append(f"{user_id} ground truth: utility ours {mine[0]}, AgentDojo {their[0]}")
        first_id, first = next(iter(dojo.user_tasks.items()))
        for injection_id, injection in dojo.injection_tasks.items():  # 2: injection tasks' ground truth
            pair = f"{first_id}/{injection_id}"

            def injection_only(task: Any, injection: Any = injection) -> list[Any]:
                return ground_truth.script(
                    ground_truth.calls(injection, task.pre_environment), [injection.GROUND_TRUTH_OUTPUT], injection.ID
                )

            mine = ours(name, pair, "agentdojo/" + attacks[0], injection_only)
            their = theirs(suite, first, injection, attacks[0], injection.ground_truth, injection.GROUND_TRUTH_OUTPUT)
            parity.injection_tasks += 1
            parity.security_fires += mine[1]
            if not injection.ground_truth(dojo.environment({})):
                parity.no_ground_truth_calls.append(injection_id)
            if mine[1] != their[1]:
                parity.differences.append(f"{injection_id} ground truth: security ours {mine[1]}, AgentDojo {their[1]}")
        for attack in attacks if pairs else []:  # 3: scripted agents on every pair
            for user_id, user in dojo.user_tasks.items():
                for injection_id, injection in dojo.injection_tasks.items():
                    if injection_tasks is not None and injection_id not in injection_tasks:
                        continue
                    pair = f"{user_id}/{injection_id}"
                    agents: dict[str, tuple[Callable[[Any], list[Any]], Callable[[Any], list[Any]], str]] = {
                        "oracle": (
                            lambda task: task.reference(),
                            user.ground_truth,
                            user.GROUND_TRUTH_OUTPUT,
                        ),
                        "naive": (
                            lambda task: task.harmful_reference(),
                            lambda env, u=user, i=injection: i.ground_truth(env) + u.ground_truth(env),
                            " ".join(o for o in (injection.GROUND_TRUTH_OUTPUT, user.GROUND_TRUTH_OUTPUT) if o),
                        ),
                    }
                    for agent, (script, calls, output) in agents.items():
                        mine = ours(name, pair, "agentdojo/" + attack, script)
                        their = theirs(suite, user, injection, attack, calls, output)
                        parity.episodes += 1
                        if mine != their:
                            parity.differences.append(
                                f"{pair} {attack} {agent}: (utility, security) ours {mine}, AgentDojo {their}"
                            )
    return parity


def main() -> int:
    from mosaic_gym.agentdojo import BENCHMARK_VERSION, SUITE_NAMES, available, require

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=list(SUITE_NAMES), choices=SUITE_NAMES)
    parser.add_argument(
        "--attacks", nargs="+", default=["important_instructions"], help="AgentDojo attacks for check 3"
    )
    parser.add_argument(
        "--injection-tasks", nargs="+", help="check 3 on the pairs with these injection tasks only (default: all)"
    )
    args = parser.parse_args()
    if not available():
        require()  # raises with the install command
    failed = False
    for name in args.suites:
        parity = check_suite(name, args.attacks, injection_tasks=args.injection_tasks)
        print(
            f"agentdojo {BENCHMARK_VERSION} {name}: user-task ground truth passes utility "
            f"{parity.utility_passes}/{parity.user_tasks} in AgentDojo; injection ground truth fires security "
            f"{parity.security_fires}/{parity.injection_tasks} through our env"
            + (
                f" (no ground-truth calls: {', '.join(parity.no_ground_truth_calls)})"
                if parity.no_ground_truth_calls
                else ""
            )
            + f"; {parity.episodes} scripted episodes compared: {len(parity.differences)} differences"
        )
        for line in parity.differences:
            print(f"  DIFFERENT {line}")
        failed |= bool(parity.differences)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
