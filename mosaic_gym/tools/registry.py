"""Tools as typed functions: hints and docstrings become the JSON Schema, flags are mandatory.

A tool is a function whose first parameter is a :class:`ToolContext` and whose other
parameters are what the agent supplies. ``@tool(...)`` reads its signature and Google-style
docstring, builds a pydantic model for the arguments (so validation and the schema come from
one place) and refuses to register a tool whose description, parameter docs or safety flags
are missing. Calls never raise at the agent: bad arguments and tool failures come back as an
error observation and a journal entry with ``ok=False``.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, get_args

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from mosaic_gym.world import Bank, Egress, FileSystem, JournalEntry, Mailbox, Web, World
from mosaic_gym.world.journal import Channel, Effect, RiskTag
from mosaic_gym.world.world import SERVICES

MAX_OUTPUT_CHARS = 20_000
RISK_TAGS: frozenset[str] = frozenset(get_args(RiskTag))


class ToolError(Exception):
    """A failure the agent should read and can act on (no such file, insufficient funds)."""


class ToolDefinitionError(Exception):
    """A tool was declared wrongly; raised at import time, never at the agent."""


class ToolContext:
    """What a tool may touch: the world's services, its clock, and an outbox for egress."""

    def __init__(self, world: World, step: int) -> None:
        self.world = world
        self.step = step
        self.egress: list[Egress] = []

    def _service(self, name: str) -> Any:
        service = getattr(self.world, name)
        if service is None:
            raise ToolError(f"the {name} service is not available in this environment")
        return service

    @property
    def files(self) -> FileSystem:
        return typing.cast(FileSystem, self._service("files"))

    @property
    def mail(self) -> Mailbox:
        return typing.cast(Mailbox, self._service("mail"))

    @property
    def bank(self) -> Bank:
        return typing.cast(Bank, self._service("bank"))

    @property
    def web(self) -> Web:
        return typing.cast(Web, self._service("web"))

    def send_out(self, channel: Channel, recipients: Iterable[str], content: str) -> None:
        """Record that data left the user's world (checked later for leaks and exfiltration)."""
        self.egress.append(Egress(channel=channel, recipients=tuple(recipients), content=content))


@dataclass(frozen=True)
class Tool:
    name: str
    service: str
    description: str
    effect: Effect
    irreversible: bool
    risk_tags: tuple[RiskTag, ...]
    function: Callable[..., Any]
    arguments: type[BaseModel]
    schema: dict[str, Any] = field(compare=False)


@dataclass(frozen=True)
class ToolResult:
    """What the agent sees (``output``) and what the journal recorded (``entry``)."""

    output: str
    ok: bool
    entry: JournalEntry | None


class ToolRegistry:
    """Name -> tool. The module-level :data:`REGISTRY` holds the built-in tools."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> typing.Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ToolDefinitionError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def for_services(self, services: Iterable[str]) -> list[Tool]:
        wanted = set(services)
        return [t for t in self._tools.values() if t.service in wanted]

    def tool(
        self,
        *,
        service: str,
        effect: Effect,
        irreversible: bool,
        risk: tuple[RiskTag, ...] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the decorated function as a tool; every flag must be stated."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add(make_tool(function, service=service, effect=effect, irreversible=irreversible, risk=risk))
            return function

        return register


def make_tool(
    function: Callable[..., Any],
    *,
    service: str,
    effect: Effect,
    irreversible: bool,
    risk: tuple[RiskTag, ...] = (),
) -> Tool:
    """Build a :class:`Tool` from a function, failing loudly on anything a model would miss."""
    name = function.__name__
    where = f"tool {name!r} ({function.__module__})"
    if service not in SERVICES:
        raise ToolDefinitionError(f"{where}: service must be one of {SERVICES}, got {service!r}")
    if effect not in ("read", "write"):
        raise ToolDefinitionError(f"{where}: effect must be 'read' or 'write', got {effect!r}")
    if not isinstance(irreversible, bool):
        raise ToolDefinitionError(f"{where}: irreversible must be True or False")
    if irreversible and effect == "read":
        raise ToolDefinitionError(f"{where}: a read-only tool cannot be irreversible")
    unknown = set(risk) - RISK_TAGS
    if unknown:
        raise ToolDefinitionError(f"{where}: unknown risk tags {sorted(unknown)}; use {sorted(RISK_TAGS)}")

    doc = docstring_parser.parse(function.__doc__ or "")
    description = " ".join(p for p in (doc.short_description, doc.long_description) if p).strip()
    if not description:
        raise ToolDefinitionError(f"{where}: missing docstring; its first line becomes the description")
    param_docs = {p.arg_name: (p.description or "").strip() for p in doc.params}

    hints = typing.get_type_hints(function, include_extras=True)
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters or hints.get(parameters[0].name) is not ToolContext:
        raise ToolDefinitionError(f"{where}: the first parameter must be annotated ToolContext")
    fields: dict[str, Any] = {}
    for parameter in parameters[1:]:
        if parameter.name not in hints:
            raise ToolDefinitionError(f"{where}: parameter {parameter.name!r} has no type hint")
        if not param_docs.get(parameter.name):
            raise ToolDefinitionError(f"{where}: parameter {parameter.name!r} is not described in Args:")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (_described(hints[parameter.name], param_docs[parameter.name]), default)
    extra_docs = set(param_docs) - set(fields)
    if extra_docs:
        raise ToolDefinitionError(f"{where}: Args: documents unknown parameters {sorted(extra_docs)}")

    arguments = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return Tool(
        name=name,
        service=service,
        description=description,
        effect=effect,
        irreversible=irreversible,
        risk_tags=tuple(risk),
        function=function,
        arguments=arguments,
        schema=function_schema(name, description, arguments),
    )


def _described(hint: Any, description: str) -> Any:
    """The hint with a description attached, keeping any constraints the hint already carries."""
    return typing.Annotated[hint, Field(description=description)]


def function_schema(name: str, description: str, arguments: type[BaseModel]) -> dict[str, Any]:
    """The OpenAI / Hermes function format that chat templates accept, without pydantic titles."""
    parameters = _drop_titles(arguments.model_json_schema())
    parameters.pop("additionalProperties", None)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def _drop_titles(node: Any) -> Any:
    """Remove pydantic's "title" annotations, but keep a parameter (a key of "properties") named title."""
    if isinstance(node, dict):
        return {
            k: {name: _drop_titles(sub) for name, sub in v.items()}
            if k in ("properties", "$defs") and isinstance(v, dict)
            else _drop_titles(v)
            for k, v in node.items()
            if k != "title"
        }
    if isinstance(node, list):
        return [_drop_titles(v) for v in node]
    return node


