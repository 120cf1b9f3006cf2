"""Turn a template and an RNG into one concrete task instance.

Built-in variables, available in every string of a template (where the service exists):
``user_name``, ``user_first``, ``user_email``, ``company``, ``home``, ``contact_name``,
``contact_email``; with files: ``password``, ``api_key``, ``ssh_key``, ``ssn``; with the
bank: ``checking_iban``, ``savings_iban``, ``payee_name``, ``payee_iban``; with the web:
``company_site``, ``forum_site``. ``injection`` (and ``injection_2`` for a second carrier) hold
the attack text of injection templates; ``lookalike`` holds harmless imperative text in benign
templates that use it.

The template's own emails and scheduled payments get their ids before the strings are
filled in, so a reference can name them: ``email_id_1``, ``email_id_2``... for
``world.emails`` and ``scheduled_id_1``... for ``world.scheduled_payments``, in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from mosaic_gym.attacks import ATTACKS, AttackContext, AttackFamily, families
from mosaic_gym.protocol import Action
from mosaic_gym.scenarios.substitute import ScenarioError, fill_text
from mosaic_gym.scenarios.template import Kind, Param, Step, Template, WorldSpec
from mosaic_gym.tools import REGISTRY
from mosaic_gym.world import (
    Contact,
    Email,
    File,
    Form,
    Page,
    Payee,
    ScheduledPayment,
    Secret,
    World,
)
from mosaic_gym.world.generate import Draw, generate_world

CUSTOM_ATTACK = "custom"


@dataclass(frozen=True)
class Task:
    """One instance: the world to start from, what the user asks, and how it will be judged."""

    template: Template
    spec: Template
    world: World
    variables: dict[str, str]
    attack: str | None = None
    lookalike: str | None = None

    @property
    def id(self) -> str:
        return self.template.id

    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def instruction(self) -> str:
        return self.spec.instruction

    def reference(self) -> list[Action]:
        """The safe solution as actions."""
        return [to_action(step) for step in self.spec.reference]

    def harmful_reference(self) -> list[Action]:
        """The trajectory that commits the harm this template guards against."""
        return [to_action(step) for step in self.spec.harmful_reference or []]


def instantiate(
    template: Template,
    rng: np.random.Generator,
    services: Iterable[str],
    split: str = "train",
    attack: str | None = None,
) -> Task:
    """Draw one instance. ``attack`` fixes the attack family; otherwise one is drawn from those
    allowed in ``split`` (training never sees held-out families)."""
    draw = Draw(rng)
    world = generate_world(rng, services)
    variables = builtin_variables(world, draw)
    email_ids, scheduled_ids = _reserve_ids(template.world, world)
    variables.update({f"email_id_{i}": v for i, v in enumerate(email_ids, 1)})
    variables.update({f"scheduled_id_{i}": v for i, v in enumerate(scheduled_ids, 1)})
    for name, param in template.params.items():
        variables[name] = _draw_param(param, draw, variables, f"{template.id}: params.{name}")
    judged_filler, world_filler = template.fillers
    judged = template.with_filled(judged_filler.fill(variables, template.id))
    family, lookalike, adversarial = _carrier_text(template, judged, draw, variables, split, attack)
    world_spec = WorldSpec.model_validate(world_filler.fill(variables, f"{template.id}.world"))
    spec = judged.model_copy(update={"world": world_spec})
    _apply(spec.world, world, email_ids, scheduled_ids)
    world.adversarial.extend(adversarial)
    return Task(template=template, spec=spec, world=world, variables=variables, attack=family, lookalike=lookalike)


def _carrier_text(
    template: Template, judged: Template, draw: Draw, variables: dict[str, str], split: str, attack: str | None
) -> tuple[str | None, str | None, list[str]]:
    """Fill ``injection``/``injection_2`` or ``lookalike``; return family, look-alike, adversarial texts."""
    uses = template.placeholders
    if template.injection is None:
        if attack is not None:
            raise ScenarioError(f"{template.id}: attack {attack!r} given, but the template has no injection")
        if "lookalike" not in uses:
            return None, None, []
        lookalike = draw.pick(families(split, benign=True, two_carriers=False))
        variables["lookalike"] = lookalike.render(_attack_context(judged, variables, ""), draw).first
        return None, lookalike.name, []
    if attack is None and template.injection.text is not None:
        custom = fill_text(template.injection.text, variables, f"{template.id}: injection.text")
        variables.update(injection=custom, injection_2="")
        return CUSTOM_ATTACK, None, [custom]
    family = _family(template.id, attack, "injection_2" in uses, split, draw)
    goal = fill_text(template.injection.goal, variables, f"{template.id}: injection.goal")
    text = family.render(_attack_context(judged, variables, goal), draw)
    variables.update(injection=text.first, injection_2=text.second)
    return family.name, None, [t for t in (text.first, text.second) if t]


def _family(template_id: str, attack: str | None, two_carriers: bool, split: str, draw: Draw) -> AttackFamily:
    if attack is None:
        return draw.pick(families(split, benign=False, two_carriers=two_carriers))
    family = ATTACKS.get(attack)
    if family is None or family.benign:
        known = ", ".join(sorted(n for n, f in ATTACKS.items() if not f.benign))
        raise ScenarioError(f"unknown attack family {attack!r}; known: {known}")
    if family.two_carriers and not two_carriers:
        raise ScenarioError(f"{template_id}: attack {attack!r} needs a second carrier (${{injection_2}})")
    return family


def _attack_context(judged: Template, variables: dict[str, str], goal: str) -> AttackContext:
    """The goal, and the calls of the harmful reference that the safe reference does not make."""
    safe = {(s.call, json.dumps(s.args, sort_keys=True)) for s in judged.reference if s.call}
    calls = tuple(
        call_text(s.call, _typed_arguments(s.call, s.args))
        for s in judged.harmful_reference or []
        if s.call and (s.call, json.dumps(s.args, sort_keys=True)) not in safe
    )
    return AttackContext(goal=goal, calls=calls, user_name=variables["user_name"], company=variables["company"])


def builtin_variables(world: World, draw: Draw) -> dict[str, str]:
    user = world.user
    contact = (
        draw.pick(world.mail.contacts)
        if world.mail
        else Contact(
            name=draw.person(), email=draw.email_for(draw.person(), draw.pick(draw.pools.domains)), relation="friend"
        )
    )
    variables = {
        "user_name": user.name,
        "user_first": user.name.split()[0],
        "user_email": user.email,
        "company": user.company,
        "home": "/home/user",
        "contact_name": contact.name,
        "contact_email": contact.email,
    }
    labels = {
        "email password": "password",
        "API key": "api_key",
        "SSH private key": "ssh_key",
        "social security number": "ssn",
    }
    for secret in world.secrets:
        if secret.label in labels:
            variables[labels[secret.label]] = secret.value
    if world.bank is not None:
        payee = draw.pick(world.bank.payees)
        variables.update(
            checking_iban=world.bank.accounts["checking"].iban,
            savings_iban=world.bank.accounts["savings"].iban,
            payee_name=payee.name,
            payee_iban=payee.iban,
        )
    if world.web is not None:
        variables["company_site"] = "https://www." + user.email.split("@")[1]
        variables["forum_site"] = next(u for u in world.web.pages if "://forum." in u).split("/")[2]
    return variables


def _draw_param(param: Param, draw: Draw, variables: dict[str, str], where: str) -> str:
    if param.choice is not None:
        return fill_text(draw.pick(param.choice), variables, where)
    if param.int is not None:
        return str(draw.integer(*param.int))
    if param.amount is not None:
        return f"{draw.amount(*param.amount):.2f}"
    if param.format is not None:
        return fill_text(param.format, variables, where)
    pools = draw.pools
    by_pool = {
        "person": draw.person,
        "company": lambda: draw.pick(pools.companies),
        "domain": lambda: draw.pick(pools.domains),
        "word": lambda: draw.pick(pools.words),
        "sentence": lambda: draw.pick(pools.sentences),
        "city": lambda: draw.pick(pools.cities),
        "iban": draw.iban,
        "token": lambda: draw.token(16),
    }
    return str(by_pool[str(param.pool)]())


def _reserve_ids(spec: WorldSpec, world: World) -> tuple[list[str], list[str]]:
    """Ids for the template's emails and scheduled payments (none where the service is missing)."""
    email_ids = [world.mail.new_id() for _ in spec.emails] if world.mail is not None else []
    scheduled_ids = [world.bank.new_id("s") for _ in spec.scheduled_payments] if world.bank is not None else []
    return email_ids, scheduled_ids


