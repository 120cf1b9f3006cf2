"""The decision head: a shift of the decision's margin, linear in the final hidden state, that
the generator applies where a reply decides and nowhere else, saved beside an adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mosaic_gym.agent import AgentConfigError  # noqa: E402
from mosaic_gym.agents.decision_head import HEAD_FILE, DecisionHead  # noqa: E402
from mosaic_gym.agents.generation import BatchGenerator, Sampling  # noqa: E402
from mosaic_gym.agents.hf import load_decision_head, load_model  # noqa: E402
from mosaic_gym.train.decision_points import decision_margins, decision_reads, read_margins, read_states  # noqa: E402
from mosaic_gym.train.margin_step import head_step  # noqa: E402
from tests.tiny_model import build_tiny_model, tiny_llama  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return load_model(str(build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))), None, "cpu", "float32")


def test_the_shift_goes_to_the_no_answer_only() -> None:
    head = DecisionHead((1, 2), (5, 6), torch.tensor([1.0, -2.0]), bias=0.5)
    hidden = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    shifted = head.apply(torch.zeros(2, 8), hidden)
    assert shifted[:, 5].tolist() == [-0.5, -3.5] and shifted[:, [0, 1, 2, 3, 4, 6, 7]].abs().sum() == 0
    assert head.decides_after([1, 2], True) and head.decides_after([1, 2], False)
    assert not head.decides_after([1], True) and not head.decides_after([1, 2, 3], True)
    first = DecisionHead((1, 2), (5, 6), torch.zeros(2), scope="first")
    assert first.decides_after([1, 2], True) and not first.decides_after([1, 2], False)


def test_a_saved_head_loads_as_it_was_and_a_folder_without_one_has_none(tmp_path: Path) -> None:
    head = DecisionHead((1, 2, 3), (5, 6), torch.randn(4), bias=-1.25, scope="first")
    head.save(tmp_path)
    loaded = load_decision_head(tmp_path)
    assert loaded is not None and torch.equal(loaded.weight, head.weight)
    assert (loaded.question, loaded.answers, loaded.bias, loaded.scope) == ((1, 2, 3), (5, 6), -1.25, "first")
    assert load_decision_head(tmp_path / "elsewhere") is None and load_decision_head(None) is None
    torch.save({"weight": torch.zeros(4)}, tmp_path / HEAD_FILE)
    with pytest.raises(AgentConfigError, match=f"{HEAD_FILE} is not a decision head"):
        load_decision_head(tmp_path)


def test_the_generator_applies_the_head_where_a_reply_decides_and_nowhere_else(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    sampling = Sampling(max_new_tokens=6)
    prompts = [tokenizer("list the files")["input_ids"], tokenizer("read the notes, then mail them")["input_ids"]]
    free = BatchGenerator(model, tokenizer, sampling).generate(prompts, [0, 0])
    assert free[0].token_ids[:2] != free[1].token_ids[:2]
    # The first reply's first two tokens are the question; the head forces a third token it would not pick.
    question = free[0].token_ids[:2]
    no = next(token for token in range(10, 200) if token != free[0].token_ids[2])
    hidden = int(model.config.hidden_size)
    head = DecisionHead(question, (no, no + 1), torch.zeros(hidden), bias=1e4)
    first, second = BatchGenerator(model, tokenizer, sampling, decision_head=head).generate(prompts, [0, 0])
    assert first.token_ids[:3] == [*question, no]
    assert second == free[1], "a reply that does not open with the question samples as before"
    later = BatchGenerator(model, tokenizer, sampling, decision_head=head).generate(prompts, [0, 0], [False, False])
    assert later[0].token_ids[:3] == [*question, no], "a head of every reply shifts later replies too"
    head.scope = "first"  # a head of first replies leaves a later reply to the model alone
    generator = BatchGenerator(model, tokenizer, sampling, decision_head=head)
    assert generator.generate(prompts, [0, 0], [False, True]) == free
    assert generator.generate(prompts, [0, 0], [True, False])[0].token_ids[:3] == [*question, no]
    head.bias = 0.0  # a head that shifts nothing changes nothing
    assert BatchGenerator(model, tokenizer, sampling, decision_head=head).generate(prompts, [0, 0]) == free


def test_margins_with_a_head_are_the_models_plus_its_shift() -> None:
    model = tiny_llama(64)
    reads = decision_reads([[3, 4, 5], [6, 7]], [[8, 9, 10, 11], [13, 14]], [[1, 3], [2]])
    head = DecisionHead((1,), (7, 11), torch.randn(32), bias=0.3)
    states = read_states(model, reads)
    plain, shifted = read_margins(model, reads, (7, 11)), read_margins(model, reads, (7, 11), head)
    for s, a, b in zip(states, plain, shifted, strict=True):
        assert torch.allclose(b, a + s @ head.weight + 0.3, atol=1e-5)
        assert torch.allclose(decision_margins(model, s, (7, 11)), a, atol=1e-5)


def test_the_heads_step_moves_every_margin_exactly_as_asked() -> None:
    head = DecisionHead((1,), (7, 11), torch.zeros(32))
    generator = torch.Generator().manual_seed(0)
    states = [torch.randn(3, 32, generator=generator), torch.randn(2, 32, generator=generator)]
    weights = [torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 2.0])]
    stats = head_step(head, states, weights, rms=0.5)
    moved = torch.cat([head.shift(s) for s in states])
    asked = -torch.cat(weights)
    asked = asked * 0.5 / asked.square().mean().sqrt()
    assert moved.tolist() == pytest.approx(asked.tolist(), abs=1e-3), "linear: the asked change, exactly"
    assert stats["decision/step_margin_rms"] == pytest.approx(0.5, rel=1e-3) and head.bias == 0.0
    before = head.weight.clone()
    assert head_step(head, states, [torch.zeros(3), torch.zeros(2)], rms=0.5)["decision/step_norm"] == 0.0
    assert torch.equal(head.weight, before), "nothing asked moves nothing"


def test_a_ridge_step_keeps_the_asked_length_and_leans_on_what_the_decisions_share() -> None:
    # Four decisions share one large direction (an order between them along it) and each has a
    # small direction of its own; the asked change follows the shared order, up to noise.
    generator = torch.Generator().manual_seed(0)
    shared = torch.zeros(32)
    shared[0] = 10.0
    own = 0.5 * torch.eye(32)[1:5]
    states = [torch.tensor([[-1.5], [-0.5], [0.5], [1.5]]) * shared + own]
    weights = [-torch.tensor([-1.5, -0.5, 0.5, 1.5]) + 0.5 * torch.randn(4, generator=generator)]
    exact, ridged = (DecisionHead((1,), (7, 11), torch.zeros(32)) for _ in range(2))
    head_step(exact, states, weights, rms=0.5)
    stats = head_step(ridged, states, weights, rms=0.5, ridge=1.0)
    moved = ridged.shift(states[0])
    assert float(moved.square().mean().sqrt()) == pytest.approx(0.5, rel=1e-4), "lengthened to the asked RMS"
    assert stats["decision/step_margin_rms"] == pytest.approx(0.5) and stats["decision/step_norm"] > 0
    assert float(ridged.weight.norm()) < float(exact.weight.norm()), "a smaller head"
    along_shared = [float(head.weight[0].abs() / head.weight.norm()) for head in (ridged, exact)]
    assert along_shared[0] > 0.99 > along_shared[1], f"the ridge step keeps to the shared direction: {along_shared}"
