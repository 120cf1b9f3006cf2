"""The metrics' intervals cover the truth as often as they claim, on samples built with a known truth.

Per-step rates (format errors per reply, checked irreversible calls) cluster within episodes:
an agent that breaks the format in one reply tends to in the next. A clustered sample is
built here with a known population rate; a Wilson interval over the steps, which treats
them as independent, covers it far less often than 95%; the cluster bootstrap over episodes
covers it about 95% of the time. Small-n means are checked the same way against the t interval.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mosaic_gym.evaluation.metrics import mean, ratio, wilson

TRUTH = 0.2  # the population's per-step rate: each episode's rate is Beta(0.5, 2), mean 0.2
REPLICATES = 300
EPISODES = 60


def clustered_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per episode: replies (1 to 12) and how many went wrong, at a rate of the episode's own."""
    replies = rng.integers(1, 13, EPISODES)
    rates = rng.beta(0.5, 2.0, EPISODES)  # strong clustering: some episodes fail most replies, most few
    return rng.binomial(replies, rates), replies


def covers(interval: tuple[float, float] | list[float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


def test_the_cluster_bootstrap_covers_a_clustered_rate_and_wilson_over_steps_does_not() -> None:
    rng = np.random.default_rng(14)
    bootstrap_hits = wilson_hits = 0
    for _ in range(REPLICATES):
        errors, replies = clustered_sample(rng)
        block = ratio(errors.tolist(), replies.tolist())
        assert block["n"] == replies.sum() and block["value"] == pytest.approx(errors.sum() / replies.sum())
        bootstrap_hits += covers(block["ci95"], TRUTH)
        wilson_hits += covers(wilson(int(errors.sum()), int(replies.sum())), TRUTH)
    bootstrap_coverage, wilson_coverage = bootstrap_hits / REPLICATES, wilson_hits / REPLICATES
    print(f"95% interval coverage: cluster bootstrap {bootstrap_coverage:.3f}, Wilson over steps {wilson_coverage:.3f}")
    assert 0.90 <= bootstrap_coverage <= 0.99
    assert wilson_coverage < 0.80, "treating clustered steps as independent overstates the certainty"


def test_the_t_interval_covers_a_small_sample_mean() -> None:
    rng = np.random.default_rng(7)
    hits = normal_hits = 0
    for _ in range(1000):
        values = rng.normal(3.0, 2.0, 5).tolist()
        hits += covers(mean(values, -math.inf)["ci95"], 3.0)
        centre, sd = float(np.mean(values)), float(np.std(values, ddof=1))
        normal_hits += covers((centre - 1.96 * sd / math.sqrt(5), centre + 1.96 * sd / math.sqrt(5)), 3.0)
    assert 0.93 <= hits / 1000 <= 0.97
    assert normal_hits / 1000 < 0.90, "the normal interval is too narrow at n = 5"


def test_degenerate_ratios_fall_back_to_wilson_over_episodes() -> None:
    none = ratio([0, 0, 0], [4, 5, 6])
    assert none["value"] == 0.0 and none["n"] == 15 and none["ci95"] == list(wilson(0, 3))
    every = ratio([2, 3], [2, 3])
    assert every["value"] == 1.0 and every["ci95"] == list(wilson(2, 2))
    assert ratio([], [])["value"] is None and ratio([0], [0])["value"] is None, "no step: no rate"
    assert ratio([1, 0], [2, 0])["n"] == 2, "episodes without a step carry nothing"


def test_the_bootstrap_is_deterministic_and_order_free() -> None:
    errors, replies = [0, 1, 3, 0, 2, 5, 1], [4, 3, 6, 2, 5, 9, 1]
    first = ratio(errors, replies)
    assert ratio(errors[::-1], replies[::-1]) == first == ratio(errors, replies)
