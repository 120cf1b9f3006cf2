"""docs/extending.md runs as written, so the guide cannot rot.

Blocks run in order in an empty folder: a ```python or ```yaml block whose first line is a
``# path`` comment is written to that file; other python blocks run in one shared namespace;
each ``mosaic-gym ...`` line of a ```bash block runs as a fresh process, as a reader's shell
would (a fresh process is also what proves ``--import`` loads the guide's tool). The tool,
attack family, judge and Gymnasium id the guide registers are removed afterwards.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium
import pytest

from mosaic_gym.agents.registry import JUDGES
from mosaic_gym.attacks import ATTACKS
from mosaic_gym.tools import REGISTRY

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_COMMENT = re.compile(r"# (\S+\.(?:py|yaml))\n")


def blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return [(match[1], match[2]) for match in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))]


@pytest.fixture
def clean_registries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working folder on sys.path; the tool, attack and env registries as they were, afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(REGISTRY, "_tools", dict(REGISTRY._tools))
    attacks, judges, env_ids, modules = dict(ATTACKS), dict(JUDGES), set(gymnasium.registry), set(sys.modules)
    yield tmp_path
    ATTACKS.clear()
    ATTACKS.update(attacks)
    JUDGES.clear()
    JUDGES.update(judges)
    for env_id in set(gymnasium.registry) - env_ids:
        del gymnasium.registry[env_id]
    for name in set(sys.modules) - modules:
        if name.split(".")[0] == "notes_lab":
            del sys.modules[name]


def test_the_guide_runs_as_written(clean_registries: Path) -> None:
    namespace: dict[str, object] = {"__name__": "extending_guide"}
    ran = {"files": 0, "python": 0, "commands": 0}
    for language, code in blocks():
        written = FILE_COMMENT.match(code)
        if language in ("python", "yaml") and written:
            path = clean_registries / written[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code, encoding="utf-8")
            ran["files"] += 1
        elif language == "python":
            exec(compile(code, f"{GUIDE.name} block {ran['python'] + 1}", "exec"), namespace)
            ran["python"] += 1
        elif language == "bash":
            for line in code.splitlines():
                assert line.startswith("mosaic-gym "), f"the guide's shell blocks hold mosaic-gym commands: {line}"
                argv = [sys.executable, "-m", "mosaic_gym.cli", *shlex.split(line)[1:]]
                done = subprocess.run(argv, capture_output=True, text=True, cwd=clean_registries, timeout=300)
                assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
                assert "check passed" in done.stdout
                assert "--mutate" not in line or "every check held" in done.stdout, "the walkthrough audits its checks"
                ran["commands"] += 1
    assert ran == {"files": 4, "python": 5, "commands": 1}, "the guide gained or lost blocks; update this test"
    assert "publish_note" in REGISTRY and "colleague_favour" in ATTACKS and "fewer_posts" in JUDGES


def test_the_guide_leaves_nothing_registered() -> None:
    """Runs after the guide (tests run in file order): its registrations are gone."""
    assert "publish_note" not in REGISTRY
    assert "colleague_favour" not in ATTACKS
    assert "fewer_posts" not in JUDGES
    assert "notes_lab/Notes-v0" not in gymnasium.registry
