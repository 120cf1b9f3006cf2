"""The ranking and the level over every decision of a step's plays (rl.decision_points: every)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from mosaic_gym.train.decision_points import (  # noqa: E402
    FixedStates,
    backward_weighted,
    decision_margins,
    decision_reads,
    hidden_margins,
    last_hidden_states,
    level_weights,
    margins_at,
    point_weights,
    read_margins,
    read_states,
    reset_level,
    weighted_level,
    weighted_sum,
)
from tests.tiny_model import tiny_llama  # noqa: E402


def test_a_plays_decisions_are_read_where_the_logits_predict_them() -> None:
    reads = decision_reads([[1, 2, 3], [4]], [[5, 6, 7, 8, 9], [5, 6]], [[1, 4], []])
    assert reads.sequences == [[1, 2, 3, 5, 6, 7, 8], []], "up to the last decision token, not including it"
    assert reads.rows(0) == [3, 6], "the prompt's last token predicts completion token 0"
    assert reads.rows(0, prompt_width=5) == [5, 8], "in a batch whose prompts are left-padded to 5"
    assert reads.rows(1) == []


def test_the_weights_are_the_gradient_of_the_ranking_over_the_groups_mean_margins() -> None:
    # Groups of two plays: refusing won group 0, acting won group 1, group 2 has no verdict.
    margins = [torch.tensor([1.0, 3.0]), torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([])]
    margins += [torch.zeros(1), torch.zeros(1)]
    weights = point_weights(margins, None, [1.0, -1.0, 0.0], 2, rank=1.0, level=1.0, level_on="all", level_by="group")
    refusing, acting = 2.0, 0.5  # the groups' means over every decision their plays wrote
    pull = 1 / (1 + math.exp(refusing - acting))  # d softplus(acting - refusing) / d acting
    assert weights.stats == {"decision/rank_loss": pytest.approx(math.log1p(math.exp(acting - refusing)))}
    assert [w.tolist() for w in weights.weights[:2]] == [pytest.approx([-pull / 3] * 2), pytest.approx([-pull / 3])]
    assert weights.weights[2].tolist() == pytest.approx([pull]) and weights.weights[3].numel() == 0
    assert all(float(w.abs().sum()) == 0 for w in weights.weights[4:]), "no verdict, no level: no weight"


def test_the_level_holds_the_acting_groups_alone_when_asked() -> None:
    margins = [torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([-1.0])]
    start = [torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([-2.0])]
    acting = point_weights(margins, start, [1.0, -1.0], 2, rank=0.0, level=2.0, level_on="acting", level_by="group")
    shift = 0.5  # the acting group's mean margin went from -1 to -0.5
    assert acting.stats == {
        "decision/level_loss": pytest.approx(shift**2),
        "decision/level_shift": pytest.approx(shift),
    }
    per_decision = 2.0 * 2 * shift / 2  # level x d(shift^2)/d(shift) x d(shift)/d(margin)
    assert [float(w.sum()) for w in acting.weights] == pytest.approx([0, 0, per_decision, per_decision])
    both = point_weights(margins, start, [1.0, -1.0], 2, rank=0.0, level=2.0, level_on="all", level_by="group")
    assert both.stats["decision/level_shift"] == pytest.approx((1.0 + shift) / 2)
    with pytest.raises(ValueError, match="3 plays' margins for 2 groups of 2"):
        point_weights(margins[:3], None, [1.0, -1.0], 2, rank=1.0, level=0.0, level_on="all", level_by="group")


def test_a_level_per_reply_holds_each_reply_where_a_mean_over_replies_lets_them_trade() -> None:
    # One group of two plays: the first reply's margins fell by 1 and the second's rose by 1.
    margins = [torch.tensor([-1.0, 2.0]), torch.tensor([-1.0])]
    start = [torch.tensor([0.0, 1.0]), torch.tensor([0.0])]
    pooled = point_weights(margins, start, [1.0], 2, rank=0.0, level=1.0, level_on="all", level_by="group")
    shift = (-1 + 1 - 1) / 3  # the group's mean over its three decisions
    assert pooled.stats["decision/level_loss"] == pytest.approx(shift**2)
    per_reply = point_weights(margins, start, [1.0], 2, rank=0.0, level=1.0, level_on="all", level_by="reply")
    assert per_reply.stats == {
        "decision/level_loss": pytest.approx(1.0 + 1.0),  # each reply's shift, squared, summed
        "decision/level_shift": pytest.approx(0.0),
        "decision/level_shift/reply_1": pytest.approx(-1.0),
        "decision/level_shift/reply_2": pytest.approx(1.0),
    }
    # The first replies (mean of two) are pushed up, the lone second reply down.
    assert [w.tolist() for w in per_reply.weights] == [pytest.approx([-1.0, 2.0]), pytest.approx([-1.0])]


def test_margins_read_from_the_hidden_states_match_the_logits_with_grad() -> None:
    model = tiny_llama(64)
    ids, rows, answers = list(range(3, 20)), [4, 9, 16], (7, 11)
    direct = margins_at(model, ids, rows, answers)
    with last_hidden_states(model) as hidden:
        model(input_ids=torch.tensor([ids]))
    assert len(hidden) == 1
    read = hidden_margins(model, hidden[0][0], rows, answers)
    assert read.tolist() == pytest.approx(direct.tolist(), abs=1e-5)
    read.sum().backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None, "the read keeps the policy's graph"
    with last_hidden_states(model) as after:
        pass
    assert after == [], "the hook is gone after the block"
    reads = decision_reads([ids[:5]], [ids[5:]], [[r - 4 for r in rows]])
    assert read_margins(model, reads, answers)[0].tolist() == pytest.approx(direct.tolist(), abs=1e-5)


def test_the_level_weighs_each_held_groups_mean_alike() -> None:
    # Group 0 (acting won): three decisions; group 1 (refusing won): one; group 2 wrote none.
    margins = [torch.tensor([1.0, 2.0]), torch.tensor([3.0]), torch.tensor([4.0]), torch.tensor([])]
    margins += [torch.tensor([]), torch.tensor([])]
    both = level_weights(margins, [-1.0, 1.0, -1.0], 2, "all")
    assert [w.tolist() for w in both[:3]] == [pytest.approx([1 / 6, 1 / 6]), pytest.approx([1 / 6]), [0.5]]
    assert weighted_sum(both, margins) == pytest.approx((2.0 + 4.0) / 2)
    acting = level_weights(margins, [-1.0, 1.0, -1.0], 2, "acting")
    assert weighted_sum(acting, margins) == pytest.approx(2.0) and float(acting[2].sum()) == 0


def test_a_reset_puts_the_level_back_where_the_target_is() -> None:
    torch.manual_seed(0)
    model = tiny_llama(64)
    reads = decision_reads([[3, 4, 5], [6, 7]], [[8, 9, 10, 11, 12], [13, 14, 15]], [[1, 4], [2]])
    weights = level_weights(read_margins(model, reads, (7, 11)), [-1.0], 2, "all")
    level = weighted_sum(weights, read_margins(model, reads, (7, 11)))
    before = reset_level(model, reads, weights, level + 0.5, (7, 11))
    assert before == pytest.approx(level, abs=1e-5)
    after = weighted_sum(weights, read_margins(model, reads, (7, 11)))
    assert after - level == pytest.approx(0.5, abs=0.05), "to first order, the step lands on the target"
    assert weighted_level(model, reads, weights, (7, 11)) == pytest.approx(after, abs=1e-5)


def test_the_weight_and_the_gradient_read_the_same_margin_under_lora_dropout() -> None:
    peft = pytest.importorskip("peft")
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.5, init_lora_weights=False)
    model = peft.get_peft_model(tiny_llama(64), lora)
    model.train()
    reads, answers = decision_reads([[3, 4, 5]], [[8, 9, 10, 11]], [[1, 3]]), (7, 11)
    first, second = read_margins(model, reads, answers), read_margins(model, reads, answers)
    assert torch.equal(first[0], second[0]), "one margin per decision, whatever the dropout draws"
    weights = [torch.tensor([1.0, -1.0])]
    backward_weighted(model, reads, weights, answers)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.training for m in dropouts), "back in training mode afterwards"
    trained = [p for p in model.parameters() if p.requires_grad]
    added = [p.grad.clone() for p in trained]
    model.zero_grad()
    model.eval()
    (weights[0] * margins_at(model, reads.sequences[0], reads.rows(0), answers)).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(added, trained, strict=True))


def test_a_fixed_models_states_are_read_once_per_play_while_it_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from mosaic_gym.train import decision_points

    model = tiny_llama(64)
    first = decision_reads([[3, 4, 5], [6, 7]], [[8, 9, 10], [13, 14, 15]], [[1, 2], [2]])
    later = decision_reads([[6, 7], [3, 4, 5], [9]], [[13, 14, 15], [8, 9, 10], [10, 11]], [[2], [1, 2], [1]])
    last = decision_reads([[9]], [[10, 11]], [[1]])
    read: list[int] = []
    counted = decision_points.read_states
    monkeypatch.setattr(decision_points, "read_states", lambda m, r: read.append(len(r.sequences)) or counted(m, r))
    states = FixedStates()
    states(model, first)
    kept = states(model, later)
    assert read == [2, 1], "the second call read its new play alone"
    for got, want in zip(kept, read_states(model, later), strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    states(model, first)
    assert read == [2, 1], "nothing new, nothing read"
    states(model, last)
    assert read == [2, 1, 1], "a play no longer asked for was let go"


def test_a_bf16_models_margins_read_float32_states_and_plays_without_a_decision() -> None:
    # On CPUs with bf16 units the policy runs in bf16, and under accelerate's mixed precision
    # its outputs come back as float32: the LM head reads them in its own dtype.
    model = tiny_llama(64).to(torch.bfloat16)
    reads = decision_reads([[3, 4, 5], [6, 7]], [[8, 9, 10], [13]], [[1, 2], []])
    margins = read_margins(model, reads, (11, 12))
    assert [m.shape[0] for m in margins] == [2, 0]
    states = read_states(model, reads)[0]
    upcast = decision_margins(model, states.float(), (11, 12))
    assert upcast.dtype == torch.float32 and torch.equal(upcast, margins[0])
