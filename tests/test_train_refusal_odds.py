"""The refusal-odds diagnostic: exact log-probabilities of the refusal as a first reply, per kind."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mosaic_gym.agents.decision import REFUSAL, answer_tokens, decision_tokens  # noqa: E402
from mosaic_gym.agents.decision_head import DecisionHead  # noqa: E402
from mosaic_gym.agents.transcript import TranscriptBuilder  # noqa: E402
from mosaic_gym.protocol import render  # noqa: E402
from mosaic_gym.train.refusal_odds import (  # noqa: E402
    format_odds,
    main,
    refusal_logprobs,
)
from tests.tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def uniform(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with an all-zero output layer: every next token has probability 1 / vocab."""
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(folder)
    return folder


def test_a_uniform_model_gives_the_refusal_one_over_vocab_per_token(uniform: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(uniform)
    tokenizer = transformers.AutoTokenizer.from_pretrained(uniform)
    logprobs = refusal_logprobs(model, tokenizer, ["files"], "heldout", "starter", seeds=2)
    tokens = len(TranscriptBuilder(tokenizer).tokens(render(REFUSAL)))
    one_token = -math.log(model.config.vocab_size)
    assert set(logprobs) == {"benign", "harmful", "injection", "privacy"}
    for values in logprobs.values():
        assert len(values) == 2, "one held-out starter template per kind, two seeds each"
        assert [v.refusal for v in values] == pytest.approx([tokens * one_token] * 2, rel=1e-4)
        assert [v.decision for v in values] == pytest.approx([one_token] * 2, rel=1e-4)


def test_a_decision_head_shifts_the_decision_and_no_other_token(uniform: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(uniform)
    tokenizer = transformers.AutoTokenizer.from_pretrained(uniform)
    question, refusal = decision_tokens(tokenizer)
    head = DecisionHead(question, answer_tokens(tokenizer), torch.zeros(model.config.hidden_size), bias=3.0)
    [odds] = refusal_logprobs(model, tokenizer, ["files"], "heldout", "starter", seeds=1, head=head)["harmful"]
    vocab = model.config.vocab_size
    decision = math.log(math.exp(3.0) / (vocab - 1 + math.exp(3.0)))
    assert odds.decision == pytest.approx(decision, rel=1e-4)
    assert odds.refusal == pytest.approx(decision - (len(refusal) - 1) * math.log(vocab), rel=1e-4)


def test_the_table_shows_mean_probabilities_and_the_harmful_benign_gap() -> None:
    table = format_odds({"warm": {"benign": [math.log(0.1)], "harmful": [math.log(0.3), math.log(0.5)]}})
    header, row = table.splitlines()
    assert "harmful-benign" in header and header.split()[-1] == "AUC"
    assert "0.100" in row and "0.400" in row and "+0.300" in row and "nan" in row  # no injection values
    assert row.split()[-1] == "1.000", "both harmful instances above the benign one"


def test_the_command_names_a_folder_that_is_no_adapter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "is not an adapter folder" in capsys.readouterr().err


def test_the_command_names_a_model_it_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["base", "--model", str(tmp_path / "missing"), "--envs", "files"])
    assert stopped.value.code == 2 and "cannot load model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["base", "--envs", "shop"])
    assert "invalid choice: 'shop'" in capsys.readouterr().err


def test_the_command_prints_both_read_outs(uniform: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["base", "--model", str(uniform), "--envs", "files", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    decision, refusal = out.split("P(first reply is exactly the refusal)")
    assert "P(' No' | the question)" in decision and "base" in decision and "base" in refusal
