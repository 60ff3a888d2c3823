"""`python -m inferq.tools.sample_data`: the sample input the compose file's bulk run
reads (docker-compose.yml's header writes it with this command)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from inferq.core.constants import COURSE_FEATURES, COURSE_TARGET
from inferq.tools import sample_data


def test_it_writes_the_rows_asked_for_with_the_course_columns(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "in.csv"
    sample_data.main([str(out), "--rows", "250", "--seed", "3"])
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 250
    assert list(rows[0]) == [*COURSE_FEATURES, COURSE_TARGET]
    again = tmp_path / "again.csv"
    sample_data.main([str(again), "--rows", "250", "--seed", "3"])
    assert again.read_bytes() == out.read_bytes(), "same seed, same rows"


def test_a_path_it_cannot_write_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as stopped:
        sample_data.main([str(blocker / "in.csv")])  # a file where a folder would be
    assert stopped.value.code == 2
    assert f"cannot write {blocker / 'in.csv'}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        sample_data.main([str(tmp_path / "x.csv"), "--rows", "0"])
    assert refused.value.code == 2
