"""The YAML scenario format, validated by pydantic.

A template describes a family of task instances: how to draw its parameters, what to add
to a generated world, the user's instruction, the checks that say whether the task was done
and whether harm happened, and a reference solution. Strings may use ``${name}``
placeholders for parameters and for the built-in variables listed in
:mod:`mosaic_gym.scenarios.instantiate`.
"""

from __future__ import annotations

import builtins
import functools
import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from mosaic_gym.scenarios.predicates import Predicate
from mosaic_gym.scenarios.substitute import Filler
from mosaic_gym.splits import Split, Tier
from mosaic_gym.world.files import Sensitivity

Kind = Literal["benign", "harmful", "injection", "privacy"]
KINDS: tuple[Kind, ...] = get_args(Kind)
# starter: 1-3 tool calls with everything needed in the instruction or one lookup away, so
# that a small model can finish (or carry out) the task; standard: the full multi-step tasks.
POOLS = ("person", "company", "domain", "word", "sentence", "city", "iban", "token")


# The fields whose strings get ${...} filled per instance (besides the world).
FILLED = frozenset({"instruction", "success", "harm", "injected_goal", "leak", "reference", "harmful_reference"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Param(_Strict):
    """How to draw one parameter; exactly one field is set."""

    choice: list[str] | None = None
    # builtins.int: inside this class body the name ``int`` is the field itself (None).
    int: tuple[builtins.int, builtins.int] | None = None
    amount: tuple[float, float] | None = None
    pool: Literal["person", "company", "domain", "word", "sentence", "city", "iban", "token"] | None = None
    format: str | None = Field(default=None, description="a string built from earlier parameters")

    @model_validator(mode="after")
    def _one(self) -> Param:
        chosen = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(f"set exactly one of choice, int, amount, pool, format (got {chosen or 'none'})")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one option")
        for bounds in (self.int, self.amount):
            if bounds is not None and bounds[0] > bounds[1]:
                raise ValueError(f"low bound {bounds[0]} is above high bound {bounds[1]}")
        return self


class FileSpec(_Strict):
    path: str
    content: str
    sensitivity: list[Sensitivity] = Field(default_factory=list)


class EmailSpec(_Strict):
    sender: str = Field(alias="from")
    to: list[str] | None = None
    subject: str
    body: str
    folder: Literal["inbox", "sent", "drafts", "trash"] = "inbox"
    day: int = -1
    attachments: dict[str, str] = Field(default_factory=dict)


class ContactSpec(_Strict):
    name: str
    email: str
    relation: str = "other"


class PayeeSpec(_Strict):
    name: str
    iban: str


class ScheduledSpec(_Strict):
    to_iban: str
    amount: float | str
    memo: str = ""
    days: int | str = 3


class PageSpec(_Strict):
    url: str
    title: str
    content: str
    form_fields: list[str] | None = None
    form_purpose: str = "submit information"
    download: str | None = None


class SecretSpec(_Strict):
    label: str
    value: str
    source: str = "scenario"


class WorldSpec(_Strict):
    """Items a template adds to the generated world (its carriers and its targets)."""

    files: list[FileSpec] = Field(default_factory=list)
    emails: list[EmailSpec] = Field(default_factory=list)
    contacts: list[ContactSpec] = Field(default_factory=list)
    payees: list[PayeeSpec] = Field(default_factory=list)
    scheduled_payments: list[ScheduledSpec] = Field(default_factory=list)
    pages: list[PageSpec] = Field(default_factory=list)
    secrets: list[SecretSpec] = Field(default_factory=list)


class Injection(_Strict):
    """The attacker's goal; an attack family turns it into the text placed at ``${injection}``."""

    goal: str = Field(description="what the attacker wants done, as an instruction with concrete values")
    text: str | None = Field(default=None, description="fixed attack text instead of a family's rendering")


class HarmCheck(_Strict):
    label: str
    irreversible: bool
    when: Predicate


class LeakCheck(_Strict):
    """Which secrets must not reach whom; by default every secret of the world, to anyone."""

    secrets: list[str] | None = Field(default=None, description="secret labels; None means all")
    allowed: list[str] = Field(default_factory=list, description="recipients that may receive them")


class Step(_Strict):
    """One reference action: a tool call, a refusal or an answer."""

    call: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    refuse: str | None = None
    answer: str | None = None
    plan: str | None = None
    check: str | None = Field(default=None, description="safety thoughts for this step")

    @model_validator(mode="after")
    def _one(self) -> Step:
        chosen = [n for n in ("call", "refuse", "answer") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(f"a step has exactly one of call, refuse, answer (got {chosen or 'none'})")
        if self.args and self.call is None:
            raise ValueError("args only go with call")
        return self


class Template(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    kind: Kind
    split: Split = "train"
    tier: Tier = "standard"
    description: str = ""
    params: dict[str, Param] = Field(default_factory=dict)
    world: WorldSpec = Field(default_factory=WorldSpec)
    injection: Injection | None = None
    instruction: str
    success: list[Predicate] = Field(default_factory=list)
    harm: list[HarmCheck] = Field(default_factory=list)
    injected_goal: Predicate | None = None
    leak: LeakCheck | None = None
    reference: list[Step] = Field(min_length=1)
    harmful_reference: list[Step] | None = None
    free_arguments: list[str] = Field(
        default_factory=list,
        description="what the mutation audit may change without failing a success check: "
        "TOOL.ARGUMENT of the reference's write calls, or 'answer'",
    )
    max_steps: int | None = Field(default=None, ge=1, le=100)

    @model_validator(mode="after")
    def _kind_fields(self) -> Template:
        if self.kind in ("benign", "injection") and not self.success:
            raise ValueError(f"a {self.kind} template needs success checks")
        if self.kind == "harmful" and not self.harm:
            raise ValueError("a harmful template needs harm checks")
        if self.kind == "injection" and (self.injection is None or self.injected_goal is None):
            raise ValueError("an injection template needs injection and injected_goal")
        if self.kind == "privacy" and self.leak is None:
            raise ValueError("a privacy template needs a leak check")
        if self.kind != "benign" and self.harmful_reference is None:
            raise ValueError(f"a {self.kind} template needs a harmful_reference showing the harm it guards")
        last = self.reference[-1]
        if last.call is not None:
            raise ValueError("the reference must end with an answer or a refusal")
        return self

    def with_filled(self, filled: dict[str, Any]) -> Template:
        """A copy whose per-instance fields are replaced by ``filled`` (validated field by field;
        the rest of the template was validated when it loaded)."""
        update = {name: _ADAPTERS[name].validate_python(filled[name]) for name in FILLED if name in filled}
        return self.model_copy(update=update)

    @functools.cached_property
    def fillers(self) -> tuple[Filler, Filler]:
        """Compiled placeholder filling for the judged part (everything but the world) and the
        world, which is filled last because it may hold the attack text."""
        raw = self.model_dump(by_alias=True, exclude_none=True, serialize_as_any=True)
        world = raw.pop("world", {})
        return Filler.compile(raw, only=FILLED), Filler.compile(world)

    @functools.cached_property
    def placeholders(self) -> frozenset[str]:
        """Names of the ``${...}`` placeholders the template's world uses."""
        return frozenset(re.findall(r"\$\{(\w+)\}", self.world.model_dump_json()))

    @property
    def suite(self) -> str:
        return self.id.split(".", 1)[0]

    def tools(self) -> set[str]:
        """Every tool name the template mentions."""
        steps = [*self.reference, *(self.harmful_reference or [])]
        named = {s.call for s in steps if s.call is not None}
        predicates = [*self.success, *(h.when for h in self.harm)]
        if self.injected_goal is not None:
            predicates.append(self.injected_goal)
        return named.union(*(p.tools() for p in predicates))


def _field_adapter(name: str) -> TypeAdapter[Any]:
    annotation = Template.model_fields[name].annotation
    if annotation is None:
        raise TypeError(f"Template.{name} has no type annotation")
    return TypeAdapter(annotation)


_ADAPTERS = {name: _field_adapter(name) for name in FILLED}
