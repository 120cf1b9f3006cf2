"""The decision trained alone on perfect verdicts: the batches it draws, the step it takes, the command."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from mosaic_gym.agents.decision import DECISION, answer_tokens, decision_tokens  # noqa: E402
from mosaic_gym.agents.decision_head import DecisionHead  # noqa: E402
from mosaic_gym.agents.transcript import TranscriptBuilder  # noqa: E402
from mosaic_gym.train import decision_ceiling  # noqa: E402
from mosaic_gym.train.decision_ceiling import decision_step, head_decision_step, main, train_batches  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, LoRA adapter folder on it)."""
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    adapter = folder.parent / "adapter"
    peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    return folder, adapter


def test_each_batch_takes_fresh_instances_in_the_harmful_share_labelled_by_kind(tiny: tuple[Path, Path]) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny[0])
    batches = list(train_batches(tokenizer, ["files", "email"], "starter", 3, 4, 0.5, 0.0, seed=0))
    assert len(batches) == 3 and all(len(batch) == 4 for batch in batches)
    for batch in batches:
        assert [item.kind == "harmful" for item in batch] == [True, True, False, False]
        assert all(item.refuse == (item.kind == "harmful") for item in batch)
    question = TranscriptBuilder(tokenizer).tokens(f"<think>{DECISION}")
    assert all(item.ids[-len(question) :] == question for batch in batches for item in batch)
    contexts = [tuple(item.ids) for batch in batches for item in batch]
    assert len(set(contexts)) == len(contexts), "every instance is a fresh one"
    again = list(train_batches(tokenizer, ["files", "email"], "starter", 3, 4, 0.5, 0.0, seed=0))
    assert [[item.ids for item in batch] for batch in again] == [[item.ids for item in batch] for batch in batches]
    flipped = next(train_batches(tokenizer, ["files"], "starter", 1, 4, 0.25, 1.0, seed=0))
    assert [item.refuse for item in flipped] == [False, True, True, True], "noise 1 flips every label"


def test_a_step_on_refusals_raises_the_decision_to_refuse(tiny: tuple[Path, Path]) -> None:
    folder, adapter = tiny
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    base = transformers.AutoModelForCausalLM.from_pretrained(folder)
    model = peft.PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
    no, yes = answer_tokens(tokenizer)
    batch = [item for item in next(train_batches(tokenizer, ["files"], "starter", 1, 2, 1.0, 0.0, seed=1))]

    def p_no() -> float:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([batch[0].ids])).logits[0, -1]
        return float(torch.softmax(logits, dim=-1)[no])

    before = p_no()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = [decision_step(model, optimiser, batch, (no, yes)) for _ in range(5)]
    model.eval()
    assert p_no() > before and losses[-1] < losses[0]


def test_the_command_reads_out_before_and_after_its_steps(
    tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, adapter = tiny
    args = [str(adapter), "--model", str(folder), "--envs", "files", "--seeds", "1", "--steps", "3", "--every", "2"]
    assert main([*args, "--tasks-per-step", "2", "--threads", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[0] for row in rows] == ["0", "2", "3"], "step 0, every 2nd step, and the last"
    assert rows[0][1] == "nan" and all(0 <= float(value) <= 1 for row in rows for value in row[2:6])


def test_the_pairwise_loss_ranks_refusals_above_actions_and_needs_both(tiny: tuple[Path, Path]) -> None:
    folder, adapter = tiny
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(folder), str(adapter), is_trainable=True
    )
    no, yes = answer_tokens(tokenizer)
    batch = next(train_batches(tokenizer, ["files"], "starter", 1, 2, 0.5, 0.0, seed=2))

    def margin(index: int) -> float:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([batch[index].ids])).logits[0, -1]
        return float(logits[no] - logits[yes])

    before = margin(0) - margin(1)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = [decision_step(model, optimiser, batch, (no, yes), "pairwise") for _ in range(5)]
    model.eval()
    assert batch[0].refuse and not batch[1].refuse
    assert margin(0) - margin(1) > before and losses[-1] < losses[0]
    assert math.isnan(decision_step(model, optimiser, batch[:1], (no, yes), "pairwise")), "no pair, no step"


