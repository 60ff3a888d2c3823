"""What a resumed bulk run goes on from: the chunking its manifest records, and parts.

A resumed run must cut the file as the interrupted run did (chunk ids and parts
depend on it), whatever the default was when that run started, and join parts an
older version wrote as well as its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
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


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_parquet_part_holds_the_results_and_a_resume_joins_them_with_the_input(
    tmp_path: Path, suffix: str
) -> None:
    """A Parquet output's parts keep only the two result columns; the resumed run reads
    the input's columns again and writes the uninterrupted run's bytes, also from a part
    an older version wrote (the whole table, as Arrow IPC)."""
    src = csv_file(tmp_path / "in.csv", 100, bad={7: "r7,x,1"})
    if suffix == ".parquet":  # typed columns, an input's own (stale) result column too
        table = pacsv.read_csv(src).append_column("error", pa.array(["old"] * 100))
        pq.write_table(
            table.replace_schema_metadata({"origin": "test"}), src := src.with_suffix(suffix)
        )
    whole, out = tmp_path / "whole.parquet", tmp_path / "out.parquet"
    score_file(src, whole, LinearScorer(), ScoreOptions(chunk_rows=10))
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, LinearScorer(fail_after=6), ScoreOptions(chunk_rows=10))
    found = sorted(ResumableSink.dir_of(out).glob("*.part"))
    assert len(found) >= 2
    for part in found:
        assert pa.ipc.open_stream(part.read_bytes()).read_all().column_names == [
            "earnings_usd",
            "error",
        ]
    _as_an_older_version_wrote(found[1], whole, index=1)
    _manifest_of_an_older_version(out)
    summary = score_file(src, out, LinearScorer(), ScoreOptions(resume=True))
    assert summary.resumed_chunks == len(found)
    assert out.read_bytes() == whole.read_bytes()


def _as_an_older_version_wrote(part: Path, whole: Path, index: int) -> None:
    """Replace a part with the whole chunk (input and result columns), its checksum named."""
    table = pq.read_table(whole).slice(10 * index, 10)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    number, ok, failed = part.name.split(".")[:3]
    part.unlink()
    digest = hashlib.sha256(data).hexdigest()[:32]
    (part.parent / f"{number}.{ok}.{failed}.{digest}.part").write_bytes(data)


def _manifest_of_an_older_version(output: Path) -> None:
    path = ResumableSink.dir_of(output) / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["part_format"]  # versions before results parts wrote none
    path.write_text(json.dumps(manifest))


def test_a_resumed_older_run_records_its_part_format_before_its_first_part(
    tmp_path: Path,
) -> None:
    """So a version before results parts refuses the directory from then on, rather than
    join results parts as whole tables."""
    src = csv_file(tmp_path / "in.csv", 100)
    out = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, LinearScorer(fail_after=2), ScoreOptions(chunk_rows=10))
    _manifest_of_an_older_version(out)
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, LinearScorer(fail_after=0), ScoreOptions(resume=True))
    manifest = json.loads((ResumableSink.dir_of(out) / "manifest.json").read_text())
    assert manifest["part_format"] == "results" and manifest["chunk_rows"] == 10
