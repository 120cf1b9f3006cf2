"""The agent's text protocol: plan, optional safety check, then exactly one action.

::

    <think>plan</think>
    <safety_thoughts>harm / reversibility / intent / tool-output risk</safety_thoughts>
    <tool_call>{"name": "...", "arguments": {...}}</tool_call>
       or <refuse>reason</refuse>   or <answer>message to the user</answer>

``parse`` never raises on model output: it returns a :class:`ParseError` whose message says
what to fix, in words a model can learn from. ``render`` writes the canonical text, and
``parse(render(a)) == a`` for every valid :class:`Action`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

ActionKind = Literal["tool_call", "refuse", "answer"]
BLOCKS = ("think", "safety_thoughts", "tool_call", "refuse", "answer")
ACTION_BLOCKS = ("tool_call", "refuse", "answer")
MAX_TEXT_CHARS = 100_000
_TAG = re.compile(r"<(/?)(think|safety_thoughts|tool_call|refuse|answer)>")
_REFUSAL_BLOCK = re.compile(r"<refuse>.*?</refuse>", re.DOTALL)
FORMAT_HINT = (
    "Reply as <think>your plan</think>, optionally <safety_thoughts>your safety check</safety_thoughts>, "
    'then exactly one of <tool_call>{"name": "tool_name", "arguments": {...}}</tool_call>, '
    "<refuse>reason</refuse> or <answer>message to the user</answer>."
)


class Action(BaseModel):
    """One parsed agent turn. Scripted agents can pass these to the env directly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: str
    safety_thoughts: str | None = None
    kind: ActionKind
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    message: str | None = None

    @field_validator("plan", "safety_thoughts", "message")
    @classmethod
    def _plain_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _TAG.search(value):
            raise ValueError("text may not contain protocol tags such as <think> or </answer>")
        if not _is_unicode(value):
            raise ValueError("text contains invalid Unicode (unpaired surrogates)")
        return value.strip()

    @field_validator("tool")
    @classmethod
    def _tool_name(cls, value: str | None) -> str | None:
        # parse() strips the name it reads, so a padded name would not survive render -> parse.
        return None if value is None else value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        if not self.plan:
            raise ValueError("plan must not be empty")
        if self.safety_thoughts == "":
            object.__setattr__(self, "safety_thoughts", None)
        if self.kind == "tool_call":
            if not self.tool or self.message is not None:
                raise ValueError("a tool_call needs a tool name and no message")
            object.__setattr__(self, "arguments", self.arguments or {})
            if not _is_unicode(json.dumps(self.arguments, ensure_ascii=False)):  # TypeError if not JSON
                raise ValueError("arguments contain invalid Unicode (unpaired surrogates)")
        elif self.tool is not None or self.arguments is not None or self.message is None:
            raise ValueError(f"a {self.kind} action needs a message and no tool")
        return self

    @classmethod
    def call(
        cls, tool: str, arguments: dict[str, Any] | None = None, *, plan: str, safety_thoughts: str | None = None
    ) -> Action:
        return cls(plan=plan, safety_thoughts=safety_thoughts, kind="tool_call", tool=tool, arguments=arguments or {})

    @classmethod
    def refuse(cls, reason: str, *, plan: str, safety_thoughts: str | None = None) -> Action:
        return cls(plan=plan, safety_thoughts=safety_thoughts, kind="refuse", message=reason)

    @classmethod
    def answer(cls, message: str, *, plan: str, safety_thoughts: str | None = None) -> Action:
        return cls(plan=plan, safety_thoughts=safety_thoughts, kind="answer", message=message)


class ParseError(BaseModel):
    """Why a reply could not be read, phrased as an instruction to the model."""

    model_config = ConfigDict(frozen=True)

    message: str


def render(action: Action) -> str:
    """Canonical text for an action (used for demonstrations and for text-only consumers)."""
    parts = [f"<think>{action.plan}</think>"]
    if action.safety_thoughts:
        parts.append(f"<safety_thoughts>{action.safety_thoughts}</safety_thoughts>")
    if action.kind == "tool_call":
        payload = json.dumps({"name": action.tool, "arguments": action.arguments}, ensure_ascii=False)
        # '<' only occurs inside JSON strings, where \u003c is the same character; this keeps
        # argument values from ever looking like a closing tag.
        parts.append(f"<tool_call>{payload.replace('<', chr(92) + 'u003c')}</tool_call>")
    else:
        parts.append(f"<{action.kind}>{action.message}</{action.kind}>")
    return "\n".join(parts)


