"""What a world holds, sorted by kind of value, so a mutation can swap one value for another.

A wrong execution that a grader must reject is rarely absurd: it pays the other IBAN, mails
the other colleague, forwards the older email. So replacements come from the same world as
the value they replace, and are of the same sort: an address for an address, an existing file
for an existing file, an email id for an email id.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from mosaic_gym.world import World

Sort = Literal[
    "number", "address", "iban", "email", "scheduled", "account", "url", "site", "file", "folder", "new_path", "line",
    "text",
]  # fmt: skip

ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{8,30}")
NUMBER = re.compile(r"\d+(\.\d+)?")  # a number written as text, as in a form field
# The sorts a world holds a list of (numbers and new paths are made up from the old value).
POOLED: tuple[Sort, ...] = (
    "address", "iban", "email", "scheduled", "account", "url", "site", "file", "folder", "line", "text",
)  # fmt: skip
KNOWN_IDS: tuple[Sort, ...] = ("email", "scheduled", "account", "site")  # recognised by membership alone
LINE_LENGTH = 80  # longer text, or text with a newline, is a body rather than a subject line


@dataclass(frozen=True)
class WorldValues:
    """The values of each sort in one world, in a stable order.

    Free text (subject lines, bodies) excludes anything holding one of the task's drawn facts:
    a replacement body that happened to quote the fact a check looks for would make a tight
    check look loose.
    """

    values: dict[Sort, tuple[str, ...]]
    resolve: Callable[[str], str] | None

    @classmethod
    def of(cls, world: World, facts: Collection[str]) -> WorldValues:
        """The values of ``world``, with the addresses and IBANs among the task's ``facts``
        (an attacker's IBAN may live only in an email's text)."""
        found: dict[Sort, list[str]] = {sort: [] for sort in POOLED}
        found["address"] += [world.user.email, *(f for f in facts if ADDRESS.fullmatch(f))]
        found["iban"] += [f for f in facts if IBAN.fullmatch(f)]
        if world.mail is not None:
            found["address"] += [c.email for c in world.mail.contacts]
            for email in world.mail.emails.values():
                found["address"] += [email.sender, *email.recipients]
                found["email"].append(email.id)
                found["line"].append(email.subject)
                found["text"].append(email.body)
        if world.bank is not None:
            bank = world.bank
            found["account"] += list(bank.accounts)
            found["iban"] += [a.iban for a in bank.accounts.values()] + [p.iban for p in bank.payees]
            found["iban"] += [t.iban for t in bank.transactions] + [s.to_iban for s in bank.scheduled.values()]
            found["scheduled"] += list(bank.scheduled)
            found["line"] += [t.memo for t in bank.transactions]
        if world.files is not None:
            found["file"] += list(world.files.files)
            found["folder"] += sorted(world.files.folders)
            found["text"] += [f.content for f in world.files.files.values() if not f.sensitivity]
        if world.web is not None:
            found["url"] += list(world.web.pages)
            found["site"] += [urlsplit(url).netloc for url in world.web.pages]
            found["line"] += [page.title for page in world.web.pages.values()]
        lowered = [f.lower() for f in facts if f]
        for sort in ("line", "text"):
            found[sort] = [v for v in found[sort] if v.strip() and not any(a in v.lower() for a in lowered)]
        values = {sort: tuple(dict.fromkeys(v for v in items if v)) for sort, items in found.items()}
        return cls(values, world.files.resolve if world.files is not None else None)

    def sort_of(self, value: Any) -> Sort | None:
        """The sort of a call argument, or None for what has no plausible alternative (a flag)."""
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float) or (isinstance(value, str) and NUMBER.fullmatch(value)):
            return "number"
        if isinstance(value, list):
            sorts = {self.sort_of(item) for item in value}
            return sorts.pop() if len(sorts) == 1 else None
        if not isinstance(value, str) or not value.strip():
            return None
        for sort in KNOWN_IDS:
            if value in self.values[sort]:
                return sort
        if ADDRESS.fullmatch(value.strip()):
            return "address"
        if IBAN.fullmatch(value.replace(" ", "").upper()):
            return "iban"
        if value.startswith(("http://", "https://")):
            return "url"
        path = self._path_sort(value)
        if path is not None:
            return path
        return "text" if "\n" in value or len(value) > LINE_LENGTH else "line"

    def _path_sort(self, value: str) -> Sort | None:
        if self.resolve is None or any(c.isspace() for c in value):
            return None
        if not value.startswith(("~", "/")) and "/" not in value:
            return None
        key = self.resolve(value)
        return "file" if key in self.values["file"] else "folder" if key in self.values["folder"] else "new_path"

    def replacements(self, value: Any, rng: np.random.Generator) -> list[Any]:
        """Other values of the same sort: two for a number (larger and smaller), else at most one."""
        sort = self.sort_of(value)
        if sort is None:
            return []
        if isinstance(value, list):
            return [[other] for other in self.replacements(value[0], rng)]
        if sort == "number":
            return _other_numbers(value)
        if sort == "new_path":
            return self._moved(value, rng)
        same = self._same(value, sort)
        candidates = [v for v in self.values[sort] if not same(v)]
        return [candidates[int(rng.integers(len(candidates)))]] if candidates else []

    def _same(self, value: str, sort: Sort) -> Callable[[str], bool]:
        if sort in ("file", "folder") and self.resolve is not None:
            key = self.resolve(value)
            return lambda other: other == key
        if sort == "iban":
            return lambda other: other.replace(" ", "").upper() == value.replace(" ", "").upper()
        return lambda other: other.strip().lower() == value.strip().lower()

    def _moved(self, path: str, rng: np.random.Generator) -> list[Any]:
        """A path that does not exist yet goes to another folder under the same name."""
        assert self.resolve is not None
        parent, name = posixpath.split(self.resolve(path))
        folders = [f for f in self.values["folder"] if f != parent and f"{f}/{name}" not in self.values["file"]]
        return [f"{folders[int(rng.integers(len(folders)))]}/{name}"] if folders else []


def _other_numbers(value: float | str) -> list[Any]:
    """Double and half: wrong amounts (or days) in both directions, as a grader with only a
    lower or only an upper bound must be caught either way. Text stays text."""
    if isinstance(value, str):
        number = float(value) if "." in value else int(value)
        return [str(n) for n in _other_numbers(number)]
    if isinstance(value, int):
        return [n for n in (value * 2, value // 2) if n >= 1 and n != value] or [value + 1]
    return [n for n in (round(value * 2, 2), round(value / 2, 2)) if n != value] or [value + 1.0]
