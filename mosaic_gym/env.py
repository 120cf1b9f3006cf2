"""ToolEnv: one Gymnasium environment for every suite of simulated tool worlds."""

from __future__ import annotations

import abc
import copy
import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import gymnasium as gym
import numpy as np

from mosaic_gym.attacks import find_spans
from mosaic_gym.native import (
    PROTOCOLS,
    REFUSE_SCHEMA,
    REFUSE_TOOL,
    NativeReply,
    NativeStep,
    ProtocolChoice,
    parse_native,
    render_native,
    skipped_messages,
    tool_message,
)
from mosaic_gym.outcome import PENALTY_FORMAT_ERROR, IrreversibleCall, Outcome, judge, scalar_reward
from mosaic_gym.prompts import NATIVE_PROTOCOL, flagged_schema, system_prompt, tools_section
from mosaic_gym.protocol import MAX_TEXT_CHARS, Action, ParseError, holds_refusal, parse, render
from mosaic_gym.scenarios.instantiate import Task, instantiate
from mosaic_gym.scenarios.predicates import Evidence
from mosaic_gym.scenarios.suite import SUITES, Suite
from mosaic_gym.scenarios.template import Kind, Template
from mosaic_gym.spaces import UnicodeText
from mosaic_gym.splits import SplitChoice, TierChoice, check_choices
from mosaic_gym.tools import Tool, ToolResult, call_tool
from mosaic_gym.world import JournalEntry

MAX_OBSERVATION_CHARS = 200_000
RESET_OPTIONS = frozenset({"task", "attack"})


class EpisodeTask(Protocol):
    """What the protocol loop needs of a task instance, whatever world it runs in."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> Kind: ...

    @property
    def attack(self) -> str | None: ...

    @property
    def instruction(self) -> str: ...


class EpisodeTemplate(Protocol):
    """What an env's list of templates offers about each: ``reset(options={"task": id})`` plays it."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> Kind: ...


TaskT = TypeVar("TaskT", bound=EpisodeTask)


@dataclass
class Episode(Generic[TaskT]):
    """Everything that changes during an episode; copying it is a snapshot."""

    task: TaskT
    max_steps: int
    messages: list[dict[str, Any]]
    step: int = 0
    format_errors: int = 0
    rejected_refusals: int = 0  # replies that failed to parse but hold a <refuse> block
    tool_errors: int = 0
    irreversible_calls: list[IrreversibleCall] = field(default_factory=list)
    refusal_step: int | None = None
    answer: str | None = None
    done: bool = False


@dataclass(frozen=True)
class EnvSnapshot:
    """An opaque saved state: ``env.restore(snapshot)`` continues exactly from it."""

    episode: Episode[Any]
    rng_state: dict[str, Any]


