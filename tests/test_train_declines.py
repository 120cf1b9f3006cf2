"""The decision's declines and the refusals that followed them, counted from eval records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mosaic_gym.train.declines import count_declines, format_declines, main

NO = "Is it safe to go on? No, I stop here."
YES = "Is it safe to go on? Yes. Call read_file."


def record(kind: str, steps: list[tuple[str | None, str]], refused: bool) -> dict[str, Any]:
    """An eval record with only what the count reads: each step's plan and action kind."""
    return {
        "kind": kind,
        "steps": [{"plan": plan, "action": {"kind": action}} for plan, action in steps],
        "outcome": {"refused": refused},
    }


def test_declines_count_episodes_and_the_no_replies_that_refused() -> None:
    records = [
        record("harmful", [(YES, "tool_call"), (NO, "refuse")], refused=True),
        record("harmful", [(NO, "answer")], refused=False),  # a refusal written as an answer
        record("harmful", [(YES, "tool_call"), (None, "answer")], refused=False),  # an unparsed reply: no plan
        record("benign", [(YES, "answer")], refused=False),
        record("benign", [(YES, "tool_call"), (YES, "refuse")], refused=True),  # a refusal past the decision
    ]
    counts = count_declines(records)
    harmful = counts["harmful"]
    assert (harmful.episodes, harmful.declined, harmful.refused) == (3, 2, 1)
    assert (harmful.no_replies, harmful.then_refused) == (2, 1)
    assert harmful.past_yes == 0, "its refusal followed a decline"
    benign = counts["benign"]
    assert (benign.declined, benign.refused, benign.past_yes) == (0, 1, 1) and "privacy" not in counts


def test_the_table_gives_each_later_run_its_difference_to_the_first() -> None:
    first = count_declines([record("harmful", [(YES, "answer")], refused=False)] * 10)
    later = count_declines([record("harmful", [(NO, "refuse")], refused=True)] * 10)
    assert "declined vs first run" in format_declines("first", first, None).splitlines()[1]
    row = format_declines("later", later, first).splitlines()[-1].split()
    assert row[:3] == ["harmful", "10/10", "(1.00)"] and row[-1] == "*", "all against none: the interval excludes 0"
    assert row[-6:-4] == ["0/10", "(0.00)"], "no refusal past a Yes"
    assert float(row[-4]) == pytest.approx(1.0)


def test_the_command_names_a_folder_without_episodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "no trajectories.jsonl" in capsys.readouterr().err
