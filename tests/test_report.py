"""report.html: self-contained, plots embedded, agent and tool text escaped, spans and irreversible calls marked."""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import pytest

from mosaic_gym.agent import Turn
from mosaic_gym.agents.registry import AGENTS, AgentEntry
from mosaic_gym.evaluation.report import write_reports
from mosaic_gym.evaluation.report_episodes import MAX_CHARS, highlight, observation_block, step_html, viewer
from mosaic_gym.evaluation.report_html import INSTALL_HINT
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, load_records, run_eval
from mosaic_gym.protocol import Action

FILES = ("mosaic_gym/Files-v0",)
PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
MARK = re.compile(r'<mark class="adv"[^>]*>(.*?)</mark>', re.S)


def records_of(out: Path) -> list[dict[str, Any]]:
    return sorted(load_records(out / TRAJECTORIES).values(), key=lambda r: (r["env"], r["index"]))


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The oracle over a dozen Files episodes: benign, harmful, injection and privacy tasks all occur."""
    out = tmp_path_factory.mktemp("oracle")
    run_eval(EvalConfig(agent="oracle", envs=FILES, episodes=12), out)
    return out


class ScriptInjector:
    """Replies with markup: a malformed first turn, then the reference action with HTML in its text."""

    name = "script-injector"

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        return [self._act(turn) for turn in turns]

    def _act(self, turn: Turn) -> str | Action:
        if turn.step == 0:
            return "<script>alert('raw')</script> no blocks here"
        if turn.step == 1:
            return Action.answer(
                "<script>alert('answer')</script> & done", plan="<b>plan</b>", safety_thoughts="<img src=x onerror=1>"
            )
        return Action.answer("done", plan="finish")


def test_report_html_is_self_contained_with_png_plots(oracle_run: Path) -> None:
    html = (oracle_run / "report.html").read_text(encoding="utf-8")
    images = PNG.findall(html)
    assert len(images) == 3  # by kind, by suite, by attack family
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    assert not re.search(r'<(link|script)[^>]+(src|href)=|src="http|url\(http', html)
    assert "Evaluation: agent <code>oracle</code>" in html and "harmful_refusal_rate" in html


def test_adversarial_span_is_wrapped_in_mark(oracle_run: Path) -> None:
    html = (oracle_run / "report.html").read_text(encoding="utf-8")
    injected = [
        step["observation"][start:end].strip()
        for record in records_of(oracle_run)
        for step in record["steps"]
        for start, end in step["adversarial_spans"]
    ]
    assert injected, "expected an injection episode among the first dozen Files seeds"
    marked = MARK.findall(html)
    for text in injected:
        assert any(escape(text) in mark for mark in marked)


def test_irreversible_call_is_badged(oracle_run: Path) -> None:
    records = records_of(oracle_run)
    irreversible = [
        step for r in records for step in r["steps"] if any(e["ok"] and e["irreversible"] for e in step["journal"])
    ]
    assert irreversible, "expected an irreversible call among the first dozen Files seeds"
    html = (oracle_run / "report.html").read_text(encoding="utf-8")
    assert html.count('<div class="step irreversible">') == len(irreversible)
    assert '<span class="badge irr">IRREVERSIBLE</span>' in html


def test_agent_markup_is_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AGENTS, "script-injector", AgentEntry("test agent", lambda options: ScriptInjector()))
    run_eval(EvalConfig(agent="script-injector", envs=FILES, episodes=2), tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>plan" not in html
    assert "&lt;script&gt;alert(&#x27;raw&#x27;)&lt;/script&gt;" in html  # the malformed reply, shown raw
    assert "&lt;script&gt;alert(&#x27;answer&#x27;)&lt;/script&gt; &amp; done" in html
    assert "&lt;img src=x onerror=1&gt;" in html and "&lt;b&gt;plan&lt;/b&gt;" in html
    assert 'class="block format"' in html
    assert html.count("<script>") == 1  # the viewer's own


def test_without_matplotlib_the_page_says_how_to_get_plots(
    oracle_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    metrics = json.loads((oracle_run / "metrics.json").read_text())
    write_reports(tmp_path, metrics, records_of(oracle_run))
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert not PNG.search(html)
    assert escape(INSTALL_HINT) in html and '<details class="episode"' in html


def test_highlight_escapes_each_piece_and_merges_spans() -> None:
    text = "ok <b>&</b> tail"
    assert highlight(text, [[3, 6], [5, 11], [99, 120]]) == (
        'ok <mark class="adv" title="adversarial content">&lt;b&gt;&amp;&lt;/b&gt;</mark> tail'
    )
    assert highlight(text, []) == escape(text)


def test_long_observation_is_cut_with_a_note() -> None:
    step = {"observation": "x" * (MAX_CHARS + 500), "adversarial_spans": [[MAX_CHARS - 10, MAX_CHARS + 100]]}
    block = observation_block(step)
    assert "500 more characters not shown" in block and "marked only in part" in block
    assert len(block) < MAX_CHARS + 600


def test_groups_are_capped_and_say_so(oracle_run: Path) -> None:
    records = records_of(oracle_run)
    page = viewer(records, per_group=1)
    assert page.count('<details class="episode"') == len({(r["env"], r["kind"]) for r in records})
    assert re.search(r"1 of \d+ episodes", page) and "At most 1 episodes per (suite, kind) group" in page


def test_a_native_step_shows_reasoning_call_ids_and_calls_not_executed() -> None:
    calls = [
        {"id": "a1", "type": "function", "function": {"name": "list_folder", "arguments": "{}"}},
        {"id": "b<2>", "type": "function", "function": {"name": "send_email", "arguments": '{"to": ["<x>"]}'}},
    ]
    step = {
        "step": 1,
        "plan": "Look first.",
        "action": {"kind": "tool_call", "tool": "list_folder", "arguments": {}},
        "observation": "[]",
        "reply": {"role": "assistant", "content": "", "tool_calls": calls},
    }
    html = step_html(step)
    assert "plan (reasoning)" in html and "tool call a1" in html
    assert "not executed (one call per reply): call b&lt;2&gt;" in html and "<x>" not in html
    assert escape('"to": [\n    "<x>"') in html, "the arguments as indented JSON, escaped"
    unreadable = {**step, "action": None, "format_error": "The arguments are not valid JSON.", "plan": None}
    assert escape('"tool_calls"') in step_html(unreadable), "the raw native reply, as JSON"
