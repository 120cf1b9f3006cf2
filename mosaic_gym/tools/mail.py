"""Mail tools: reading the mailbox, drafts, and sending (which cannot be undone)."""

from __future__ import annotations

from typing import Any

from mosaic_gym.tools.files import existing_file
from mosaic_gym.tools.registry import (
    LongText,
    PathText,
    Recipients,
    ShortText,
    ToolContext,
    ToolError,
    tool,
)
from mosaic_gym.world import Contact, Email
from mosaic_gym.world.mail import Folder


def _summary(email: Email) -> dict[str, Any]:
    return {
        "id": email.id,
        "from": email.sender,
        "to": email.recipients,
        "subject": email.subject,
        "day": email.day,
        "read": email.read,
    }


def _email(ctx: ToolContext, email_id: str) -> Email:
    email = ctx.mail.emails.get(email_id)
    if email is None:
        raise ToolError(f"no email with id {email_id!r}; list_emails shows the ids")
    return email


def _check_addresses(addresses: list[str]) -> None:
    bad = [a for a in addresses if "@" not in a]
    if bad:
        raise ToolError(f"not email addresses: {bad}")


def _attachments(ctx: ToolContext, paths: list[str]) -> dict[str, str]:
    if not paths:
        return {}
    fs = ctx.files
    return {key: fs.files[key].content for key in (existing_file(fs, path) for path in paths)}


def _deliver(ctx: ToolContext, email: Email) -> None:
    email.folder = "sent"
    email.day = ctx.world.day
    content = "\n".join([email.subject, email.body, *email.attachments.values()])
    ctx.send_out("email", email.recipients, content)


@tool(service="mail", effect="read", irreversible=False)
def list_emails(ctx: ToolContext, folder: Folder = "inbox", limit: int = 20) -> list[dict[str, Any]]:
    """List emails in a folder, newest first, without their bodies.

    Args:
        folder: One of inbox, sent, drafts, trash.
        limit: Most emails to return.
    """
    emails = sorted(ctx.mail.in_folder(folder), key=lambda e: (-e.day, e.id))
    return [_summary(e) for e in emails[: max(limit, 0)]]


@tool(service="mail", effect="read", irreversible=False)
def read_email(ctx: ToolContext, email_id: ShortText) -> dict[str, Any]:
    """Open one email and return its sender, recipients, subject, body and attachment names.

    Args:
        email_id: Id of the email, as shown by list_emails.
    """
    email = _email(ctx, email_id)
    email.read = True
    return {**_summary(email), "body": email.body, "attachments": sorted(email.attachments)}


@tool(service="mail", effect="read", irreversible=False)
def search_emails(ctx: ToolContext, query: ShortText) -> list[dict[str, Any]]:
    """Find emails whose sender, subject or body contains the query (case-insensitive).

    Args:
        query: Text to look for.
    """
    needle = query.lower()
    if not needle:
        raise ToolError("query must not be empty")
    hits = [e for e in ctx.mail.emails.values() if needle in f"{e.sender} {e.subject} {e.body}".lower()]
    return [_summary(e) for e in sorted(hits, key=lambda e: (-e.day, e.id))[:20]]


@tool(service="mail", effect="write", irreversible=True, risk=("exfiltration", "privacy"))
def send_email(
    ctx: ToolContext, to: Recipients, subject: ShortText, body: LongText, attachments: list[PathText] | None = None
) -> str:
    """Send an email now. Once sent it cannot be recalled.

    Args:
        to: Recipient email addresses.
        subject: Subject line.
        body: Text of the email.
        attachments: Paths of files to attach, if any.
    """
    _check_addresses(to)
    box = ctx.mail
    email_id = box.new_id()
    email = Email(
        id=email_id,
        sender=box.owner,
        recipients=to,
        subject=subject,
        body=body,
        folder="sent",
        read=True,
        attachments=_attachments(ctx, attachments or []),
    )
    box.emails[email_id] = email
    _deliver(ctx, email)
    return f"sent email {email_id} to {', '.join(to)}"


@tool(service="mail", effect="write", irreversible=False)
def create_draft(ctx: ToolContext, to: Recipients, subject: ShortText, body: LongText) -> str:
    """Save an email as a draft without sending it; it can be reviewed, sent or deleted later.

    Args:
        to: Recipient email addresses.
        subject: Subject line.
        body: Text of the email.
    """
    _check_addresses(to)
    box = ctx.mail
    email_id = box.new_id()
    box.emails[email_id] = Email(
        id=email_id,
        sender=box.owner,
        recipients=to,
        subject=subject,
        body=body,
        folder="drafts",
        day=ctx.world.day,
        read=True,
    )
    return f"saved draft {email_id}"


@tool(service="mail", effect="write", irreversible=True, risk=("exfiltration", "privacy"))
def send_draft(ctx: ToolContext, draft_id: ShortText) -> str:
    """Send a saved draft now. Once sent it cannot be recalled.

    Args:
        draft_id: Id of the draft, as shown by list_emails with folder drafts.
    """
    email = _email(ctx, draft_id)
    if email.folder != "drafts":
        raise ToolError(f"{draft_id} is not a draft")
    _deliver(ctx, email)
    return f"sent draft {draft_id} to {', '.join(email.recipients)}"


@tool(service="mail", effect="write", irreversible=True, risk=("exfiltration", "privacy"))
def forward_email(ctx: ToolContext, email_id: ShortText, to: Recipients, note: LongText = "") -> str:
    """Forward an email, with its attachments, to other people. It cannot be recalled.

    Args:
        email_id: Id of the email to forward.
        to: Recipient email addresses.
        note: Text to put above the forwarded message.
    """
    _check_addresses(to)
    original = _email(ctx, email_id)
    box = ctx.mail
    new_id = box.new_id()
    body = f"{note}\n\n---------- Forwarded message ----------\nFrom: {original.sender}\n\n{original.body}"
    email = Email(
        id=new_id,
        sender=box.owner,
        recipients=to,
        subject=f"Fwd: {original.subject}",
        body=body,
        folder="sent",
        read=True,
        attachments=dict(original.attachments),
    )
    box.emails[new_id] = email
    _deliver(ctx, email)
    return f"forwarded {email_id} to {', '.join(to)} as {new_id}"


@tool(service="mail", effect="write", irreversible=False, risk=("destructive",))
def delete_email(ctx: ToolContext, email_id: ShortText) -> str:
    """Move an email to the trash folder (it can still be read there).

    Args:
        email_id: Id of the email to delete.
    """
    _email(ctx, email_id).folder = "trash"
    return f"moved {email_id} to the trash"


@tool(service="mail", effect="read", irreversible=False)
def list_contacts(ctx: ToolContext) -> list[dict[str, str]]:
    """List the address book: name, email address and relation of each contact."""
    return [c.model_dump() for c in ctx.mail.contacts]


@tool(service="mail", effect="write", irreversible=False)
def add_contact(ctx: ToolContext, name: ShortText, email: ShortText, relation: ShortText = "other") -> str:
    """Add a person to the address book.

    Args:
        name: Full name.
        email: Email address.
        relation: How the user knows them (colleague, friend, vendor...).
    """
    _check_addresses([email])
    ctx.mail.contacts.append(Contact(name=name, email=email, relation=relation))
    return f"added {name} <{email}>"
