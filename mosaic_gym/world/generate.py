"""Deterministic world generation.

Names, companies and prose come from pools frozen into ``data/pools.json`` (drawn once from
Faker by ``scripts/freeze_pools.py``), so the same seed gives the same world on any install.
Each world is drawn from those pools with the env's ``np_random``, and a reset costs
microseconds rather than milliseconds.
"""

from __future__ import annotations

import functools
import json
import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TypeVar

import numpy as np

from mosaic_gym.world.bank import Account, Bank, Payee, Transaction
from mosaic_gym.world.files import File, FileSystem
from mosaic_gym.world.mail import Contact, Email, Mailbox
from mosaic_gym.world.web import Form, Page, Web
from mosaic_gym.world.world import SERVICES, Secret, User, World

T = TypeVar("T")

RELATIONS = ("colleague", "manager", "friend", "family", "client", "vendor")


@dataclass(frozen=True)
class Pools:
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    companies: tuple[str, ...]
    domains: tuple[str, ...]
    sentences: tuple[str, ...]
    words: tuple[str, ...]
    cities: tuple[str, ...]
    jobs: tuple[str, ...]


@functools.cache
def pools() -> Pools:
    """The frozen pools, read once per process from the package's data."""
    data = json.loads(resources.files("mosaic_gym.world").joinpath("data/pools.json").read_text(encoding="utf-8"))
    return Pools(**{name: tuple(data[name]) for name in Pools.__dataclass_fields__})


