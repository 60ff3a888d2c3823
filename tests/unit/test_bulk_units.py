"""Bulk scoring logic without workers: columns, formats, chunking, parts, resume.

The scorer here is a small fake behind the real Scorer interface (a linear
function of the features), so these tests check the file handling alone; the
end-to-end tests (test_bulk_e2e.py) use real workers and the real model.
"""

from __future__ import annotations

import base64
import errno
import json
import resource
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from inferq.core.chunks import chunk_id, decode_matrix, encode_matrix
from inferq.core.tables import TableError
from inferq.errors import InvalidInput
from producer.bulk.columns import from_records, from_table
from producer.bulk.formats import Format, FormatError, read_chunks
from producer.bulk.score_file import ScoreOptions, score_file
from producer.bulk.sinks import ResumeError
from tests.support.bulk import FEATURES, LinearScorer, csv_file


def test_text_columns_give_one_error_per_bad_row() -> None:
    table = pa.table({"a": ["1", " 2", "", "x", "nan", "1e13", "-inf"], "b": ["0"] * 7})
    parsed = from_table(table, FEATURES)
    assert parsed.values[:2, 0].tolist() == [1.0, 2.0]
    codes = [e.split(":")[0] if e else None for e in parsed.errors]
    assert codes == [
        None,
        None,
        "missing_field",
        "not_a_number",
        "not_finite",
        "out_of_range",
        "not_finite",
    ]
    assert parsed.ok_rows.tolist() == [True, True, False, False, False, False, False]


def test_json_records_are_strict_like_stream_jobs() -> None:
    records: list[Any] = [{"a": 1, "b": 2}, {"a": "1", "b": 2}, {"a": True, "b": 1}, {"b": 1}]
    errors = from_records(records, FEATURES).errors
    assert errors[0] is None
    assert [e.split(":")[0] for e in errors[1:] if e] == [
        "not_a_number",
        "not_a_number",
        "missing_field",
    ]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_chunks_have_exactly_chunk_rows(tmp_path: Path, fmt: str) -> None:
    src = csv_file(tmp_path / "in.csv", 1000)
    if fmt == "parquet":
        pq.write_table(pacsv.read_csv(src), tmp_path / "in.parquet", row_group_size=333)
        src = tmp_path / "in.parquet"
    sizes = [c.num_rows for c in read_chunks(src, Format(fmt), 128)]
    assert sizes == [128] * 7 + [104]


def test_wire_matrix_round_trip_and_size_check() -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.array_equal(decode_matrix(encode_matrix(x), 4, 3), x)
    with pytest.raises(InvalidInput, match="48 bytes for 5 rows x 3 float32; expected 60"):
        decode_matrix(encode_matrix(x), 5, 3)
    with pytest.raises(InvalidInput, match="base64"):
        decode_matrix("not base64!", 4, 3)
    assert np.array_equal(decode_matrix(encode_matrix(x, None), 4, 3, None), x)
    bomb = base64.b64encode(zlib.compress(bytes(50_000_000))).decode()
    with pytest.raises(InvalidInput, match="13 bytes for 1 rows x 3 float32; expected 12"):
        decode_matrix(bomb, 1, 3)  # inflated no further than one byte past the size
    assert chunk_id("d", 10, 3, "v") == chunk_id("d", 10, 3, "v") != chunk_id("d", 10, 4, "v")


def test_zstd_chunks_round_trip_and_a_frame_of_another_size_is_refused() -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    data = encode_matrix(x, "zstd")
    assert np.array_equal(decode_matrix(data, 4, 3, "zstd"), x)
    # zstd frames name their content size: fewer bytes than rows x columns are refused
    # (never padded with whatever memory held), as are more (a bomb stops there).
    for rows in (5, 3):
        with pytest.raises(InvalidInput, match="bad_chunk"):
            decode_matrix(data, rows, 3, "zstd")
    bomb = encode_matrix(np.zeros((4_000_000, 3)), "zstd")
    assert len(bomb) < 10_000
    with pytest.raises(InvalidInput, match="bad_chunk"):
        decode_matrix(bomb, 1, 3, "zstd")
    with pytest.raises(InvalidInput, match="bad_chunk"):
        decode_matrix(encode_matrix(x, "zlib"), 4, 3, "zstd")  # not what it says it is
    assert decode_matrix(encode_matrix(x[:0], "zstd"), 0, 3, "zstd").shape == (0, 3)


