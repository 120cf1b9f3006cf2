from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mosaic_gym.train.decision_anchors import anchor_states, uniform_weights  # noqa: E402
from mosaic_gym.train.decision_points import decision_reads, read_states, weighted_sum  # noqa: E402
from tests.tiny_model import tiny_llama  # noqa: E402


def test_anchors_read_from_a_shared_prefix_give_the_states_of_reading_each_whole() -> None:
    model = tiny_llama(128)
    system = list(range(3, 80))  # 77 tokens two anchors share, then their own
    prompts = [[*system, 90, 91], [*system, 92, 93, 94], list(range(100, 110)), [*system, 95]]
    question = [120, 121]
    reads = decision_reads(prompts, [question] * 4, [[2]] * 4)
    shared, whole = anchor_states(model, reads), read_states(model, reads)
    assert [tuple(s.shape) for s in shared] == [(1, 32)] * 4
    for a, b in zip(shared, whole, strict=True):
        assert torch.allclose(a, b, atol=1e-5), "the same states, however they were run"


def test_each_anchor_weighs_alike_so_the_level_is_their_mean() -> None:
    reads = decision_reads([[1, 2], [3], [4, 5, 6]], [[7, 8]] * 3, [[2]] * 3)
    weights = uniform_weights(reads)
    margins = [torch.tensor([0.5]), torch.tensor([-1.0]), torch.tensor([2.0])]
    assert weighted_sum(weights, margins) == pytest.approx(0.5)
