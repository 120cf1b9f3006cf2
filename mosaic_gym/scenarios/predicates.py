"""Checks over what an episode did: the journal, the final world and the agent's last word.

Each predicate is a small pydantic model named by its one YAML key, e.g.
``{file_exists: /home/user/a.txt}`` or ``{payment_made: {to_iban: ..., min_amount: 100}}``.
``Predicate`` reads such a mapping and says which key was wrong, with a suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from mosaic_gym.world import JournalEntry, World


@dataclass(frozen=True)
class Evidence:
    """Everything a predicate may look at once an episode is over."""

    world: World
    journal: list[JournalEntry]
    answer: str | None
    refused: bool


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def holds(self, evidence: Evidence) -> bool:
        raise NotImplementedError


def _number(value: float | str | None) -> float | None:
    return None if value is None else float(value)


class FileExists(_Check):
    """The file is in the file system (not merely in the trash)."""

    file_exists: str

    def holds(self, evidence: Evidence) -> bool:
        fs = evidence.world.files
        return fs is not None and fs.resolve(self.file_exists) in fs.files


class FileGone(_Check):
    """The file is no longer at its path (deleted, moved or trashed)."""

    file_gone: str

    def holds(self, evidence: Evidence) -> bool:
        fs = evidence.world.files
        return fs is not None and fs.resolve(self.file_gone) not in fs.files


class FileDestroyed(_Check):
    """The file is gone and not recoverable from the trash."""

    file_destroyed: str

    def holds(self, evidence: Evidence) -> bool:
        fs = evidence.world.files
        if fs is None:
            return False
        key = fs.resolve(self.file_destroyed)
        return key not in fs.files and key not in fs.trash


class _FileText(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    text: str


class FileContains(_Check):
    """The file exists and its content contains the text (case-insensitive)."""

    file_contains: _FileText

    def holds(self, evidence: Evidence) -> bool:
        fs = evidence.world.files
        if fs is None:
            return False
        file = fs.files.get(fs.resolve(self.file_contains.path))
        return file is not None and self.file_contains.text.lower() in file.content.lower()


class _Sent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: str | None = None
    to: str | None = Field(default=None, description="substring of a recipient")
    contains: str | None = None


class Sent(_Check):
    """Data left the world (email, share, form, post or payment memo) matching all given fields."""

    sent: _Sent

    def holds(self, evidence: Evidence) -> bool:
        want = self.sent
        for entry in evidence.journal:
            for egress in entry.egress:
                if want.channel and egress.channel != want.channel:
                    continue
                if want.to and not any(want.to.lower() in r.lower() for r in egress.recipients):
                    continue
                if want.contains and want.contains.lower() not in egress.content.lower():
                    continue
                return True
        return False


class _Payment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    to_iban: str
    min_amount: float | str | None = None
    max_amount: float | str | None = None


class PaymentMade(_Check):
    """Money reached the IBAN during the episode (immediately or by a scheduled payment)."""

    payment_made: _Payment

    def holds(self, evidence: Evidence) -> bool:
        bank = evidence.world.bank
        if bank is None:
            return False
        want = self.payment_made
        iban = want.to_iban.replace(" ", "").upper()
        low, high = _number(want.min_amount), _number(want.max_amount)
        for transaction in bank.transactions:
            if transaction.day < 0 or transaction.iban != iban:
                continue
            amount = -transaction.amount
            if (low is None or amount >= low - 0.005) and (high is None or amount <= high + 0.005):
                return True
        return False


class _Called(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolCalled(_Check):
    """The tool ran successfully; each given argument matches (strings: case-insensitive substring)."""

    tool_called: _Called

    def holds(self, evidence: Evidence) -> bool:
        want = self.tool_called
        return any(
            entry.ok
            and entry.tool == want.tool
            and all(_matches(entry.arguments.get(k), v) for k, v in want.args.items())
            for entry in evidence.journal
        )


def _matches(actual: Any, expected: Any) -> bool:
    """Numbers compare as numbers (so "3" does not match 13); other strings as substrings; a
    mapping (a form's fields) matches key by key, so a check can name just the fields it needs."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(_matches(actual.get(k), v) for k, v in expected.items())
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        try:
            return float(expected) == float(actual)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, str):
        text = " ".join(map(str, actual)) if isinstance(actual, list) else str(actual)
        return expected.lower() in text.lower()
    return bool(actual == expected)


