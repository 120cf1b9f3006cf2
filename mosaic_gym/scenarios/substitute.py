"""Fill ``${name}`` placeholders in YAML-shaped data.

Every reset fills the same template with new values, so the template is compiled once into
a plan of which paths hold placeholders; filling then rebuilds only those paths and shares
the rest of the (read-only) data.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any


class ScenarioError(ValueError):
    """A template that cannot be instantiated; the message names the template and the field."""


def fill_text(text: str, variables: dict[str, str], where: str) -> str:
    """``text`` with its placeholders filled; unknown names fail with the field and the known names."""
    if "$" not in text:
        return text
    try:
        compiled = _Text.compile(text)
    except ScenarioError as error:
        raise ScenarioError(f"{where}: {error}") from None
    return compiled.fill(variables, where)


@dataclass(frozen=True)
class _Text:
    """A string split once into literal pieces and placeholder names, so filling is a join.

    ``string.Template`` defines the syntax (``${name}``, ``$name``, ``$$``) and finds the
    pieces; running its regex on every reset was the slow part of instantiation.
    """

    pieces: tuple[str, ...]  # literal, name, literal, name, ..., literal
    text: str

    @classmethod
    def compile(cls, text: str) -> _Text:
        pieces: list[str] = []
        literal, position = [], 0
        for match in string.Template.pattern.finditer(text):
            literal.append(text[position : match.start()])
            position = match.end()
            if match.group("escaped") is not None:
                literal.append("$")
            elif (name := match.group("named") or match.group("braced")) is not None:
                pieces.extend(("".join(literal), name))
                literal = []
            else:
                raise ScenarioError(
                    f"bad placeholder at character {match.start()} of {text!r}: "
                    "write ${{name}}, or $$ for a dollar sign"
                )
        literal.append(text[position:])
        pieces.append("".join(literal))
        return cls(tuple(pieces), text)

    def fill(self, variables: dict[str, str], where: str) -> str:
        pieces = self.pieces
        try:
            return "".join(piece if i % 2 == 0 else variables[piece] for i, piece in enumerate(pieces))
        except KeyError as error:
            known = ", ".join(sorted(variables))
            raise ScenarioError(f"{where}: unknown variable ${{{error.args[0]}}}; known variables: {known}") from None


@dataclass(frozen=True)
class Filler:
    """Data compiled for repeated filling (see the module docstring)."""

    data: Any
    plan: Any

    @classmethod
    def compile(cls, data: Any, only: frozenset[str] | None = None) -> Filler:
        """Compile ``data``; with ``only``, fill just those top-level keys and pass the rest through."""
        plan = _compile(data)
        if only is not None and plan is not None:
            plan = {key: child for key, child in plan.items() if key in only} or None
        return cls(data, plan)

    def fill(self, variables: dict[str, str], where: str) -> Any:
        try:
            return _fill_fast(self.data, self.plan, variables)
        except KeyError:  # go again, tracking field paths, for an error that says where
            return _fill(self.data, self.plan, variables, where)


def _compile(node: Any) -> Any:
    """None where nothing needs filling; a compiled text for a string; a dict of child plans."""
    if isinstance(node, str):
        return _Text.compile(node) if "$" in node else None
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    plan = {key: child for key, value in children if (child := _compile(value)) is not None}
    return plan or None


def _fill_fast(node: Any, plan: Any, variables: dict[str, str]) -> Any:
    if plan is None:
        return node
    if isinstance(plan, _Text):
        pieces = plan.pieces
        return "".join(piece if i % 2 == 0 else variables[piece] for i, piece in enumerate(pieces))
    filled = dict(node) if isinstance(node, dict) else list(node)
    for key, child in plan.items():
        filled[key] = _fill_fast(node[key], child, variables)
    return filled


def _fill(node: Any, plan: Any, variables: dict[str, str], where: str) -> Any:
    if plan is None:
        return node
    if isinstance(plan, _Text):
        return plan.fill(variables, where)
    filled = dict(node) if isinstance(node, dict) else list(node)
    for key, child in plan.items():
        path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
        filled[key] = _fill(node[key], child, variables, path)
    return filled
