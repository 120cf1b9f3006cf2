from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from transformers import AutoTokenizer  # noqa: E402

from mosaic_gym.train.decision_anchors import anchor_reads, anchor_states  # noqa: E402
from mosaic_gym.train.decision_points import decision_reads, read_states, weighted_sum  # noqa: E402
from mosaic_gym.train.first_replies import first_replies  # noqa: E402
from tests.tiny_model import build_tiny_model, tiny_llama  # noqa: E402


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


def test_each_tier_weighs_alike_in_the_level_whatever_its_count_of_templates(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path))
    suites, tiers = ["files", "email"], ["starter", "standard"]
    anchors = anchor_reads(tokenizer, suites, tiers, 2)
    reads, weights = anchors.reads, anchors.weights
    counts = [len(list(first_replies(tokenizer, suites, "train", tier, 2))) for tier in tiers]
    assert len(reads.sequences) == len(weights) == sum(counts) and counts[0] != counts[1]
    assert anchors.tier_of == (0,) * counts[0] + (1,) * counts[1] and anchors.tiers == tuple(tiers)
    margins = [torch.tensor([float(anchor)]) for anchor in range(sum(counts))]
    starter, standard = torch.cat(margins[: counts[0]]).mean(), torch.cat(margins[counts[0] :]).mean()
    assert weighted_sum(weights, margins) == pytest.approx(float(starter + standard) / 2)


def test_anchors_of_given_kinds_are_those_kinds_templates_alone(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path))
    benign = [i.prompt for i in first_replies(tokenizer, ["files"], "train", "starter", 1) if i.kind == "benign"]
    anchors = anchor_reads(tokenizer, ["files"], ["starter"], 1, kinds=["benign"])
    every = anchor_reads(tokenizer, ["files"], ["starter"], 1)
    assert 0 < len(anchors.reads.sequences) == len(benign) < len(every.reads.sequences)
    assert sum(float(w.sum()) for w in anchors.weights) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("tiers", "instances", "kinds", "message"),
    [
        (["starter"], 0, [], "at least one instance per template"),
        ([], 1, [], "at least one tier"),
        (["starter"], 1, ["nonsense"], r"templates of \['files'\] of kinds \['nonsense'\] at tier 'starter'"),
    ],
)
def test_anchors_without_instances_tiers_or_templates_are_refused(
    tmp_path: Path, tiers: list[str], instances: int, kinds: list[str], message: str
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path))
    with pytest.raises(ValueError, match=message):
        anchor_reads(tokenizer, ["files"], tiers, instances, kinds)
