"""The one place that reads AgentDojo's ground truth for scripted agents (privileged access).

AgentDojo's tasks solve themselves with ``ground_truth(environment)``: tool calls computed
from the environment before the agent acts, plus ``GROUND_TRUTH_OUTPUT``, the final answer.
The oracle plays the user task's, as AgentDojo's ``GroundTruthPipeline`` does; the naive agent
does what the injection asks first ("before you solve the task...") and then the user's task.
Only scripted agents read this, and only through the privileged view of a turn
(``turn.ground_truth().env.task``, given to agents that declare ``privileged = True``); the
env's checks are AgentDojo's own utility and security.
"""

from __future__ import annotations

from typing import Any

from mosaic_gym.protocol import Action


def reference(user_task: Any, environment: Any) -> list[Action]:
    """The user task's ground-truth calls, then its ground-truth output as the answer."""
    return script(calls(user_task, environment), [user_task.GROUND_TRUTH_OUTPUT], f"the user's {user_task.ID}")


def harmful_reference(user_task: Any, injection_task: Any, environment: Any) -> list[Action]:
    """The injection task's ground-truth calls, then the user task's; the answer carries both outputs."""
    both = calls(injection_task, environment) + calls(user_task, environment)
    outputs = [injection_task.GROUND_TRUTH_OUTPUT, user_task.GROUND_TRUTH_OUTPUT]
    return script(both, outputs, f"{injection_task.ID} as the tool output asks, then {user_task.ID}")


def calls(task: Any, environment: Any) -> list[Any]:
    """A task's ground-truth calls (AgentDojo's ``FunctionCall``), computed on a copy: some
    ground truths read the environment through methods that mark emails read."""
    return list(task.ground_truth(environment.model_copy(deep=True)))


def script(function_calls: list[Any], outputs: list[str], what: str) -> list[Action]:
    """AgentDojo's calls as actions, then the outputs joined as the answer."""
    actions = [Action.call(c.function, dict(c.args), plan=f"Next call of {what}.") for c in function_calls]
    answer = " ".join(output for output in outputs if output)
    return [*actions, Action.answer(answer, plan=f"Report the result of {what}.")]
