"""Milliseconds per decode step of the batch generator, with an adapter merged into the model
(as evaluation loads it and RL plays sample it) and as peft runs it unmerged.

    python benchmarks/decode_step.py --adapter runs/demo/train/warm_start [--batches 4 24]
                                     [--context 880] [--steps 64] [--threads N]

Each row of a batch shares a ``--context``-token start, as the samples of one task do, and
samples ``--steps`` tokens at temperature 0.7 without stopping; the decode forwards are timed
(best of two rounds) apart from the pre-fill. "sampling" is the time to draw one token per
row from the logits. Reference (docs/results.md, "The quick recipe"): on the 2-core CPU with
bf16 units, 880-token start: batch 4 63 -> 47 ms, batch 24 182 -> 120 ms, sampling 2.3 ms at
batch 24 (torch.multinomial, which it replaced, took 48 ms there) (session 28).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from mosaic_gym.agents.generation import BatchGenerator, Sampling
from mosaic_gym.agents.hf import load_model, peft_adapter


def decode_ms(model: Any, tokenizer: Any, batch: int, context: int, steps: int) -> tuple[float, float]:
    """(ms per decode forward, ms per sampling draw) at ``batch`` rows."""
    start = tokenizer("You are a careful agent. " * (context // 5))["input_ids"][:context]
    prompts = [start + tokenizer(f" task variant {row}")["input_ids"] for row in range(batch)]
    generator = BatchGenerator(model, tokenizer, Sampling(max_new_tokens=steps, temperature=0.7), False)
    timed = {"forward": 0.0, "forwards": 0, "choose": 0.0, "draws": 0}
    forward, choose = generator._forward, generator._choose

    def timed_forward(input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        began = time.perf_counter()
        logits = forward(input_ids, *args, **kwargs)
        if input_ids.shape[1] == 1:
            timed["forward"] += time.perf_counter() - began
            timed["forwards"] += 1
        return logits

    def timed_choose(*args: Any) -> torch.Tensor:
        began = time.perf_counter()
        tokens = choose(*args)
        timed["choose"] += time.perf_counter() - began
        timed["draws"] += 1
        return tokens

    generator._forward, generator._choose = timed_forward, timed_choose
    best = (float("inf"), float("inf"))
    for _ in range(2):
        generator.prefixes.budget_bytes = 0  # nothing kept from the last round: the same pre-fill each time
        timed.update(forward=0.0, forwards=0, choose=0.0, draws=0)
        generator.generate(prompts, list(range(batch)))
        round_ms = (1e3 * timed["forward"] / timed["forwards"], 1e3 * timed["choose"] / timed["draws"])
        best = min(best, round_ms)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True, help="an adapter folder, e.g. a run's warm_start")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 24])
    parser.add_argument("--context", type=int, default=880, help="tokens every row starts with")
    parser.add_argument("--steps", type=int, default=64, help="tokens sampled per row")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    merged, tokenizer = load_model(None, args.adapter, None, None)
    unmerged = peft_adapter(load_model(None, None, None, None)[0], args.adapter).eval()
    print(f"{torch.get_num_threads()} threads, {merged.dtype}, {args.context}-token start, {args.steps} steps")
    print(f"{'batch':>5} {'unmerged ms':>12} {'merged ms':>10} {'sampling ms':>12}")
    for batch in args.batches:
        plain, draw = decode_ms(unmerged, tokenizer, batch, args.context, args.steps)
        fused, _ = decode_ms(merged, tokenizer, batch, args.context, args.steps)
        print(f"{batch:5d} {plain:12.1f} {fused:10.1f} {draw:12.2f}")


if __name__ == "__main__":
    main()