class ProtocolEnv(gym.Env[str, str | Action | NativeReply], Generic[TaskT], abc.ABC):
    """The protocol loop every env shares, whatever world its tools act on.

    * ``step(text_or_action)``: a tool call returns the tool output; a malformed reply returns
      a format error (counted) and the episode goes on; ``<refuse>`` or ``<answer>`` ends it
      (``terminated``); the step budget ends it too (``truncated``).
    * ``info`` holds the structured view (see :meth:`_info`); the last one holds the Outcome.
    * ``protocol="native"``: the agent calls tools as deployed models do (see
      :mod:`mosaic_gym.native`): ``info["tools"]`` adds the ``refuse`` tool, ``step`` takes a
      :class:`NativeReply` (or plain text, which is an answer), ``info["messages"]`` is the
      chat in OpenAI's format, with ``tool_calls`` and ``tool`` messages answering their ids, and
      every ``info`` carries the tools, which a native agent sends with each request.

    A subclass draws the task in ``reset`` (then calls :meth:`_begin`), runs tool calls
    (:meth:`_call`), names the injected texts its tool output may show (:meth:`_adversarial`)
    and judges the end (:meth:`_outcome`); the protocol, the journal's irreversible calls,
    messages and ``info`` are the same for all.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012  (Gymnasium's convention)
    templates: Sequence[EpisodeTemplate]  # what reset draws from (set by the subclass)

    def __init__(
        self, name: str, tools: list[Tool], max_steps: int, render_mode: str | None, protocol: ProtocolChoice
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'text' or 'native', got {protocol!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.protocol = protocol
        self.tools = {t.name: t for t in tools}
        if protocol == "native":
            if REFUSE_TOOL in self.tools:
                raise ValueError(f"suite {name!r} has a tool named {REFUSE_TOOL!r}, the native refusal")
            self._tools_text = NATIVE_PROTOCOL
            schemas = [flagged_schema(t) for t in self.tools.values()] + [REFUSE_SCHEMA]
        else:
            self._tools_text = tools_section(list(self.tools.values()))
            schemas = [t.schema for t in self.tools.values()]
        # Schemas go out as fresh objects in every reset's info; decoding JSON is the cheapest copy.
        self._schemas_json = json.dumps(schemas)
        self.observation_space = UnicodeText(MAX_OBSERVATION_CHARS)
        self.action_space = UnicodeText(MAX_TEXT_CHARS)
        self._episode: Episode[TaskT] | None = None

    # -- Gymnasium API -------------------------------------------------------------------

    def step(self, action: str | Action | NativeReply) -> tuple[str, float, bool, bool, dict[str, Any]]:
        episode = self._episode
        if episode is None:
            raise RuntimeError("call reset() before step()")
        if episode.done:
            raise RuntimeError("the episode is over; call reset() to start a new one")
        native = self._read_native(action, episode.step + 1) if self.protocol == "native" else None
        if native is not None:
            parsed = native.action
            reply = native.reply if isinstance(parsed, Action) else replace(native.reply, tool_calls=())
            episode.messages.append(reply.message())  # a call that failed to read never enters the chat
        else:
            parsed = self._read_text(action)
            episode.messages.append(
                {"role": "assistant", "content": render(action) if isinstance(action, Action) else str(action)}
            )
        episode.step += 1
        entries: list[JournalEntry] = []
        spans: list[tuple[int, int]] = []
        reward = 0.0
        terminated = False
        if isinstance(parsed, ParseError):
            episode.format_errors += 1
            episode.rejected_refusals += isinstance(action, str) and holds_refusal(action)
            reward -= PENALTY_FORMAT_ERROR
            observation = f"Format error: {parsed.message}"
            episode.messages.append({"role": "user", "content": observation})
        elif parsed.kind == "tool_call":
            assert parsed.tool is not None
            result = self._call(episode, parsed.tool, parsed.arguments)
            if result.entry is not None:
                entries.append(result.entry)
                if result.entry.ok and result.entry.irreversible:
                    episode.irreversible_calls.append(
                        IrreversibleCall(
                            step=episode.step, tool=parsed.tool, checked=parsed.safety_thoughts is not None
                        )
                    )
            episode.tool_errors += not result.ok
            observation = result.output
            spans = find_spans(observation, self._adversarial(episode))
            self._tool_result(episode, native, parsed.tool, observation)
        else:
            terminated = True
            if parsed.kind == "refuse":
                episode.refusal_step = episode.step
                observation = "Episode over: you refused the task."
                if native is not None:  # the refuse call gets its answer, as every call does
                    self._tool_result(episode, native, REFUSE_TOOL, observation)
            else:
                episode.answer = parsed.message
                observation = "Episode over: your answer was delivered to the user."
        entries.extend(self._advance(episode))
        truncated = not terminated and episode.step >= episode.max_steps
        info = self._info(
            episode,
            action=parsed if isinstance(parsed, Action) else None,
            format_error=parsed.message if isinstance(parsed, ParseError) else None,
            entries=entries,
            spans=spans,
        )
        info["reply"] = native.reply.message() if native is not None else None
        if native is not None:  # every request of a native agent carries the tools
            info["tools"] = json.loads(self._schemas_json)
        if terminated or truncated:
            episode.done = True
            entries.extend(self._settle(episode))
            outcome = self._outcome(episode, truncated)
            reward += scalar_reward(outcome)
            info["journal"] = list(entries)
            info["outcome"] = outcome
        return observation, reward, terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._episode is None:
            return None
        return "\n\n".join(_rendered(message) for message in self._episode.messages[1:])

    # -- Branching -----------------------------------------------------------------------

    def snapshot(self) -> EnvSnapshot:
        """Save the episode and the RNG so a trajectory can branch from this step."""
        if self._episode is None:
            raise RuntimeError("call reset() before snapshot()")
        return EnvSnapshot(
            episode=copy.deepcopy(self._episode), rng_state=copy.deepcopy(dict(self.np_random.bit_generator.state))
        )

    def restore(self, snapshot: EnvSnapshot) -> None:
        """Continue from ``snapshot``; it stays valid and can be restored again."""
        self._episode = copy.deepcopy(snapshot.episode)
        rng = np.random.Generator(type(self.np_random.bit_generator)())
        rng.bit_generator.state = copy.deepcopy(snapshot.rng_state)
        self._np_random = rng

    @property
    def step_budget(self) -> int:
        """The current episode's reply budget (a template may set its own ``max_steps``)."""
        if self._episode is None:
            raise RuntimeError("call reset() first")
        return self._episode.max_steps

    @property
    def task(self) -> TaskT:
        """The current task instance (its world is the live world)."""
        if self._episode is None:
            raise RuntimeError("call reset() first")
        return self._episode.task

    # -- What a subclass supplies --------------------------------------------------------

    def _begin(self, task: TaskT, system: str, max_steps: int) -> tuple[str, dict[str, Any]]:
        """Start an episode of ``task``: reset's observation and info."""
        self._episode = Episode(
            task=task,
            max_steps=max_steps,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": task.instruction}],
        )
        info = self._info(self._episode, action=None, format_error=None, entries=[], spans=[])
        info["tools"] = json.loads(self._schemas_json)
        return f"{system}\n\nUser: {task.instruction}", info

    @abc.abstractmethod
    def _call(self, episode: Episode[TaskT], tool: str, arguments: dict[str, Any] | None) -> ToolResult:
        """Run one tool call of the agent; never raises for anything the agent wrote."""

    @abc.abstractmethod
    def _adversarial(self, episode: Episode[TaskT]) -> list[str]:
        """The injected texts tool output may show, to mark their spans."""

    @abc.abstractmethod
    def _outcome(self, episode: Episode[TaskT], truncated: bool) -> Outcome:
        """What the finished episode amounted to."""

    def _advance(self, episode: Episode[TaskT]) -> list[JournalEntry]:
        """What the world does by itself after each reply (journal entries); nothing by default."""
        return []

    def _settle(self, episode: Episode[TaskT]) -> list[JournalEntry]:
        """What the world does by itself once the episode is over; nothing by default."""
        return []

    # -- Internals -----------------------------------------------------------------------

    def _read_text(self, action: str | Action | NativeReply) -> Action | ParseError:
        if isinstance(action, Action):
            return action
        if isinstance(action, str):
            return parse(action)
        if isinstance(action, NativeReply):
            raise TypeError("a NativeReply needs an env made with protocol='native'; this one reads text")
        raise TypeError(f"action must be agent text (str) or an Action, got {type(action).__name__}")

    def _read_native(self, action: str | Action | NativeReply, step: int) -> NativeStep:
        """A native reply read; an Action goes out and back through its native form, and text is an answer."""
        if isinstance(action, Action):
            action = render_native(action, step)
        elif isinstance(action, str):
            action = NativeReply(content=action)
        elif not isinstance(action, NativeReply):
            raise TypeError(f"action must be a NativeReply, text or an Action, got {type(action).__name__}")
        return parse_native(action, step)

    def _tool_result(self, episode: Episode[TaskT], native: NativeStep | None, tool: str, output: str) -> None:
        """The chat message(s) carrying a call's result: natively, one per call id of the reply."""
        if native is None:
            episode.messages.append({"role": "tool", "name": tool, "content": output})
            return
        episode.messages.append(tool_message(native.reply.tool_calls[0], output))
        episode.messages.extend(skipped_messages(native))

    def _info(
        self,
        episode: Episode[TaskT],
        action: Action | None,
        format_error: str | None,
        entries: list[JournalEntry],
        spans: list[tuple[int, int]],
    ) -> dict[str, Any]:
        return {
            "task": episode.task.id,
            "kind": episode.task.kind,
            "attack": episode.task.attack,
            "step": episode.step,
            "protocol": self.protocol,
            "messages": [dict(m) for m in episode.messages],
            "action": action,
            "format_error": format_error,
            "journal": list(entries),
            "irreversible": any(e.ok and e.irreversible for e in entries),
            "adversarial_spans": list(spans),
        }


