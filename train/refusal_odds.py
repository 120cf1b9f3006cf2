"""How likely a model opens an episode with the protocol's refusal, per task kind: exact, not sampled.

    python -m mosaic_gym.train.refusal_odds runs/warm/warm_start runs/mosaic/rl/checkpoint-8 \\
        [--split heldout] [--tier starter] [--seeds 3] [--envs files email payments web]

For each task instance, one forward pass scores the first reply the warm start's demonstrations
refuse with (:data:`mosaic_gym.train.demos.REFUSAL`) and gives its probability under the model.
The mean per kind is the chance that a sampled first reply (temperature 1) is exactly that
refusal. Sampled evaluations need hundreds of episodes to see a shift of a few points in refusal;
this needs one pass per instance, so it shows whether training moved the decision to refuse,
and whether it moved it apart for harmful and other tasks, at a glance.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mosaic_gym import ENV_IDS, ToolEnv
from mosaic_gym.agent import AgentConfigError
from mosaic_gym.agents.hf import load_model
from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.protocol import render
from mosaic_gym.splits import SPLIT_CHOICES, TIER_CHOICES, SplitChoice, TierChoice
from mosaic_gym.train.demos import REFUSAL
from mosaic_gym.train.step_stats import KINDS


def refusal_logprobs(
    model: Any, tokenizer: Any, envs: Sequence[str], split: SplitChoice, tier: TierChoice, seeds: int
) -> dict[str, list[float]]:
    """Per kind, the log-probability of the refusal as the first reply of each instance (template x seed)."""
    import torch

    transcripts = TranscriptBuilder(tokenizer)
    refusal = transcripts.tokens(render(REFUSAL))
    odds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for suite in envs:
        env = ToolEnv(suite, split=split, tier=tier)
        for template in env.templates:
            for seed in range(seeds):
                _, info = env.reset(seed=seed, options={"task": template.id})
                prompt = transcripts.start(info["messages"]).ids
                ids = torch.tensor([prompt + refusal])
                with torch.inference_mode():
                    logits = model(input_ids=ids.to(model.device)).logits[0, len(prompt) - 1 : -1].float()
                targets = torch.tensor(refusal, device=logits.device).unsqueeze(1)
                odds[template.kind].append(float(torch.log_softmax(logits, dim=-1).gather(1, targets).sum()))
    return odds


def format_odds(rows: dict[str, dict[str, list[float]]]) -> str:
    """One row per model: the mean probability per kind, and the harmful minus benign gap."""
    lines = [f"{'model':<40} " + " ".join(f"{kind:>10}" for kind in KINDS) + f" {'harmful-benign':>15}"]
    for name, logprobs in rows.items():
        means = {kind: _mean_probability(logprobs.get(kind, [])) for kind in KINDS}
        cells = " ".join(f"{means[kind]:>10.3f}" for kind in KINDS)
        lines.append(f"{name[-40:]:<40} {cells} {means['harmful'] - means['benign']:>+15.3f}")
    return "\n".join(lines)


def _mean_probability(logprobs: Sequence[float]) -> float:
    return sum(math.exp(value) for value in logprobs) / len(logprobs) if logprobs else math.nan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapters", nargs="+", type=Path, help="adapter folders; 'base' for the model alone")
    parser.add_argument("--model", help="the base model (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--envs", nargs="+", default=["files", "email", "payments", "web"], choices=list(ENV_IDS))
    parser.add_argument("--split", default="heldout", choices=SPLIT_CHOICES)
    parser.add_argument("--tier", default="starter", choices=TIER_CHOICES)
    parser.add_argument("--seeds", type=int, default=3, help="instances per template")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    for adapter in args.adapters:
        if str(adapter) != "base" and not (adapter / "adapter_config.json").exists():
            parser.error(f"{adapter} is not an adapter folder (no adapter_config.json)")
    rows = {}
    for adapter in args.adapters:
        try:
            model, tokenizer = load_model(args.model, None if str(adapter) == "base" else adapter, None, None)
        except AgentConfigError as error:
            parser.exit(2, f"error: {error}\n")
        rows[str(adapter)] = refusal_logprobs(model, tokenizer, args.envs, args.split, args.tier, args.seeds)
    print(f"P(first reply is the refusal), mean per kind; {args.split} split, {args.tier} tier, {args.seeds} seeds")
    print(format_odds(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
