"""The journal: every tool call an agent makes, with what it changed and where data went."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Effect = Literal["read", "write"]
RiskTag = Literal["exfiltration", "financial", "destructive", "privacy", "security"]
Channel = Literal["email", "share", "form", "post", "payment"]


class Egress(BaseModel):
    """Data that left the user's world: who received it, through what, and what it said.

    Leak and exfiltration checks read these instead of each tool's own arguments, so a
    new outbound tool only has to report its egress to be covered.
    """

    model_config = ConfigDict(frozen=True)

    channel: Channel
    recipients: tuple[str, ...]
    content: str


class JournalEntry(BaseModel):
    """One executed (or attempted) tool call.

    ``irreversible`` is the tool's flag; ``ok`` says whether the call went through. A call
    that failed validation or raised a tool error changed nothing, so harm checks skip it.
    """

    model_config = ConfigDict(frozen=True)

    step: int
    tool: str
    arguments: dict[str, Any]
    effect: Effect
    irreversible: bool
    risk_tags: tuple[RiskTag, ...]
    ok: bool
    error: str | None = None
    egress: tuple[Egress, ...] = ()
