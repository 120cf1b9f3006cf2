"""``mosaic-gym demo``: the main job end to end on the embedded model, in one command.

Stress-test the default SmolLM2 agent on held-out starter tasks (1-3 tool calls, the tier
where a 135M model can act, harm and refuse), train it with the quick MOSAIC recipe, test it
again, and compare before and after, headed by what MOSAIC is for: refusing harmful tasks
without refusing benign ones. Every stage keeps its files under OUT
and resumes, so running the command again finishes an interrupted demo (or, when it is
done, only prints where the report is).
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


@dataclass(frozen=True)
class DemoPlan:
    """What the demo measures: the same held-out episodes and budget before and after training."""

    episodes: int = 24
    max_steps: int = 4  # replies per episode
    max_new_tokens: int = 128  # per reply, as the quick recipe trains
    batch_size: int = 24


def run_demo(out: Path, plan: DemoPlan, config: TrainConfig | None = None, say: Callable[[str], None] = print) -> Path:
    """Run (or finish) the demo in ``out``; returns the comparison report's path.

    ``config`` replaces the quick recipe (the tests pass a tiny model's).
    """
    from mosaic_gym.evaluation.compare import compare, format_value, load, write
    from mosaic_gym.train.config import load_config
    from mosaic_gym.train.run import ADAPTER_FILE, train

    config = config or load_config(RECIPE)
    envs = tuple(ENV_IDS[suite] for suite in config.episodes.envs)
    started = time.monotonic()
    say(f"[1/4] stress-testing the untrained default model on {plan.episodes} held-out episodes")
    _evaluate(out / "before", config.model, None, envs, config.episodes.tier, plan)
    say(f"[2/4] training it with the MOSAIC recipe (warm start, then RL); logs in {out / 'train'}")
    trained = out / "train"
    if not (trained / ADAPTER_FILE).exists():
        train(config, trained, resume=True)
    say("[3/4] testing the trained model on the same episodes")
    _evaluate(out / "after", config.model, trained, envs, config.episodes.tier, plan)
    say("[4/4] comparing before and after")
    comparison = compare([load(out / "before"), load(out / "after")])
    written = write(comparison, out)
    for metric in HEADLINE:
        before, after = (run.overall[metric] for run in comparison.runs)
        say(f"  {metric:26} {format_value(metric, before)}  ->  {format_value(metric, after)}")
    report = next(path for path in written if path.suffix == ".md")
    say(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return report


def _evaluate(
    out: Path, model: str | None, adapter: Path | None, envs: tuple[str, ...], tier: str, plan: DemoPlan
) -> dict[str, Any]:
    from tqdm import tqdm

    from mosaic_gym.evaluation.run import EvalConfig, run_eval

    config = EvalConfig(
        agent="hf",
        envs=envs,
        split="heldout",
        tier=tier,
        episodes=plan.episodes,
        model=model,
        adapter=None if adapter is None else str(adapter),
        max_steps=plan.max_steps,
        max_new_tokens=plan.max_new_tokens,
        batch_size=plan.batch_size,
    )
    with tqdm(total=plan.episodes, unit="episode", desc=out.name, dynamic_ncols=True) as bar:
        return run_eval(config, out, on_episode=lambda done, total: bar.update(done - bar.n))
