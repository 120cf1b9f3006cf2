"""Load scenario templates from YAML with errors that name the file, the field and the fix.

A folder loads whole or not at all: every problem in every file is collected and reported
together, so a class fixing a broken scenario sees all of its mistakes in one run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mosaic_gym.scenarios.instantiate import ScenarioError, instantiate
from mosaic_gym.scenarios.template import Template
from mosaic_gym.tools import REGISTRY

# libyaml's parser where PyYAML was built with it: the 260 built-in templates load in 0.2 s
# instead of 1.9 s, which every process that opens a suite pays once.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ScenarioLoadError(ValueError):
    """One or more templates are invalid; ``problems`` lists each as 'file: field: reason'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid scenario templates:\n  " + "\n  ".join(problems))


def load_file(path: Path, services: Iterable[str] | None = None) -> Template:
    """Load and check one template; with ``services``, also try instantiating it once."""
    problems: list[str] = []
    template = _load(path, problems, services)
    if template is None:
        raise ScenarioLoadError(problems)
    return template


def load_folder(folder: Path, services: Iterable[str] | None = None) -> list[Template]:
    """Every ``*.yaml`` under ``folder`` (sorted by path), or a ScenarioLoadError listing all problems."""
    if not folder.is_dir():
        raise ScenarioLoadError([f"{folder}: not a folder"])
    problems: list[str] = []
    templates: list[Template] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.yaml")):
        template = _load(path, problems, services)
        if template is None:
            continue
        if template.id in seen:
            problems.append(f"{path}: id: {template.id!r} is already used by {seen[template.id]}")
            continue
        seen[template.id] = path
        templates.append(template)
    if problems:
        raise ScenarioLoadError(problems)
    return templates


def _load(path: Path, problems: list[str], services: Iterable[str] | None) -> Template | None:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except OSError as error:
        problems.append(f"{path}: cannot read: {error.strerror}")
        return None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "syntax"
        hint = ""
        if mark is not None and "${" in path.read_text(encoding="utf-8").splitlines()[mark.line]:
            hint = '; quote strings holding ${...} inside {...} mappings, e.g. {path: "~/${name}.txt"}'
        problems.append(f"{path}: {where}: not valid YAML ({getattr(error, 'problem', error)}){hint}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: the file must hold one mapping (id, kind, instruction, ...)")
        return None
    try:
        template = Template.model_validate(data)
    except ValidationError as error:
        problems.extend(f"{path}: {_field(e['loc'])}: {_reason(e)}" for e in error.errors(include_url=False))
        return None
    before = len(problems)
    for field, name in _tool_mentions(template):
        if name not in REGISTRY:
            close = difflib.get_close_matches(name, [t.name for t in REGISTRY], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{path}: {field}: unknown tool {name!r}{hint}")
    if len(problems) == before:
        problems.extend(f"{path}: {problem}" for problem in _free_argument_problems(template))
    if services is not None and len(problems) == before:
        try:
            instantiate(template, np.random.default_rng(0), services)
        except (ScenarioError, ValidationError, ValueError) as error:
            problems.append(f"{path}: {error}")
    return template if len(problems) == before else None


def _tool_mentions(template: Template) -> list[tuple[str, str]]:
    """(field, tool name) for every tool a template names, so an unknown one can be pointed at."""
    mentions = [
        (f"{field}[{i}].call", step.call)
        for field in ("reference", "harmful_reference")
        for i, step in enumerate(getattr(template, field) or [])
        if step.call is not None
    ]
    predicates = [(f"success[{i}]", p) for i, p in enumerate(template.success)]
    predicates += [(f"harm[{i}].when", h.when) for i, h in enumerate(template.harm)]
    if template.injected_goal is not None:
        predicates.append(("injected_goal", template.injected_goal))
    mentions += [(field, name) for field, predicate in predicates for name in sorted(predicate.tools())]
    return mentions


def _free_argument_problems(template: Template) -> list[str]:
    """Each ``free_arguments`` entry must name ``answer``, or a call of the reference (``TOOL``)
    or one of its arguments (``TOOL.ARGUMENT``, ``TOOL.ARGUMENT.KEY`` inside a mapping)."""
    called = sorted({step.call for step in template.reference if step.call is not None})
    problems = []
    for i, entry in enumerate(template.free_arguments):
        where = f"free_arguments[{i}]: {entry!r}"
        if entry == "answer":
            continue
        tool, _, argument = entry.partition(".")
        if tool not in called:
            close = difflib.get_close_matches(tool, called, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; it calls: {', '.join(called) or 'nothing'}"
            problems.append(f"{where}: the reference makes no {tool!r} call{hint}; or write 'answer'")
            continue
        name = argument.split(".")[0]
        known = list(REGISTRY[tool].arguments.model_fields)
        if argument and name not in known:
            problems.append(f"{where}: {tool} has no argument {name!r}; it takes: {', '.join(known)}")
    return problems


def _field(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part not in ("function-after[_one()]", "Predicate") and not str(part).startswith("function-"):
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


def _reason(error: ErrorDetails) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown field (a typo? check the spelling against docs/scenarios.md)"
    if kind == "missing":
        return "required field is missing"
    return str(message).removeprefix("Value error, ")
