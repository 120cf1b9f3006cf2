"""The decision to refuse at every reply of fixed episodes, read out exactly, per kind and turn.

    python -m mosaic_gym.train.decision_trace runs/t1-warm-t-starter base runs/warm-t/warm_start ADAPTER...

``refusal_odds`` and ``curves --decision`` read ``P(" No")`` at the first reply only, where the
model has seen nothing but the instruction. Most refusals come later, once a tool has shown what
the task touches. This replays the episodes of one eval run (the same transcripts for every
model), and at each of their replies asks each model the decision question on the context the
reply was written in: ``P(" No" | everything before the reply, "<think>Is it safe to go on?")``.
A model that learned *when* to refuse shows it as a gap between the harmful row and the others,
at the first turn or later.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_gym.agents.decision import decision_tokens
from mosaic_gym.agents.decision_head import DecisionHead
from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.train.refusal_odds import harmful_auc, load_models
from mosaic_gym.train.refusal_value import eval_records

TURNS = ("1", "2", "3+")  # the columns: the first reply, the second, any later one


@dataclass(frozen=True)
class DecisionPoint:
    """One reply of one episode: its task kind, its turn (1 = first reply) and the ids the
    decision is read after (the context, then the reply's opening up to the question)."""

    kind: str
    turn: int
    ids: list[int]


def decision_points(tokenizer: Any, records: Iterable[dict[str, Any]]) -> list[DecisionPoint]:
    """Every reply of every episode, as the context its decision is read in."""
    transcripts = TranscriptBuilder(tokenizer)
    question, _ = decision_tokens(tokenizer)
    points = []
    for record in records:
        messages = record["messages"]
        replies = [k for k, message in enumerate(messages) if message["role"] == "assistant"]
        for turn, k in enumerate(replies, 1):
            context = tokenizer.apply_chat_template(messages[:k], add_generation_prompt=True, tokenize=False)
            points.append(DecisionPoint(record["kind"], turn, transcripts.tokens(context) + question))
    return points


def no_probabilities(
    model: Any, tokenizer: Any, points: Sequence[DecisionPoint], head: DecisionHead | None = None
) -> list[float]:
    """``P(" No")`` after each point's ids: the token the demonstrations' refusal answers with,
    with the model's decision head when it has one."""
    import torch

    question, refusal = decision_tokens(tokenizer)
    no = refusal[len(question)]
    values = []
    for point in points:
        ids = torch.tensor([point.ids], device=model.device)
        shifts = head is not None and head.decides(point.turn == 1)
        with torch.inference_mode():
            out = model(input_ids=ids, logits_to_keep=1, output_hidden_states=shifts)
            logits = out.logits[0, -1:].float()
            if head is not None and shifts:
                logits = head.apply(logits, out.hidden_states[-1][0, -1:])
            logits = logits[0]
        values.append(float(torch.softmax(logits, dim=-1)[no]))
    return values


def by_kind_and_turn(points: Sequence[DecisionPoint], values: Sequence[float]) -> dict[str, dict[str, list[float]]]:
    """The values grouped by kind, then by turn column (``TURNS``) and ``all``."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for point, value in zip(points, values, strict=True):
        column = TURNS[min(point.turn, len(TURNS)) - 1]
        table[point.kind][column].append(value)
        table[point.kind]["all"].append(value)
    return table


def format_trace(name: str, table: dict[str, dict[str, list[float]]]) -> str:
    """One model's mean ``P(" No")`` per kind (rows) and turn (columns), then harmful minus benign,
    then the AUC of harmful replies against every other kind's (0.5: blind to the kind)."""
    columns = (*TURNS, "all")
    lines = [f"{name}", f"  {'kind':<10} " + " ".join(f"{'turn ' + c if c != 'all' else c:>13}" for c in columns)]
    for kind in (kind for kind in KINDS if kind in table):
        cells = " ".join(f"{_mean(table[kind][c]):>7.3f} (n={len(table[kind][c]):>3})" for c in columns)
        lines.append(f"  {kind:<10} {cells}")
    if "harmful" in table and "benign" in table:
        gaps = " ".join(f"{_mean(table['harmful'][c]) - _mean(table['benign'][c]):>+13.3f}" for c in columns)
        lines.append(f"  {'harm-ben':<10} {gaps}")
    aucs = " ".join(f"{harmful_auc({kind: table[kind][c] for kind in table}):>13.3f}" for c in columns)
    lines.append(f"  {'AUC':<10} {aucs}")
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an eval output folder (mosaic-gym eval --out): the episodes to replay")
    parser.add_argument("adapters", nargs="+", type=Path, help="adapter folders; 'base' for the model alone")
    parser.add_argument("--model", help="the base model (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument(
        "--values", type=Path, help="also write every reply's P(' No') here, one JSON line per model and reply"
    )
    args = parser.parse_args(argv)
    records = eval_records(parser, args.run)
    if args.values is not None:
        if not args.values.parent.is_dir():
            parser.error(f"--values: the folder {args.values.parent} does not exist")
        args.values.write_text("")  # a rerun starts the file over; each model's lines are added once read
    print(f"P(' No' | the question) at each reply of the {len(records)} episodes of {args.run}")
    for name, model, tokenizer, head in load_models(parser, args):
        points = decision_points(tokenizer, records)
        values = no_probabilities(model, tokenizer, points, head)
        print(format_trace(name, by_kind_and_turn(points, values)), flush=True)
        if args.values is not None:
            with args.values.open("a") as out:
                out.writelines(value_lines(name, points, values))
    return 0


def value_lines(name: str, points: Sequence[DecisionPoint], values: Sequence[float]) -> list[str]:
    """One JSON line per reply: the model, the reply's episode kind and turn, and its P(" No"),
    for readings the table's means hide (a threshold, a distribution)."""
    return [
        json.dumps({"model": name, "kind": point.kind, "turn": point.turn, "p_no": value}) + "\n"
        for point, value in zip(points, values, strict=True)
    ]


if __name__ == "__main__":
    raise SystemExit(main())
