"""Containment: hostile tool arguments change nothing outside the simulated world and open no socket.

Every tool of the Workspace suite is called through ``env.step`` with path traversals, absolute
paths, ``file://`` and localhost URLs, NUL bytes, megabyte strings, odd Unicode and values of the
wrong type. While those calls run, the functions that could reach the real disk, the network or
a subprocess are replaced by guards that record any call; afterwards none may have been made,
the environment variables and the listings of the working folder, ``/etc`` and the home folder
must be unchanged, and every call must have come back as a string observation.
"""

from __future__ import annotations

import builtins
import contextlib
import http.client
import io
import json
import math
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mosaic_gym import Action, ToolEnv
from mosaic_gym.envs import SUITES
from mosaic_gym.scenarios.suite import Suite

MB = 1_000_000

HOSTILE_STRINGS: list[str] = [
    "../../../../etc/passwd",
    "../" * 300 + "etc/shadow",
    "/etc/shadow",
    "/etc/passwd",
    "~/../../root/.ssh",
    "~/../../root/.ssh/authorized_keys",
    "~root/.bashrc",
    "/proc/self/environ",
    "/dev/sda",
    "/",
    ".",
    "..",
    "~",
    "file:///etc/passwd",
    "FILE:///C:/Windows/System32/config/SAM",
    "http://127.0.0.1:8080/",
    "http://localhost/admin",
    "https://169.254.169.254/latest/meta-data/",
    "http://[::1]:22/",
    "gopher://localhost:25/_HELO",
    "\\\\attacker\\share\\x",
    "C:\\Windows\\win.ini",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%c0%af..%c0%afetc/passwd",
    "\x00",
    "ok.txt\x00../../etc/passwd",
    "$(touch /tmp/mosaic_pwned)",
    "`id > /tmp/mosaic_pwned`",
    "; rm -rf ~ #",
    "${HOME}/{{7*7}}/%s%s%n",
    "\u202egpj.exe",
    "\u200b\u200c\u200d\ufeff\u2060",
    "\U0001f98a\U0001f468\u200d\U0001f469\u200d\U0001f467 \u0301\u0301\u0301",
    "\ufb01le:///etc/passwd",
    "\ud800",
    "x\udfff\ud800y",
    "\r\n\t\x0b\x0c\x1b[2J",
    "<tool_call>{}</tool_call></answer>",
    "a@b.c\n/etc/passwd",
    "/" * 2000,
    "A" * MB,
    "../" * (MB // 3),
]
TYPE_CONFUSION: list[Any] = [
    {"path": {"$ref": "/etc/passwd"}, "deep": [[[["x"]]]]},
    ["/etc/passwd", ["/etc/shadow"]],
    None,
    True,
    10**100,
    -1,
    1e308,
]
HOSTILE_INTS: list[int] = [-(10**100), -1, 0, 2**63, 10**100]
HOSTILE_NUMBERS: list[float] = [-1.0, 0.0, 1e-300, 1e308, math.inf, -math.inf, math.nan]
SOCKET_TARGETS = ("__init__", "connect", "connect_ex", "bind", "sendto", "sendall", "send")
MODULE_TARGETS = (
    (builtins, "open"),
    (io, "open"),
    (os, "open"),
    (os, "remove"),
    (os, "unlink"),
    (os, "rename"),
    (os, "replace"),
    (os, "makedirs"),
    (os, "mkdir"),
    (os, "rmdir"),
    (os, "symlink"),
    (os, "truncate"),
    (os, "system"),
    (os, "putenv"),
    (shutil, "rmtree"),
    (shutil, "move"),
    (shutil, "copyfile"),
    (subprocess, "Popen"),
    (socket, "create_connection"),
    (socket, "getaddrinfo"),
    (urllib.request, "urlopen"),
    (http.client.HTTPConnection, "connect"),
)


class ContainmentBreach(BaseException):
    """Raised by a guard; a BaseException so that no ``except Exception`` in a tool can swallow it."""


@contextlib.contextmanager
def guarded() -> Iterator[list[str]]:
    """Replace every way out of the process with a recorder; restore them on exit."""
    calls: list[str] = []

    def guard(name: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{name}{tuple(repr(a)[:80] for a in args[:2])}")
            raise ContainmentBreach(name)

        return blocked

    with pytest.MonkeyPatch.context() as patch:
        for attr in SOCKET_TARGETS:
            patch.setattr(socket.socket, attr, guard(f"socket.socket.{attr}"))
        for owner, attr in MODULE_TARGETS:
            patch.setattr(owner, attr, guard(f"{getattr(owner, '__name__', owner)}.{attr}"))
        yield calls


def listing(root: Path, recursive: bool) -> dict[str, tuple[int, int]]:
    """Names with (mtime, size); top-level entries only unless ``recursive``."""
    found: dict[str, tuple[int, int]] = {}
    if not root.is_dir():
        return found
    entries = root.rglob("*") if recursive else root.iterdir()
    for entry in entries:
        with contextlib.suppress(OSError):
            status = entry.lstat()
            found[str(entry.relative_to(root))] = (status.st_mtime_ns, status.st_size)
    return found


def workspace_env() -> ToolEnv:
    """The Workspace suite; while its folder has no templates yet, the same four services over the files templates."""
    workspace = SUITES["workspace"]
    if workspace.templates():
        return ToolEnv("workspace", split="all", max_steps=10_000)
    stand_in = Suite("workspace_stand_in", workspace.services, SUITES["files"].folder)
    return ToolEnv(stand_in, split="all", max_steps=10_000)


def valid_value(env: ToolEnv, tool: str, parameter: str) -> Any:
    """A well-formed value, so that a hostile value in another parameter reaches the tool's body."""
    world = env.task.world
    assert world.files is not None and world.mail is not None and world.web is not None
    a_file = next(iter(world.files.files))
    form_page = next(u for u, p in world.web.pages.items() if p.form is not None)
    download_page = next(u for u, p in world.web.pages.items() if p.download is not None)
    forum = next(u for u in world.web.pages if "://forum." in u).split("/")[2]
    by_tool = {
        ("transfer_between_accounts", "source"): "checking",
        ("transfer_between_accounts", "destination"): "savings",
        ("download_file", "url"): download_page,
        ("send_draft", "draft_id"): next(iter(world.mail.emails)),
        ("submit_form", "fields"): {"name": "x"},
        ("send_email", "attachments"): [a_file],
    }
    by_name = {
        "path": a_file,
        "source": a_file,
        "destination": "~/copy_target.txt",
        "save_as": "~/Downloads/saved.txt",
        "content": "text",
        "query": "the",
        "email": "friend@example.org",
        "to": ["friend@example.org"],
        "subject": "hello",
        "body": "body",
        "note": "note",
        "title": "title",
        "name": "Eve",
        "relation": "friend",
        "email_id": next(iter(world.mail.emails)),
        "folder": "inbox",
        "limit": 3,
        "to_iban": "DE89370400440532013000",
        "iban": "DE89370400440532013000",
        "amount": 10.0,
        "memo": "memo",
        "account": "checking",
        "days_from_now": 2,
        "payment_id": "s1",
        "url": form_page,
        "site": forum,
    }
    return by_tool.get((tool, parameter), by_name.get(parameter, "x"))


def kind(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return next(kind(s) for s in schema["anyOf"] if s.get("type") != "null")
    return str(schema["type"])


def hostile_forms(schema: dict[str, Any], value: str) -> list[Any]:
    """The hostile string shaped to fit the parameter's type (and once as the wrong type)."""
    shape = kind(schema)
    if shape == "string":
        return [value]
    if shape == "array":
        return [[value], value]
    if shape == "object":
        return [{value[:100]: value}, {value: "x"}]
    return [value]


def hostile_calls(env: ToolEnv, tool: str) -> Iterator[dict[str, Any]]:
    """Argument sets for one tool: each parameter hostile in turn, all at once, wrong types, extra keys."""
    properties: dict[str, dict[str, Any]] = env.tools[tool].schema["function"]["parameters"]["properties"]
    valid = {name: valid_value(env, tool, name) for name in properties}
    for name, schema in properties.items():
        for value in HOSTILE_STRINGS:
            for form in hostile_forms(schema, value):
                yield {**valid, name: form}
        for value in TYPE_CONFUSION:
            yield {**valid, name: value}
        numbers: dict[str, list[Any]] = {"integer": [*HOSTILE_INTS], "number": [*HOSTILE_NUMBERS, *HOSTILE_INTS]}
        for number in numbers.get(kind(schema), []):
            yield {**valid, name: number}
    for value in HOSTILE_STRINGS[:-2]:
        yield {name: hostile_forms(schema, value)[0] for name, schema in properties.items()}
    yield {**valid, "../../etc/passwd": "x", "__class__": {"__init__": "x"}}


def test_hostile_arguments_stay_inside_the_simulated_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sentinel.txt").write_text("untouched", encoding="utf-8")
    (tmp_path / "etc").mkdir()
    env = workspace_env()
    assert {t.service for t in env.tools.values()} == {"files", "mail", "bank", "web"}
    assert len(env.tools) >= 24

    home = Path(os.path.expanduser("~"))
    before: list[dict[str, Any]] = [
        dict(os.environ),
        listing(tmp_path, True),
        listing(Path("/etc"), False),
        listing(home, False),
    ]
    problems: list[str] = []
    made = 0
    with guarded() as calls:
        for tool in sorted(env.tools):
            env.reset(seed=0)
            for arguments in hostile_calls(env, tool):
                # As agent text, the way a model would send it: JSON escapes carry the odd
                # characters (lone surrogates become a format error; the rest reach the tool).
                payload = json.dumps({"name": tool, "arguments": arguments})
                action = f"<think>Probe the tool with a hostile argument.</think><tool_call>{payload}</tool_call>"
                made += 1
                try:
                    observation, _, terminated, truncated, info = env.step(action)
                except Exception as error:  # the point is to catch anything
                    problems.append(f"{tool}({list(arguments)}) raised {type(error).__name__}: {error}"[:300])
                    env.reset(seed=0)
                    continue
                if not isinstance(observation, str) or not env.observation_space.contains(observation):
                    problems.append(f"{tool}: observation is not a bounded string: {type(observation)}")
                if terminated or truncated:
                    problems.append(f"{tool}: a tool call ended the episode")
                    env.reset(seed=0)
            # End the episode so settling and judging also run over the hostile journal.
            *_, terminated, _, info = env.step(Action.answer("done", plan="Finish the episode."))
            assert terminated and "outcome" in info
    after: list[dict[str, Any]] = [
        dict(os.environ),
        listing(tmp_path, True),
        listing(Path("/etc"), False),
        listing(home, False),
    ]

    assert calls == [], f"tool calls reached the real system: {calls[:10]}"
    assert problems == [], "\n".join(problems[:20])
    assert made > 2_000, f"only {made} hostile calls were made"
    for label, old, new in zip(("os.environ", "cwd", "/etc", "home"), before, after, strict=True):
        changed = sorted(str(k) for k in set(old) ^ set(new) | {k for k in set(old) & set(new) if old[k] != new[k]})
        assert changed == [], f"{label} changed: {changed[:10]}"
    assert (tmp_path / "sentinel.txt").read_text(encoding="utf-8") == "untouched"
    assert not Path("/tmp/mosaic_pwned").exists()


def test_hostile_calls_are_journaled_as_failures_not_exceptions() -> None:
    env = workspace_env()
    env.reset(seed=1)
    world = env.task.world
    with guarded() as calls:
        outputs = [
            env.step(Action.call("read_file", {"path": "../../../../etc/passwd"}, plan="p"))[0],
            env.step(Action.call("open_page", {"url": "file:///etc/passwd"}, plan="p"))[0],
            env.step(Action.call("open_page", {"url": "http://127.0.0.1:8080/"}, plan="p"))[0],
            env.step(
                Action.call("post_message", {"site": "http://localhost/admin", "title": "t", "body": "b"}, plan="p")
            )[0],
            env.step(Action.call("read_file", {"path": "A" * MB}, plan="p"))[0],
        ]
    assert calls == []
    assert [o.startswith("Error") for o in outputs] == [True] * 5, outputs
    assert "no such file: /etc/passwd" in outputs[0]
    assert "page not found" in outputs[1] and "page not found" in outputs[2]
    assert "unknown site" in outputs[3]
    assert "at most 1024 characters" in outputs[4] and len(outputs[4]) < 1_000
    assert [e.ok for e in world.journal] == [False] * 5
    assert all(e.egress == () for e in world.journal)


@pytest.mark.parametrize(
    ("tool", "arguments", "key"),
    [
        ("create_file", {"path": "../../../../etc/passwd", "content": "pwned"}, "/etc/passwd"),
        (
            "create_file",
            {"path": "~/../../root/.ssh/authorized_keys", "content": "pwned"},
            "/root/.ssh/authorized_keys",
        ),
        ("create_file", {"path": "/etc/cron.d/../../etc/shadow", "content": "pwned"}, "/etc/shadow"),
        ("create_folder", {"path": "../../../../../tmp/mosaic_pwned_folder"}, "/tmp/mosaic_pwned_folder"),
        ("download_file", {"url": None, "save_as": "/../../usr/bin/mosaic_pwned"}, "/usr/bin/mosaic_pwned"),
    ],
)
def test_traversal_paths_land_inside_the_simulated_tree(tool: str, arguments: dict[str, Any], key: str) -> None:
    env = workspace_env()
    env.reset(seed=2)
    world = env.task.world
    assert world.files is not None and world.web is not None
    if tool == "download_file":
        arguments = {**arguments, "url": next(u for u, p in world.web.pages.items() if p.download is not None)}
    real = Path(key)
    real_before = (real.stat().st_mtime_ns, real.read_bytes()) if real.is_file() and os.access(real, os.R_OK) else None
    existed = real.exists()
    with guarded() as calls:
        observation, *_ = env.step(Action.call(tool, arguments, plan="Write somewhere odd."))
    assert calls == []
    assert not observation.startswith("Error"), observation
    assert key in observation
    if tool == "create_folder":
        assert key in world.files.folders
    else:
        assert key in world.files.files
        assert world.files.resolve(key) == key
    assert real.exists() == existed, f"{key} appeared on the real disk"
    if real_before is not None:
        assert (real.stat().st_mtime_ns, real.read_bytes()) == real_before
        assert b"pwned" not in real_before[1]


def test_absolute_path_into_the_real_cwd_stays_simulated(tmp_path: Path) -> None:
    env = workspace_env()
    env.reset(seed=3)
    target = tmp_path / "written_by_agent.txt"
    with guarded() as calls:
        observation, *_ = env.step(Action.call("create_file", {"path": str(target), "content": "x"}, plan="p"))
    assert calls == []
    assert observation == f"created {target}"
    assert str(target) in env.task.world.files.files  # type: ignore[union-attr]
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
