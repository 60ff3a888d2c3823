"""The chunk size of a bulk run: the default for a new run, the recorded one for a resume.

A resumed run must cut the file as the interrupted run did (chunk ids and parts
depend on it), whatever the default was when that run started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.bulk.score_file import DEFAULT_CHUNK_ROWS, ScoreOptions, score_file
from producer.bulk.sinks import ResumableSink, ResumeError
from tests.support.bulk import LinearScorer, csv_file


def _recorded(output: Path) -> int:
    manifest = json.loads((ResumableSink.dir_of(output) / "manifest.json").read_text())
    return int(manifest["chunk_rows"])


def test_a_new_run_uses_the_default_chunk_size(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", DEFAULT_CHUNK_ROWS + 10)
    scorer = LinearScorer()
    summary = score_file(src, tmp_path / "out.csv", scorer, ScoreOptions())
    assert (summary.chunks, len(scorer.chunks), summary.rows) == (2, 2, DEFAULT_CHUNK_ROWS + 10)


def test_a_resume_without_a_size_goes_on_with_the_recorded_one(tmp_path: Path) -> None:
    """A run started with 10-row chunks (an older version's default, say) resumes with
    10-row chunks: its parts are reused and the output is the uninterrupted run's."""
    src = csv_file(tmp_path / "in.csv", 100, bad={7: "r7,x,1"})
    whole, out = tmp_path / "whole.csv", tmp_path / "out.csv"
    score_file(src, whole, LinearScorer(), ScoreOptions(chunk_rows=10))
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, LinearScorer(fail_after=4), ScoreOptions(chunk_rows=10))
    assert _recorded(out) == 10
    second = LinearScorer()
    summary = score_file(src, out, second, ScoreOptions(resume=True))
    assert out.read_bytes() == whole.read_bytes()
    assert summary.resumed_chunks > 0 and len(second.chunks) == 10 - summary.resumed_chunks


def test_a_resume_with_another_size_is_refused(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", 100)
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, LinearScorer(fail_after=2), ScoreOptions(chunk_rows=10))
    with pytest.raises(ResumeError, match="chunk_rows changed"):
        score_file(src, out, LinearScorer(), ScoreOptions(chunk_rows=20, resume=True))
    assert _recorded(out) == 10  # refused: the interrupted run's work is left as it was


def test_a_resume_with_nothing_to_resume_starts_with_the_default(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", 30)
    scorer = LinearScorer()
    summary = score_file(src, tmp_path / "out.csv", scorer, ScoreOptions(resume=True))
    assert (summary.chunks, summary.resumed_chunks, summary.rows) == (1, 0, 30)


def test_an_unreadable_manifest_is_refused_not_guessed(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", 30)
    out = tmp_path / "out.csv"
    work = ResumableSink.dir_of(out)
    work.mkdir()
    (work / "manifest.json").write_text("{not json")
    assert ResumableSink.recorded_chunk_rows(out) is None
    with pytest.raises((ResumeError, ValueError)):
        score_file(src, out, LinearScorer(), ScoreOptions(resume=True))
