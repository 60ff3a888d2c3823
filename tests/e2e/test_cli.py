"""The `inferq` command line against the session's real worker."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from inferq.core.contract import schema_documents
from inferq.core.settings import Settings
from inferq.ops.worker_process import WorkerProcess
from tests.support.harness import SCHEMA_DIR, cli_env, run_inferq

pytestmark = pytest.mark.e2e

ROW = {
    "critic_rating": 3.5,
    "is_action": 1,
    "is_exclusive_to_us": 0,
    "is_portable": 0,
    "is_role_playing": 1,
    "is_sequel": 1,
    "is_sports": 0,
    "suitable_for_kids": 0,
    "unit_price": 59.99,
}


inferq = run_inferq


def test_predict_json_prints_one_object_per_row(worker: WorkerProcess, settings: Settings) -> None:
    one = inferq("predict", "--json", json.dumps(ROW), env=cli_env(settings))
    assert one.returncode == 0, one.stderr
    [line] = one.stdout.splitlines()
    assert json.loads(line)["earnings_usd"] > 0
    many = inferq("predict", "--json", json.dumps([ROW, ROW, ROW]), env=cli_env(settings))
    records = [json.loads(ln) for ln in many.stdout.splitlines()]
    assert [r["row"] for r in records] == [0, 1, 2]
    assert len({r["earnings_usd"] for r in records}) == 1


def test_predict_json_bad_input_is_a_clear_error(worker: WorkerProcess, settings: Settings) -> None:
    proc = inferq(
        "predict", "--json", json.dumps({**ROW, "unit_price": "free"}), env=cli_env(settings)
    )
    assert proc.returncode == 1
    assert "unit_price: not_a_number" in proc.stderr


def test_predict_csv_adds_earnings_and_passes_other_columns(
    worker: WorkerProcess, settings: Settings, data_dir: Path
) -> None:
    proc = inferq(
        "predict",
        "--csv",
        str(data_dir / "test.csv"),
        "--rows-per-job",
        "64",
        env=cli_env(settings),
    )
    assert proc.returncode == 0, proc.stderr
    out = list(csv.DictReader(io.StringIO(proc.stdout)))
    with (data_dir / "test.csv").open() as f:
        source = list(csv.DictReader(f))
    assert len(out) == len(source) == 300
    assert list(out[0]) == [*source[0], "earnings_usd"]
    assert [r["total_earnings"] for r in out] == [r["total_earnings"] for r in source]
    errors = [abs(float(r["earnings_usd"]) - float(r["total_earnings"])) for r in out]
    assert sum(errors) / len(errors) < 20_000


def test_predict_csv_names_missing_columns(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    path.write_text("critic_rating,unit_price\n3.5,59.99\n")
    proc = inferq("predict", "--csv", str(path), env=cli_env(settings))
    assert proc.returncode == 1
    assert "lacks column(s): is_action, is_exclusive_to_us" in proc.stderr


def test_predict_csv_names_the_line_of_a_bad_cell(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    header = ",".join(ROW)
    good = ",".join(str(v) for v in ROW.values())
    path.write_text(f"{header}\n{good}\n{good}\n{good.replace('59.99', 'n/a')}\n")
    proc = inferq("predict", "--csv", str(path), env=cli_env(settings))
    assert proc.returncode == 1
    assert "line 4, unit_price: not_a_number" in proc.stderr


def test_predict_needs_exactly_one_input() -> None:
    proc = inferq("predict")
    assert proc.returncode == 2 and "exactly one of --json or --csv" in proc.stderr


def test_committed_json_schemas_are_up_to_date() -> None:
    directory = SCHEMA_DIR
    for name, doc in schema_documents().items():
        committed = json.loads((directory / f"{name}.schema.json").read_text())
        assert committed == doc, f"run `inferq schema` to refresh {name}"


def test_demo_runs_end_to_end_with_its_own_redis(regressor_path: Path, models_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env["INFERQ_REGRESSOR_PATH"] = str(regressor_path)
    env["INFERQ_MODELS_DIR"] = str(models_dir)
    proc = inferq("demo", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "started for this demo" in proc.stdout
    assert "predicted" in proc.stdout and "not_a_number" in proc.stdout
    assert "6 jobs ran in" in proc.stdout
    assert "image   chelsea.jpg: tiger cat" in proc.stdout
    assert "image   coffee.jpg: espresso" in proc.stdout
    assert "worker  stopped (exit code 0)" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["worker"],
        ["predict", "--json", "{}"],
        ["bench", "stream"],
        ["score", "README.md", "-o", "y"],
    ],
    ids=["worker", "predict", "bench", "score"],
)
def test_invalid_settings_exit_2_with_the_setting_named(argv: list[str]) -> None:
    """Every command reads the same settings and refuses bad ones the same way, before
    starting anything: exit 2, like a usage error, naming the variable."""
    proc = inferq(*argv, env={**os.environ, "INFERQ_MAX_WAIT_MS": "soon"})
    assert proc.returncode == 2, proc.stderr
    assert "invalid settings" in proc.stderr and "INFERQ_MAX_WAIT_MS" in proc.stderr


@pytest.mark.parametrize("name", ["stream", "bulk", "vision", "soak"])
def test_a_benchmark_without_models_says_how_to_build_them(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env["INFERQ_MODELS_DIR"] = str(tmp_path)  # empty: neither model was built there
    env["INFERQ_REGRESSOR_PATH"] = str(tmp_path / "regressor.h5")
    proc = inferq("bench", name, env=env, timeout_s=60)
    assert proc.returncode == 2, proc.stderr
    assert "does not exist" in proc.stderr and "inferq models build" in proc.stderr
    assert "Traceback" not in proc.stderr
