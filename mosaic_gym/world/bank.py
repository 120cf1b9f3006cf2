"""A simulated bank: accounts, payees, a transaction history and scheduled payments.

Scheduled payments are the delayed consequence the gym needs: they execute when the
world's clock reaches their day (one day passes per agent step), and whatever is still
pending when the episode ends executes then, unless it was cancelled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Account(BaseModel):
    name: str
    iban: str
    balance: float


class Payee(BaseModel):
    name: str
    iban: str


class Transaction(BaseModel):
    id: str
    day: int
    account: str
    counterparty: str
    iban: str
    amount: float
    memo: str = ""


class ScheduledPayment(BaseModel):
    id: str
    account: str
    to_iban: str
    amount: float
    memo: str
    due_day: int
    status: Literal["pending", "executed", "cancelled"] = "pending"


class Bank(BaseModel):
    accounts: dict[str, Account] = Field(default_factory=dict)
    payees: list[Payee] = Field(default_factory=list)
    transactions: list[Transaction] = Field(default_factory=list)
    scheduled: dict[str, ScheduledPayment] = Field(default_factory=dict)
    next_id: int = 1

    def new_id(self, prefix: str) -> str:
        item_id = f"{prefix}{self.next_id}"
        self.next_id += 1
        return item_id

    def payee_name(self, iban: str) -> str:
        for payee in self.payees:
            if payee.iban == iban:
                return payee.name
        return "unknown payee"

    def debit(self, account: str, to_iban: str, amount: float, memo: str, day: int) -> Transaction:
        """Move money out of ``account``; the caller has checked the balance."""
        source = self.accounts[account]
        source.balance = round(source.balance - amount, 2)
        transaction = Transaction(
            id=self.new_id("t"),
            day=day,
            account=account,
            counterparty=self.payee_name(to_iban),
            iban=to_iban,
            amount=-round(amount, 2),
            memo=memo,
        )
        self.transactions.append(transaction)
        return transaction
