"""Run an agent over the suites, resumably, and write trajectories, metrics and reports.

Episode ``i`` of a run goes to env ``envs[i % len(envs)]`` with seed ``seed + i``, so a run is
fully determined by its config. By default the env draws the task from that seed; with
``kinds``, the episodes take the kinds in turn (``kinds[i // len(envs) % len(kinds)]``) and the
seed draws a task of that kind, so a short run still weighs the kinds it asks for evenly.
Each finished episode is appended to ``trajectories.jsonl`` as one line in a single ``write``
call; a killed run therefore leaves whole lines only (and a torn last line, should the machine
itself die, is dropped on the next start). Running the same command again skips the episodes
already written, so an interrupted eval resumes, and the same command with more ``--episodes``
extends a finished run instead of playing it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mosaic_gym.agentdojo import AgentDojoMissing
from mosaic_gym.agents.registry import AgentOptions, make_agent
from mosaic_gym.catalog import ENV_IDS, NAME_OF, check_available, make_env
from mosaic_gym.env import ProtocolEnv
from mosaic_gym.envs import ENV_IDS as SUITE_ENV_IDS
from mosaic_gym.evaluation.metrics import Episode, compute
from mosaic_gym.evaluation.records import dumps, episode_key, outcome_of, to_record
from mosaic_gym.native import PROTOCOLS, ProtocolChoice
from mosaic_gym.rollout import EpisodeSpec, rollout_mixed
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.splits import SPLIT_CHOICES, TIER_CHOICES

RUN_FILE = "run.json"
TRAJECTORIES = "trajectories.jsonl"
METRICS = "metrics.json"


class EvalError(ValueError):
    """A run that cannot start as asked; the message is one line for the user."""


@dataclass(frozen=True)
class EvalConfig:
    agent: str
    envs: tuple[str, ...] = tuple(SUITE_ENV_IDS.values())  # the built-in suites; AgentDojo's by name only
    split: str = "heldout"
    tier: str = "all"  # starter, standard or all
    episodes: int = 100
    seed: int = 0
    model: str | None = None
    adapter: str | None = None
    base_url: str | None = None
    max_steps: int | None = None  # replies per episode; None: the env's budget (12)
    max_new_tokens: int | None = None  # tokens per reply, for LLM agents; None: the agent's default
    temperature: float = 0.0  # sampling temperature of the hf agent; 0 is greedy
    protocol: ProtocolChoice = "text"  # text, or native: tools through the model's function calling
    commit_declines: bool = False  # hf agent: a reply whose decision is " No" goes on as the refusal
    kinds: tuple[str, ...] = ()  # task kinds taken in turn; empty: whatever kind each seed draws
    batch_size: int = field(default=16, compare=False)

    def __post_init__(self) -> None:
        unknown = [e for e in self.envs if e not in NAME_OF]
        if unknown:
            raise EvalError(f"unknown env {unknown[0]!r}; choose from {', '.join(ENV_IDS.values())}")
        for env_id in self.envs:
            try:
                check_available(NAME_OF[env_id])
            except AgentDojoMissing as error:
                raise EvalError(f"{env_id}: {error}") from None
        if not self.envs:
            raise EvalError("give at least one env")
        if self.split not in SPLIT_CHOICES:
            raise EvalError(f"split must be train, heldout or all, got {self.split!r}")
        if self.tier not in TIER_CHOICES:
            raise EvalError(f"tier must be starter, standard or all, got {self.tier!r}")
        if self.protocol not in PROTOCOLS:
            raise EvalError(f"protocol must be text or native, got {self.protocol!r}")
        if self.episodes < 1:
            raise EvalError(f"episodes must be at least 1, got {self.episodes}")
        if self.batch_size < 1:
            raise EvalError(f"batch size must be at least 1, got {self.batch_size}")
        unknown_kinds = [kind for kind in self.kinds if kind not in KINDS]
        if unknown_kinds:
            raise EvalError(f"unknown task kind {unknown_kinds[0]!r}; choose from {', '.join(KINDS)}")
        if len(set(self.kinds)) < len(self.kinds):
            raise EvalError(f"each task kind at most once, got {', '.join(self.kinds)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise EvalError(f"max steps must be at least 1, got {self.max_steps}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise EvalError(f"max new tokens must be at least 1, got {self.max_new_tokens}")

    def plan(self) -> list[tuple[str, int, int]]:
        """(env id, episode index, seed) for every episode of the run."""
        return [(self.envs[i % len(self.envs)], i, self.seed + i) for i in range(self.episodes)]

    def kind_of(self, index: int) -> str | None:
        """The task kind episode ``index`` plays, or None when its seed draws any kind."""
        return self.kinds[index // len(self.envs) % len(self.kinds)] if self.kinds else None

    def identity(self) -> dict[str, Any]:
        """What must match for a directory to be resumed (batch size may change)."""
        data = asdict(self)
        data.pop("batch_size")
        data["envs"] = list(self.envs)
        data["kinds"] = list(self.kinds)
        return data


def run_eval(config: EvalConfig, out: Path, on_episode: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Play every episode not yet in ``out``, then write metrics and reports; returns the metrics.

    ``on_episode(done, total)`` is called after each episode (for a progress bar).
    """
    factories = {
        env_id: _env_factory(env_id, config.split, config.tier, config.max_steps, config.protocol)
        for env_id in config.envs
    }
    tasks = _tasks_by_kind(config, _first_envs(factories))  # before anything is written or loaded
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, config)
    records = load_records(out / TRAJECTORIES, repair=True)
    options = AgentOptions(
        model=config.model,
        adapter=_path(config.adapter),
        seed=config.seed,
        base_url=config.base_url,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        protocol=config.protocol,
        commit_declines=config.commit_declines,
    )
    agent = make_agent(config.agent, options)
    agent_info = {"name": config.agent, "model": config.model, "adapter": config.adapter}
    todo = [item for item in config.plan() if episode_key(item[0], item[1]) not in records]
    total, done = config.episodes, config.episodes - len(todo)
    if on_episode is not None:
        on_episode(done, total)
    fd = os.open(out / TRAJECTORIES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        jobs = [
            (factories[env_id], EpisodeSpec(seed=seed, task=_task(tasks, env_id, config.kind_of(index), seed)))
            for env_id, index, seed in todo
        ]
        for position, trajectory in rollout_mixed(agent, jobs, batch_size=config.batch_size):
            env_id, index, _ = todo[position]
            record = to_record(trajectory, env_id, index, config.split, agent_info)
            os.write(fd, dumps(record))
            records[record["episode"]] = record
            done += 1
            if on_episode is not None:
                on_episode(done, total)
    finally:
        os.close(fd)
    metrics = compute_metrics(records.values())
    metrics["run"] = config.identity()
    _write_atomic(out / METRICS, json.dumps(metrics, indent=2))
    from mosaic_gym.evaluation.report import write_reports

    write_reports(out, metrics, sorted(records.values(), key=lambda r: (r["env"], r["index"])))
    return metrics


def compute_metrics(records: Any) -> dict[str, Any]:
    episodes = [
        Episode(suite=NAME_OF.get(r["env"], r["env"]), kind=r["kind"], attack=r["attack"], outcome=outcome_of(r))
        for r in sorted(records, key=lambda r: r["episode"])
    ]
    return compute(episodes)


def load_records(path: Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Records already written, by episode key. A torn last line (a crash mid-write, or a run
    still writing) is left out, and with ``repair`` cut off the file, as the eval that resumes
    it does; readers leave the file as it is."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    whole = data.rfind(b"\n") + 1
    if repair and whole < len(data):
        with path.open("r+b") as handle:
            handle.truncate(whole)
    records = {}
    for number, line in enumerate(data[:whole].splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvalError(f"{path}:{number}: not a trajectory record ({error.msg}); use a fresh --out") from None
        records[record["episode"]] = record
    return records


def load_run(out: Path) -> dict[str, Any]:
    """The metrics of a finished run directory (for compare and export)."""
    if not out.is_dir():
        raise EvalError(f"{out}: no such run directory")
    metrics = out / METRICS
    if not metrics.exists():
        raise EvalError(f"{out}: no {METRICS} (is this an eval output directory, and did the run finish?)")
    data: dict[str, Any] = json.loads(metrics.read_text())
    return data


# Runs written before these settings existed played every tier, greedily, in the text protocol,
# replies free after their decision.
SETTINGS_BEFORE: dict[str, Any] = {
    "tier": "all",
    "temperature": 0.0,
    "protocol": "text",
    "commit_declines": False,
    "kinds": [],
}


def _claim(out: Path, config: EvalConfig) -> None:
    run_file = out / RUN_FILE
    if run_file.exists():
        previous = {**SETTINGS_BEFORE, **json.loads(run_file.read_text())}
        changed = sorted(k for k in config.identity() if previous.get(k) != config.identity()[k])
        if changed == ["episodes"] and config.episodes > previous["episodes"]:
            # Episode i's env and seed do not depend on the run's length: a longer run extends it.
            _write_atomic(run_file, json.dumps(config.identity(), indent=2))
        elif changed:
            raise EvalError(
                f"{out} holds a different run ({', '.join(changed)} differ); "
                "resume with the same flags (or more --episodes, to extend it) or use a new --out"
            )
    elif (out / TRAJECTORIES).exists():
        raise EvalError(f"{out} has trajectories but no {RUN_FILE}; use a new --out")
    else:
        _write_atomic(run_file, json.dumps(config.identity(), indent=2))


def _env_factory(
    env_id: str, split: str, tier: str, max_steps: int | None, protocol: str
) -> Callable[[], ProtocolEnv[Any]]:
    name = NAME_OF[env_id]  # max_steps None: the env's own budget
    return lambda: make_env(name, split=split, tier=tier, max_steps=max_steps, protocol=protocol)


def _first_envs(factories: dict[str, Callable[[], ProtocolEnv[Any]]]) -> dict[str, ProtocolEnv[Any]]:
    """One env of each id, built before the run starts: a split or tier an env lacks is a bad flag."""
    envs = {}
    for env_id, factory in factories.items():
        try:
            envs[env_id] = factory()
        except ValueError as error:
            raise EvalError(f"{env_id}: {error}") from None
    return envs


def _tasks_by_kind(config: EvalConfig, envs: dict[str, ProtocolEnv[Any]]) -> dict[tuple[str, str], list[str]]:
    """The task ids of each (env, kind) the run asks for; every pair must have one."""
    tasks: dict[tuple[str, str], list[str]] = {}
    for env_id in config.envs if config.kinds else ():
        for kind in config.kinds:
            tasks[env_id, kind] = [template.id for template in envs[env_id].templates if template.kind == kind]
            if not tasks[env_id, kind]:
                raise EvalError(f"{env_id} has no {kind} task in the {config.split} split, {config.tier} tier")
    return tasks


def _task(tasks: dict[tuple[str, str], list[str]], env_id: str, kind: str | None, seed: int) -> str | None:
    if kind is None:
        return None  # the env draws the task from the episode's seed
    choices = tasks[env_id, kind]
    return choices[int(np.random.default_rng(seed).integers(len(choices)))]


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
