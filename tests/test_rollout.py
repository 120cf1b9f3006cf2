"""The rollout loop: episodes of several envs in one batch play as they would alone."""

from __future__ import annotations

from functools import partial
from typing import Any

from mosaic_gym import ToolEnv
from mosaic_gym.agents import NaiveAgent
from mosaic_gym.rollout import EpisodeSpec, Trajectory, rollout, rollout_mixed


def _fingerprint(trajectory: Trajectory) -> tuple[Any, ...]:
    assert trajectory.outcome is not None
    return trajectory.task, trajectory.messages, [s.text for s in trajectory.steps], trajectory.outcome


def test_a_mixed_batch_plays_each_episode_as_its_env_plays_it_alone() -> None:
    suites = {name: partial(ToolEnv, name, split="train", tier="starter") for name in ("files", "email", "web")}
    jobs = [(suites[name], EpisodeSpec(seed=seed)) for seed in range(4) for name in suites]
    mixed = dict(rollout_mixed(NaiveAgent(), jobs, batch_size=4))
    assert sorted(mixed) == list(range(len(jobs)))
    for position, (make_env, spec) in enumerate(jobs):
        [alone] = rollout(NaiveAgent(), make_env, [spec], batch_size=1)
        assert _fingerprint(mixed[position]) == _fingerprint(alone)
        assert mixed[position].task in {t.id for t in make_env().templates}, "played in its own env"


def test_one_env_per_slot_when_every_episode_comes_from_one_factory() -> None:
    built: list[ToolEnv] = []

    def make_env() -> ToolEnv:
        built.append(ToolEnv("files", split="train"))
        return built[-1]

    played = list(rollout(NaiveAgent(), make_env, [EpisodeSpec(seed=s) for s in range(7)], batch_size=3))
    assert len(played) == 7 and len(built) == 3
    assert len(list(rollout(NaiveAgent(), make_env, [EpisodeSpec(seed=0)], batch_size=3))) == 1
    assert len(built) == 4, "a slot with no episode to play builds no env"