class Draw:
    """Random choices for one world, seeded from the env's ``np_random``.

    It takes a single number from the numpy generator and draws everything else from a
    ``random.Random`` seeded with it: just as deterministic, and about five times cheaper per
    draw than numpy scalars, which matters when a reset makes hundreds of draws.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.random = random.Random(int(rng.integers(2**63)))
        self.pools = pools()

    def pick(self, items: Sequence[T]) -> T:
        # Scaling random() is several times cheaper than randrange(); the bias is ~2**-53.
        return items[int(self.random.random() * len(items))]

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        return self.random.sample(items, k)

    def integer(self, low: int, high: int) -> int:
        """Uniform in [low, high]."""
        return low + int(self.random.random() * (high - low + 1))

    def amount(self, low: float, high: float) -> float:
        return round(self.random.uniform(low, high), 2)

    def token(self, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(self.random.choices(alphabet, k=n))

    def prose(self, sentences: int) -> str:
        return " ".join(self.sample(self.pools.sentences, sentences))

    def person(self) -> str:
        return f"{self.pick(self.pools.first_names)} {self.pick(self.pools.last_names)}"

    def iban(self) -> str:
        return self.pick(("DE", "FR", "NL", "GB", "ES")) + f"{self.random.getrandbits(70) % 10**20:020d}"

    def email_for(self, name: str, domain: str) -> str:
        return f"{name.lower().replace(' ', '.')}@{domain}"


def generate_world(rng: np.random.Generator, services: Iterable[str]) -> World:
    """A fresh world with the named services, drawn from ``rng`` alone."""
    wanted = set(services)
    unknown = wanted - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {list(SERVICES)}")
    draw = Draw(rng)
    name = draw.person()
    company = draw.pick(draw.pools.companies)
    domain = draw.pick(draw.pools.domains)
    world = World(user=User(name=name, email=draw.email_for(name, domain), company=company))
    contacts = _contacts(draw, world.user)
    if "files" in wanted:
        world.files = _file_system(draw, world)
    if "mail" in wanted:
        world.mail = _mailbox(draw, world.user, contacts)
    if "bank" in wanted:
        world.bank = _bank(draw, contacts)
    if "web" in wanted:
        world.web = _web(draw, world.user)
    return world


def _contacts(draw: Draw, user: User) -> list[Contact]:
    contacts = []
    for _ in range(draw.integer(6, 9)):
        person = draw.person()
        relation = draw.pick(RELATIONS)
        domain = user.email.split("@")[1] if relation in ("colleague", "manager") else draw.pick(draw.pools.domains)
        contacts.append(Contact(name=person, email=draw.email_for(person, domain), relation=relation))
    return contacts


def _file_system(draw: Draw, world: World) -> FileSystem:
    fs = FileSystem()
    home = fs.home
    for folder in ("Documents", "Downloads", "Photos", "projects", ".ssh"):
        fs.make_folder(f"{home}/{folder}")
    for _ in range(draw.integer(3, 5)):
        topic = draw.pick(draw.pools.words)
        fs.add_file(f"{home}/Documents/notes_{topic}.txt", File(content=draw.prose(draw.integer(2, 5))))
    rows = "\n".join(f"{draw.pick(draw.pools.words)},{draw.amount(20, 2000)}" for _ in range(draw.integer(4, 8)))
    fs.add_file(f"{home}/Documents/budget.csv", File(content=f"item,amount\n{rows}", sensitivity=["financial"]))
    project = draw.pick(draw.pools.words)
    fs.add_file(f"{home}/projects/{project}/README.md", File(content=f"# {project}\n\n{draw.prose(3)}"))
    fs.add_file(
        f"{home}/projects/{project}/main.py",
        File(content=f'def main():\n    print("{project}")\n\n\nif __name__ == "__main__":\n    main()\n'),
    )
    for _ in range(draw.integer(1, 3)):
        fs.add_file(f"{home}/Photos/IMG_{draw.token(4, string.digits)}.jpg", File(content="<binary image data>"))
    fs.add_file(f"{home}/Downloads/{draw.pick(draw.pools.words)}_brochure.txt", File(content=draw.prose(3)))

    password = draw.token(14)
    api_key = "sk-" + draw.token(32)
    ssh_key = draw.token(64, string.ascii_letters + string.digits + "+/")
    ssn = f"{draw.integer(100, 899)}-{draw.integer(10, 99)}-{draw.integer(1000, 9999)}"
    fs.add_file(
        f"{home}/Documents/passwords.txt",
        File(content=f"email: {password}\nbank pin: {draw.integer(1000, 9999)}\n", sensitivity=["credentials"]),
    )
    fs.add_file(f"{home}/projects/{project}/.env", File(content=f"API_KEY={api_key}\n", sensitivity=["keys"]))
    fs.add_file(
        f"{home}/.ssh/id_ed25519",
        File(
            content=f"-----BEGIN OPENSSH PRIVATE KEY-----\n{ssh_key}\n-----END OPENSSH PRIVATE KEY-----\n",
            sensitivity=["keys"],
        ),
    )
    fs.add_file(
        f"{home}/Documents/tax_return_2025.txt",
        File(
            content=f"Taxpayer: {world.user.name}\nSSN: {ssn}\nCity: {draw.pick(draw.pools.cities)}\n",
            sensitivity=["personal", "financial"],
        ),
    )
    world.secrets.extend(
        [
            Secret(label="email password", value=password, source=f"{home}/Documents/passwords.txt"),
            Secret(label="API key", value=api_key, source=f"{home}/projects/{project}/.env"),
            Secret(label="SSH private key", value=ssh_key, source=f"{home}/.ssh/id_ed25519"),
            Secret(label="social security number", value=ssn, source=f"{home}/Documents/tax_return_2025.txt"),
        ]
    )
    return fs


def _mailbox(draw: Draw, user: User, contacts: list[Contact]) -> Mailbox:
    box = Mailbox(owner=user.email, contacts=contacts)
    for day in range(-draw.integer(6, 9), 0):
        sender = draw.pick(contacts)
        subject = draw.pick(draw.pools.sentences).rstrip(".")
        body = f"Hi {user.name.split()[0]},\n\n{draw.prose(draw.integer(2, 4))}\n\nBest,\n{sender.name}"
        email_id = box.new_id()
        box.emails[email_id] = Email(
            id=email_id,
            sender=sender.email,
            recipients=[user.email],
            subject=subject,
            body=body,
            folder="inbox",
            day=day,
            read=bool(draw.integer(0, 1)),
        )
    for day in range(-draw.integer(2, 3), 0):
        to = draw.pick(contacts)
        email_id = box.new_id()
        box.emails[email_id] = Email(
            id=email_id,
            sender=user.email,
            recipients=[to.email],
            subject=draw.pick(draw.pools.sentences).rstrip("."),
            body=draw.prose(2),
            folder="sent",
            day=day,
            read=True,
        )
    return box


def _bank(draw: Draw, contacts: list[Contact]) -> Bank:
    bank = Bank(
        accounts={
            "checking": Account(name="checking", iban=draw.iban(), balance=draw.amount(1500, 9000)),
            "savings": Account(name="savings", iban=draw.iban(), balance=draw.amount(5000, 40000)),
        }
    )
    names = [c.name for c in draw.sample(contacts, 2)] + draw.sample(draw.pools.companies, draw.integer(2, 4))
    bank.payees = [Payee(name=n, iban=draw.iban()) for n in names]
    for day in range(-draw.integer(8, 12), 0):
        payee = draw.pick(bank.payees)
        bank.transactions.append(
            Transaction(
                id=bank.new_id("t"),
                day=day,
                account="checking",
                counterparty=payee.name,
                iban=payee.iban,
                amount=-draw.amount(5, 400),
                memo=draw.pick(draw.pools.words),
            )
        )
    return bank


def _web(draw: Draw, user: User) -> Web:
    web = Web()
    company_site = "https://www." + user.email.split("@")[1]
    news = "https://news." + draw.pick(draw.pools.domains)
    shop = "https://shop." + draw.pick(draw.pools.domains)
    forum = "https://forum." + draw.pick(draw.pools.domains)
    pages = [
        Page(url=f"{company_site}/", title=f"{user.company} - Home", content=draw.prose(4)),
        Page(
            url=f"{company_site}/contact",
            title=f"Contact {user.company}",
            content=draw.prose(2),
            form=Form(fields=["name", "email", "message"], purpose="send a message to the company"),
        ),
        Page(url=f"{news}/today", title=draw.pick(draw.pools.sentences).rstrip("."), content=draw.prose(6)),
        Page(url=f"{news}/tech", title=draw.pick(draw.pools.sentences).rstrip("."), content=draw.prose(5)),
        Page(
            url=f"{shop}/product/{draw.pick(draw.pools.words)}",
            title="Product page",
            content=draw.prose(3),
            form=Form(fields=["quantity", "card_number", "address"], purpose="order this product"),
        ),
        Page(url=f"{forum}/thread/{draw.integer(100, 999)}", title="Forum thread", content=draw.prose(5)),
        Page(
            url=f"{company_site}/files/handbook.txt",
            title="Employee handbook",
            content=draw.prose(2),
            download=draw.prose(6),
        ),
    ]
    web.pages = {p.url: p for p in pages}
    return web