@pytest.mark.parametrize("ridge", [None, 1.0])
def test_a_head_step_ranks_refusals_above_actions_and_leaves_the_model_alone(
    tiny: tuple[Path, Path], ridge: float | None
) -> None:
    folder, adapter = tiny
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(folder), str(adapter))
    weights = {name: p.clone() for name, p in model.named_parameters()}
    head = DecisionHead.zeros(decision_tokens(tokenizer)[0], answer_tokens(tokenizer), 32, "first")
    batch = next(train_batches(tokenizer, ["files"], "starter", 1, 4, 0.5, 0.0, seed=2))

    def gap() -> float:
        no, yes = head.answers
        margins = []
        for item in batch:
            with torch.no_grad():
                out = model(input_ids=torch.tensor([item.ids]), output_hidden_states=True)
            shift = head.shift(out.hidden_states[-1][0, -1])
            margins.append(float(out.logits[0, -1, no] - out.logits[0, -1, yes] + shift))
        refusing = [m for m, item in zip(margins, batch, strict=True) if item.refuse]
        acting = [m for m, item in zip(margins, batch, strict=True) if not item.refuse]
        return sum(refusing) / len(refusing) - sum(acting) / len(acting)

    before = gap()
    losses = [head_decision_step(model, head, batch, 0.5, ridge) for _ in range(3)]
    assert gap() > before + 0.5 and losses[-1] < losses[0]
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters()), "the head alone moves"
    assert math.isnan(head_decision_step(model, head, batch[:1], 0.5, ridge)), "no pair, no step"


def test_the_command_trains_a_head_with_rls_step(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder, adapter = tiny
    args = [str(adapter), "--model", str(folder), "--envs", "files", "--seeds", "1", "--steps", "2", "--every", "2"]
    head = ["--loss", "pairwise", "--head", "--head-ridge", "1", "--learning-rate", "1"]
    assert main([*args, "--tasks-per-step", "2", *head]) == 0
    out = capsys.readouterr().out
    assert "a decision head moved 1 logits a step, ridge 1" in out
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [row[0] for row in rows] == ["0", "2"] and rows[0][2:6] != rows[1][2:6], "the head moved the read-out"


def test_a_replay_ranks_the_latest_instances_each_step(
    tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, adapter = tiny
    trained: list[list[list[int]]] = []

    def step(model: Any, optimiser: Any, batch: list[Any], answers: tuple[int, int], loss: str) -> float:
        trained.append([item.ids for item in batch])
        return decision_step(model, optimiser, batch, answers, loss)

    monkeypatch.setattr(decision_ceiling, "decision_step", step)
    args = [str(adapter), "--model", str(folder), "--envs", "files", "--seeds", "1", "--steps", "3", "--every", "3"]
    assert main([*args, "--tasks-per-step", "2", "--replay", "4", "--loss", "pairwise", "--threads", "1"]) == 0
    assert "each trained with the latest 4" in capsys.readouterr().out
    assert [len(batch) for batch in trained] == [2, 4, 4]
    assert trained[1][:2] == trained[0] and trained[2][:2] == trained[1][2:], "the oldest instances go first"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--harmful-share", "1.5"], "must be between 0 and 1"),
        (["--learning-rate", "0"], "--learning-rate must be above 0"),
        (["--steps", "0"], "must be at least 1"),
        (["--replay", "2"], "--replay must be 0 or at least --tasks-per-step 4, got 2"),
        (["--head"], "--head takes RL's step on the pairwise loss: add --loss pairwise"),
        (["--head-ridge", "1"], "--head-ridge shapes --head's step and must be above 0, got 1.0"),
        (["--head", "--loss", "pairwise", "--head-ridge", "0"], "--head-ridge shapes --head's step and must be"),
    ],
)
def test_the_command_names_a_bad_flag(
    tiny: tuple[Path, Path], flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([str(tiny[1]), *flags])
    assert message in capsys.readouterr().err


def test_the_command_trains_one_adapter(
    tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "is not an adapter folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tiny[1]), str(tiny[1])])
    assert "give one adapter" in capsys.readouterr().err
