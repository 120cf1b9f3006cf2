"""Generated tokens/s of the default LLM agent driving real envs, and where the time goes.

    python benchmarks/rollout_throughput.py [--batches 1 8 16 32] [--new-tokens 96] [--dtype bfloat16]
                                            [--suites files email payments web]

Each batch size plays that many episodes, spread over ``--suites`` in one batch as evaluation
and RL play them (default: Files alone), for two rounds through the rollout engine: reset,
generation, parsing, tool calls, observation tokenization. "model %" is the share of
wall time inside forward passes; the rest (env, parsing, tokenization, sampling, stop checks)
is "outside". "% of peak" counts 2 x parameters FLOPs per generated token, as DESIGN.md's
baseline does (plain batched generate at batch 8 in fp32: ~50 tok/s, about 10% of fp32 peak).
Targets (issue 5): batch 16 at least 5x batch 1; at least 30% of the dtype's matmul peak;
under 5% of wall time outside the model.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from mosaic_gym import ToolEnv
from mosaic_gym.agents.generation import Sampling
from mosaic_gym.agents.hf import HFAgent
from mosaic_gym.agents.prefix_cache import PrefixCache
from mosaic_gym.rollout import EpisodeSpec, rollout_mixed

# Matmul peaks measured on this project's 2-core CPU (DESIGN.md), in GFLOP/s.
PEAK_GFLOPS = {torch.float32: 125.0, torch.bfloat16: 400.0}


def measure(agent: HFAgent, batch: int, suites: list[str]) -> dict[str, float]:
    agent.generator.model_seconds = 0.0
    agent.generator.prefixes = PrefixCache()  # the same seeds again: nothing kept from the last batch size
    factories = [partial(ToolEnv, suite, split="all", max_steps=2) for suite in suites]
    jobs = [(factories[i % len(factories)], EpisodeSpec(seed=1000 + i)) for i in range(batch)]
    start = time.perf_counter()
    trajectories = [t for _, t in rollout_mixed(agent, jobs, batch_size=batch)]
    wall = time.perf_counter() - start
    generated = sum(t.tokens.agent_tokens for t in trajectories if t.tokens is not None)
    return {"tokens": generated, "seconds": wall, "model_seconds": agent.generator.model_seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--new-tokens", type=int, default=96, help="max new tokens per reply")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: the agent's choice")
    parser.add_argument("--suites", nargs="+", default=["files"], help="the episodes' suites, in turn")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    agent = HFAgent(sampling=Sampling(max_new_tokens=args.new_tokens), dtype=args.dtype)
    dtype = agent.model.dtype
    params = sum(p.numel() for p in agent.model.parameters())
    peak = PEAK_GFLOPS.get(dtype)
    measure(agent, 2, args.suites)  # warm-up: first calls allocate
    threads = torch.get_num_threads()
    print(f"model: {params / 1e6:.0f}M parameters, {dtype}, {threads} threads, device {agent.model.device}")
    header = ("batch", "tokens", "seconds", "tok/s", "vs b1", "GFLOP/s", "% peak", "outside")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 7, 8, 7, 6, 8, 7, 8), strict=True)))
    results: dict[int, dict[str, float]] = {}
    for batch in args.batches:
        figures = measure(agent, batch, args.suites)
        rate = figures["tokens"] / figures["seconds"]
        gflops = rate * 2 * params / 1e9
        figures |= {
            "tokens_per_s": rate,
            "gflops": gflops,
            "outside_share": 1 - figures["model_seconds"] / figures["seconds"],
        }
        results[batch] = figures
        speedup = rate / results[args.batches[0]]["tokens_per_s"]
        peak_text = f"{100 * gflops / peak:6.1f}%" if peak else "    n/a"
        print(
            f"{batch:5d} {figures['tokens']:7.0f} {figures['seconds']:8.1f} {rate:7.1f} {speedup:5.1f}x "
            f"{gflops:8.1f} {peak_text} {100 * figures['outside_share']:7.1f}%"
        )
    if args.json:
        args.json.write_text(json.dumps({"dtype": str(dtype), "params": params, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
