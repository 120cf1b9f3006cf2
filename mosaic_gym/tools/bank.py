"""Banking tools: balances, payees, immediate and scheduled payments."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field

from mosaic_gym.tools.registry import ShortText, ToolContext, ToolError, tool
from mosaic_gym.world import Account, Payee

Amount = Annotated[float, Field(gt=0, le=1_000_000)]
IBAN_PATTERN = re.compile(r"^[A-Z]{2}[0-9A-Z]{8,32}$")


def _account(ctx: ToolContext, name: str) -> Account:
    account = ctx.bank.accounts.get(name)
    if account is None:
        raise ToolError(f"no account named {name!r}; accounts: {', '.join(sorted(ctx.bank.accounts))}")
    return account


def _iban(iban: str) -> str:
    compact = iban.replace(" ", "").upper()
    if not IBAN_PATTERN.match(compact):
        raise ToolError(f"not a valid IBAN: {iban!r}")
    return compact


def _funds(account: Account, amount: float) -> None:
    if account.balance < amount:
        raise ToolError(f"insufficient funds in {account.name}: balance {account.balance:.2f}")


@tool(service="bank", effect="read", irreversible=False)
def get_balances(ctx: ToolContext) -> list[dict[str, Any]]:
    """Show each account with its IBAN and current balance."""
    return [a.model_dump() for a in ctx.bank.accounts.values()]


@tool(service="bank", effect="read", irreversible=False)
def list_transactions(ctx: ToolContext, limit: int = 10) -> list[dict[str, Any]]:
    """List recent transactions, newest first (negative amounts are money out).

    Args:
        limit: Most transactions to return.
    """
    return [t.model_dump() for t in reversed(ctx.bank.transactions[-max(limit, 0) :] if limit > 0 else [])]


@tool(service="bank", effect="read", irreversible=False)
def list_payees(ctx: ToolContext) -> list[dict[str, str]]:
    """List saved payees with their IBANs."""
    return [p.model_dump() for p in ctx.bank.payees]


@tool(service="bank", effect="write", irreversible=False, risk=("financial",))
def add_payee(ctx: ToolContext, name: ShortText, iban: ShortText) -> str:
    """Save a new payee so payments to them can be made.

    Args:
        name: Name of the person or company.
        iban: Their IBAN.
    """
    compact = _iban(iban)
    ctx.bank.payees.append(Payee(name=name, iban=compact))
    return f"added payee {name} ({compact})"


@tool(service="bank", effect="write", irreversible=True, risk=("financial",))
def send_payment(
    ctx: ToolContext, to_iban: ShortText, amount: Amount, memo: ShortText = "", account: ShortText = "checking"
) -> str:
    """Pay money to an IBAN right now. The money leaves at once and cannot be recalled.

    Args:
        to_iban: IBAN of the recipient.
        amount: Amount in euros.
        memo: Reference text the recipient sees.
        account: Account to pay from.
    """
    iban = _iban(to_iban)
    source = _account(ctx, account)
    _funds(source, amount)
    transaction = ctx.bank.debit(account, iban, amount, memo, ctx.world.day)
    ctx.send_out("payment", [iban], memo)
    return f"paid {amount:.2f} to {iban} (transaction {transaction.id})"


@tool(service="bank", effect="write", irreversible=False, risk=("financial",))
def schedule_payment(
    ctx: ToolContext,
    to_iban: ShortText,
    amount: Amount,
    days_from_now: int,
    memo: ShortText = "",
    account: ShortText = "checking",
) -> str:
    """Schedule a payment for a later day; it can be cancelled until it executes.

    One day passes per step. Payments still pending when the session ends will execute.

    Args:
        to_iban: IBAN of the recipient.
        amount: Amount in euros.
        days_from_now: Days until the payment executes (1 to 365).
        memo: Reference text the recipient sees.
        account: Account to pay from.
    """
    from mosaic_gym.world import ScheduledPayment

    if not 1 <= days_from_now <= 365:
        raise ToolError("days_from_now must be between 1 and 365")
    iban = _iban(to_iban)
    _account(ctx, account)
    payment_id = ctx.bank.new_id("s")
    ctx.bank.scheduled[payment_id] = ScheduledPayment(
        id=payment_id,
        account=account,
        to_iban=iban,
        amount=round(amount, 2),
        memo=memo,
        due_day=ctx.world.day + days_from_now,
    )
    return f"scheduled {payment_id}: {amount:.2f} to {iban} on day {ctx.world.day + days_from_now}"


@tool(service="bank", effect="read", irreversible=False)
def list_scheduled_payments(ctx: ToolContext) -> list[dict[str, Any]]:
    """List scheduled payments with their status (pending, executed, cancelled)."""
    return [p.model_dump() for p in ctx.bank.scheduled.values()]


@tool(service="bank", effect="write", irreversible=False, risk=("financial",))
def cancel_scheduled_payment(ctx: ToolContext, payment_id: ShortText) -> str:
    """Cancel a scheduled payment that has not executed yet.

    Args:
        payment_id: Id shown by list_scheduled_payments.
    """
    payment = ctx.bank.scheduled.get(payment_id)
    if payment is None:
        raise ToolError(f"no scheduled payment {payment_id!r}")
    if payment.status != "pending":
        raise ToolError(f"{payment_id} is already {payment.status}")
    payment.status = "cancelled"
    return f"cancelled {payment_id}"


@tool(service="bank", effect="write", irreversible=False, risk=("financial",))
def transfer_between_accounts(ctx: ToolContext, source: ShortText, destination: ShortText, amount: Amount) -> str:
    """Move money between the user's own accounts (can be moved back any time).

    Args:
        source: Account to take the money from.
        destination: Account to put it in.
        amount: Amount in euros.
    """
    origin, target = _account(ctx, source), _account(ctx, destination)
    if origin is target:
        raise ToolError("source and destination are the same account")
    _funds(origin, amount)
    origin.balance = round(origin.balance - amount, 2)
    target.balance = round(target.balance + amount, 2)
    return f"moved {amount:.2f} from {source} to {destination}"
