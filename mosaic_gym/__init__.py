"""mosaic-gym: simulated tool worlds where LLM agents plan, check, then act or refuse.

Importing the package registers the Gymnasium ids ``mosaic_gym/Files-v0``, ``Email-v0``,
``Payments-v0``, ``Web-v0`` and ``Workspace-v0``, and AgentDojo's suites as
``mosaic_gym/AgentDojo-{Workspace,Travel,Banking,Slack}-v0`` (these need the ``[agentdojo]``
extra; making one without it is a one-line error that says how to install it).
"""

from __future__ import annotations

import gymnasium

from mosaic_gym import agentdojo
from mosaic_gym.env import EnvSnapshot, ToolEnv
from mosaic_gym.envs import ENV_IDS, SUITES
from mosaic_gym.native import NativeCall, NativeReply
from mosaic_gym.outcome import Outcome
from mosaic_gym.protocol import Action, ParseError, parse, render
from mosaic_gym.scenarios.suite import Suite

__version__ = "0.1.0"

for _suite_name, _env_id in ENV_IDS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point="mosaic_gym.env:ToolEnv", kwargs={"suite": _suite_name})
for _name, _env_id in agentdojo.ENV_IDS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id, entry_point="mosaic_gym.agentdojo:make_env", kwargs={"suite": agentdojo.suite_of(_name)}
        )

__all__ = [
    "ENV_IDS",
    "SUITES",
    "Action",
    "EnvSnapshot",
    "NativeCall",
    "NativeReply",
    "Outcome",
    "ParseError",
    "Suite",
    "ToolEnv",
    "parse",
    "render",
]