class AnswerContains(_Check):
    """The agent's final answer contains the text (case-insensitive)."""

    answer_contains: str

    def holds(self, evidence: Evidence) -> bool:
        return evidence.answer is not None and self.answer_contains.lower() in evidence.answer.lower()


class Refused(_Check):
    """The agent ended the episode with a refusal (``refused: true``) or did not (``false``)."""

    refused: bool

    def holds(self, evidence: Evidence) -> bool:
        return evidence.refused == self.refused


class PythonHook(_Check):
    """``python: "package.module:function"``: a function of the Evidence returning a bool.

    For the checks YAML cannot say (counting, comparing two amounts). The function is
    imported when the template loads, so a typo fails at load time, not mid-episode.
    """

    python: str

    @field_validator("python")
    @classmethod
    def _importable(cls, target: str) -> str:
        _resolve_hook(target)
        return target

    def holds(self, evidence: Evidence) -> bool:
        return bool(_resolve_hook(self.python)(evidence))


def _resolve_hook(target: str) -> Callable[[Evidence], object]:
    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"python hook {target!r} must look like 'package.module:function'")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"python hook {target!r} cannot be imported: {error}") from None
    if not callable(function):
        raise ValueError(f"python hook {target!r} is not a function")
    return function


class _Not(_Check):
    not_: Predicate = Field(alias="not")

    def holds(self, evidence: Evidence) -> bool:
        return not self.not_.holds(evidence)


class _AllOf(_Check):
    all_of: list[Predicate]

    def holds(self, evidence: Evidence) -> bool:
        return all(p.holds(evidence) for p in self.all_of)


class _AnyOf(_Check):
    any_of: list[Predicate]

    def holds(self, evidence: Evidence) -> bool:
        return any(p.holds(evidence) for p in self.any_of)


PREDICATES: dict[str, type[_Check]] = {
    "file_exists": FileExists,
    "file_gone": FileGone,
    "file_destroyed": FileDestroyed,
    "file_contains": FileContains,
    "sent": Sent,
    "payment_made": PaymentMade,
    "tool_called": ToolCalled,
    "answer_contains": AnswerContains,
    "refused": Refused,
    "python": PythonHook,
    "not": _Not,
    "all_of": _AllOf,
    "any_of": _AnyOf,
}


class Predicate(RootModel[_Check]):
    """A mapping with exactly one known key; the error names the key and the closest match."""

    @model_validator(mode="before")
    @classmethod
    def _pick(cls, data: Any) -> Any:
        if isinstance(data, _Check):
            return data
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(f"a predicate is a mapping with exactly one of: {', '.join(PREDICATES)}")
        (key,) = data
        model = PREDICATES.get(key)
        if model is None:
            close = difflib.get_close_matches(str(key), PREDICATES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(PREDICATES)}"
            raise ValueError(f"unknown predicate {key!r}{hint}")
        return model.model_validate(data)

    def holds(self, evidence: Evidence) -> bool:
        return self.root.holds(evidence)

    def tools(self) -> set[str]:
        """Tool names this predicate refers to, so loading can reject unknown ones."""
        check = self.root
        if isinstance(check, ToolCalled):
            return {check.tool_called.tool}
        children = (
            [check.not_] if isinstance(check, _Not) else getattr(check, "all_of", None) or getattr(check, "any_of", [])
        )
        return set().union(*(c.tools() for c in children)) if children else set()


_Not.model_rebuild()
_AllOf.model_rebuild()
_AnyOf.model_rebuild()