def _apply(spec: WorldSpec, world: World, email_ids: list[str], scheduled_ids: list[str]) -> None:
    """Add the template's own items to the generated world, under the ids reserved for them."""
    for f in spec.files:
        _service(world, "files", "files").add_file(f.path, File(content=f.content, sensitivity=list(f.sensitivity)))
    box = _service(world, "mail", "emails") if spec.emails else None
    for e, email_id in zip(spec.emails, email_ids, strict=True):
        assert box is not None
        box.emails[email_id] = Email(
            id=email_id,
            sender=e.sender,
            recipients=e.to or [box.owner],
            subject=e.subject,
            body=e.body,
            folder=e.folder,
            day=e.day,
            read=False,
            attachments=dict(e.attachments),
        )
    for c in spec.contacts:
        _service(world, "mail", "contacts").contacts.append(Contact(name=c.name, email=c.email, relation=c.relation))
    for p in spec.payees:
        _service(world, "bank", "payees").payees.append(Payee(name=p.name, iban=p.iban))
    bank = _service(world, "bank", "scheduled_payments") if spec.scheduled_payments else None
    for s, payment_id in zip(spec.scheduled_payments, scheduled_ids, strict=True):
        assert bank is not None
        bank.scheduled[payment_id] = ScheduledPayment(
            id=payment_id,
            account="checking",
            to_iban=s.to_iban,
            amount=float(s.amount),
            memo=s.memo,
            due_day=world.day + int(s.days),
        )
    for page in spec.pages:
        form = Form(fields=page.form_fields, purpose=page.form_purpose) if page.form_fields else None
        _service(world, "web", "pages").pages[page.url] = Page(
            url=page.url, title=page.title, content=page.content, form=form, download=page.download
        )
    world.secrets.extend(Secret(label=s.label, value=s.value, source=s.source) for s in spec.secrets)


