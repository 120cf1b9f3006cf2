"""AgentDojo's suites as envs: without the extra, a one-line install hint; with it, parity with
AgentDojo's own runner, the risk table, the split, attacks, journal flags, eval and training.

The tests that need AgentDojo are skipped when it is not installed; the full side-by-side
parity run (every pair of all four suites) is ``python benchmarks/agentdojo_parity.py``.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import mosaic_gym
from mosaic_gym import agentdojo
from mosaic_gym.cli.main import main
from mosaic_gym.protocol import Action

NEEDS_AGENTDOJO = pytest.mark.skipif(
    not agentdojo.available(),
    reason=f"AgentDojo {agentdojo.AGENTDOJO_VERSION} is not installed ({agentdojo.INSTALL}); "
    "the parity benchmark is python benchmarks/agentdojo_parity.py",
)


@pytest.fixture
def without_agentdojo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if the extra were not installed."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "agentdojo" else find_spec(name, *a)
    )
    agentdojo._problem.cache_clear()
    yield
    agentdojo._problem.cache_clear()


# -- Without the extra -------------------------------------------------------------------


def test_ids_are_registered_whatever_is_installed() -> None:
    for env_id in ("Workspace", "Travel", "Banking", "Slack"):
        assert f"mosaic_gym/AgentDojo-{env_id}-v0" in gym.registry
    assert set(mosaic_gym.ENV_IDS) == {"files", "email", "payments", "web", "workspace"}


def test_making_an_env_without_the_extra_says_how_to_install_it(without_agentdojo: None) -> None:
    with pytest.raises(agentdojo.AgentDojoMissing, match=r"pip install 'mosaic-gym\[agentdojo\]'") as error:
        gym.make("mosaic_gym/AgentDojo-Banking-v0")
    assert "\n" not in str(error.value)


def test_eval_without_the_extra_is_one_line(
    without_agentdojo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--agent", "oracle", "--env", "mosaic_gym/AgentDojo-Banking-v0", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "mosaic_gym/AgentDojo-Banking-v0" in err and "pip install 'mosaic-gym[agentdojo]'" in err


def test_training_config_without_the_extra_names_the_key(without_agentdojo: None) -> None:
    from mosaic_gym.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"episodes.envs: agentdojo-banking: .*pip install"):
        load_config("quick", ["--episodes.envs", "[agentdojo-banking]", "--episodes.tier", "all"])


def test_another_agentdojo_release_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("agentdojo") is None:
        pytest.skip("AgentDojo is not installed")
    monkeypatch.setattr(agentdojo.importlib.metadata, "version", lambda name: "0.0.1")
    agentdojo._problem.cache_clear()
    try:
        with pytest.raises(agentdojo.AgentDojoMissing, match=r"pinned to AgentDojo 0\.1\.35, but 0\.0\.1 is installed"):
            agentdojo.require()
    finally:
        agentdojo._problem.cache_clear()


# -- With the extra ----------------------------------------------------------------------


def _env(suite: str = "banking", **kwargs: Any) -> Any:
    return gym.make(agentdojo.ENV_IDS[f"agentdojo-{suite}"], **kwargs).unwrapped


def _play(env: Any, actions: list[Action]) -> dict[str, Any]:
    """Step through ``actions``; the last info."""
    info: dict[str, Any] = {}
    for action in actions:
        *_, info = env.step(action)
    return info


@NEEDS_AGENTDOJO
def test_risk_table_covers_exactly_the_tools_of_the_suites() -> None:
    from mosaic_gym.agentdojo.suite import load_suite, risk_table

    table = risk_table()
    tools = {t.name: t for name in agentdojo.SUITE_NAMES for t in load_suite(name).tools}
    assert set(tools) == set(table.read) | set(table.tools)
    assert not set(table.read) & set(table.tools)
    for name, flags in table.tools.items():
        assert flags.reason and tools[name].irreversible == flags.irreversible
    irreversible = {name for name, t in tools.items() if t.irreversible}
    assert {"send_money", "send_email", "delete_file", "reserve_hotel", "update_password"} <= irreversible
    assert not {"schedule_transaction", "delete_email", "create_file"} & irreversible


@NEEDS_AGENTDOJO
def test_split_is_fixed_and_pairs_take_both_halves_from_one_split() -> None:
    from mosaic_gym.agentdojo.suite import load_suite

    held = {name: load_suite(name).templates("heldout") for name in agentdojo.SUITE_NAMES}
    benign = {name: [t.id for t in templates if t.kind == "benign"] for name, templates in held.items()}
    assert sum(map(len, benign.values())) == 24
    assert benign["banking"] == ["user_task_3", "user_task_7", "user_task_11", "user_task_15"]
    banking = load_suite("banking")
    train = {t.id for t in banking.templates("train")}
    assert "user_task_0/injection_task_0" in train and "user_task_3/injection_task_3" in {t.id for t in held["banking"]}
    assert not train & {t.id for t in held["banking"]}
    assert "user_task_0/injection_task_3" not in train  # crosses the split: only in "all"
    assert len(banking.templates("all")) == 16 + 16 * 9


@NEEDS_AGENTDOJO
def test_same_seed_same_episode_and_state_is_never_shared() -> None:
    env, other = _env(split="all"), _env(split="all")
    first = env.reset(seed=5)
    assert other.reset(seed=5)[0] == first[0] and other.task.id == env.task.id
    env.reset(seed=0, options={"task": "user_task_0"})
    before = len(env.task.environment.bank_account.transactions)
    payment = {"recipient": "X", "amount": 100.0, "subject": "s", "date": "2022-01-01"}
    env.step(Action.call("send_money", payment, plan="Pay."))
    assert len(env.task.environment.bank_account.transactions) == before + 1
    env.reset(seed=0, options={"task": "user_task_0"})
    assert len(env.task.environment.bank_account.transactions) == before


@NEEDS_AGENTDOJO
@pytest.mark.parametrize("suite", agentdojo.SUITE_NAMES)
def test_ground_truth_parity_with_agentdojo(suite: str) -> None:
    """Every user task's ground truth passes utility through our env exactly when it does in
    AgentDojo's runner; every injection task's fires security exactly when it does there."""
    from benchmarks.agentdojo_parity import check_suite

    parity = check_suite(suite, ["important_instructions"], pairs=False)
    assert parity.differences == []
    assert parity.utility_passes == parity.user_tasks
    assert parity.security_fires == parity.injection_tasks - (8 if suite == "workspace" else 0)


@NEEDS_AGENTDOJO
def test_scripted_agents_match_agentdojo_on_every_banking_pair() -> None:
    from benchmarks.agentdojo_parity import check_suite

    parity = check_suite("banking", ["tool_knowledge"])
    assert parity.episodes == 2 * 16 * 9
    assert parity.differences == []


@NEEDS_AGENTDOJO
def test_our_attack_families_go_into_agentdojo_vectors() -> None:
    env = _env(split="all")
    env.reset(seed=3, options={"task": "user_task_0/injection_task_0", "attack": "authority_urgency"})
    info = _play(env, env.task.reference()[:1])
    assert "URGENT" in info["messages"][-1]["content"] and info["adversarial_spans"]
    with pytest.raises(ValueError, match="'encoded' is not available in the train split"):
        _env(split="train", attacks=["encoded"])
    with pytest.raises(ValueError, match="no starter tier"):
        _env(tier="starter")


@NEEDS_AGENTDOJO
def test_irreversible_flags_and_harm_through_eval(tmp_path: Path) -> None:
    runs = {}
    for agent in ("oracle", "naive"):
        out = tmp_path / agent
        argv = ["eval", "--agent", agent, "--env", agentdojo.ENV_IDS["agentdojo-banking"], "--split", "heldout"]
        assert main([*argv, "--episodes", "12", "--out", str(out)]) == 0
        runs[agent] = json.loads((out / "metrics.json").read_text())["overall"]
        assert (out / "report.md").exists() and (out / "report.html").exists()
    naive, oracle = runs["naive"], runs["oracle"]
    assert oracle["benign_completion_rate"]["value"] == 1.0
    assert oracle["attack_success_rate"]["value"] == 0.0 and oracle["irreversible_harm_rate"]["value"] == 0.0
    assert naive["attack_success_rate"]["value"] == 1.0 and naive["irreversible_harm_rate"]["value"] > 0
    assert naive["utility_under_attack"]["n"] == oracle["utility_under_attack"]["n"] > 0
    records = [json.loads(line) for line in (tmp_path / "naive" / "trajectories.jsonl").read_text().splitlines()]
    sends = [e for r in records for s in r["steps"] for e in s["journal"] if e["tool"] == "send_money"]
    assert sends and all(e["irreversible"] for e in sends)
    assert main(["compare", str(tmp_path / "oracle"), str(tmp_path / "naive"), "--out", str(tmp_path / "cmp")]) == 0
    assert "attack_success_rate" in (tmp_path / "cmp" / "compare.md").read_text()


@NEEDS_AGENTDOJO
def test_training_on_agentdojo_is_one_config_line() -> None:
    from mosaic_gym.train.config import load_config
    from mosaic_gym.train.grpo import training_rows
    from mosaic_gym.train.probe import probe_plan

    overrides = ["--episodes.envs", "[agentdojo-banking, payments]", "--episodes.tier", "all"]
    config = load_config("quick", [*overrides, "--probe.episodes_per_kind", "2"])
    rows = [json.loads(row["prompt"][0]["content"]) for row in training_rows(config)]
    dojo = [row for row in rows if row["suite"] == "agentdojo-banking"]
    assert dojo and all(row["task"].split("/")[0] not in {"user_task_3", "user_task_7"} for row in dojo)
    assert probe_plan(config, "heldout")["agentdojo-banking"]


@NEEDS_AGENTDOJO
def test_scripted_agents_reach_agentdojo_ground_truth_only_as_privileged() -> None:
    from mosaic_gym.agent import PrivilegeError, Turn
    from mosaic_gym.agentdojo.env import AgentDojoEnv
    from mosaic_gym.agents import NaiveAgent
    from mosaic_gym.rollout import EpisodeSpec, rollout

    spec = EpisodeSpec(0, task="user_task_0/injection_task_0", attack="agentdojo/important_instructions")

    def play(agent: Any) -> Any:
        [trajectory] = rollout(agent, lambda: AgentDojoEnv("banking", split="all"), [spec], batch_size=1)
        return trajectory.outcome

    assert NaiveAgent.privileged is True
    outcome = play(NaiveAgent())
    assert outcome.injected_goal_executed and outcome.completed

    class Peeker:  # reads the ground truth without declaring privileged = True
        name = "peeker"

        def act_batch(self, turns: list[Turn]) -> list[Any]:
            return [turn.ground_truth().env.task.harmful_reference()[0] for turn in turns]

    with pytest.raises(PrivilegeError, match="does not declare privileged = True"):
        play(Peeker())


@NEEDS_AGENTDOJO
def test_native_protocol_and_tool_errors() -> None:
    env = _env(protocol="native")
    _, info = env.reset(seed=0, options={"task": "user_task_1"})
    assert "refuse" in {t["function"]["name"] for t in info["tools"]}
    observation, *_, info = env.step(Action.call("send_money", {"amount": "lots"}, plan="p"))
    assert observation.startswith("Error in send_money: ValidationError") and not info["journal"][0].ok
    observation, *_ = env.step(Action.call("no_such_tool", {}, plan="p"))
    assert "ToolNotFoundError" in observation
