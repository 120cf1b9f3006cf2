"""The command line: machine-readable listing, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic_gym.cli.main import main


def test_list_json_has_every_env_and_the_attack_families(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["envs"]) == {
        "mosaic_gym/Files-v0",
        "mosaic_gym/Email-v0",
        "mosaic_gym/Payments-v0",
        "mosaic_gym/Web-v0",
        "mosaic_gym/Workspace-v0",
    }
    workspace = data["envs"]["mosaic_gym/Workspace-v0"]
    assert workspace["services"] == ["files", "mail", "bank", "web"] and workspace["tools"]["total"] >= 24
    assert sum(workspace["templates"]["by_kind"].values()) == workspace["templates"]["total"]
    assert {"split", "benign", "description"} <= set(data["attacks"]["encoded"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lsit"], "invalid choice: 'lsit'"),
        (["check", "--instances", "zero"], "expected a whole number"),
        (["check", "--services", "phone"], "invalid choice: 'phone'"),
        (["check", "--path", "/no/such/folder"], "no such folder"),
        (["check", "--import", "/no/such/tools.py"], "--import /no/such/tools.py: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mosaic_gym.cli", *argv], capture_output=True, text=True)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_an_imported_file_that_raises_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "tools.py"
    broken.write_text("raise ValueError('tool registered twice')\n")
    assert main(["check", "--import", str(broken)]) == 2
    assert capsys.readouterr().err == f"mosaic-gym check: error: --import {broken}: ValueError: tool registered twice\n"