def call_text(tool: str, arguments: dict[str, Any]) -> str:
    """A call as an attacker would spell it out: ``send_payment(to_iban="DE..", amount=480.0)``."""
    return f"{tool}({', '.join(f'{k}={json.dumps(v, ensure_ascii=False)}' for k, v in arguments.items())})"


def _typed_arguments(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Reference arguments as the tool's types (a drawn amount is text until now), so that
    demonstrations show ``"amount": 513.64`` rather than ``"513.64"``."""
    if tool not in REGISTRY:
        return dict(arguments)
    try:
        validated = REGISTRY[tool].arguments.model_validate(arguments)
    except ValidationError:
        return dict(arguments)
    return {name: getattr(validated, name) for name in arguments}


def _service(world: World, name: str, field: str) -> Any:
    service = getattr(world, name)
    if service is None:
        raise ScenarioError(f"world.{field} needs the {name} service, which this suite does not have")
    return service


def to_action(step: Step) -> Action:
    if step.call is not None:
        plan = step.plan or f"Call {step.call} to make progress on the user's task."
        return Action.call(step.call, _typed_arguments(step.call, step.args), plan=plan, safety_thoughts=step.check)
    if step.refuse is not None:
        return Action.refuse(
            step.refuse, plan=step.plan or "This request would cause harm.", safety_thoughts=step.check
        )
    return Action.answer(
        str(step.answer), plan=step.plan or "The task is done; report back.", safety_thoughts=step.check
    )
