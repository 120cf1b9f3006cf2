"""The judge's verdicts kept for later steps (rl.decision_replay), and each reply ranked apart."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mosaic_gym.train.decision_points import (  # noqa: E402
    backward_weighted,
    decision_reads,
    margins_at,
    point_weights,
    read_margins,
)
from mosaic_gym.train.decision_replay import DecisionReplay, deciding_plays  # noqa: E402
from tests.tiny_model import tiny_llama  # noqa: E402


def test_each_group_keeps_the_play_that_wrote_the_most_decisions() -> None:
    # Two groups of two plays: group 0's second play decided twice; group 1 wrote no decision.
    reads = decision_reads([[1], [1], [2], [2]], [[5, 6, 7], [5, 6, 7, 8], [9], [9]], [[1], [0, 3], [], []])
    assert deciding_plays(reads, 2) == [1, None]
    tied = decision_reads([[1], [1]], [[5, 6], [5, 7]], [[1], [1]])
    assert deciding_plays(tied, 2) == [0], "the first of equals"


def test_the_replay_keeps_the_latest_groups_with_their_verdicts_and_the_copys_margins(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, answers = tiny_llama(64), (7, 11)
    replay = DecisionReplay(2)
    first = decision_reads([[3, 4], [3, 4], [5, 6], [5, 6]], [[8, 9, 10]] * 4, [[0], [0, 2], [1], []])
    replay.add(first, [1.0, -0.5], 2, model, answers)
    assert len(replay) == 2 and replay.verdicts == [1.0, -0.5]
    kept = replay.reads()
    assert kept.sequences == [[3, 4, 8, 9], [5, 6, 8]] and kept.rows(0) == [1, 3]
    reference = replay.reference
    assert reference is not None
    assert [m.tolist() for m in reference] == [pytest.approx(m.tolist()) for m in read_margins(model, kept, answers)]
    second = decision_reads([[12], [12], [13], [13]], [[8, 9]] * 4, [[0], [], [], []])
    replay.add(second, [0.0, 2.0], 2, model, answers)
    assert replay.verdicts == [-0.5, 0.0], "the oldest group went; a group without a decision never came"
    assert replay.judged == 1 and replay.reads().sequences[-1] == [12]
    again = DecisionReplay(2)
    again.save(tmp_path / "kept.json")  # an empty replay saves and loads too
    replay.save(tmp_path / "kept.json")
    again.load(tmp_path / "kept.json")
    assert again.reads() == replay.reads() and again.verdicts == replay.verdicts
    assert [m.tolist() for m in again.reference or []] == [m.tolist() for m in replay.reference or []]
    bare = DecisionReplay(4)
    bare.add(first, [1.0, -0.5], 2, None, answers)
    assert bare.reference is None, "kept without a level"
    with pytest.raises(ValueError, match="4 plays for 1 groups of 2"):
        bare.add(first, [1.0], 2, None, answers)
    with pytest.raises(ValueError, match="at least one group"):
        DecisionReplay(0)


def test_ranking_by_reply_ranks_each_reply_against_the_same_reply() -> None:
    # One play per group. Refusing won group 0, acting won group 1; their first replies sit at
    # 0 and 2, their second replies at 2 and 0. A mean over replies ranks them tied (1 and 1).
    margins = [torch.tensor([0.0, 2.0]), torch.tensor([2.0, 0.0])]
    pooled = point_weights(margins, None, [1.0, -1.0], 1, rank=1.0, level=0.0, level_on="all", level_by="group")
    assert pooled.stats["decision/rank_loss"] == pytest.approx(math.log(2))
    by_reply = point_weights(
        margins, None, [1.0, -1.0], 1, rank=1.0, level=0.0, level_on="all", level_by="group", rank_by="reply"
    )
    first, second = 2.0 - 0.0, 0.0 - 2.0  # acting minus refusing, per reply
    expected = math.log1p(math.exp(first)) + math.log1p(math.exp(second))
    assert by_reply.stats == {"decision/rank_loss": pytest.approx(expected)}
    pull = [1 / (1 + math.exp(-first)), 1 / (1 + math.exp(-second))]  # d softplus(x) / dx per reply
    assert by_reply.weights[0].tolist() == pytest.approx([-pull[0], -pull[1]])
    assert by_reply.weights[1].tolist() == pytest.approx(pull)


def test_the_weighted_backward_adds_the_gradient_of_the_weighted_margins() -> None:
    torch.manual_seed(0)
    model, answers = tiny_llama(64), (7, 11)
    reads = decision_reads([[3, 4, 5], [6, 7]], [[8, 9, 10, 11], [13, 14]], [[1, 3], [1]])
    weights = [torch.tensor([0.5, -2.0]), torch.tensor([1.5])]
    backward_weighted(model, reads, weights, answers)
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert weight.grad is not None
    added = weight.grad.clone()
    weight.grad = None
    total = sum(
        (w * margins_at(model, ids, reads.rows(p), answers)).sum()
        for p, (ids, w) in enumerate(zip(reads.sequences, weights, strict=True))
    )
    total.backward()
    assert torch.allclose(added, weight.grad, atol=1e-6)
