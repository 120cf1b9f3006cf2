"""``mosaic-gym demo``: the main job end to end on the embedded model, in one command.

Train the default SmolLM2 agent with the quick MOSAIC recipe (a kind-blind warm start, then
RL that ranks refusing against acting across each step's tasks), then stress-test the warm
start and the trained model on the same held-out starter episodes (1-3 tool calls, the tier
where a 135M model can act, harm and refuse), sampled as RL samples them, and compare them,
headed by what MOSAIC is for: refusing harmful tasks without refusing benign ones. The
episodes are harmful and benign tasks in turn, so that both of those rates rest on half of
them (drawn as the env draws, a short run held six benign episodes in 48). Every stage
keeps its files under OUT and resumes, so running the command again finishes an interrupted
demo (or, when it is done, only prints where the report is).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mosaic_gym.catalog import ENV_IDS

if TYPE_CHECKING:
    from mosaic_gym.train.config import TrainConfig

RECIPE = "quick"
# The lines the demo ends on: refusing harmful tasks, not refusing benign ones, and what that costs.
HEADLINE = ("harmful_refusal_rate", "benign_over_refusal_rate", "harm_score", "benign_completion_rate")
# The two models compared, as their eval folders under OUT: before and after RL.
BEFORE, AFTER = "warm-start", "mosaic"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo measures: the same held-out episodes and budget for both models."""

    episodes: int = 48
    batch_size: int = 24
    kinds: tuple[str, ...] = ("harmful", "benign")


def run_demo(out: Path, plan: DemoPlan, config: TrainConfig | None = None, say: Callable[[str], None] = print) -> Path:
    """Run (or finish) the demo in ``out``; returns the comparison report's path.

    ``config`` replaces the quick recipe (the tests pass a tiny model's).
    """
    from mosaic_gym.evaluation.compare import compare, format_value, load, write
    from mosaic_gym.train.config import load_config
    from mosaic_gym.train.run import ADAPTER_FILE, WARM_START, train

    config = config or load_config(RECIPE)
    started = time.monotonic()
    trained = out / "train"
    say(f"[1/3] training the default model with the {RECIPE} MOSAIC recipe (warm start, then RL); logs in {trained}")
    if not (trained / ADAPTER_FILE).exists():
        train(config, trained, resume=True)
    say(
        f"[2/3] stress-testing the warm start and the trained model on the same {plan.episodes} held-out "
        f"{config.episodes.tier} episodes ({' and '.join(plan.kinds)} tasks in turn), sampled at temperature "
        f"{config.rl.temperature:g} as RL samples"
    )
    for name, adapter in ((BEFORE, trained / WARM_START), (AFTER, trained)):
        _evaluate(out / name, adapter, config, plan)
    say(f"[3/3] comparing them: {BEFORE} -> {AFTER}")
    comparison = compare([load(out / BEFORE), load(out / AFTER)])
    written = write(comparison, out)
    for metric in HEADLINE:
        before, after = (run.overall[metric] for run in comparison.runs)
        say(f"  {metric:26} {format_value(metric, before)}  ->  {format_value(metric, after)}")
    report = next(path for path in written if path.suffix == ".md")
    say(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return report


def _evaluate(out: Path, adapter: Path, config: TrainConfig, plan: DemoPlan) -> dict[str, Any]:
    from tqdm import tqdm

    from mosaic_gym.evaluation.run import EvalConfig, run_eval

    settings = EvalConfig(
        agent="hf",
        envs=tuple(ENV_IDS[suite] for suite in config.episodes.envs),
        split="heldout",
        tier=config.episodes.tier,
        episodes=plan.episodes,
        model=config.model,
        adapter=str(adapter),
        max_steps=config.episodes.max_steps,
        max_new_tokens=config.episodes.max_new_tokens,
        temperature=config.rl.temperature,
        commit_declines=config.rl.commit_declines,
        kinds=plan.kinds,
        batch_size=plan.batch_size,
    )
    with tqdm(total=plan.episodes, unit="episode", desc=out.name, dynamic_ncols=True) as bar:
        return run_eval(settings, out, on_episode=lambda done, total: bar.update(done - bar.n))