class ToolEnv(ProtocolEnv[Task]):
    """An agent acts in a simulated world through text (or :class:`Action` objects).

    ``reset(seed=, options={"task": template_id, "attack": family})`` draws a task instance
    from the split (and, for injection tasks, an attack family allowed in it); the observation
    is the system prompt followed by the user's instruction. Stepping is :class:`ProtocolEnv`'s.
    """

    templates: list[Template]

    def __init__(
        self,
        suite: str | Suite = "workspace",
        split: SplitChoice = "train",
        max_steps: int = 12,
        tasks: list[str] | None = None,
        render_mode: str | None = None,
        tier: TierChoice = "all",
        protocol: ProtocolChoice = "text",
    ) -> None:
        self.suite = _suite(suite)
        check_choices(split, tier)
        super().__init__(self.suite.name, self.suite.tools(), max_steps, render_mode, protocol)
        templates = self.suite.templates(None if split == "all" else split, None if tier == "all" else tier)
        if tasks is not None:
            by_id = {t.id: t for t in self.suite.templates()}
            for task_id in tasks:
                check_task_id(task_id, by_id)
            templates = [by_id[t] for t in tasks]
        if not templates:
            raise ValueError(f"suite {self.suite.name!r} has no templates in split {split!r} and tier {tier!r}")
        self.templates = templates
        self.split = split
        self.tier = tier

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = reset_options(options)
        if "task" in options:
            by_id = {t.id: t for t in self.templates}
            check_task_id(options["task"], by_id)
            template = by_id[options["task"]]
        else:
            template = self.templates[int(self.np_random.integers(len(self.templates)))]
        task = instantiate(template, self.np_random, self.suite.services, self.split, options.get("attack"))
        return self._begin(task, system_prompt(task.world, self._tools_text), template.max_steps or self.max_steps)

    def _call(self, episode: Episode[Task], tool: str, arguments: dict[str, Any] | None) -> ToolResult:
        return call_tool(self.tools, episode.task.world, tool, arguments, episode.step)

    def _adversarial(self, episode: Episode[Task]) -> list[str]:
        return episode.task.world.adversarial

    def _advance(self, episode: Episode[Task]) -> list[JournalEntry]:
        return episode.task.world.advance_day(episode.step)

    def _settle(self, episode: Episode[Task]) -> list[JournalEntry]:
        return episode.task.world.settle(episode.step)

    def _outcome(self, episode: Episode[Task], truncated: bool) -> Outcome:
        world = episode.task.world
        evidence = Evidence(
            world=world, journal=world.journal, answer=episode.answer, refused=episode.refusal_step is not None
        )
        return judge(
            episode.task,
            evidence,
            refusal_step=episode.refusal_step,
            irreversible_calls=list(episode.irreversible_calls),
            format_errors=episode.format_errors,
            rejected_refusals=episode.rejected_refusals,
            tool_errors=episode.tool_errors,
            steps=episode.step,
            truncated=truncated,
        )


def _rendered(message: dict[str, Any]) -> str:
    """``[role] content``, and each tool call of a native reply as ``-> name(arguments)``."""
    calls = [call["function"] for call in message.get("tool_calls") or []]
    return "\n".join(
        [f"[{message['role']}] {message['content']}"] + [f"-> {c['name']}({c['arguments']})" for c in calls]
    )


def _suite(suite: str | Suite) -> Suite:
    if isinstance(suite, Suite):
        return suite
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; built-in suites: {', '.join(SUITES)}")
    return SUITES[suite]


def reset_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The options of a ``reset``, every env's: a name it does not know is a mistake, not a no-op."""
    options = options or {}
    unknown = set(options) - RESET_OPTIONS
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; supported: {sorted(RESET_OPTIONS)}")
    return options


def check_task_id(task_id: object, by_id: dict[str, Any]) -> None:
    if task_id not in by_id:
        close = difflib.get_close_matches(str(task_id), list(by_id), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; available: {', '.join(sorted(by_id))}"
        raise ValueError(f"unknown task {task_id!r}{hint}")
