"""Export a run's trajectories as a Hugging Face ``datasets.Dataset`` or a parquet file.

Arrow needs one schema for every row, so each record becomes flat scalar columns (who played
which episode, and the outcome fields people filter on), ``messages`` as a list of
``{role, content, name, tool_calls, tool_call_id}`` structs (null where a message has none;
``tool_calls``, from the native protocol, as JSON text), and the nested,
heterogeneous parts as JSON text: ``steps_json`` (each step with its action arguments and
journal) and ``outcome_json`` (the full Outcome). ``json.loads`` turns them back.

pyarrow and datasets are imported only when used: ``pip install "mosaic-gym[eval]"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mosaic_gym.evaluation.records import outcome_of
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalError, load_records, load_run
from mosaic_gym.outcome import scalar_reward

if TYPE_CHECKING:
    import datasets

FORMATS = ("parquet", "dataset")
INSTALL_HINT = 'pip install "mosaic-gym[eval]"'

# (column, arrow type name); every column is nullable.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("episode", "string"),
    ("env", "string"),
    ("index", "int64"),
    ("seed", "int64"),
    ("split", "string"),
    ("task", "string"),
    ("kind", "string"),
    ("attack", "string"),
    ("lookalike", "string"),
    ("agent_name", "string"),
    ("agent_model", "string"),
    ("agent_adapter", "string"),
    ("protocol", "string"),
    ("completed", "bool"),
    ("refused", "bool"),
    ("answered", "bool"),
    ("injected_goal_executed", "bool"),
    ("harm_score", "float64"),
    ("harms", "int64"),
    ("irreversible_harms", "int64"),
    ("leaks", "int64"),
    ("irreversible_calls", "int64"),
    ("format_errors", "int64"),
    ("tool_errors", "int64"),
    ("steps", "int64"),
    ("truncated", "bool"),
    ("agent_tokens", "int64"),
    ("reward", "float64"),
    ("messages", "messages"),
    ("steps_json", "string"),
    ("outcome_json", "string"),
)
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id")


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    """One trajectory record as a row with the columns of ``COLUMNS``."""
    outcome = outcome_of(record)
    agent = record.get("agent") or {}
    return {
        "episode": record["episode"],
        "env": record["env"],
        "index": record["index"],
        "seed": record["seed"],
        "split": record["split"],
        "task": record["task"],
        "kind": record["kind"],
        "attack": record.get("attack"),
        "lookalike": outcome.lookalike,
        "agent_name": agent.get("name"),
        "agent_model": agent.get("model"),
        "agent_adapter": agent.get("adapter"),
        "protocol": record.get("protocol", "text"),
        "completed": outcome.completed,
        "refused": outcome.refused,
        "answered": outcome.answered,
        "injected_goal_executed": outcome.injected_goal_executed,
        "harm_score": outcome.harm_score,
        "harms": len(outcome.harms),
        "irreversible_harms": len(outcome.irreversible_harms),
        "leaks": len(outcome.leaks),
        "irreversible_calls": len(outcome.irreversible_calls),
        "format_errors": outcome.format_errors,
        "tool_errors": outcome.tool_errors,
        "steps": outcome.steps,
        "truncated": outcome.truncated,
        "agent_tokens": outcome.agent_tokens,
        "reward": scalar_reward(outcome),
        "messages": [{key: _text(message.get(key)) for key in MESSAGE_FIELDS} for message in record["messages"]],
        "steps_json": json.dumps(record["steps"], ensure_ascii=False),
        "outcome_json": json.dumps(record["outcome"], ensure_ascii=False),
    }


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)  # content given as parts or objects: keep it, as JSON


def rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a finished run directory, in episode order (env, then index)."""
    load_run(run_dir)  # a clear error for a missing or unfinished run directory
    path = run_dir / TRAJECTORIES
    if not path.exists():
        raise EvalError(f"{run_dir}: no {TRAJECTORIES} (is this an eval output directory?)")
    try:
        records = sorted(load_records(path).values(), key=lambda r: (r["env"], r["index"]))
        return [to_row(record) for record in records]
    except (KeyError, TypeError, AttributeError, ValidationError):
        raise EvalError(f"{path}: holds something other than trajectory records") from None


def arrow_schema() -> Any:
    """The fixed Arrow schema of the rows (a ``pyarrow.Schema``; needs pyarrow)."""
    pa = _require("pyarrow")
    message = pa.list_(pa.struct([(name, pa.string()) for name in MESSAGE_FIELDS]))
    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_(), "float64": pa.float64()}
    return pa.schema([(name, message if kind == "messages" else types[kind]) for name, kind in COLUMNS])


def to_table(run_dir: Path) -> Any:
    """The run's trajectories as a ``pyarrow.Table`` with the fixed schema (needs pyarrow)."""
    pa = _require("pyarrow")
    return pa.Table.from_pylist(rows(run_dir), schema=arrow_schema())


def to_dataset(run_dir: str | Path) -> datasets.Dataset:
    """The run's trajectories as a ``datasets.Dataset``, one row per episode (needs datasets)."""
    ds = _require("datasets")
    run_dir = Path(run_dir)
    features = ds.Features.from_arrow_schema(arrow_schema())
    return ds.Dataset.from_list(rows(run_dir), features=features)


def export(run_dir: Path, fmt: str, to: Path) -> int:
    """Write the run as parquet (a file at ``to``) or a saved dataset (a folder at ``to``); returns the rows."""
    if fmt not in FORMATS:
        raise EvalError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "parquet":
        if to.is_dir():
            raise EvalError(f"--to {to} is a folder; give the path of the parquet file to write")
        table = to_table(run_dir)
        parquet = _require("pyarrow.parquet")
        to.parent.mkdir(parents=True, exist_ok=True)
        parquet.write_table(table, to)
        return int(table.num_rows)
    _check_dataset_target(to)
    dataset = to_dataset(run_dir)
    dataset.save_to_disk(str(to))
    return len(dataset)


def _check_dataset_target(to: Path) -> None:
    """save_to_disk writes into a folder: refuse a file, or a folder holding anything but a saved dataset."""
    if to.exists() and not to.is_dir():
        raise EvalError(f"--to {to} is a file; give a folder to save the dataset in")
    if to.is_dir() and any(to.iterdir()) and not (to / "dataset_info.json").exists():
        raise EvalError(f"--to {to} is a folder with other files in it; give a new or empty folder")


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise EvalError(f"exporting needs the '{top}' package: {INSTALL_HINT}") from None
