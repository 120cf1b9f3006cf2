"""mosaic-gym compare: interval arithmetic against published values, and the command end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats

from mosaic_gym.cli.main import main
from mosaic_gym.evaluation.compare import (
    Difference,
    compare,
    format_difference,
    load,
    newcombe,
    ratio_difference,
    welch,
)
from mosaic_gym.evaluation.metrics import METRICS
from mosaic_gym.evaluation.run import EvalConfig, EvalError, run_eval

EPISODES = 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny naive and oracle runs over the same episodes."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for agent in ("naive", "oracle"):
        out[agent] = root / agent
        run_eval(EvalConfig(agent=agent, episodes=EPISODES), out[agent])
    return out


# Newcombe RG, "Interval estimation for the difference between independent proportions: comparison of
# eleven methods", Statistics in Medicine 1998;17:873-890, Table II, method 10 (hybrid score, no
# continuity correction): (x1/n1 - x2/n2) -> (lower, upper).
@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),  # (a): difference 0.2
        ((9, 10, 3, 10), (0.1705, 0.8090)),  # (b)
        ((5, 56, 0, 29), (-0.0381, 0.1926)),  # (d)
        ((0, 10, 0, 20), (-0.1611, 0.2775)),  # (e)
        ((10, 10, 0, 20), (0.6791, 1.0000)),  # (g)
    ],
)
def test_newcombe_matches_newcombe_1998_table_ii(
    counts: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    x1, n1, x2, n2 = counts
    diff = newcombe(x1, n1, x2, n2)
    assert diff is not None
    assert diff.value == pytest.approx(x1 / n1 - x2 / n2)
    assert (diff.low, diff.high) == pytest.approx(expected, abs=1e-4)


def test_newcombe_is_undefined_without_episodes_and_antisymmetric() -> None:
    assert newcombe(0, 0, 3, 10) is None and newcombe(3, 10, 0, 0) is None
    forward, backward = newcombe(56, 70, 48, 80), newcombe(48, 80, 56, 70)
    assert forward is not None and backward is not None
    assert (backward.value, backward.low, backward.high) == pytest.approx((-0.2, -forward.high, -forward.low))


def test_welch_t_interval() -> None:
    diff = welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert diff is not None
    # Variances 5/3 and 20/3 over 4 each; Welch-Satterthwaite gives 4.41 degrees of freedom, t = 2.70.
    va, vb = (5 / 3) / 4, (20 / 3) / 4
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)
    assert df == pytest.approx(4.4118, abs=1e-4)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert half == pytest.approx(3.8642, abs=1e-4)
    assert (diff.value, diff.low, diff.high) == pytest.approx((-2.5, -2.5 - half, -2.5 + half))
    assert not diff.excludes_zero
    assert welch([], [1.0]) is None
    single = welch([1.0], [0.0, 0.5], bounds=(-1.0, 1.0))
    assert single == Difference(0.75, -1.0, 1.0)  # one value: variance unknown, the whole range
    clipped = welch([1.0, 0.9], [0.0, 0.1], bounds=(-1.0, 1.0))
    assert clipped is not None and clipped.high <= 1.0


def test_a_ratio_read_on_one_episode_spans_the_whole_range() -> None:
    # One episode with replies on a side (a metric most episodes never reach): no spread to resample.
    single = ratio_difference([(1, 2), (0, 0)], [(0, 3), (2, 3)])
    assert single is not None
    assert (single.value, single.low, single.high) == pytest.approx((0.5 - 2 / 6, -1.0, 1.0))
    spread = ratio_difference([(1, 2), (0, 2), (2, 2)], [(0, 3), (2, 3)])
    assert spread is not None and -1.0 < spread.low < spread.value < spread.high < 1.0


def test_difference_formatting_marks_intervals_that_exclude_zero() -> None:
    assert format_difference("attack_success_rate", Difference(-0.25, -0.4, -0.1)) == "-0.250 [-0.400, -0.100] *"
    assert format_difference("mean_steps", Difference(0.5, -0.2, 1.2)) == "+0.50 [-0.20, +1.20]"
    assert format_difference("mean_tokens", None) == "-"


def test_oracle_versus_naive_harm_score_excludes_zero(runs: dict[str, Path]) -> None:
    naive, oracle = load(runs["naive"]), load(runs["oracle"])
    assert len(naive.values["harm_score"]) == naive.overall["harm_score"]["n"] > 0
    comparison = compare([naive, oracle])
    harm = comparison.differences["harm_score"][0]
    assert harm is not None and harm.value < 0 and harm.excludes_zero
    attack = comparison.differences["attack_success_rate"][0]
    assert attack is not None and attack.value < 0
    assert comparison.notes == []  # same split, envs, episodes and seed


def test_a_run_against_itself_differs_by_nothing(runs: dict[str, Path]) -> None:
    run = load(runs["naive"])
    comparison = compare([run, run])
    for metric in METRICS:
        diff = comparison.differences[metric][0]
        if run.overall[metric]["value"] is None:
            assert diff is None, metric
        else:
            assert diff is not None and diff.value == pytest.approx(0.0) and not diff.excludes_zero, metric


def test_first_compares_the_first_episodes_of_runs_of_different_lengths(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = tmp_path / "short"
    run_eval(EvalConfig(agent="naive", episodes=EPISODES // 2), short)
    cut = load(runs["naive"], first=EPISODES // 2)
    assert cut.overall == load(short).overall and cut.values == load(short).values, (
        "the same episodes, the same metrics"
    )
    assert cut.info["episodes"] == EPISODES // 2 and compare([load(short), cut]).notes == []
    assert main(["compare", "--first", str(EPISODES // 2), str(short), str(runs["oracle"])]) == 0
    assert "runs differ" not in capsys.readouterr().out
    with pytest.raises(EvalError, match=f"--first {EPISODES} needs episodes 0 to {EPISODES - 1}, and 10 are not"):
        load(short, first=EPISODES)
    (short / "metrics.json").unlink()  # a run still playing has no metrics yet
    assert load(short, first=EPISODES // 2).overall == cut.overall


def test_a_committed_run_is_labelled_and_noted_beside_a_free_one(runs: dict[str, Path]) -> None:
    free = load(runs["naive"])
    committed = replace(free, info={**free.info, "commit_declines": True})
    assert committed.label == "naive [committed] (naive)" and free.label == "naive (naive)"
    assert compare([free, committed]).notes == ["runs differ in commit_declines: [1] False, [2] True"]
    older = replace(free, info={key: value for key, value in free.info.items() if key != "commit_declines"})
    assert compare([older, free]).notes == [], "a run from before the setting played free"


def test_compare_needs_two_runs(runs: dict[str, Path]) -> None:
    with pytest.raises(EvalError, match="at least two"):
        compare([load(runs["naive"])])


def test_compare_command_prints_the_table_and_writes_markdown_and_png(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["naive"]), str(runs["oracle"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1] naive (naive)" in printed and "[2] oracle (oracle)" in printed and "[2]-[1]" in printed
    harm_row = next(line for line in printed.splitlines() if line.startswith("harm_score"))
    assert harm_row.endswith("*")
    markdown = (out / "compare.md").read_text()
    assert all(f"| {metric} |" in markdown for metric in METRICS)
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "refusal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_refusal_plot_puts_each_run_at_its_over_refusal_and_harmful_refusal(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    from mosaic_gym.evaluation.compare import refusal_plot

    comparison = compare([load(runs["naive"]), load(runs["oracle"])])
    figure = refusal_plot(comparison, tmp_path / "refusal.png")
    points = [tuple(container.lines[0].get_xydata()[0]) for container in figure.axes[0].containers]
    expected = [
        (run.overall["benign_over_refusal_rate"]["value"], run.overall["harmful_refusal_rate"]["value"])
        for run in comparison.runs
    ]
    assert points == expected and expected[1][1] > expected[0][1], "the oracle refuses harmful tasks, the naive none"


def test_a_broken_metrics_file_is_a_one_line_error(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json")
    assert main(["compare", str(runs["naive"]), str(broken)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("dirs", "message"),
    [
        (["RUN"], "at least two run directories"),
        (["RUN", "/no/such/run"], "no such run directory"),
        (["RUN", "EMPTY"], "no metrics.json"),
    ],
)
def test_compare_errors_are_one_line_and_exit_2(
    runs: dict[str, Path], tmp_path: Path, dirs: list[str], message: str
) -> None:
    paths = [str(runs["naive"]) if d == "RUN" else str(tmp_path) if d == "EMPTY" else d for d in dirs]
    done = subprocess.run(
        [sys.executable, "-m", "mosaic_gym.cli", "compare", *paths], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
