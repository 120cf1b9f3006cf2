"""Tools: the registry's guarantees, call_tool's error handling, and the behaviour of key tools."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pytest

from mosaic_gym import Action, ToolEnv
from mosaic_gym.envs import SUITES
from mosaic_gym.scenarios.suite import Suite
from mosaic_gym.tools import REGISTRY, ToolContext, ToolDefinitionError, ToolRegistry, call_tool, make_tool
from mosaic_gym.tools.registry import RISK_TAGS
from mosaic_gym.world import World
from mosaic_gym.world.generate import generate_world

TOOLS = {t.name: t for t in REGISTRY}
SERVICES = ("files", "mail", "bank", "web")
IBAN = "DE89370400440532013000"


def world(seed: int = 0) -> World:
    return generate_world(np.random.default_rng(seed), SERVICES)


def env_with(services: tuple[str, ...]) -> ToolEnv:
    """An env over ``services`` that runs the files templates (they only need the files service)."""
    suite = Suite("tools_" + "_".join(services), ("files", *services), SUITES["files"].folder)
    return ToolEnv(suite, split="all", max_steps=50)


# -- The registry ----------------------------------------------------------------------------


def test_registry_size_and_services() -> None:
    assert len(REGISTRY) >= 24
    per_service = Counter(t.service for t in REGISTRY)
    assert set(per_service) == set(SERVICES)
    assert all(per_service[s] >= 5 for s in SERVICES), per_service


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_tool_is_fully_declared(name: str) -> None:
    tool = TOOLS[name]
    assert tool.function.__name__ == name
    assert tool.description and tool.description[0].isupper() and len(tool.description) >= 20
    assert tool.effect in ("read", "write")
    assert type(tool.irreversible) is bool
    assert not (tool.effect == "read" and tool.irreversible)
    assert set(tool.risk_tags) <= RISK_TAGS
    if tool.irreversible:
        assert tool.risk_tags, "an irreversible tool should say what it risks"
    schema = tool.schema
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == name and function["description"] == tool.description
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    properties = parameters["properties"]
    assert set(properties) == set(tool.arguments.model_fields), "every parameter appears in the schema"
    assert set(parameters.get("required", [])) <= set(properties)
    required = {n for n, f in tool.arguments.model_fields.items() if f.is_required()}
    assert set(parameters.get("required", [])) == required
    for parameter, spec in properties.items():
        assert spec.get("description", "").strip(), f"{name}.{parameter} has no description"
        assert "type" in spec or "anyOf" in spec or "enum" in spec, f"{name}.{parameter} has no type"
    assert "title" not in parameters and "additionalProperties" not in parameters


def test_a_parameter_called_title_keeps_its_schema() -> None:
    properties = TOOLS["post_message"].schema["function"]["parameters"]["properties"]
    assert properties["title"] == {"description": "Title of the post.", "maxLength": 1000, "type": "string"}


def test_every_service_has_flagged_irreversible_tools() -> None:
    for service in SERVICES:
        flags = {t.irreversible for t in REGISTRY if t.service == service}
        assert flags == {True, False}, service


@pytest.mark.parametrize(
    ("reversible", "irreversible"),
    [
        ("delete_file", "delete_file_permanently"),
        ("create_draft", "send_email"),
        ("schedule_payment", "send_payment"),
        ("download_file", "submit_form"),
    ],
)
def test_reversible_and_irreversible_pairs(reversible: str, irreversible: str) -> None:
    assert TOOLS[reversible].irreversible is False
    assert TOOLS[irreversible].irreversible is True
    assert TOOLS[reversible].service == TOOLS[irreversible].service
    assert TOOLS[reversible].effect == TOOLS[irreversible].effect == "write"


# -- Definition errors -------------------------------------------------------------------------


def no_docstring(ctx: ToolContext, path: str) -> str:
    return path


def undocumented_parameter(ctx: ToolContext, path: str, mode: str) -> str:
    """Do something.

    Args:
        path: A path.
    """
    return path


def missing_hint(ctx: ToolContext, path) -> str:  # type: ignore[no-untyped-def]
    """Do something.

    Args:
        path: A path.
    """
    return str(path)


def first_not_context(path: str) -> str:
    """Do something.

    Args:
        path: A path.
    """
    return path


def no_parameters() -> str:
    """Do something."""
    return ""


def documents_a_ghost(ctx: ToolContext, path: str) -> str:
    """Do something.

    Args:
        path: A path.
        ghost: Not a parameter.
    """
    return path


def fine(ctx: ToolContext, path: str) -> str:
    """Do something fine.

    Args:
        path: A path.
    """
    return path


OK: dict[str, Any] = {"service": "files", "effect": "write", "irreversible": False}


@pytest.mark.parametrize(
    ("function", "flags", "fragment"),
    [
        (no_docstring, OK, "missing docstring"),
        (undocumented_parameter, OK, "parameter 'mode' is not described in Args:"),
        (missing_hint, OK, "parameter 'path' has no type hint"),
        (first_not_context, OK, "the first parameter must be annotated ToolContext"),
        (no_parameters, OK, "the first parameter must be annotated ToolContext"),
        (documents_a_ghost, OK, "documents unknown parameters ['ghost']"),
        (fine, {**OK, "effect": "read", "irreversible": True}, "a read-only tool cannot be irreversible"),
        (fine, {**OK, "risk": ("spooky",)}, "unknown risk tags ['spooky']"),
        (fine, {**OK, "service": "calendar"}, "service must be one of"),
        (fine, {**OK, "effect": "delete"}, "effect must be 'read' or 'write'"),
        (fine, {**OK, "irreversible": 1}, "irreversible must be True or False"),
        (fine, {**OK, "irreversible": None}, "irreversible must be True or False"),
    ],
)
def test_bad_tool_definitions_are_refused(function: Any, flags: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ToolDefinitionError) as error:
        make_tool(function, **flags)
    assert fragment in str(error.value)
    assert function.__name__ in str(error.value)
    registry = ToolRegistry()
    with pytest.raises(ToolDefinitionError):
        registry.tool(**flags)(function)
    assert len(registry) == 0


def test_duplicate_names_are_refused() -> None:
    registry = ToolRegistry()
    registry.tool(**OK)(fine)
    with pytest.raises(ToolDefinitionError, match="'fine' is already registered"):
        registry.tool(**OK)(fine)
    assert len(registry) == 1

    def read_file(ctx: ToolContext, path: str) -> str:
        """Shadow the built-in read_file.

        Args:
            path: A path.
        """
        return path

    with pytest.raises(ToolDefinitionError, match="'read_file' is already registered"):
        REGISTRY.tool(service="files", effect="read", irreversible=False)(read_file)
    assert REGISTRY["read_file"].function is not read_file


def test_a_valid_definition_builds_a_working_tool() -> None:
    tool = make_tool(fine, service="files", effect="read", irreversible=False, risk=("privacy",))
    assert tool.name == "fine" and tool.description == "Do something fine." and tool.risk_tags == ("privacy",)
    assert tool.schema["function"]["parameters"]["properties"]["path"]["description"] == "A path."
    w = world()
    result = call_tool({"fine": tool}, w, "fine", {"path": "x"}, step=1)
    assert (result.output, result.ok) == ("x", True)
    assert result.entry is not None and result.entry.risk_tags == ("privacy",) and w.journal == [result.entry]


# -- call_tool never raises at the agent --------------------------------------------------------


def test_unknown_tool_is_an_error_without_journal_entry() -> None:
    w = world()
    result = call_tool(TOOLS, w, "rm_rf", {}, step=1)
    assert not result.ok and result.entry is None and w.journal == []
    assert result.output.startswith("Error: unknown tool 'rm_rf'. Available tools: ")
    assert "read_file" in result.output


@pytest.mark.parametrize(
    ("tool", "arguments", "fragment"),
    [
        ("read_file", ["~/a.txt"], "arguments must be a JSON object"),
        ("read_file", "~/a.txt", "arguments must be a JSON object"),
        ("read_file", None, "arguments must be a JSON object"),
        ("read_file", {}, "'path': Field required"),
        ("read_file", {"path": "~/a.txt", "mode": "rb"}, "'mode': unknown parameter"),
        ("read_file", {"path": 7}, "'path': Input should be a valid string"),
        ("read_file", {"path": ""}, "'path': String should have at least 1 character"),
        ("list_emails", {"limit": "many"}, "'limit': Input should be a valid integer"),
        ("list_emails", {"folder": "spam"}, "'folder': Input should be 'inbox', 'sent', 'drafts' or 'trash'"),
        ("send_email", {"to": "a@b.c", "subject": "s", "body": "b"}, "'to': Input should be a valid list"),
        ("send_email", {"to": [], "subject": "s", "body": "b"}, "'to': List should have at least 1 item"),
        ("send_payment", {"to_iban": IBAN, "amount": -5}, "'amount': Input should be greater than 0"),
        ("send_payment", {"to_iban": IBAN, "amount": "lots"}, "'amount': Input should be a valid number"),
        ("submit_form", {"url": "u", "fields": {"a": 1}}, "'fields.a': Input should be a valid string"),
        ("send_payment", {"to_iban": "not an iban", "amount": 5}, "not a valid IBAN"),
        ("read_file", {"path": "~/no/such.txt"}, "no such file: /home/user/no/such.txt"),
    ],
)
def test_bad_calls_come_back_as_errors_and_are_journaled(tool: str, arguments: Any, fragment: str) -> None:
    w = world()
    before = w.model_copy(deep=True)
    result = call_tool(TOOLS, w, tool, arguments, step=4)
    assert not result.ok
    assert result.output.startswith(f"Error in {tool}: ") and fragment in result.output, result.output
    entry = result.entry
    assert entry is not None and w.journal == [entry]
    assert (entry.ok, entry.tool, entry.step) == (False, tool, 4)
    assert entry.error and fragment in entry.error
    assert entry.irreversible == TOOLS[tool].irreversible and entry.egress == ()
    assert entry.arguments == (arguments if isinstance(arguments, dict) else {})
    w.journal.clear()
    assert w == before, "a failed call changed the world"


def test_failed_irreversible_call_is_not_counted_as_irreversible_in_the_env() -> None:
    env = env_with(("bank",))
    env.reset(seed=0)
    bad = Action.call("send_payment", {"to_iban": "XX", "amount": 10}, plan="pay", safety_thoughts="check")
    observation, _, _, _, info = env.step(bad)
    assert observation.startswith("Error in send_payment: not a valid IBAN")
    assert [e.ok for e in info["journal"]] == [False] and info["irreversible"] is False
    *_, info = env.step(Action.answer("done", plan="p"))
    assert info["outcome"].tool_errors == 1 and info["outcome"].irreversible_calls == []


# -- Behaviour --------------------------------------------------------------------------------


def run(w: World, tool: str, step: int = 1, **arguments: Any) -> str:
    result = call_tool(TOOLS, w, tool, arguments, step)
    assert result.ok, result.output
    return result.output


def test_delete_goes_to_trash_and_restore_brings_it_back() -> None:
    w = world()
    assert w.files is not None
    path = "/home/user/Documents/budget.csv"
    content = w.files.files[path].content
    assert run(w, "delete_file", path="~/Documents/budget.csv") == f"moved {path} to the trash"
    assert path not in w.files.files and w.files.trash[path].content == content
    assert path not in run(w, "search_files", query="budget")
    assert run(w, "restore_file", path=path) == f"restored {path}"
    assert w.files.files[path].content == content and path not in w.files.trash
    again = call_tool(TOOLS, w, "restore_file", {"path": path}, 3)
    assert not again.ok and "is not in the trash" in again.output


def test_permanent_delete_skips_the_trash() -> None:
    w = world()
    assert w.files is not None
    path = "/home/user/Documents/passwords.txt"
    run(w, "delete_file_permanently", path=path)
    assert path not in w.files.files and path not in w.files.trash
    restore = call_tool(TOOLS, w, "restore_file", {"path": path}, 2)
    assert not restore.ok and "is not in the trash" in restore.output
    read = call_tool(TOOLS, w, "read_file", {"path": path}, 3)
    assert not read.ok and "no such file" in read.output
    assert [e.irreversible for e in w.journal] == [True, False, False]


def test_empty_trash_destroys_what_was_deleted() -> None:
    w = world()
    assert w.files is not None
    run(w, "delete_file", path="~/Documents/budget.csv")
    assert run(w, "empty_trash") == "permanently deleted 1 file(s) from the trash"
    assert w.files.trash == {}
    assert not call_tool(TOOLS, w, "restore_file", {"path": "~/Documents/budget.csv"}, 3).ok


def schedule(env: ToolEnv, days: int, amount: float = 123.45) -> str:
    output, *_ = env.step(
        Action.call("schedule_payment", {"to_iban": IBAN, "amount": amount, "days_from_now": days}, plan="schedule")
    )
    match = re.match(r"scheduled (s\d+): ", output)
    assert match, output
    return match.group(1)


def wait(env: ToolEnv) -> tuple[list[Any], bool]:
    """One step that changes nothing; returns the journal entries the day produced."""
    _, _, terminated, truncated, info = env.step(Action.call("list_scheduled_payments", plan="wait"))
    return [e for e in info["journal"] if e.tool == "scheduled_payment"], terminated or truncated


@pytest.mark.parametrize("days", [1, 2, 4])
def test_scheduled_payment_fires_after_its_days(days: int) -> None:
    env = env_with(("bank",))
    env.reset(seed=5)
    bank = env.task.world.bank
    assert bank is not None
    balance = bank.accounts["checking"].balance
    payment = schedule(env, days)  # scheduled on day 0, in step 1
    assert bank.scheduled[payment].status == "pending", "a payment never executes in the step that schedules it"
    fired_at = None
    step = 1
    while fired_at is None and step < days + 3:
        entries, ended = wait(env)
        step += 1
        assert not ended
        if entries:
            assert [(e.tool, e.ok, e.irreversible, e.arguments["id"]) for e in entries] == [
                ("scheduled_payment", True, True, payment)
            ]
            assert entries[0].egress[0].recipients == (IBAN,)
            fired_at = step
    assert fired_at == days + 1, "it executes at the end of its due day, the n-th step after scheduling"
    assert bank.scheduled[payment].status == "executed"
    assert bank.accounts["checking"].balance == pytest.approx(balance - 123.45)
    assert bank.transactions[-1].iban == IBAN and bank.transactions[-1].amount == -123.45


def test_cancelled_payment_never_fires() -> None:
    env = env_with(("bank",))
    env.reset(seed=6)
    bank = env.task.world.bank
    assert bank is not None
    balance, transactions = bank.accounts["checking"].balance, len(bank.transactions)
    payment = schedule(env, 1)  # even a payment due tomorrow can be cancelled in the next step
    output, *_ = env.step(Action.call("cancel_scheduled_payment", {"payment_id": payment}, plan="cancel"))
    assert output == f"cancelled {payment}"
    for _ in range(4):
        assert wait(env)[0] == []
    *_, terminated, _, info = env.step(Action.answer("done", plan="p"))
    assert terminated and all(e.tool != "scheduled_payment" for e in info["journal"])
    assert bank.scheduled[payment].status == "cancelled"
    assert bank.accounts["checking"].balance == balance and len(bank.transactions) == transactions
    assert all(e.tool != "scheduled_payment" for e in env.task.world.journal)
    again = call_tool(TOOLS, env.task.world, "cancel_scheduled_payment", {"payment_id": payment}, 9)
    assert not again.ok and "already cancelled" in again.output


def test_pending_payment_executes_when_the_episode_ends() -> None:
    env = env_with(("bank",))
    env.reset(seed=7)
    bank = env.task.world.bank
    assert bank is not None
    balance = bank.accounts["checking"].balance
    payment = schedule(env, 300, amount=50)
    assert wait(env)[0] == []
    assert bank.scheduled[payment].status == "pending"
    *_, terminated, _, info = env.step(Action.answer("All set.", plan="p"))
    assert terminated
    settled = [e for e in info["journal"] if e.tool == "scheduled_payment"]
    assert [(e.ok, e.arguments["id"], e.step) for e in settled] == [(True, payment, 3)]
    assert bank.scheduled[payment].status == "executed"
    assert bank.accounts["checking"].balance == pytest.approx(balance - 50)


def test_world_settle_executes_everything_pending_and_skips_unaffordable() -> None:
    w = world(8)
    assert w.bank is not None
    run(w, "schedule_payment", to_iban=IBAN, amount=10, days_from_now=365)
    run(w, "schedule_payment", to_iban=IBAN, amount=999_999, days_from_now=365)
    entries = w.settle(step=2)
    assert [(e.ok, e.error) for e in entries] == [(True, None), (False, "insufficient funds")]
    assert [p.status for p in w.bank.scheduled.values()] == ["executed", "pending"]


def test_send_email_records_egress_with_recipients() -> None:
    env = env_with(("mail",))
    env.reset(seed=9)
    w = env.task.world
    assert w.mail is not None and w.files is not None
    to = ["ann@example.org", "bob@example.com"]
    arguments = {"to": to, "subject": "Budget", "body": "See attached.", "attachments": ["~/Documents/budget.csv"]}
    action = Action.call("send_email", arguments, plan="send", safety_thoughts="the user asked for it")
    observation, _, _, _, info = env.step(action)
    assert observation.startswith("sent email m") and observation.endswith("to ann@example.org, bob@example.com")
    (entry,) = info["journal"]
    assert entry.ok and entry.irreversible and info["irreversible"] is True
    (egress,) = entry.egress
    assert egress.channel == "email" and egress.recipients == tuple(to)
    assert "Budget" in egress.content and "See attached." in egress.content
    assert w.files.files["/home/user/Documents/budget.csv"].content in egress.content
    sent = w.mail.emails[observation.split()[2]]
    assert sent.folder == "sent" and sent.recipients == to and "/home/user/Documents/budget.csv" in sent.attachments
    *_, info = env.step(Action.answer("Sent.", plan="p"))
    assert [(c.tool, c.checked) for c in info["outcome"].irreversible_calls] == [("send_email", True)]


def test_a_draft_sends_nothing_until_send_draft() -> None:
    w = world(10)
    draft = run(w, "create_draft", to=["ann@example.org"], subject="s", body="b").split()[-1]
    assert all(e.egress == () for e in w.journal)
    run(w, "send_draft", step=2, draft_id=draft)
    assert [e.recipients for e in w.journal[-1].egress] == [("ann@example.org",)]
    assert not call_tool(TOOLS, w, "send_draft", {"draft_id": draft}, 3).ok
