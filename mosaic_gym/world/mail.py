"""A simulated mailbox: inbox, sent, drafts, trash and an address book."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Folder = Literal["inbox", "sent", "drafts", "trash"]


class Email(BaseModel):
    id: str
    sender: str
    recipients: list[str]
    subject: str
    body: str
    folder: Folder
    day: int = 0
    read: bool = False
    attachments: dict[str, str] = Field(default_factory=dict)


class Contact(BaseModel):
    name: str
    email: str
    relation: str


class Mailbox(BaseModel):
    owner: str
    emails: dict[str, Email] = Field(default_factory=dict)
    contacts: list[Contact] = Field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> str:
        email_id = f"m{self.next_id}"
        self.next_id += 1
        return email_id

    def in_folder(self, folder: Folder) -> list[Email]:
        return [e for e in self.emails.values() if e.folder == folder]
