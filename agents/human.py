"""A person at a terminal as the agent: to try the tasks by hand, or to record demonstrations.

Each turn shows what a model would see, minus the long system prompt: the user's task and
the tools with their IRREVERSIBLE flags at the start, then each tool output, with the text an
attacker planted (the env's adversarial spans) marked. The person types a plan, an optional
safety check, and one action. Input and output streams can be swapped for files or
``io.StringIO``, so a script of lines can play whole episodes; when the input runs out the
agent refuses with reason "no input", which ends every episode cleanly.

Marking the attacker's text and the irreversible actions that executed reads the env's ground
truth, so the agent declares ``privileged = True``: it is a teaching view, not a model's.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from pydantic import ValidationError

from mosaic_gym.agent import Turn
from mosaic_gym.attacks import merge_spans
from mosaic_gym.prompts import tool_line
from mosaic_gym.protocol import Action

NO_INPUT = "no input"
# Around injected text: reverse video on a terminal, plain markers in files and pipes.
MARKS_PLAIN = (">>>", "<<<")
MARKS_TTY = ("\x1b[7m", "\x1b[0m")
HELP = """\
Actions (one line):
  call TOOL {"arg": value, ...}   call a tool; the JSON object of arguments may be left out if it takes none
  refuse REASON                   decline the task (ends the episode)
  answer TEXT                     reply to the user (ends the episode)
  help                            show this and the tools"""


class _EndOfInput(Exception):
    """The input stream is exhausted."""


class HumanAgent:
    """Asks the person for each turn of the batch in order and returns their Actions."""

    name = "human"
    privileged = True  # shows the env's adversarial spans and irreversibility flags

    def __init__(self, input: TextIO | None = None, output: TextIO | None = None) -> None:
        # Resolved at call time when not given, so pytest's capture or a redirected stdin still works.
        self._input = input
        self._output = output

    @property
    def input(self) -> TextIO:
        return self._input or sys.stdin

    @property
    def output(self) -> TextIO:
        return self._output or sys.stdout

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        return [self._act(turn) for turn in turns]

    def _act(self, turn: Turn) -> Action:
        self._show(turn)
        try:
            plan = self._ask("plan> ", check=_plan_problem)
            safety = self._ask("safety check (empty to skip)> ", check=_safety_problem)
            return self._action(turn, plan, safety or None)
        except _EndOfInput:
            self._write(f"\n(end of input: refusing with reason {NO_INPUT!r})\n")
            return Action.refuse(NO_INPUT, plan="No more input from the person at the terminal.")

    def _show(self, turn: Turn) -> None:
        header = f"episode seed {turn.episode_seed}, step {turn.step + 1}"
        if turn.step == 0:
            messages = turn.messages
            user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            # The system prompt's last line says whom the agent acts for; the rest is for models.
            identity = messages[0]["content"].rsplit("\n", 1)[-1] if messages[0]["role"] == "system" else ""
            self._write(f"\n=== {header} ===\nTools:\n{self._tools(turn)}\n\n{identity}\nUser: {user}\n\n")
        else:
            tty = self.output.isatty()
            info = turn.ground_truth().info
            spans = info["adversarial_spans"]
            shown = mark_spans(turn.observation, spans, MARKS_TTY if tty else MARKS_PLAIN)
            notes = ["(an IRREVERSIBLE action just executed: it cannot be undone)"] if info["irreversible"] else []
            if spans:
                where = "in reverse video" if tty else f"between {MARKS_PLAIN[0]} and {MARKS_PLAIN[1]}"
                notes.append(f"(the text {where} was planted by an attacker; the user did not write it)")
            self._write(f"\n--- {header} ---\n{shown}\n" + "".join(f"{note}\n" for note in notes) + "\n")

    def _tools(self, turn: Turn) -> str:
        return "\n".join(tool_line(tool) for tool in turn.ground_truth().env.tools.values())

    def _action(self, turn: Turn, plan: str, safety: str | None) -> Action:
        """Ask until the line is a valid action; say what was wrong each time."""
        while True:
            line = self._ask("action (call/refuse/answer/help)> ")
            command, _, rest = line.partition(" ")
            command, rest = command.lower(), rest.strip()
            try:
                if command == "help":
                    self._write(f"{HELP}\n\nTools:\n{self._tools(turn)}\n")
                    continue
                if command == "call":
                    problem = self._check_call(turn, rest)
                    if isinstance(problem, str):
                        self._write(f"{problem}\n")
                        continue
                    return Action.call(problem[0], problem[1], plan=plan, safety_thoughts=safety)
                if command in ("refuse", "answer"):
                    if not rest:
                        self._write("Say why after 'refuse' or what to tell the user after 'answer'.\n")
                        continue
                    make = Action.refuse if command == "refuse" else Action.answer
                    return make(rest, plan=plan, safety_thoughts=safety)
                self._write(f"Unknown command {command!r}: start with call, refuse, answer or help.\n")
            except ValidationError as error:
                self._write(f"Not a valid action ({_reason(error)}); try again.\n")

    def _check_call(self, turn: Turn, rest: str) -> tuple[str, dict[str, object]] | str:
        """(tool, arguments), or a message saying what to fix."""
        tool, _, payload = rest.partition(" ")
        if not tool:
            return 'Name the tool: call TOOL {"arg": value}.'
        names = [schema["function"]["name"] for schema in turn.tools]
        if tool not in names:
            close = difflib.get_close_matches(tool, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else " Type help to list the tools."
            return f"Unknown tool {tool!r}.{hint}"
        payload = payload.strip() or "{}"
        try:
            arguments = json.loads(payload)
        except json.JSONDecodeError as error:
            return f"The arguments are not valid JSON ({error.msg} at column {error.colno}); write them as {{...}}."
        if not isinstance(arguments, dict):
            return 'The arguments must be a JSON object, such as {"path": "~/notes.txt"}.'
        return tool, arguments

    def _ask(self, prompt: str, check: Callable[[str], str | None] | None = None) -> str:
        """One stripped line, asked again while ``check`` finds a problem with it."""
        while True:
            self._write(prompt)
            line = self.input.readline()
            if not line:
                raise _EndOfInput
            text = line.strip()
            problem = check(text) if check is not None else None
            if problem is None:
                return text
            self._write(f"{problem}\n")

    def _write(self, text: str) -> None:
        self.output.write(text)
        self.output.flush()


def mark_spans(text: str, spans: Sequence[Sequence[int]], marks: tuple[str, str] = MARKS_PLAIN) -> str:
    """``text`` with each adversarial span wrapped in ``marks``, so a person sees what was injected."""
    pieces: list[str] = []
    position = 0
    for start, end in merge_spans(spans, len(text)):
        pieces += [text[position:start], marks[0], text[start:end], marks[1]]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _plan_problem(text: str) -> str | None:
    if not text:
        return "A plan is required: say in a few words what you will do and why."
    try:
        Action.answer("ok", plan=text)
    except ValidationError as error:
        return f"Not a valid plan ({_reason(error)}); try again."
    return None


def _safety_problem(text: str) -> str | None:
    try:
        Action.answer("ok", plan="ok", safety_thoughts=text or None)
    except ValidationError as error:
        return f"Not a valid safety check ({_reason(error)}); try again."
    return None


def _reason(error: ValidationError) -> str:
    return str(error.errors()[0]["msg"]).removeprefix("Value error, ")
