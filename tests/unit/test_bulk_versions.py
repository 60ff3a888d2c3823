"""One model version per bulk output: a roll-out mid-run restarts the run on the new
model, or stops it, and a resumed run never reuses parts of another model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from inferq.errors import ModelVersionMismatch
from producer.bulk.score_file import ScoreOptions, score_file
from producer.bulk.sinks import ModelChangedSinceRun
from tests.support.bulk import LinearScorer, RollingScorer, csv_file


def _dollars(path: Path) -> list[float]:
    with path.open() as f:
        return [float(row["earnings_usd"]) for row in csv.DictReader(f)]


def test_a_model_change_mid_run_scores_everything_again_on_the_new_model(
    tmp_path: Path,
) -> None:
    src = csv_file(tmp_path / "in.csv", 30)
    scorer = RollingScorer(switch_after=2)
    out = tmp_path / "o.csv"
    summary = score_file(src, out, scorer, ScoreOptions(chunk_rows=5, in_flight=1))
    assert summary.model_restarts == 1 and summary.rows == 30
    assert _dollars(out) == [100.0 * i + i % 7 for i in range(30)]  # all on the new model
    assert not out.with_name("o.csv.inferq-parts").exists()


def test_with_fail_a_model_change_stops_the_run_without_an_output(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", 30)
    options = ScoreOptions(chunk_rows=5, in_flight=1, on_new_model="fail")
    with pytest.raises(ModelVersionMismatch, match=r"fake-1.*fake-2"):
        score_file(src, tmp_path / "o.csv", RollingScorer(switch_after=2), options)
    assert not (tmp_path / "o.csv").exists()


def test_a_resume_never_reuses_parts_of_another_model(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", 30)
    out = tmp_path / "o.csv"
    with pytest.raises(KeyboardInterrupt):  # parts of model fake-1 are left behind
        score_file(src, out, LinearScorer(fail_after=3), ScoreOptions(chunk_rows=5, in_flight=1))
    newer = RollingScorer(switch_after=0)
    newer.refresh()  # today's workers serve fake-2
    fail = ScoreOptions(chunk_rows=5, resume=True, on_new_model="fail")
    with pytest.raises(ModelChangedSinceRun, match=r"fake-1.*fake-2"):
        score_file(src, out, newer, fail)
    summary = score_file(src, out, newer, ScoreOptions(chunk_rows=5, resume=True))
    assert summary.model_restarts == 1 and summary.resumed_chunks == 0
    assert _dollars(out) == [100.0 * i + i % 7 for i in range(30)]
