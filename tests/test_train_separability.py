"""The separability diagnostic: a linear probe for "harmful", scored on held-out templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mosaic_gym.train.refusal_odds import roc_auc  # noqa: E402
from mosaic_gym.train.separability import fit_probe, main, probe_scores, template_interval  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402


def test_auc_counts_pairs_ranked_right_and_ties_as_half() -> None:
    positive = np.array([True, False, False])
    assert roc_auc(np.array([3.0, 2.0, 1.0]), positive) == 1.0
    assert roc_auc(np.array([1.0, 2.0, 3.0]), positive) == 0.0
    assert roc_auc(np.array([2.0, 2.0, 1.0]), positive) == 0.75
    assert np.isnan(roc_auc(np.array([1.0]), np.array([True])))


def test_the_probe_finds_a_direction_that_generalises_and_not_one_that_does_not() -> None:
    rng = np.random.default_rng(0)
    direction = rng.normal(size=64)
    train, held = rng.normal(size=(200, 64)), rng.normal(size=(100, 64))
    probe = fit_probe(train, train @ direction > 0)
    assert roc_auc(probe_scores(probe, held), held @ direction > 0) > 0.95
    noise = fit_probe(train, rng.random(200) < 0.5)  # labels that mean nothing
    assert abs(roc_auc(probe_scores(noise, held), held @ direction > 0) - 0.5) < 0.15


def test_the_interval_resamples_templates_not_instances() -> None:
    templates = ["a", "a", "b", "b", "c", "c", "d", "d"]
    positive = np.array([True, True, True, True, False, False, False, False])
    separated = np.array([5.0, 6, 7, 8, 1, 2, 3, 4])
    assert template_interval(separated, positive, templates) == (1.0, 1.0)
    mixed = np.array([5.0, 5, 1, 1, 3, 3, 3, 3])  # template a above every negative, b below
    low, high = template_interval(mixed, positive, templates)
    assert low == 0.0 and high == 1.0


def test_the_command_prints_the_models_own_decision_and_each_probe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    args = ["base", "--model", str(tiny), "--envs", "files", "--seeds", "1", "--train-seeds", "1"]
    assert main([*args, "--layers", "0", "2"]) == 0
    out = capsys.readouterr().out
    assert 'own P(" No")' in out and "probe, layer 0" in out and "probe, layer 2" in out
    assert "held-out" in out and "harmful" in out
    with pytest.raises(SystemExit):
        main([*args, "--layers", "99"])
    assert "--layers [99] out of range" in capsys.readouterr().err
