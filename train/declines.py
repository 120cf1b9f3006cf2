"""How often each model's decision declined, and whether its reply then refused, per task kind.

    python -m mosaic_gym.train.declines runs/t07-warm-starter runs/t07-mosaic-m05j12o1 ...

The warm start's demonstrations open every reply with "Is it safe to go on?" and answer " No"
right before the protocol's refusal. The metrics count a refusal only when ``<refuse>`` ends the
episode; this counts, from each eval's own episodes, those whose decision said " No" at some
reply (*declined*), and the " No" replies that went on to ``<refuse>`` (the tie between the
decision and the refusal, which RL can erode: docs/results-log.md, session 16), and the episodes
refused by a reply whose decision said " Yes": a refusal past the decision, which GRPO learned
kind-blind in sessions 30-32. Each run after the first gets its declines' difference to the
first run's, with a 95% interval.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_gym.agents.decision import declines, goes_on
from mosaic_gym.evaluation.compare import newcombe
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.train.refusal_value import eval_records


@dataclass(frozen=True)
class KindDeclines:
    """One kind's counts in one run."""

    episodes: int = 0
    declined: int = 0  # episodes with a reply whose decision said " No"
    refused: int = 0  # episodes the protocol's refusal ended
    no_replies: int = 0  # replies whose decision said " No"
    then_refused: int = 0  # of those, the replies that were the protocol's refusal
    past_yes: int = 0  # episodes refused by a reply whose decision said " Yes"


def count_declines(records: Sequence[dict[str, Any]]) -> dict[str, KindDeclines]:
    """Per kind, the counts of :class:`KindDeclines` over an eval's episode records."""
    counts: dict[str, KindDeclines] = {}
    for record in records:
        kind = record["kind"]
        said_no = [step for step in record["steps"] if declines(step.get("plan"))]
        refusing = [step for step in said_no if _refuses(step)]
        past_yes = any(_refuses(step) and goes_on(step.get("plan")) for step in record["steps"])
        before = counts.get(kind, KindDeclines())
        counts[kind] = KindDeclines(
            before.episodes + 1,
            before.declined + bool(said_no),
            before.refused + bool(record["outcome"]["refused"]),
            before.no_replies + len(said_no),
            before.then_refused + len(refusing),
            before.past_yes + past_yes,
        )
    return counts


def _refuses(step: dict[str, Any]) -> bool:
    return (step.get("action") or {}).get("kind") == "refuse"


def format_declines(name: str, counts: dict[str, KindDeclines], baseline: dict[str, KindDeclines] | None) -> str:
    """One run's table: per kind, declined and refused episodes, " No" replies then refused,
    episodes refused past a " Yes", and with a baseline the declines' difference to it (95%
    Newcombe interval)."""
    lines = [
        name,
        f"  {'kind':<10} {'declined':>14} {'refused':>14} {'No -> <refuse>':>16} {'Yes -> <refuse>':>16}"
        "  declined vs first run",
    ]
    for kind in (kind for kind in KINDS if kind in counts):
        c = counts[kind]
        row = (
            f"  {kind:<10} {_share(c.declined, c.episodes):>14} {_share(c.refused, c.episodes):>14} "
            f"{_share(c.then_refused, c.no_replies):>16} {_share(c.past_yes, c.episodes):>16}"
        )
        first = baseline.get(kind) if baseline is not None else None
        diff = newcombe(c.declined, c.episodes, first.declined, first.episodes) if first else None
        if diff is not None:
            row += f"  {diff.value:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}]{' *' if diff.excludes_zero else ''}"
        lines.append(row)
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.2f})" if whole else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", type=Path, help="eval output folders (mosaic-gym eval --out); the first is the baseline"
    )
    args = parser.parse_args(argv)
    tables = [(run, count_declines(eval_records(parser, run))) for run in args.runs]
    baseline = tables[0][1] if len(tables) > 1 else None
    for index, (run, counts) in enumerate(tables):
        print(format_declines(str(run), counts, baseline if index else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
