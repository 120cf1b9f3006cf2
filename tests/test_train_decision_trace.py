"""The decision read out at every reply of fixed episodes, per kind and turn."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mosaic_gym.agents.decision import answer_tokens, decision_tokens  # noqa: E402
from mosaic_gym.agents.decision_head import DecisionHead  # noqa: E402
from mosaic_gym.evaluation.run import EvalConfig, run_eval  # noqa: E402
from mosaic_gym.train.decision_trace import (  # noqa: E402
    by_kind_and_turn,
    decision_points,
    format_trace,
    main,
    no_probabilities,
)
from tests.tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def naive_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "naive"
    run_eval(EvalConfig(agent="naive", episodes=8, split="heldout", tier="starter"), out)
    return out


def test_every_reply_is_a_decision_point_in_the_context_it_was_written_in(naive_run: Path) -> None:
    import json

    folder = build_tiny_model(naive_run.parent / "tiny")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    records = [json.loads(line) for line in (naive_run / "trajectories.jsonl").read_text().splitlines()]
    points = decision_points(tokenizer, records)
    assert len(points) == sum(len(r["steps"]) for r in records), "one point per reply"
    first = [p for p in points if p.turn == 1]
    assert len(first) == len(records) and {p.kind for p in points} == {r["kind"] for r in records}
    later = next(p for p in points if p.turn == 2)
    assert len(later.ids) > len(first[0].ids), "a later reply's context holds the earlier reply and tool output"
    text = tokenizer.decode(later.ids)
    assert text.endswith("<think>Is it safe to go on?") and "<tool_call>" in text

    # The tiny model with a zeroed output layer gives every token 1 / vocab.
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    values = no_probabilities(model, tokenizer, points[:3])
    assert values == pytest.approx([1 / model.config.vocab_size] * 3, rel=1e-4)
    # A decision head raising " No" by 2 logits: exp(2) against the other tokens' 1 each.
    head = DecisionHead(
        decision_tokens(tokenizer)[0], answer_tokens(tokenizer), torch.zeros(model.config.hidden_size), 2.0
    )
    shifted = no_probabilities(model, tokenizer, points[:3], head)
    assert shifted == pytest.approx([math.exp(2) / (model.config.vocab_size - 1 + math.exp(2))] * 3, rel=1e-4)


def test_the_table_groups_by_kind_and_turn_and_shows_the_gap() -> None:
    from mosaic_gym.train.decision_trace import DecisionPoint

    points = [DecisionPoint("harmful", 1, []), DecisionPoint("harmful", 4, []), DecisionPoint("benign", 1, [])]
    table = by_kind_and_turn(points, [0.5, 0.9, 0.2])
    assert table["harmful"]["1"] == [0.5] and table["harmful"]["3+"] == [0.9] and table["harmful"]["all"] == [0.5, 0.9]
    lines = format_trace("model", table).splitlines()
    gap = lines[-2].split()
    assert gap[0] == "harm-ben" and float(gap[1]) == pytest.approx(0.3) and math.isnan(float(gap[2]))
    assert float(gap[4]) == pytest.approx(0.5), "all turns: 0.7 against 0.2"
    auc = lines[-1].split()
    assert auc[0] == "AUC" and float(auc[1]) == 1.0 and math.isnan(float(auc[3])), "turn 3+ has no other kind"
    assert float(auc[4]) == 1.0, "both harmful replies above the benign one"


def test_the_auc_row_counts_every_other_kind_and_ties_as_half() -> None:
    from mosaic_gym.train.decision_trace import DecisionPoint

    points = [DecisionPoint("harmful", 2, []), DecisionPoint("benign", 2, []), DecisionPoint("privacy", 2, [])]
    auc = format_trace("model", by_kind_and_turn(points, [0.4, 0.1, 0.4])).splitlines()[-1].split()
    assert float(auc[2]) == pytest.approx(0.75), "above benign, tied with privacy"


def test_the_command_names_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere"), "base"])
    assert "no trajectories.jsonl" in capsys.readouterr().err


def test_values_keeps_every_replys_probability_for_each_model(
    naive_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    folder = build_tiny_model(tmp_path / "tiny")
    values = tmp_path / "values.jsonl"
    values.write_text("left from an older run\n")
    assert main([str(naive_run), "base", "base", "--model", str(folder), "--values", str(values)]) == 0
    rows = [json.loads(line) for line in values.read_text().splitlines()]
    replies = sum(len(json.loads(r)["steps"]) for r in (naive_run / "trajectories.jsonl").read_text().splitlines())
    assert len(rows) == 2 * replies, "one line per reply and model, the old file started over"
    assert {r["model"] for r in rows} == {"base"} and all(0 < r["p_no"] < 1 for r in rows)
    assert [r["p_no"] for r in rows[:replies]] == [r["p_no"] for r in rows[replies:]], "the same model reads the same"
    assert "AUC" in capsys.readouterr().out


def test_values_names_a_missing_folder(naive_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([str(naive_run), "base", "--values", str(tmp_path / "no" / "values.jsonl")])
    assert "--values: the folder" in capsys.readouterr().err
