"""What the rule judge pays a refusal, per task kind, against a model's own episodes.

    python -m mosaic_gym.train.refusal_value runs/t1-warm-starter [--refusal-tokens 46]

RL learns *when* to refuse only if refusing wins the judge's comparisons in harmful groups
and loses them in the others. This scores the refusal that RL forces into every group
(``rl.explore_refusals``: a refusal at the first reply, no harm, no format error) against each
episode of an eval run, with the rule judge: 1 a win, 0.5 a tie, 0 a loss. Run it on an eval
of the warm start sampled as RL samples it (``--temperature 1.0``), and it shows, before
spending an RL run, on which kinds a group will pay for refusing (mean above 0.5) and which
criteria decide it.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mosaic_gym.evaluation.records import outcome_of
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalError, load_records
from mosaic_gym.judges import RuleJudge
from mosaic_gym.outcome import Outcome
from mosaic_gym.scenarios.template import KINDS

REFUSAL_TOKENS = 46  # the demonstrations' refusal as SmolLM2's tokenizer counts it, without a check


def first_reply_refusal(episode: Outcome, tokens: int) -> Outcome:
    """The outcome the forced refusal would have had on the same task instance."""
    return episode.model_copy(
        update={
            "completed": False,
            "harms": [],
            "irreversible_harms": [],
            "refused": True,
            "refusal_step": 1,
            "answered": False,
            "injected_goal_executed": False,
            "leaks": [],
            "irreversible_calls": [],
            "format_errors": 0,
            "tool_errors": 0,
            "steps": 1,
            "truncated": False,
            "agent_tokens": tokens,
        }
    )


def refusal_scores(
    episodes: Iterable[Outcome], judge: RuleJudge, tokens: int = REFUSAL_TOKENS
) -> dict[str, tuple[list[float], Counter[str]]]:
    """Per kind: the refusal's score against each episode, and how often each criterion decided."""
    scores: dict[str, tuple[list[float], Counter[str]]] = defaultdict(lambda: ([], Counter()))
    for episode in episodes:
        verdict, criterion = judge.compare_outcomes(first_reply_refusal(episode, tokens), episode)
        values, criteria = scores[episode.kind]
        values.append(verdict)
        criteria[f"{ {1.0: 'wins', 0.5: 'ties', 0.0: 'loses'}[verdict] } by {criterion}"] += 1
    return dict(scores)


def eval_records(parser: argparse.ArgumentParser, run: Path) -> list[dict[str, Any]]:
    """The episode records of an eval output folder; one line and exit 2 when it has none."""
    if not (run / TRAJECTORIES).is_file():
        parser.exit(2, f"error: {run}: no {TRAJECTORIES} (is this an eval output folder?)\n")
    try:
        return list(load_records(run / TRAJECTORIES).values())
    except EvalError as error:
        parser.exit(2, f"error: {run / TRAJECTORIES}: {error}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an eval output folder (mosaic-gym eval --out)")
    parser.add_argument("--refusal-tokens", type=int, default=REFUSAL_TOKENS, help="the refusal's length in tokens")
    args = parser.parse_args(argv)
    if args.refusal_tokens < 1:
        parser.error(f"--refusal-tokens must be at least 1, got {args.refusal_tokens}")
    records = eval_records(parser, args.run)
    try:
        episodes = [outcome_of(record) for record in records]
    except (KeyError, ValueError) as error:
        parser.exit(2, f"error: {args.run / TRAJECTORIES}: {error}\n")
    scores = refusal_scores(episodes, RuleJudge(), args.refusal_tokens)
    print(f"A first-reply refusal against the {len(episodes)} episodes of {args.run}, rule judge")
    print(f"{'kind':<10} {'episodes':>8} {'mean score':>10}  what decided")
    for kind in (kind for kind in KINDS if kind in scores):
        values, criteria = scores[kind]
        decided = "; ".join(f"{label} {count}" for label, count in criteria.most_common())
        print(f"{kind:<10} {len(values):>8} {sum(values) / len(values):>10.2f}  {decided}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
