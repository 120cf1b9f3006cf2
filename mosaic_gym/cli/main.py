"""The ``mosaic-gym`` command line. Errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mosaic_gym import agentdojo
from mosaic_gym.agent import AgentConfigError, AgentRuntimeError
from mosaic_gym.agents.registry import AGENTS
from mosaic_gym.attacks import ATTACKS
from mosaic_gym.envs import ENV_IDS
from mosaic_gym.evaluation.run import EvalError
from mosaic_gym.native import PROTOCOLS
from mosaic_gym.scenarios.loader import ScenarioLoadError, load_folder
from mosaic_gym.scenarios.suite import Suite
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.selfcheck import check_suite
from mosaic_gym.splits import SPLIT_CHOICES, TIER_CHOICES
from mosaic_gym.world.world import SERVICES

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the person at the terminal: shown as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":  # only train takes free-form --section.key VALUE overrides
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        return int(args.run(args))
    except (UsageError, ScenarioLoadError, EvalError, AgentConfigError, AgentRuntimeError) as error:
        print(f"mosaic-gym {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug of ours: one line for the user, the traceback on request
        if os.environ.get("MOSAIC_GYM_TRACEBACK"):
            raise
        print(
            f"mosaic-gym {args.command}: internal error: {type(error).__name__}: {error} "
            "(set MOSAIC_GYM_TRACEBACK=1 to see where)",
            file=sys.stderr,
        )
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mosaic-gym", description="Simulated tool worlds where LLM agents plan, check, then act or refuse."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="show environments, their templates by kind and split, and tools")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--tier", default="all", choices=TIER_CHOICES, help="count only this tier's templates")
    listing.set_defaults(run=_list)

    check = commands.add_parser(
        "check", help="prove every template is solvable, its checks can fire, and its attacks reach the agent"
    )
    check.add_argument("--path", type=Path, help="check your own folder of templates instead of the built-in suites")
    check.add_argument(
        "--services",
        nargs="+",
        default=list(SERVICES),
        choices=SERVICES,
        help="services the world of --path templates has (default: all)",
    )
    check.add_argument("--instances", type=_positive, default=5, help="instances (seeds) per template (default 5)")
    check.add_argument(
        "--mutate",
        action="store_true",
        help="also audit the checks: play mutated references (wrong argument, dropped call, answer without "
        "the facts, extra harmless call) and fail on any check that lets a wrong execution through",
    )
    check.add_argument(
        "--import",
        dest="imports",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="run this Python file first, for the tools and attack families it registers (repeatable)",
    )
    check.set_defaults(run=_check)

    evaluate = commands.add_parser("eval", help="run an agent over the suites and write trajectories, metrics, reports")
    evaluate.add_argument("--agent", required=True, help=f"agent name ({', '.join(AGENTS)})")
    evaluate.add_argument("--model", help="model id or path, for LLM agents")
    evaluate.add_argument("--adapter", help="LoRA adapter folder, for LLM agents")
    evaluate.add_argument("--base-url", help="OpenAI-compatible endpoint, for --agent openai")
    evaluate.add_argument(
        "--env",
        action="append",
        dest="envs",
        metavar="ID",
        help="env id to include (repeatable; default: the five built-in suites; AgentDojo's: docs/agentdojo.md)",
    )
    evaluate.add_argument("--split", default="heldout", choices=SPLIT_CHOICES, help="default heldout")
    evaluate.add_argument(
        "--tier", default="all", choices=TIER_CHOICES, help="starter (1-3 tool calls), standard or all (default)"
    )
    evaluate.add_argument("--episodes", type=_positive, default=100, help="episodes in all, spread over the envs")
    evaluate.add_argument(
        "--kind",
        action="append",
        dest="kinds",
        choices=KINDS,
        help="task kind to play (repeatable; the episodes take the kinds in turn, evenly; default: any kind each "
        "episode's seed draws)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED + i")
    evaluate.add_argument("--batch-size", type=_positive, default=16, help="envs stepped together (default 16)")
    evaluate.add_argument("--max-steps", type=_positive, help="replies per episode (default: the env's 12)")
    evaluate.add_argument("--max-new-tokens", type=_positive, help="tokens per reply, for --agent hf (default 256)")
    evaluate.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature, for --agent hf (default 0: greedy)"
    )
    evaluate.add_argument(
        "--protocol",
        default="text",
        choices=PROTOCOLS,
        help="text (default): the <think>/<tool_call> reply format; native: the model's own tool calling "
        "(tools=, tool_calls, a refuse tool), as deployed",
    )
    evaluate.add_argument(
        "--commit-declines",
        action="store_true",
        help="for --agent hf (text protocol): a reply whose decision is ' No' goes on as the refusal, "
        "as RL's rollouts do with rl.commit_declines (default: the reply is sampled freely)",
    )
    evaluate.add_argument("--out", type=Path, required=True, help="run directory; the same command resumes it")
    evaluate.set_defaults(run=_eval)

    comparing = commands.add_parser(
        "compare", help="put eval runs side by side: each metric, and its difference to the first run with a 95% CI"
    )
    comparing.add_argument(
        "runs", nargs="*", type=Path, metavar="DIR", help="run directories; the first is the baseline"
    )
    comparing.add_argument(
        "--first",
        type=_positive,
        metavar="N",
        help="compare each run's episodes 0 to N-1 alone (runs of different lengths, or one cut short)",
    )
    comparing.add_argument("--out", type=Path, help="also write compare.md, compare.png and refusal.png to this folder")
    comparing.set_defaults(run=_compare)

    exporting = commands.add_parser("export", help="export a run's trajectories as parquet or a Hugging Face dataset")
    exporting.add_argument("run_dir", type=Path, metavar="DIR", help="run directory written by eval")
    exporting.add_argument("--format", required=True, choices=("parquet", "dataset"), help="parquet file or dataset")
    exporting.add_argument("--to", type=Path, required=True, help="parquet file, or folder for save_to_disk")
    exporting.set_defaults(run=_export)

    playing = commands.add_parser(
        "play", help="play the agent yourself for one episode, then see what the judge would have preferred"
    )
    playing.add_argument("--env", required=True, metavar="ID", help=f"env id ({', '.join(ENV_IDS.values())})")
    playing.add_argument("--task", help="template id (default: one drawn by the seed; see 'mosaic-gym list --json')")
    playing.add_argument("--seed", type=int, default=0, help="instance seed (default 0)")
    playing.add_argument("--attack", metavar="FAMILY", help="attack family of an injection task (see 'list')")
    playing.add_argument("--split", default="all", choices=SPLIT_CHOICES, help="templates to draw from")
    playing.add_argument(
        "--protocol", default="text", choices=PROTOCOLS, help="how your actions reach the env (default text)"
    )
    playing.set_defaults(run=_play)

    training = commands.add_parser(
        "train",
        help="train an agent with MOSAIC: SFT warm start, then online pairwise-preference GRPO (LoRA)",
        description="Any setting of the recipe can be overridden as --section.key VALUE, e.g. --rl.steps 10 "
        "--rl.reward scalar; see train/recipes/*.yaml for the settings.",
    )
    training.add_argument("--config", default="quick", help="recipe name (quick, full, gpu-qwen7b) or a YAML file")
    training.add_argument("--out", type=Path, required=True, help="run folder; the final adapter lands here")
    training.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    training.set_defaults(run=_train)

    demo = commands.add_parser(
        "demo",
        help="the main job on the embedded model: train it (quick recipe), then test the warm start and the "
        "trained model on the same held-out harmful and benign tasks and compare (~14 min on 2 CPU cores)",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="where everything goes (default runs/demo)")
    demo.add_argument("--episodes", type=_positive, default=48, help="held-out episodes per model (default 48)")
    demo.set_defaults(run=_demo)
    return parser


LLM_EXTRA = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "tensorboard")


def _llm_extra(what: str, error: ModuleNotFoundError) -> Exception:
    """A missing optional LLM package as one line; any other missing module is a bug of ours."""
    if (error.name or "").split(".")[0] in LLM_EXTRA:
        return UsageError(f"{what} needs the LLM extra ({error.name} is missing): pip install 'mosaic-gym[llm]'")
    return error


def _train(args: argparse.Namespace) -> int:
    # The trainer's modules load only for this command: the rest of the CLI never imports them.
    from mosaic_gym.train.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
        from mosaic_gym.train.run import train

        summary = train(config, args.out, resume=args.resume)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    except ModuleNotFoundError as error:
        raise _llm_extra("training", error) from None
    except KeyboardInterrupt:
        print(f"interrupted; checkpoints in {args.out} are kept: run the same command with --resume", file=sys.stderr)
        return 130
    rl = summary.get("rl") or {}
    print(f"final adapter: {args.out}  (evaluate: mosaic-gym eval --agent hf --adapter {args.out} --out DIR)")
    if rl.get("seconds_per_step"):
        print(f"RL: {rl['seconds_per_step']} s/step; peak memory {summary['peak_memory_gb']} GB")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mosaic_gym.cli.demo import DemoPlan, run_demo
    from mosaic_gym.train.config import ConfigError

    try:
        report = run_demo(args.out, DemoPlan(episodes=args.episodes))
    except ModuleNotFoundError as error:
        raise _llm_extra("the demo", error) from None
    except ConfigError as error:
        raise UsageError(str(error)) from None
    print(f"before/after report: {report} (plot: {report.with_suffix('.png')})")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def inventory(tier: str = "all") -> dict[str, Any]:
    """What is installed: per env id, its services, tools and template counts by kind, split and tier."""
    from mosaic_gym.envs import ENV_IDS, SUITES

    envs: dict[str, Any] = {}
    for name, suite in SUITES.items():
        templates = [t for t in suite.templates() if tier in ("all", t.tier)]
        tools = suite.tools()
        envs[ENV_IDS[name]] = {
            "suite": name,
            "description": suite.description,
            "services": list(suite.services),
            "tools": {"total": len(tools), "irreversible": sorted(t.name for t in tools if t.irreversible)},
            "templates": {
                "total": len(templates),
                "by_kind": dict(sorted(Counter(t.kind for t in templates).items())),
                "by_split": dict(sorted(Counter(t.split for t in templates).items())),
                "by_tier": dict(sorted(Counter(t.tier for t in templates).items())),
                "by_kind_and_split": {
                    f"{kind}/{split}": n
                    for (kind, split), n in sorted(Counter((t.kind, t.split) for t in templates).items())
                },
                "ids": [t.id for t in templates],
            },
        }
    attacks = {
        name: {"split": f.split, "benign": f.benign, "two_carriers": f.two_carriers, "description": f.description}
        for name, f in ATTACKS.items()
    }
    return {"envs": envs, "attacks": attacks}


def _list(args: argparse.Namespace) -> int:
    data = inventory(args.tier)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for env_id, env in data["envs"].items():
        counts = ", ".join(f"{k} {v}" for k, v in env["templates"]["by_kind"].items())
        splits = ", ".join(f"{k} {v}" for k, v in env["templates"]["by_split"].items())
        tiers = ", ".join(f"{k} {v}" for k, v in env["templates"]["by_tier"].items())
        print(f"{env_id}  ({env['description']})")
        print(f"  services: {', '.join(env['services'])}")
        print(f"  tools: {env['tools']['total']} ({len(env['tools']['irreversible'])} irreversible)")
        print(f"  templates: {env['templates']['total']} ({counts}; {splits}; {tiers})")
    print(f"AgentDojo {agentdojo.BENCHMARK_VERSION} suites (docs/agentdojo.md):")
    print(f"  {', '.join(agentdojo.ENV_IDS.values())}")
    if not agentdojo.available():
        print(f"  not installed: {agentdojo.INSTALL}")
    print("attack families:")
    for name, family in data["attacks"].items():
        role = (
            "look-alike" if family["benign"] else f"{family['split']} only" if family["split"] == "heldout" else "train"
        )
        print(f"  {name:24} [{role}] {family['description']}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mosaic_gym.evaluation.metrics import HEADLINE
    from mosaic_gym.evaluation.report import format_metric
    from mosaic_gym.evaluation.run import EvalConfig, run_eval

    config = EvalConfig(
        agent=args.agent,
        envs=tuple(args.envs or ENV_IDS.values()),
        split=args.split,
        tier=args.tier,
        episodes=args.episodes,
        seed=args.seed,
        model=args.model,
        adapter=args.adapter,
        base_url=args.base_url,
        max_steps=args.max_steps,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        protocol=args.protocol,
        commit_declines=args.commit_declines,
        kinds=tuple(args.kinds or ()),
        batch_size=args.batch_size,
    )
    bars: list[Any] = []  # opened at the first episode, so a bad agent's error is the only output

    def advance(done: int, total: int) -> None:
        if not bars:
            bars.append(
                tqdm(total=total, initial=done, unit="episode", desc=f"eval {config.agent}", dynamic_ncols=True)
            )
        bars[0].update(done - bars[0].n)

    try:
        metrics = run_eval(config, args.out, on_episode=advance)
    finally:
        for bar in bars:
            bar.close()
    overall = metrics["overall"]
    for name in HEADLINE:
        print(f"{name:24} {format_metric(overall[name])}")
    print(f"wrote {args.out / 'trajectories.jsonl'}, metrics.json, report.md, report.html")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from mosaic_gym.evaluation.compare import compare, format_table, load, write

    if len(args.runs) < 2:
        raise UsageError(
            f"give at least two run directories to compare (the first is the baseline), got {len(args.runs)}"
        )
    comparison = compare([load(path, args.first) for path in args.runs])
    written = write(comparison, args.out) if args.out is not None else []
    print(format_table(comparison), end="")
    if written:
        print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from mosaic_gym.evaluation.export import export

    count = export(args.run_dir, args.format, args.to)
    print(f"wrote {count} episodes to {args.to} ({args.format})")
    return 0


def _play(args: argparse.Namespace) -> int:
    from mosaic_gym.cli.play import PlayError, play

    try:
        return play(
            args.env, task=args.task, seed=args.seed, attack=args.attack, split=args.split, protocol=args.protocol
        )
    except PlayError as error:
        raise UsageError(str(error)) from None


def _check(args: argparse.Namespace) -> int:
    from mosaic_gym.envs import SUITES
    from mosaic_gym.tools import REGISTRY, builtin_tools

    before = {t.name for t in REGISTRY}
    for path in args.imports:
        _run_user_file(path)
    if args.path is not None:
        if not args.path.is_dir():
            raise UsageError(f"--path {args.path}: no such folder")
        try:
            load_folder(args.path, args.services)
        except ScenarioLoadError as error:
            print(f"{args.path}: {len(error.problems)} problem(s), nothing loaded:", file=sys.stderr)
            print("\n".join(f"  {line}" for line in error.problems), file=sys.stderr)
            return 1
        # The folder's suite offers the built-in tools of its services and the tools --import added.
        added = [t.name for t in REGISTRY.for_services(args.services) if t.name not in before]
        tools = (*builtin_tools(*args.services), *added)
        suites = [Suite(args.path.name, tuple(args.services), args.path.resolve(), tool_names=tools)]
    else:
        suites = list(SUITES.values())
    failed = loose = 0
    for suite in suites:
        count = len(suite.templates())
        print(f"{suite.name}: checking {count} templates x {args.instances} instances ", end="", flush=True)
        problems = list(check_suite(suite, args.instances, progress=lambda _: print(".", end="", flush=True)))
        print(" ok" if not problems else f" {len(problems)} problem(s)")
        for problem in problems:
            print(f"  FAIL {problem}")
        failed += len(problems)
        if args.mutate and not problems:
            loose += _mutation_audit(suite, args.instances)
        elif args.mutate:
            print(f"{suite.name}: mutation audit skipped until the problems above are fixed")
    if failed or loose:
        print(f"check failed: {failed} problem(s), {loose} loose check(s)", file=sys.stderr)
        return 1
    print("check passed")
    return 0


def _mutation_audit(suite: Suite, instances: int) -> int:
    """Print a verdict per template; return how many mutations its checks misjudged."""
    from tqdm import tqdm

    from mosaic_gym.mutations import audit_suite
    from mosaic_gym.mutations.report import verdict_lines

    templates = suite.templates()
    with tqdm(total=len(templates), unit="template", desc=f"{suite.name}: mutating", dynamic_ncols=True) as bar:
        verdicts = list(audit_suite(suite, instances, progress=lambda _: bar.update()))
    played = sum(v.played for v in verdicts)
    loose = sum(len(v.loose) for v in verdicts)
    summary = "every check held" if not loose else f"{loose} loose check(s)"
    print(f"{suite.name}: mutation audit, {played} mutated trajectories over {instances} instances: {summary}")
    for verdict in verdicts:
        print("\n".join(verdict_lines(verdict)))
    return loose


def _run_user_file(path: Path) -> None:
    """Run one of the user's Python files for what it registers (tools, attack families)."""
    import runpy

    if not path.is_file():
        raise UsageError(f"--import {path}: no such file")
    try:
        runpy.run_path(str(path), run_name=path.stem)
    except Exception as error:  # the user's code, not ours: say what it raised, in one line
        raise UsageError(f"--import {path}: {type(error).__name__}: {error}") from None
