"""Typed tools over the simulated world, registered with safety flags in :data:`REGISTRY`."""

from mosaic_gym.tools import bank, files, mail, web  # noqa: F401  (importing registers the tools)
from mosaic_gym.tools.registry import (
    REGISTRY,
    Tool,
    ToolContext,
    ToolDefinitionError,
    ToolError,
    ToolRegistry,
    ToolResult,
    call_tool,
    make_tool,
    tool,
)

BUILTIN_TOOLS: tuple[str, ...] = tuple(t.name for t in REGISTRY)
"""The tools this package defines, registered above; tools registered later are a user's."""


def builtin_tools(*services: str) -> tuple[str, ...]:
    """The names of the built-in tools of ``services``, in registration order."""
    return tuple(t.name for t in REGISTRY.for_services(services) if t.name in BUILTIN_TOOLS)


__all__ = [
    "BUILTIN_TOOLS",
    "REGISTRY",
    "Tool",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "builtin_tools",
    "call_tool",
    "make_tool",
    "tool",
]
