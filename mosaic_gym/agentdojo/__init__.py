"""AgentDojo's suites as mosaic-gym environments (the optional ``[agentdojo]`` extra).

This module names the env ids and checks that AgentDojo is installed; it never imports
AgentDojo itself, so ``import mosaic_gym`` and everything else work without the extra. The
modules next to it import AgentDojo and are only loaded once :func:`require` has passed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import warnings
from typing import Any

# The release the parity figures in docs/agentdojo.md were measured on, and the benchmark
# version its tasks are taken from (v1.2: 97 user tasks, 35 injection tasks).
AGENTDOJO_VERSION = "0.1.35"
BENCHMARK_VERSION = "v1.2"
SUITE_NAMES: tuple[str, ...] = ("workspace", "travel", "banking", "slack")
INSTALL = "pip install 'mosaic-gym[agentdojo]'"

# Env name (as in a training config's episodes.envs) -> Gymnasium id.
ENV_IDS: dict[str, str] = {f"agentdojo-{suite}": f"mosaic_gym/AgentDojo-{suite.title()}-v0" for suite in SUITE_NAMES}
NAME_OF: dict[str, str] = {env_id: name for name, env_id in ENV_IDS.items()}


class AgentDojoMissing(ImportError):
    """AgentDojo is not installed (or not the pinned release); the message is one line for the user."""


@functools.cache
def _problem() -> str | None:
    """Why the AgentDojo envs cannot run here, or None when they can."""
    if importlib.util.find_spec("agentdojo") is None:
        return f"the AgentDojo envs need AgentDojo {AGENTDOJO_VERSION}, which is not installed: {INSTALL}"
    installed = importlib.metadata.version("agentdojo")
    if installed != AGENTDOJO_VERSION:
        return (
            f"the AgentDojo envs are pinned to AgentDojo {AGENTDOJO_VERSION}, but {installed} is installed: {INSTALL}"
        )
    try:  # Installed is not enough: a dependency clash can break the import.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import agentdojo.task_suite  # noqa: F401
    except Exception as error:
        return f"AgentDojo is installed but does not import ({type(error).__name__}: {error}): {INSTALL}"
    return None


def available() -> bool:
    """Whether the AgentDojo envs can run here, so callers can skip rather than fail."""
    return _problem() is None


def require() -> None:
    """Raise :class:`AgentDojoMissing` with the install command unless the AgentDojo envs can run."""
    problem = _problem()
    if problem is not None:
        raise AgentDojoMissing(problem)


def suite_of(name: str) -> str:
    """``agentdojo-banking`` -> ``banking``."""
    return name.removeprefix("agentdojo-")


def make_env(suite: str, **kwargs: Any) -> Any:
    """Gymnasium's entry point for the AgentDojo ids: a one-line error when the extra is missing."""
    require()
    from mosaic_gym.agentdojo.env import AgentDojoEnv

    return AgentDojoEnv(suite, **kwargs)
