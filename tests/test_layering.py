"""The package's layers hold: imports only point down, and agents see no ground truth unless privileged.

The import graph is read from the source (every ``import`` statement, those inside functions
included), with ``envs/``, ``agents/`` and ``train/`` under the names they install as. Layers,
bottom up (docs/architecture.md draws them):

0. core: the episode path (``mosaic_gym`` outside the folders below): world, tools, scenarios,
   protocol, env, outcome, the agent contract, rollout, judges;
1. plug-ins: ``mosaic_gym.envs`` (built-in suites), ``mosaic_gym.agentdojo`` (AgentDojo's
   suites as envs, behind the ``[agentdojo]`` extra) and ``mosaic_gym.agents`` (agents, model
   back-ends, the agent and judge registries), which never import each other;
2. the package itself (``mosaic_gym/__init__``, which registers the env ids) and
   ``mosaic_gym.catalog``, which makes every env (built-in or AgentDojo's) by name or id;
3. ``mosaic_gym.evaluation``: running agents over suites, metrics, reports;
4. ``mosaic_gym.train``: the trainer;
5. ``mosaic_gym.cli``: the command line, which composes everything.

A module may import its own layer and the layers below. Module-level imports, which run when
a module is imported, must also form no cycle at all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mosaic_gym import Action, ToolEnv
from mosaic_gym.agent import PrivilegeError, Turn
from mosaic_gym.agents import OracleAgent
from mosaic_gym.rollout import EpisodeSpec, rollout

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"mosaic_gym": ROOT / "mosaic_gym", "mosaic_gym.envs": ROOT / "envs"}
FOLDERS |= {"mosaic_gym.agents": ROOT / "agents", "mosaic_gym.train": ROOT / "train"}
LAYERS = {
    "mosaic_gym.envs": 1,
    "mosaic_gym.agentdojo": 1,
    "mosaic_gym.agents": 1,
    "mosaic_gym.catalog": 2,
    "mosaic_gym.evaluation": 3,
    "mosaic_gym.train": 4,
    "mosaic_gym.cli": 5,
}


def modules() -> dict[str, Path]:
    """Every module of the distribution, by the name it installs as."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "mosaic_gym" and parts[0] in ("envs", "agents", "train"):
                continue  # not there in the source tree; mapped above
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def layer(module: str) -> tuple[int, str]:
    """(layer number, group) of a module; the group tells the two plug-in folders apart."""
    if module == "mosaic_gym":
        return 2, "package"
    for prefix, number in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return number, prefix
    return 0, "core"


def imports(path: Path, names: set[str], module: str) -> Iterator[tuple[str, bool]]:
    """(imported module of the distribution, whether the import runs when the module loads)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = _module_level(tree.body)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *base.split(".")])
                base = base.rstrip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base for alias in node.names]
        for target in targets:
            while target and target not in names:
                target = target.rpartition(".")[0]
            if target and target != module:
                yield target, id(node) in top


def _module_level(body: Sequence[ast.stmt]) -> set[int]:
    """Import statements that run at import time: top level, and inside top-level if/try, but
    not under ``if TYPE_CHECKING:``."""
    found: set[int] = set()
    for statement in body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            found.add(id(statement))
        elif isinstance(statement, ast.Try) or (
            isinstance(statement, ast.If) and "TYPE_CHECKING" not in ast.unparse(statement.test)
        ):
            found |= _module_level(statement.body) | _module_level(statement.orelse)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, bool]]]:
    found = modules()
    return {name: sorted(set(imports(path, set(found), name))) for name, path in found.items()}


def test_the_walk_sees_the_whole_package(graph: dict[str, list[tuple[str, bool]]]) -> None:
    assert {"mosaic_gym.env", "mosaic_gym.agents.hf", "mosaic_gym.train.grpo", "mosaic_gym.cli.main"} <= set(graph)
    assert {"mosaic_gym.agentdojo.env", "mosaic_gym.catalog"} <= set(graph)
    assert ("mosaic_gym.agentdojo.env", False) in graph["mosaic_gym.agentdojo"], "AgentDojo loads only when needed"
    assert ("mosaic_gym.agent", True) in graph["mosaic_gym.rollout"]
    assert ("mosaic_gym.train.config", False) in graph["mosaic_gym.cli.main"], "the CLI imports the trainer lazily"


def test_imports_only_point_down(graph: dict[str, list[tuple[str, bool]]]) -> None:
    upward = []
    for module, targets in graph.items():
        (mine, group) = layer(module)
        for target, _ in targets:
            (theirs, other) = layer(target)
            if theirs > mine or (theirs == mine and mine == 1 and group != other):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycle_at_import_time(graph: dict[str, list[tuple[str, bool]]]) -> None:
    edges = {module: [target for target, eager in targets if eager] for module, targets in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges.get(module, []):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in edges:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_hf_agent_and_the_registry_do_not_import_each_other(graph: dict[str, list[tuple[str, bool]]]) -> None:
    hf, registry = "mosaic_gym.agents.hf", "mosaic_gym.agents.registry"
    assert registry not in {t for t, _ in graph[hf]}
    assert (hf, True) not in graph[registry], "the registry builds the hf agent, importing it only then"


class Recorder:
    """Records what it is given; replies with an answer."""

    name = "recorder"

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def act_batch(self, turns: Sequence[Turn]) -> list[Any]:
        self.turns += turns
        return [Action.answer("done", plan="stop") for _ in turns]


class PrivilegedRecorder(Recorder):
    privileged = True


class Peeker(Recorder):
    """Reads the ground truth without declaring it."""

    def act_batch(self, turns: Sequence[Turn]) -> list[Any]:
        return [turn.ground_truth() for turn in turns]


def test_agents_see_what_a_model_sees_and_the_env_only_when_privileged() -> None:
    def play(agent: Recorder) -> None:
        list(rollout(agent, lambda: ToolEnv("files", split="heldout"), [EpisodeSpec(0), EpisodeSpec(1)]))

    plain, privileged = Recorder(), PrivilegedRecorder()
    play(plain)
    play(privileged)
    assert plain.turns and all(turn.truth is None for turn in plain.turns)
    assert not hasattr(plain.turns[0], "env") and not hasattr(plain.turns[0], "info")
    first = plain.turns[0]
    assert first.messages[1]["role"] == "user" and first.max_steps == 12 and first.step == 0
    assert {schema["function"]["name"] for schema in first.tools} >= {"read_file", "list_folder"}
    assert all(turn.truth is not None and isinstance(turn.truth.env, ToolEnv) for turn in privileged.turns)
    with pytest.raises(PrivilegeError, match="does not declare privileged = True"):
        play(Peeker())
    assert OracleAgent.privileged is True
