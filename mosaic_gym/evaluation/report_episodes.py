"""The trajectory viewer of report.html: episodes grouped by suite and kind, one collapsible block each.

Everything that comes from an agent, a user or a tool is passed through :func:`html.escape`
before it reaches the page; adversarial spans are applied to the raw text and each piece is
escaped on its own, so a ``<mark>`` never splits an entity and injected markup stays inert.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from mosaic_gym.attacks import merge_spans
from mosaic_gym.catalog import ENV_IDS, NAME_OF
from mosaic_gym.scenarios.template import KINDS

PER_GROUP = 40
MAX_CHARS = 4000
SUITE_ORDER = {suite: position for position, suite in enumerate(ENV_IDS)}
KIND_ORDER: dict[str, int] = {kind: position for position, kind in enumerate(KINDS)}
# Outcome filters offered by the viewer: flag -> label. Flags go in each episode's data-flags.
FLAGS = {
    "completed": "completed",
    "harm": "harm fired",
    "refused": "refused",
    "injected": "injected goal executed",
    "leaked": "leaked",
    "irreversible": "irreversible call",
    "unchecked": "unchecked irreversible call",
    "format": "format error",
    "truncated": "truncated",
}

Group = tuple[str, str]


def suite_of(record: dict[str, Any]) -> str:
    return NAME_OF.get(record["env"], record["env"])


def group_records(records: Iterable[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    """Records by (suite, kind), in suite order then kind order, keeping the given order inside a group."""
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(suite_of(record), record["kind"])].append(record)
    order = sorted(groups, key=lambda g: (SUITE_ORDER.get(g[0], len(SUITE_ORDER)), g[0], KIND_ORDER.get(g[1], 9), g[1]))
    return {group: groups[group] for group in order}


def clip(text: str, limit: int = MAX_CHARS) -> tuple[str, int]:
    """The first ``limit`` characters and how many were cut, so long text cannot bloat the page."""
    return (text, 0) if len(text) <= limit else (text[:limit], len(text) - limit)


def highlight(text: str, spans: Iterable[Sequence[int]]) -> str:
    """Escaped ``text`` with each adversarial span wrapped in ``<mark class="adv">``."""
    pieces: list[str] = []
    position = 0
    for start, end in merge_spans(spans, len(text)):
        pieces.append(escape(text[position:start]))
        pieces.append(f'<mark class="adv" title="adversarial content">{escape(text[start:end])}</mark>')
        position = end
    pieces.append(escape(text[position:]))
    return "".join(pieces)


def cut_note(cut: int) -> str:
    return f'<div class="note">… {cut} more characters not shown (see trajectories.jsonl)</div>' if cut else ""


def text_block(css: str, label: str, text: str, pre: bool = False) -> str:
    """A coloured, labelled block of escaped (and clipped) text."""
    shown, cut = clip(text)
    body = f"<pre>{escape(shown)}</pre>" if pre else f'<div class="text">{escape(shown)}</div>'
    return f'<div class="block {css}"><span class="label">{escape(label)}</span>{body}{cut_note(cut)}</div>'


def observation_block(step: dict[str, Any]) -> str:
    """The tool output (or the env's closing message), clipped, with adversarial spans marked."""
    observation = step.get("observation") or ""
    shown, cut = clip(observation)
    shown = shown.rstrip() if not cut else shown  # trailing blank lines only add height
    spans = step.get("adversarial_spans") or []
    lost = sum(1 for span in spans if len(span) == 2 and span[1] > len(shown))
    action = step.get("action") or {}
    label = "tool output" if action.get("kind") == "tool_call" else "environment"
    note = cut_note(cut)
    if lost:
        note += f'<div class="note">{lost} adversarial span(s) run past the cut and are marked only in part</div>'
    return f'<div class="block obs"><span class="label">{label}</span><pre>{highlight(shown, spans)}</pre>{note}</div>'


def call_block(label: str, tool: str, arguments: Any, css: str = "call") -> str:
    """A tool call: its label, the tool's name and the arguments as indented JSON."""
    shown, cut = clip(json.dumps(arguments, indent=2, ensure_ascii=False))
    return (
        f'<div class="block {css}"><span class="label">{escape(label)}</span> '
        f'<code class="tool">{escape(tool)}</code><pre>{escape(shown)}</pre>{cut_note(cut)}</div>'
    )


def action_block(action: dict[str, Any], reply: dict[str, Any] | None = None) -> str:
    """The tool call with its JSON arguments, the refusal, or the answer; ``reply`` is the native
    reply it came from (None in the text protocol), whose first call it was."""
    kind = action.get("kind")
    calls = (reply or {}).get("tool_calls") or []
    if kind == "tool_call":
        label = f"tool call {calls[0]['id']}" if calls else "tool call"
        return call_block(label, str(action.get("tool")), action.get("arguments") or {})
    if kind == "refuse":
        label = f"refusal: refuse tool, call {calls[0]['id']}" if calls else "refusal <refuse>"
        return text_block("refuse", label, action.get("message") or "")
    return text_block("answer", "answer: final message" if reply else "answer <answer>", action.get("message") or "")


def skipped_blocks(reply: dict[str, Any]) -> str:
    """The calls of a native reply after its first, which did not run (one call per reply)."""
    blocks = []
    for call in (reply.get("tool_calls") or [])[1:]:
        function = call.get("function") or {}
        label = f"not executed (one call per reply): call {call.get('id')}"
        arguments: Any = function.get("arguments")
        with contextlib.suppress(TypeError, ValueError):  # JSON text as written; they parse when a reply runs
            arguments = json.loads(arguments)
        blocks.append(call_block(label, str(function.get("name")), arguments, css="call skipped"))
    return "".join(blocks)


def irreversible(step: dict[str, Any]) -> bool:
    """True when the step ran an irreversible tool successfully (read from its journal)."""
    return any(entry.get("ok") and entry.get("irreversible") for entry in step.get("journal") or [])


def step_badges(step: dict[str, Any]) -> str:
    badges = []
    if irreversible(step):
        badges.append('<span class="badge irr">IRREVERSIBLE</span>')
        if not step.get("safety_thoughts"):
            badges.append('<span class="badge bad">no safety check</span>')
    errors = [entry for entry in step.get("journal") or [] if not entry.get("ok")]
    if errors:
        badges.append('<span class="badge warn">tool error</span>')
    if step.get("adversarial_spans"):
        badges.append('<span class="badge adv">adversarial content</span>')
    if step.get("reward"):
        badges.append(f'<span class="reward">reward {float(step["reward"]):+.2f}</span>')
    return " ".join(badges)


def step_html(step: dict[str, Any]) -> str:
    """One agent turn: plan, safety check, action or format error, then what came back.

    A native reply (``step["reply"]``) shows its reasoning as the plan, each call with its id,
    and the calls that did not run; its raw form, when it could not be read, as JSON."""
    parts = [f'<div class="step-head">step {escape(str(step.get("step", "?")))} {step_badges(step)}</div>']
    reply = step.get("reply")
    if step.get("format_error"):
        parts.append(text_block("format", "format error", step["format_error"]))
        raw = json.dumps(reply, indent=2, ensure_ascii=False) if reply else step.get("text") or ""
        parts.append(text_block("raw", "raw reply", raw, pre=True))
    else:
        if step.get("plan"):
            parts.append(text_block("plan", "plan (reasoning)" if reply else "plan <think>", step["plan"]))
        if step.get("safety_thoughts"):
            parts.append(text_block("safety", "safety check <safety_thoughts>", step["safety_thoughts"]))
        if step.get("action"):
            parts.append(action_block(step["action"], reply))
        if reply:
            parts.append(skipped_blocks(reply))
    parts.append(observation_block(step))
    css = "step irreversible" if irreversible(step) else "step"
    return f'<div class="{css}">{"".join(parts)}</div>'


def flags(record: dict[str, Any]) -> list[str]:
    """The outcome flags of an episode (keys of :data:`FLAGS`)."""
    outcome = record.get("outcome") or {}
    steps = record.get("steps") or []
    found = {
        "completed": outcome.get("completed"),
        "harm": outcome.get("harms"),
        "refused": outcome.get("refused"),
        "injected": outcome.get("injected_goal_executed"),
        "leaked": outcome.get("leaks"),
        "irreversible": any(irreversible(step) for step in steps),
        "unchecked": any(not call.get("checked") for call in outcome.get("irreversible_calls") or []),
        "format": outcome.get("format_errors"),
        "truncated": outcome.get("truncated"),
    }
    return [flag for flag, present in found.items() if present]


def outcome_badges(record: dict[str, Any]) -> str:
    """Coloured badges summing up the outcome: good in green, harm in red, neutral in grey."""
    outcome = record.get("outcome") or {}
    present = set(flags(record))
    badges = []
    if "completed" in present:
        badges.append('<span class="badge good">completed</span>')
    elif record.get("kind") != "harmful":
        badges.append('<span class="badge muted">not completed</span>')
    if "harm" in present:
        badges.append(f'<span class="badge bad">harm fired: {escape(", ".join(outcome["harms"]))}</span>')
    if "refused" in present:
        style = "good" if record.get("kind") == "harmful" and "harm" not in present else "info"
        badges.append(f'<span class="badge {style}">refused</span>')
    if "injected" in present:
        badges.append('<span class="badge bad">injected goal executed</span>')
    if "leaked" in present:
        secrets = sorted({leak["secret"] for leak in outcome["leaks"]})
        badges.append(f'<span class="badge bad">leaked: {escape(", ".join(secrets))}</span>')
    if "irreversible" in present:
        count = sum(irreversible(step) for step in record.get("steps") or [])
        badges.append(f'<span class="badge irr">IRREVERSIBLE &times;{count}</span>')
    if "format" in present:
        badges.append(f'<span class="badge warn">format errors &times;{outcome["format_errors"]}</span>')
    if "truncated" in present:
        badges.append('<span class="badge warn">truncated</span>')
    return " ".join(badges)


def instruction(record: dict[str, Any]) -> str:
    """The user's request: the first user message of the episode."""
    return next((m.get("content", "") for m in record.get("messages") or [] if m.get("role") == "user"), "")


def episode_html(record: dict[str, Any]) -> str:
    """One episode as a ``<details>``: the summary line, the instruction, then every step."""
    attack, kind = record.get("attack"), escape(str(record.get("kind")))
    where = f"#{record.get('index')} · seed {record.get('seed')}"
    summary = (
        f'<code class="task">{escape(str(record.get("task")))}</code> <span class="kind k-{kind}">{kind}</span>'
        + (f' <span class="attack">{escape(attack)}</span>' if attack else "")
        + f' <span class="episode-id" title="{escape(str(record.get("episode")))}">{escape(where)}</span>'
        + f' <span class="badges">{outcome_badges(record)}</span>'
    )
    steps = "".join(step_html(step) for step in record.get("steps") or [])
    return (
        f'<details class="episode" data-flags="{" ".join(flags(record))}" '
        f'data-task="{escape(str(record.get("task")).lower())}">'
        f"<summary>{summary}</summary>"
        f'<div class="episode-body">{text_block("user", "user instruction", instruction(record))}{steps}</div>'
        "</details>"
    )


def filter_bar(groups: dict[Group, list[dict[str, Any]]]) -> str:
    """Selects for suite, kind and outcome, a task search, and expand/collapse buttons (see VIEWER_JS)."""
    suites = list(dict.fromkeys(suite for suite, _ in groups))
    kinds = sorted({kind for _, kind in groups}, key=lambda k: KIND_ORDER.get(k, 9))

    def select(name: str, label: str, options: Iterable[tuple[str, str]]) -> str:
        items = "".join(f'<option value="{escape(v)}">{escape(text)}</option>' for v, text in options)
        return f'<label>{label} <select id="f-{name}"><option value="">all</option>{items}</select></label>'

    return (
        '<div class="filters">'
        + select("suite", "suite", ((s, s) for s in suites))
        + select("kind", "kind", ((k, k) for k in kinds))
        + select("flag", "outcome", FLAGS.items())
        + '<label>task <input id="f-text" type="search" placeholder="id contains…"></label>'
        '<button type="button" id="open-all">expand all</button>'
        '<button type="button" id="close-all">collapse all</button>'
        '<span id="f-count"></span></div>'
    )


LEGEND = (
    '<div class="legend">Blocks: <span class="block-key plan">plan</span>'
    '<span class="block-key safety">safety check</span><span class="block-key call">tool call</span>'
    '<span class="block-key refuse">refusal</span><span class="block-key answer">answer</span>'
    '<span class="block-key format">format error</span><span class="block-key obs">tool output</span>'
    '<mark class="adv">adversarial span</mark></div>'
    '<p class="note"><span class="badge irr">IRREVERSIBLE</span> marks a step in which an irreversible tool ran '
    'successfully, with <span class="badge bad">no safety check</span> when the reply had no '
    "&lt;safety_thoughts&gt; block.</p>"
)


def viewer(records: Sequence[dict[str, Any]], per_group: int = PER_GROUP) -> str:
    """The whole trajectory section: note on sampling, legend, filters, then one section per group."""
    groups = group_records(records)
    sections = []
    for (suite, kind), members in groups.items():
        shown = members[:per_group]
        count = f"{len(shown)} of {len(members)}" if len(shown) < len(members) else f"{len(members)}"
        count += " episode" if len(members) == 1 else " episodes"
        sections.append(
            f'<section class="group" data-suite="{escape(suite)}" data-kind="{escape(kind)}">'
            f'<h3>{escape(suite)} · <span class="kind k-{escape(kind)}">{escape(kind)}</span> '
            f'<span class="count">{count}</span></h3>'
            + "".join(episode_html(record) for record in shown)
            + "</section>"
        )
    return (
        '<section id="trajectories"><h2>Trajectories</h2>'
        f'<p class="note">At most {per_group} episodes per (suite, kind) group are included, the first by '
        f"episode index, and text longer than {MAX_CHARS} characters is cut; every episode is in full in "
        "<code>trajectories.jsonl</code>. Click an episode to open it; add <code>#open-all</code> to the "
        "address to open every episode, or <code>?suite=…&amp;kind=…&amp;flag=…</code> to preset the filters.</p>"
        + LEGEND
        + filter_bar(groups)
        + "".join(sections)
        + "</section>"
    )


VIEWER_JS = """
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  ["suite", "kind", "flag"].forEach(function (name) {
    if (params.has(name)) { $("f-" + name).value = params.get(name); }
  });
  if (params.has("task")) { $("f-text").value = params.get("task"); }
  function apply() {
    var suite = $("f-suite").value, kind = $("f-kind").value, flag = $("f-flag").value;
    var text = $("f-text").value.toLowerCase(), total = 0;
    document.querySelectorAll("section.group").forEach(function (group) {
      var inGroup = (!suite || group.dataset.suite === suite) && (!kind || group.dataset.kind === kind), shown = 0;
      group.querySelectorAll("details.episode").forEach(function (episode) {
        var ok = inGroup && (!flag || episode.dataset.flags.split(" ").indexOf(flag) >= 0)
          && (!text || episode.dataset.task.indexOf(text) >= 0);
        episode.hidden = !ok;
        if (ok) { shown += 1; }
      });
      group.hidden = shown === 0;
      total += shown;
    });
    $("f-count").textContent = total + " episodes shown";
  }
  function setOpen(open) {
    document.querySelectorAll("details.episode").forEach(function (episode) {
      if (!episode.hidden) { episode.open = open; }
    });
  }
  ["f-suite", "f-kind", "f-flag", "f-text"].forEach(function (id) { $(id).addEventListener("input", apply); });
  $("open-all").addEventListener("click", function () { setOpen(true); });
  $("close-all").addEventListener("click", function () { setOpen(false); });
  apply();
  if (location.hash === "#open-all" || params.has("open")) { setOpen(true); }
})();
"""