def call_tool(tools: dict[str, Tool], world: World, name: str, arguments: Any, step: int) -> ToolResult:
    """Run one tool call against ``world``. Never raises for anything the agent wrote."""
    tool = tools.get(name)
    if tool is None:
        available = ", ".join(sorted(tools))
        return ToolResult(f"Error: unknown tool {_clip(name, 80)!r}. Available tools: {available}.", False, None)
    if not isinstance(arguments, dict):
        return _failed(tool, world, {}, step, "arguments must be a JSON object of parameter names to values")
    try:
        validated = tool.arguments.model_validate(arguments)
    except ValidationError as error:
        return _failed(tool, world, arguments, step, "invalid arguments: " + _describe(error))
    context = ToolContext(world, step)
    try:
        result = tool.function(context, **dict(validated))
    except ToolError as error:
        return _failed(tool, world, arguments, step, str(error))
    entry = _record(tool, world, arguments, step, ok=True, egress=tuple(context.egress))
    return ToolResult(_format(result), True, entry)


def _failed(tool: Tool, world: World, arguments: dict[str, Any], step: int, message: str) -> ToolResult:
    entry = _record(tool, world, arguments, step, ok=False, error=message)
    return ToolResult(f"Error in {tool.name}: {message}", False, entry)


def _record(
    tool: Tool,
    world: World,
    arguments: dict[str, Any],
    step: int,
    ok: bool,
    error: str | None = None,
    egress: tuple[Egress, ...] = (),
) -> JournalEntry:
    entry = JournalEntry(
        step=step,
        tool=tool.name,
        arguments=arguments,
        effect=tool.effect,
        irreversible=tool.irreversible,
        risk_tags=tool.risk_tags,
        ok=ok,
        error=error,
        egress=egress,
    )
    world.journal.append(entry)
    return entry


def _describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors(include_url=False):
        location = ".".join(str(p) for p in problem["loc"]) or "arguments"
        message = "unknown parameter" if problem["type"] == "extra_forbidden" else problem["msg"]
        parts.append(f"{_clip(location, 60)!r}: {message}")
    return "; ".join(parts)


def _format(result: Any) -> str:
    # Compact JSON: fewer tokens for the model, and the C encoder (any indent falls back to Python).
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    return _clip(text, MAX_OUTPUT_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


REGISTRY = ToolRegistry()
tool = REGISTRY.tool


# Argument types shared by the built-in tools: bounded, so a hostile agent cannot make the
# simulated world hold gigabytes.
ShortText = typing.Annotated[str, Field(max_length=1_000)]
LongText = typing.Annotated[str, Field(max_length=100_000)]
PathText = typing.Annotated[str, Field(min_length=1, max_length=1_024)]
Recipients = typing.Annotated[list[typing.Annotated[str, Field(max_length=320)]], Field(min_length=1, max_length=50)]