def parse(text: str) -> Action | ParseError:
    """Read one agent turn; never raises for any string."""
    if len(text) > MAX_TEXT_CHARS:
        return ParseError(message=f"The reply is {len(text)} characters long; keep it under {MAX_TEXT_CHARS}.")
    if not _is_unicode(text):
        return ParseError(message="The reply contains invalid Unicode (unpaired surrogate characters).")
    if not _TAG.search(text):
        return ParseError(message="No protocol blocks found. " + FORMAT_HINT)
    blocks = _split_blocks(text)
    if isinstance(blocks, ParseError):
        return blocks
    names = [name for name, _ in blocks]
    if names[0] != "think":
        return ParseError(message=f"Start with <think>your plan</think>; the reply began with <{names[0]}>.")
    body = dict(blocks)
    if names.count("think") > 1 or names.count("safety_thoughts") > 1:
        return ParseError(message="Use <think> and <safety_thoughts> at most once each. " + FORMAT_HINT)
    actions = [n for n in names if n in ACTION_BLOCKS]
    if len(actions) != 1:
        found = ", ".join(f"<{a}>" for a in actions) or "none"
        return ParseError(message=f"Give exactly one action per reply (found {found}). " + FORMAT_HINT)
    expected = ["think", "safety_thoughts", actions[0]] if "safety_thoughts" in names else ["think", actions[0]]
    if names != expected:
        order = " then ".join(f"<{n}>" for n in names)
        return ParseError(message=f"Blocks are out of order ({order}). " + FORMAT_HINT)
    if not body["think"]:
        return ParseError(message="The <think> block is empty: write your plan in it.")
    safety = body.get("safety_thoughts")
    if safety == "":
        return ParseError(message="The <safety_thoughts> block is empty: write your check or leave the block out.")
    kind = actions[0]
    if kind != "tool_call":
        return Action(plan=body["think"], safety_thoughts=safety, kind=kind, message=body[kind])
    call = _tool_call(body["tool_call"])
    if isinstance(call, ParseError):
        return call
    return Action(plan=body["think"], safety_thoughts=safety, kind="tool_call", tool=call[0], arguments=call[1])


def holds_refusal(text: str) -> bool:
    """Whether a reply holds a closed ``<refuse>`` block, read or not: judges count a rejected
    refusal as the refusal it meant, so that breaking the format never escapes the cost of refusing."""
    return _REFUSAL_BLOCK.search(text) is not None


def _split_blocks(text: str) -> list[tuple[str, str]] | ParseError:
    blocks: list[tuple[str, str]] = []
    position = 0
    open_name: str | None = None
    open_end = 0
    for match in _TAG.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        if open_name is None:
            if closing:
                return ParseError(message=f"</{name}> closes a block that was never opened.")
            stray = text[position : match.start()].strip()
            if stray:
                return ParseError(message=f"Text outside the blocks: {_quote(stray)}. " + FORMAT_HINT)
            open_name, open_end = name, match.end()
        elif closing and name == open_name:
            blocks.append((name, text[open_end : match.start()].strip()))
            open_name, position = None, match.end()
        else:
            tag = f"</{name}>" if closing else f"<{name}>"
            return ParseError(message=f"{tag} appears inside <{open_name}>; close </{open_name}> first.")
    if open_name is not None:
        return ParseError(message=f"<{open_name}> is never closed: add </{open_name}>.")
    stray = text[position:].strip()
    if stray:
        return ParseError(message=f"Text outside the blocks: {_quote(stray)}. " + FORMAT_HINT)
    return blocks


def _tool_call(payload: str) -> tuple[str, dict[str, Any]] | ParseError:
    shape = 'Write {"name": "tool_name", "arguments": {"parameter": value}}.'
    try:
        call = json.loads(payload)
    except json.JSONDecodeError as error:
        return ParseError(message=f"The <tool_call> block is not valid JSON ({error.msg}). {shape}")
    except RecursionError:
        return ParseError(message=f"The <tool_call> block is not valid JSON (too deeply nested). {shape}")
    except ValueError:  # an integer with more digits than int() will convert (sys.get_int_max_str_digits)
        return ParseError(message=f"The <tool_call> block is not valid JSON (a number is too long). {shape}")
    if not isinstance(call, dict):
        return ParseError(message=f"The <tool_call> block must hold a JSON object. {shape}")
    extra = sorted(set(call) - {"name", "arguments"})
    if extra:
        return ParseError(message=f"Unexpected keys {extra} in <tool_call>. {shape}")
    name, arguments = call.get("name"), call.get("arguments", {})
    if not isinstance(name, str) or not name.strip():
        return ParseError(message=f'The <tool_call> needs a "name" string. {shape}')
    if not isinstance(arguments, dict):
        return ParseError(message=f'"arguments" must be a JSON object. {shape}')
    if not _is_unicode(json.dumps(arguments, ensure_ascii=False)):
        return ParseError(message='"arguments" contain invalid Unicode (an unpaired surrogate such as \\ud800).')
    return name.strip(), arguments


def _is_unicode(text: str) -> bool:
    """False for strings holding lone surrogates, which no file or JSON export can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
