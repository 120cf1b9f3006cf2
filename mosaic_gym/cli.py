"""The ``mosaic-gym`` command line. Errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mosaic_gym.scenarios.loader import ScenarioLoadError

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the person at the terminal: shown as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (UsageError, ScenarioLoadError) as error:
        print(f"mosaic-gym {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mosaic-gym", description="Simulated tool worlds where LLM agents plan, check, then act or refuse."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="show environments, their templates by kind and split, and tools")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_list)
    return parser


def inventory() -> dict[str, Any]:
    """What is installed: per env id, its services, tools and template counts by kind and split."""
    from mosaic_gym.envs import ENV_IDS, SUITES

    envs: dict[str, Any] = {}
    for name, suite in SUITES.items():
        templates = suite.templates()
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
                "by_kind_and_split": {
                    f"{kind}/{split}": n
                    for (kind, split), n in sorted(Counter((t.kind, t.split) for t in templates).items())
                },
                "ids": [t.id for t in templates],
            },
        }
    return {"envs": envs}


def _list(args: argparse.Namespace) -> int:
    data = inventory()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for env_id, env in data["envs"].items():
        counts = ", ".join(f"{k} {v}" for k, v in env["templates"]["by_kind"].items())
        splits = ", ".join(f"{k} {v}" for k, v in env["templates"]["by_split"].items())
        print(f"{env_id}  ({env['description']})")
        print(f"  services: {', '.join(env['services'])}")
        print(f"  tools: {env['tools']['total']} ({len(env['tools']['irreversible'])} irreversible)")
        print(f"  templates: {env['templates']['total']} ({counts}; {splits})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
