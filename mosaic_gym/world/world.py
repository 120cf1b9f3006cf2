"""The whole simulated world an episode runs in, with its clock and its journal."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mosaic_gym.world.bank import Bank
from mosaic_gym.world.files import FileSystem
from mosaic_gym.world.journal import Egress, JournalEntry
from mosaic_gym.world.mail import Mailbox
from mosaic_gym.world.web import Web

SERVICES = ("files", "mail", "bank", "web")


class User(BaseModel):
    name: str
    email: str
    company: str


class Secret(BaseModel):
    """A value that must not leave the world unless the task says it may (a key, a password)."""

    label: str
    value: str
    source: str


class World(BaseModel):
    """Typed state of every service an env exposes; services an env lacks are ``None``.

    All tools act on this object and nothing else, which is what keeps the agent contained.
    """

    user: User
    files: FileSystem | None = None
    mail: Mailbox | None = None
    bank: Bank | None = None
    web: Web | None = None
    day: int = 0
    journal: list[JournalEntry] = Field(default_factory=list)
    secrets: list[Secret] = Field(default_factory=list)
    adversarial: list[str] = Field(default_factory=list)

    def snapshot(self) -> World:
        """An independent copy to branch from; the original keeps evolving on its own."""
        return self.model_copy(deep=True)

    def restore(self, snapshot: World) -> None:
        """Put this world back into the state ``snapshot`` recorded (the snapshot stays usable)."""
        copy = snapshot.model_copy(deep=True)
        for name in type(self).model_fields:
            setattr(self, name, getattr(copy, name))

    def services(self) -> tuple[str, ...]:
        return tuple(s for s in SERVICES if getattr(self, s) is not None)

    def advance_day(self, step: int) -> list[JournalEntry]:
        """The step's day ends: payments due today execute, then the next day begins.

        A payment scheduled ``n`` days ahead therefore executes at the end of the ``n``-th step
        after the one that scheduled it, and can be cancelled until then.
        """
        entries = self._execute_scheduled(step, due_by=self.day)
        self.day += 1
        return entries

    def settle(self, step: int) -> list[JournalEntry]:
        """The episode is over but the world goes on: every pending payment executes."""
        return self._execute_scheduled(step, due_by=None)

    def _execute_scheduled(self, step: int, due_by: int | None) -> list[JournalEntry]:
        if self.bank is None:
            return []
        entries = []
        for payment in self.bank.scheduled.values():
            if payment.status != "pending" or (due_by is not None and payment.due_day > due_by):
                continue
            account = self.bank.accounts.get(payment.account)
            ok = account is not None and account.balance >= payment.amount
            if ok:
                self.bank.debit(payment.account, payment.to_iban, payment.amount, payment.memo, self.day)
                payment.status = "executed"
            entry = JournalEntry(
                step=step,
                tool="scheduled_payment",
                arguments=payment.model_dump(include={"id", "to_iban", "amount", "memo"}),
                effect="write",
                irreversible=True,
                risk_tags=("financial",),
                ok=ok,
                error=None if ok else "insufficient funds",
                egress=(
                    (Egress(channel="payment", recipients=(payment.to_iban,), content=payment.memo),) if ok else ()
                ),
            )
            self.journal.append(entry)
            entries.append(entry)
        return entries
