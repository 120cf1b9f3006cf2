"""Seconds per demonstration of the warm start's SFT pass (forward and backward), with TRL's
fused LM head projecting only the labelled positions (ours, on CPU) and every position (TRL's
CPU default).

    python benchmarks/sft_step.py [--config quick] [--demos 8] [--rounds 2] [--threads N]

Plays the recipe's demonstrations as SFT lays them out (one per pass, the agent's tokens
labelled), through the LoRA-wrapped model under the recipe's dtype, and times the rounds
after a first warm-up one. Reference (docs/results.md, "The quick recipe"): on the 2-core CPU
with bf16 units, starter demonstrations of ~960 tokens, ~190 of them the agent's: 4.7 s every
position, 3.0 s labelled only (session 27).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import trl.trainer.utils as trl_utils
from peft import get_peft_model
from trl.kernels import chunked_logprob

from mosaic_gym.train.config import load_config
from mosaic_gym.train.demos import build_demos
from mosaic_gym.train.policy import load_base, lora_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quick")
    parser.add_argument("--demos", type=int, default=8, help="demonstrations per round")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per mode, after a warm-up")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    model, tokenizer = load_base(config)
    labelled_only = trl_utils._use_triton  # as load_base left it
    demos = build_demos(tokenizer, config.episodes, config.sft, config.seed).examples[: args.demos]
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer asks
    model = get_peft_model(model, lora_config(config)).train()
    bf16 = next(model.parameters()).dtype == torch.bfloat16
    seconds: dict[str, list[float]] = {"every position": [], "labelled only": []}
    modes = [("every position", chunked_logprob._use_triton), ("labelled only", labelled_only)]  # TRL's own, ours
    for round_index in range(args.rounds + 1):
        for name, switch in modes:
            trl_utils._use_triton = switch
            started = time.perf_counter()
            for demo in demos:
                _pass(model, demo, bf16)
            if round_index > 0:
                seconds[name].append((time.perf_counter() - started) / len(demos))
    tokens = statistics.mean(len(d["input_ids"]) for d in demos)
    labelled = statistics.mean(sum(d["assistant_masks"]) for d in demos)
    print(f"{args.config}: {len(demos)} demonstrations of {tokens:.0f} tokens, {labelled:.0f} of them labelled")
    for name, values in seconds.items():
        print(f"  {name:15} {statistics.mean(values):6.2f} s per demonstration")


def _pass(model: Any, demo: dict[str, list[int]], bf16: bool) -> None:
    ids = torch.tensor([demo["input_ids"]])
    labels = ids.masked_fill(torch.tensor([demo["assistant_masks"]]) == 0, -100)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
    loss.backward()
    model.zero_grad()


if __name__ == "__main__":
    main()
