"""mosaic-gym export: trajectories to a datasets.Dataset or parquet, and back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mosaic_gym.cli.main import main
from mosaic_gym.evaluation.export import COLUMNS, to_dataset, to_row
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, EvalError, load_records, run_eval

EPISODES = 10


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "naive"
    run_eval(EvalConfig(agent="naive", episodes=EPISODES), out)
    return out


def _records(run: Path) -> dict[str, dict]:
    return load_records(run / TRAJECTORIES)


def test_to_dataset_has_one_row_per_episode_and_every_column(run: Path) -> None:
    dataset = to_dataset(run)
    assert len(dataset) == EPISODES
    assert dataset.column_names == [name for name, _ in COLUMNS]
    records = _records(run)
    for row in dataset:
        record = records[row["episode"]]
        assert json.loads(row["steps_json"]) == record["steps"]
        assert json.loads(row["outcome_json"]) == record["outcome"]
        assert row["agent_name"] == "naive" and row["agent_model"] is None
        assert [m["role"] for m in row["messages"]] == [m["role"] for m in record["messages"]]
        assert all(
            m["name"] is None for m, r in zip(row["messages"], record["messages"], strict=True) if "name" not in r
        )
        assert row["steps"] == record["outcome"]["steps"]


def test_row_of_a_message_without_name_and_with_structured_content(run: Path) -> None:
    record = next(iter(_records(run).values()))
    record = {**record, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    row = to_row(record)
    content = '[{"type": "text", "text": "hi"}]'
    assert row["messages"] == [
        {"role": "user", "content": content, "name": None, "tool_calls": None, "tool_call_id": None}
    ]
    assert row["protocol"] == "text"


def test_row_of_a_native_chat_keeps_its_calls_and_ids(run: Path) -> None:
    record = next(iter(_records(run).values()))
    call = {"id": "c1", "type": "function", "function": {"name": "list_folder", "arguments": "{}"}}
    messages = [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "name": "list_folder", "content": "[]"},
    ]
    row = to_row({**record, "protocol": "native", "messages": messages})
    assert json.loads(row["messages"][0]["tool_calls"]) == [call] and row["messages"][1]["tool_call_id"] == "c1"
    assert row["protocol"] == "native"


def test_export_parquet_reads_back_with_pyarrow(run: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "out" / "run.parquet"
    assert main(["export", str(run), "--format", "parquet", "--to", str(path)]) == 0
    table = pq.read_table(path)
    assert table.num_rows == EPISODES
    assert table.column_names == [name for name, _ in COLUMNS]
    assert str(table.schema.field("messages").type) == (
        "list<element: struct<role: string, content: string, name: string, tool_calls: string, tool_call_id: string>>"
    )
    steps = [json.loads(text) for text in table.column("steps_json").to_pylist()]
    assert all(isinstance(s, list) and s and "journal" in s[0] for s in steps)


def test_export_dataset_saves_to_disk(run: Path, tmp_path: Path) -> None:
    import datasets

    path = tmp_path / "ds"
    assert main(["export", str(run), "--format", "dataset", "--to", str(path)]) == 0
    loaded = datasets.load_from_disk(str(path))
    assert len(loaded) == EPISODES and "outcome_json" in loaded.column_names


def test_export_errors_are_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--format", "parquet", "--to", str(tmp_path / "x.parquet")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "dataset", "--to", str(run)]) == 2
    assert "other files" in capsys.readouterr().err


def test_missing_datasets_package_says_how_to_install(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(EvalError, match=r'pip install "mosaic-gym\[eval\]"'):
        to_dataset(run)
