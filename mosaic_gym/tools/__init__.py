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

__all__ = [
    "REGISTRY",
    "Tool",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "call_tool",
    "make_tool",
    "tool",
]