@pytest.mark.parametrize(
    ("suffix", "out"), [(".csv", ".csv"), (".csv", ".parquet"), (".csv", ".jsonl")]
)
def test_every_row_in_order_with_results_and_errors(tmp_path: Path, suffix: str, out: str) -> None:
    src = csv_file(tmp_path / f"in{suffix}", 50, bad={3: "r3,x,1", 40: "r40,,2"})
    dst = tmp_path / f"out{out}"
    summary = score_file(src, dst, LinearScorer(), ScoreOptions(chunk_rows=16))
    assert (summary.rows, summary.ok, summary.failed, summary.chunks) == (50, 48, 2, 4)
    rows = _read(dst)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(50)]
    assert rows[5]["earnings_usd"] == 55.0 and rows[5]["error"] is None
    assert rows[3]["earnings_usd"] is None and rows[3]["error"].startswith("not_a_number: a")
    assert rows[40]["error"].startswith("missing_field: a")
    assert not dst.with_name(dst.name + ".inferq-parts").exists()


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    table = (
        pq.read_table(path)
        if path.suffix == ".parquet"
        else pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={"id": pa.string()}, strings_can_be_null=True
            ),
        )
    )
    return table.to_pylist()


@pytest.mark.parametrize("out", [".csv", ".parquet"])
def test_a_killed_run_resumes_to_the_same_bytes(tmp_path: Path, out: str) -> None:
    # The uninterrupted run writes its output as its parts come; the resumed one joins
    # its parts: the same bytes either way.
    src = csv_file(tmp_path / "in.csv", 100, bad={7: "r7,x,1"})
    whole, resumed = tmp_path / f"whole{out}", tmp_path / f"resumed{out}"
    score_file(src, whole, LinearScorer(), ScoreOptions(chunk_rows=10))
    with pytest.raises(KeyboardInterrupt):
        score_file(src, resumed, LinearScorer(fail_after=4), ScoreOptions(chunk_rows=10))
    with pytest.raises(ResumeError, match="--resume"):
        score_file(src, resumed, LinearScorer(), ScoreOptions(chunk_rows=10))
    second = LinearScorer()
    summary = score_file(src, resumed, second, ScoreOptions(chunk_rows=10, resume=True))
    assert resumed.read_bytes() == whole.read_bytes()
    assert summary.resumed_chunks > 0 and len(second.chunks) == 10 - summary.resumed_chunks
    assert (summary.rows, summary.failed) == (100, 1)


def test_resume_refuses_a_changed_input(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", 30)
    with pytest.raises(KeyboardInterrupt):
        score_file(src, tmp_path / "o.csv", LinearScorer(fail_after=2), ScoreOptions(chunk_rows=5))
    csv_file(src, 31)
    with pytest.raises(ResumeError, match="input_sha256 changed"):
        score_file(src, tmp_path / "o.csv", LinearScorer(), ScoreOptions(chunk_rows=5, resume=True))


def test_a_part_cut_short_or_damaged_is_scored_again(tmp_path: Path) -> None:
    src = csv_file(tmp_path / "in.csv", 30)
    whole = tmp_path / "whole.csv"
    score_file(src, whole, LinearScorer(), ScoreOptions(chunk_rows=5))
    out = tmp_path / "o.csv"
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, LinearScorer(fail_after=3), ScoreOptions(chunk_rows=5, in_flight=1))
    parts = sorted(out.with_name("o.csv.inferq-parts").glob("*.part"))
    parts[1].write_bytes(parts[1].read_bytes()[:3])  # what a crash can leave behind
    damaged = bytearray(parts[2].read_bytes())
    damaged[0] ^= 0xFF  # the same size, other bytes: only the checksum can tell
    parts[2].write_bytes(bytes(damaged))
    scorer = LinearScorer()
    score_file(src, out, scorer, ScoreOptions(chunk_rows=5, resume=True))
    assert out.read_bytes() == whole.read_bytes() and len(scorer.chunks) == 5


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty, header = tmp_path / "empty.csv", tmp_path / "header.csv"
    empty.write_text("")
    header.write_text("id,a,b\n")
    assert score_file(empty, tmp_path / "e.csv", LinearScorer(), ScoreOptions()).rows == 0
    assert (tmp_path / "e.csv").read_text().strip() == '"earnings_usd","error"'
    assert score_file(header, tmp_path / "h.csv", LinearScorer(), ScoreOptions()).rows == 0
    assert (tmp_path / "h.csv").read_text().strip() == '"id","a","b","earnings_usd","error"'
    (tmp_path / "empty.jsonl").write_text("")
    score_file(tmp_path / "empty.jsonl", tmp_path / "e.jsonl", LinearScorer(), ScoreOptions())
    assert (tmp_path / "e.jsonl").read_bytes() == b""


