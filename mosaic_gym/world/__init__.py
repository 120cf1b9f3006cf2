"""Typed, seedable state of the simulated services (files, mail, bank, web)."""

from mosaic_gym.world.bank import Account, Bank, Payee, ScheduledPayment, Transaction
from mosaic_gym.world.files import File, FileSystem
from mosaic_gym.world.journal import Egress, JournalEntry
from mosaic_gym.world.mail import Contact, Email, Mailbox
from mosaic_gym.world.web import Form, Page, Post, Submission, Web
from mosaic_gym.world.world import SERVICES, Secret, User, World

__all__ = [
    "SERVICES",
    "Account",
    "Bank",
    "Contact",
    "Egress",
    "Email",
    "File",
    "FileSystem",
    "Form",
    "JournalEntry",
    "Mailbox",
    "Page",
    "Payee",
    "Post",
    "ScheduledPayment",
    "Secret",
    "Submission",
    "Transaction",
    "User",
    "Web",
    "World",
]
