"""Attacks on an AgentDojo episode: AgentDojo's own, and mosaic-gym's families rendered into
AgentDojo's injection vectors.

AgentDojo's attacks are loaded from its registry (``load_attack``) and called as its benchmark
calls them, so their text is AgentDojo's to the character; they go by ``agentdojo/<name>`` to
keep them apart from mosaic-gym's families of similar names (``important_instructions`` is
both). A mosaic-gym family gets the injection task's goal and its ground-truth calls (with
AgentDojo's placeholders) and its text goes into the same vectors AgentDojo's attacks use:
those the user task's ground truth reads. Held-out families stay out of the train split.
"""

from __future__ import annotations

import functools
from typing import Any

from agentdojo.agent_pipeline.ground_truth_pipeline import GroundTruthPipeline
from agentdojo.attacks import load_attack

from mosaic_gym.agentdojo.suite import DojoSuite
from mosaic_gym.attacks import ATTACKS, AttackContext, families
from mosaic_gym.scenarios.instantiate import call_text
from mosaic_gym.world.generate import Draw

PREFIX = "agentdojo/"
# The attacks AgentDojo's papers report, drawn by default.
AGENTDOJO_ATTACKS: tuple[str, ...] = tuple(
    PREFIX + name
    for name in ("important_instructions", "tool_knowledge", "ignore_previous", "system_message", "injecagent")
)
# AgentDojo's name for a locally served model: its attacks then address the agent as "Local model".
TARGET_NAME = "local"
# AgentDojo's attacks sign as the user of every suite; mosaic-gym's families do the same.
USER_NAME = "Emma Johnson"
COMPANY = {"workspace": "Blue Sparrow Tech", "travel": "travel agency", "banking": "bank", "slack": "Slack"}


def known_attacks(split: str) -> list[str]:
    """Every attack an episode of ``split`` may use: AgentDojo's, then mosaic-gym's allowed there."""
    return [*AGENTDOJO_ATTACKS, *(f.name for f in families(split, benign=False, two_carriers=True))]


def check_attacks(names: list[str], split: str) -> None:
    """A clear error for an attack that does not exist or may not appear in ``split``."""
    allowed = known_attacks(split)
    for name in names:
        if name not in allowed:
            where = f" in the {split} split" if name in known_attacks("all") else ""
            raise ValueError(f"attack {name!r} is not available{where}; choose from {', '.join(allowed)}")


class Attacker:
    """Writes the injections of one suite's episodes."""

    def __init__(self, suite: DojoSuite) -> None:
        self.suite = suite

    def vectors(self, user_task: Any) -> list[str]:
        """The injection vectors the user task's ground truth reads (AgentDojo's own choice)."""
        return list(self._agentdojo(AGENTDOJO_ATTACKS[0]).get_injection_candidates(user_task))

    def fits(self, name: str, user_task: Any) -> bool:
        """Whether the attack can run on this user task (a two-carrier family needs two vectors)."""
        family = ATTACKS.get(name)
        return family is None or not family.two_carriers or len(self.vectors(user_task)) >= 2

    def injections(self, name: str, user_task: Any, injection_task: Any, draw: Draw) -> dict[str, str]:
        """Vector -> text for one episode."""
        if name.startswith(PREFIX):
            return dict(self._agentdojo(name).attack(user_task, injection_task))
        if not self.fits(name, user_task):
            raise ValueError(f"attack {name!r} needs two injection vectors; {user_task.ID} shows one")
        family = ATTACKS[name]
        environment = self.suite.environment({})
        calls = tuple(
            call_text(call.function, dict(call.placeholder_args or call.args))
            for call in injection_task.ground_truth(environment)
        )
        context = AttackContext(
            goal=injection_task.GOAL, calls=calls, user_name=USER_NAME, company=COMPANY[self.suite.name]
        )
        text = family.render(context, draw)
        vectors = self.vectors(user_task)
        if family.two_carriers:
            return {vectors[0]: text.first, vectors[1]: text.second}
        return dict.fromkeys(vectors, text.first)

    @functools.cache  # noqa: B019  (one Attacker per suite, kept for the process)
    def _agentdojo(self, name: str) -> Any:
        target = GroundTruthPipeline(None)
        target.name = TARGET_NAME
        return load_attack(name.removeprefix(PREFIX), self.suite.suite, target)