def test_wrong_column_names_fail_before_scoring(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,A,bb\nr0,1,2\n")
    scorer = LinearScorer()
    with pytest.raises(
        TableError,
        match=r"lacks feature column\(s\): a \(did you mean A\?\), b \(did you mean bb\?\)",
    ):
        score_file(src, tmp_path / "o.csv", scorer, ScoreOptions())
    assert scorer.chunks == [] and not (tmp_path / "o.csv.inferq-parts").exists()


def test_jsonl_bad_lines_are_failed_rows(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1, "b": 2, "x": "keep"}\n\n[1, 2]\n{not json\n{"a": 2, "b": 0}\n')
    summary = score_file(src, tmp_path / "o.jsonl", LinearScorer(), ScoreOptions())
    rows = _read(tmp_path / "o.jsonl")
    assert (summary.rows, summary.failed) == (4, 2)
    assert rows[0] == {"a": 1, "b": 2, "x": "keep", "earnings_usd": 12.0, "error": None}
    assert rows[1]["error"].startswith("row_not_an_object")
    assert rows[2]["error"].startswith("invalid_json: line 4")
    with pytest.raises(FormatError, match="JSON Lines only"):
        score_file(src, tmp_path / "o.csv", LinearScorer(), ScoreOptions())


def test_a_failed_part_write_ends_the_run_with_its_error(tmp_path: Path) -> None:
    """A full disk met by the writer thread: the run raises that OSError (the command's
    exit code comes from it), and returns; the parts written before it are kept."""
    src = csv_file(tmp_path / "in.csv", 40_000)
    dst = tmp_path / "out.csv"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Past 64 KiB a write fails with EFBIG (Python ignores SIGXFSZ): each part is larger.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(OSError) as failure:
            score_file(src, dst, LinearScorer(), ScoreOptions(chunk_rows=8192))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert failure.value.errno == errno.EFBIG
    assert not dst.exists()
    assert [t.name for t in threading.enumerate() if t.name.startswith("inferq-writer")] == []
    summary = score_file(src, dst, LinearScorer(), ScoreOptions(chunk_rows=8192, resume=True))
    assert (summary.rows, summary.chunks, summary.resumed_chunks) == (40_000, 5, 0)


def test_a_file_broken_midway_ends_the_run_with_its_format_error(tmp_path: Path) -> None:
    """Read on the reader thread, a row past the first chunks that does not parse still
    ends the run with FormatError (exit 2), and no reader or writer is left running."""
    src = csv_file(tmp_path / "in.csv", 50_000, bad={45_000: "r45000,1,2,3"})
    with pytest.raises(FormatError, match="Expected 3 columns"):
        score_file(src, tmp_path / "out.csv", LinearScorer(), ScoreOptions(chunk_rows=4096))
    assert [t.name for t in threading.enumerate() if t.name.startswith("inferq-")] == []
