"""The eval harness: outputs, resumption after SIGKILL, repair of a torn line, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosaic_gym.envs import SUITES
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, EvalError, load_records, run_eval

CLI = [sys.executable, "-m", "mosaic_gym.cli"]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_eval_writes_trajectories_metrics_and_reports(tmp_path: Path) -> None:
    metrics = run_eval(EvalConfig(agent="oracle", episodes=60, seed=3), tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"trajectories.jsonl", "metrics.json", "report.md", "run.json"}
    records = load_records(tmp_path / TRAJECTORIES)
    assert len(records) == 60
    record = next(r for r in records.values() if r["kind"] == "injection")
    assert record["agent"]["name"] == "oracle" and record["attack"] is not None
    assert any(step["adversarial_spans"] for step in record["steps"]), "the injection shows in the audit trail"
    assert all("safety_thoughts" in step and "journal" in step for step in record["steps"])
    overall = metrics["overall"]
    assert overall["episodes"] == 60 and overall["harm_score"]["value"] in (0.0, None)
    assert overall["attack_success_rate"]["value"] == 0.0
    for block in (overall, *metrics["by_suite"].values(), *metrics["by_kind"].values()):
        for metric in block.values():
            if isinstance(metric, dict) and metric["value"] is not None:
                low, high = metric["ci95"]
                assert low <= metric["value"] <= high and metric["n"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["overall"] == overall


def test_eval_reproduces_the_reference_agent_bounds(tmp_path: Path) -> None:
    naive = run_eval(EvalConfig(agent="naive", episodes=200), tmp_path / "naive")["overall"]
    refuse = run_eval(EvalConfig(agent="refuse", episodes=200), tmp_path / "refuse")["overall"]
    assert naive["harm_score"]["value"] >= 0.8 and naive["attack_success_rate"]["value"] >= 0.8
    assert refuse["benign_completion_rate"]["value"] == 0.0 and refuse["utility_under_attack"]["value"] == 0.0


def test_killed_eval_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    command = [*CLI, "eval", "--agent", "random", "--episodes", "3000", "--seed", "7", "--out"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _lines(killed / TRAJECTORIES) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed; raise --episodes"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = _lines(killed / TRAJECTORIES)
    assert 200 <= written < 3000
    assert (killed / TRAJECTORIES).read_bytes().endswith(b"\n"), "a kill leaves whole lines only"

    subprocess.run([*command, str(killed)], check=True, capture_output=True)
    whole = tmp_path / "whole"
    run_eval(EvalConfig(agent="random", episodes=3000, seed=7), whole)

    lines = (killed / TRAJECTORIES).read_text().splitlines()
    keys = [json.loads(line)["episode"] for line in lines]
    assert len(keys) == len(set(keys)) == 3000, "no episode lost or repeated"
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    whole_metrics = json.loads((whole / "metrics.json").read_text())
    assert resumed_metrics == whole_metrics


def test_a_torn_last_line_is_dropped_and_redone(tmp_path: Path) -> None:
    config = EvalConfig(agent="oracle", episodes=20)
    run_eval(config, tmp_path)
    path = tmp_path / TRAJECTORIES
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:50])  # as if the machine died mid-write
    torn = path.read_bytes()
    assert len(load_records(path)) == 19 and path.read_bytes() == torn, "a reader leaves the file alone"
    metrics = run_eval(config, tmp_path)
    assert len(load_records(path)) == 20 and metrics["overall"]["episodes"] == 20


def test_resuming_with_other_flags_is_refused(tmp_path: Path) -> None:
    run_eval(EvalConfig(agent="oracle", episodes=5), tmp_path)
    with pytest.raises(EvalError, match=r"holds a different run.*agent"):
        run_eval(EvalConfig(agent="naive", episodes=5), tmp_path)
    with pytest.raises(EvalError, match=r"holds a different run \(tier differ"):
        run_eval(EvalConfig(agent="oracle", episodes=5, tier="starter"), tmp_path)


def test_more_episodes_extend_a_finished_run_to_what_one_longer_run_gives(tmp_path: Path) -> None:
    short, whole = tmp_path / "short", tmp_path / "whole"
    run_eval(EvalConfig(agent="naive", episodes=8), short)
    extended = run_eval(EvalConfig(agent="naive", episodes=20), short)
    assert extended == run_eval(EvalConfig(agent="naive", episodes=20), whole)
    assert json.loads((short / "run.json").read_text())["episodes"] == 20, "the run now names its new length"
    with pytest.raises(EvalError, match=r"holds a different run \(episodes differ"):
        run_eval(EvalConfig(agent="naive", episodes=10), short)
    with pytest.raises(EvalError, match=r"holds a different run \(agent, episodes differ"):
        run_eval(EvalConfig(agent="oracle", episodes=30), short)


def test_a_tier_eval_plays_only_that_tier(tmp_path: Path) -> None:
    run_eval(EvalConfig(agent="oracle", episodes=20, tier="starter"), tmp_path)
    records = load_records(tmp_path / TRAJECTORIES).values()
    starter = {t.id for suite in SUITES.values() for t in suite.templates(tier="starter")}
    assert len(records) == 20 and all(record["task"] in starter for record in records)


def test_a_kinds_eval_takes_the_kinds_in_turn_in_every_env_and_is_seeded(tmp_path: Path) -> None:
    config = EvalConfig(agent="oracle", episodes=20, tier="starter", kinds=("harmful", "benign"))
    run_eval(config, tmp_path / "a")
    records = sorted(load_records(tmp_path / "a" / TRAJECTORIES).values(), key=lambda record: record["index"])
    envs = [record["env"] for record in records]
    assert envs == [config.envs[i % len(config.envs)] for i in range(20)]
    kinds = [record["kind"] for record in records]
    assert kinds == ["harmful"] * 5 + ["benign"] * 5 + ["harmful"] * 5 + ["benign"] * 5
    templates = {t.id: t for suite in SUITES.values() for t in suite.templates(tier="starter")}
    assert all(templates[record["task"]].kind == record["kind"] for record in records)
    run_eval(config, tmp_path / "b")
    assert (tmp_path / "a" / TRAJECTORIES).read_bytes() == (tmp_path / "b" / TRAJECTORIES).read_bytes()
    with pytest.raises(EvalError, match=r"holds a different run \(kinds differ"):
        run_eval(EvalConfig(agent="oracle", episodes=20, tier="starter"), tmp_path / "a")
    with pytest.raises(EvalError, match="unknown task kind 'evil'"):
        EvalConfig(agent="oracle", kinds=("evil",))
    with pytest.raises(EvalError, match="each task kind at most once"):
        EvalConfig(agent="oracle", kinds=("benign", "benign"))


def test_a_run_from_before_tiers_resumes_as_the_all_tier_greedy_run(tmp_path: Path) -> None:
    run_eval(EvalConfig(agent="oracle", episodes=3), tmp_path)
    identity = json.loads((tmp_path / "run.json").read_text())
    del identity["tier"], identity["temperature"], identity["kinds"]
    (tmp_path / "run.json").write_text(json.dumps(identity))
    assert run_eval(EvalConfig(agent="oracle", episodes=3), tmp_path)["overall"]["episodes"] == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--agent", "gpt9", "--out", "{out}"], "unknown agent 'gpt9'"),
        (["--agent", "oracle"], "the following arguments are required: --out"),
        (["--agent", "oracle", "--episodes", "0", "--out", "{out}"], "must be at least 1"),
        (["--agent", "oracle", "--env", "mosaic_gym/Bank-v0", "--out", "{out}"], "unknown env 'mosaic_gym/Bank-v0'"),
        (["--agent", "oracle", "--model", "x", "--out", "{out}"], "takes no --model"),
        (["--agent", "oracle", "--temperature", "0.7", "--out", "{out}"], "takes no --temperature"),
        (["--agent", "oracle", "--commit-declines", "--out", "{out}"], "--commit-declines is for --agent hf"),
        (["--agent", "oracle", "--tier", "hard", "--out", "{out}"], "invalid choice: 'hard'"),
        (["--agent", "oracle", "--split", "test", "--out", "{out}"], "invalid choice: 'test'"),
        (["--agent", "oracle", "--kind", "evil", "--out", "{out}"], "invalid choice: 'evil'"),
        (
            ["--agent", "oracle", "--tier", "starter", "--env", "mosaic_gym/AgentDojo-Banking-v0", "--out", "{out}"],
            "mosaic_gym/AgentDojo-Banking-v0: AgentDojo's suites have no starter tier",
        ),
    ],
)
def test_bad_eval_flags_give_one_line_and_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    argv = [flag.replace("{out}", str(tmp_path / "run")) for flag in flags]
    done = subprocess.run([*CLI, "eval", *argv], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if "error" in line]) == 1


def test_an_all_zero_mean_gets_an_honest_interval() -> None:
    from mosaic_gym.evaluation.metrics import mean, wilson

    block = mean([0.0, 0.0, 0.0, 0.0], 0.0, 1.0)
    assert block["value"] == 0.0 and block["ci95"] == list(wilson(0, 4)) and block["ci95"][1] > 0.4
    assert mean([1.0, 1.0], 0.0, 1.0)["ci95"] == list(wilson(2, 2))
    assert mean([3.0, 3.0])["ci95"] == [3.0, 3.0], "unbounded means keep the t interval"
