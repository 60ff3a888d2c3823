"""`inferq bench scale`'s idle polling: set for the run, put back however it ends, and
said in the JSON where the machine has no such knob."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferq.bench.idle_poll import POLL_NS, polling_idle

OLD = {"guest_halt_poll_ns": "0", "guest_halt_poll_grow_start": "50000"}


def _params(tmp_path: Path) -> Path:
    folder = tmp_path / "parameters"
    folder.mkdir()
    for name, value in {**OLD, "guest_halt_poll_allow_shrink": "Y"}.items():
        (folder / name).write_text(value + "\n")
    return folder


def _read(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in folder.iterdir()}


def test_polls_during_the_run_and_puts_the_old_values_back(tmp_path: Path) -> None:
    folder = _params(tmp_path)
    with pytest.raises(RuntimeError), polling_idle(folder) as idle:
        assert _read(folder) == {
            "guest_halt_poll_ns": str(POLL_NS),
            "guest_halt_poll_grow_start": str(POLL_NS),
            "guest_halt_poll_allow_shrink": "N",
        }
        assert idle.startswith("polled") and "was 0" in idle
        raise RuntimeError("the run failed")
    assert _read(folder) == {**OLD, "guest_halt_poll_allow_shrink": "Y"}


def test_a_machine_without_the_knob_runs_as_it_is(tmp_path: Path) -> None:
    with polling_idle(tmp_path / "absent") as idle:
        assert idle.startswith("as the machine runs it (no haltpoll")


def test_a_knob_that_cannot_be_written_leaves_everything_as_it_was(tmp_path: Path) -> None:
    folder = _params(tmp_path)
    (folder / "guest_halt_poll_allow_shrink").unlink()
    # Readable, but no one may write it, root included (the bench runs as root).
    (folder / "guest_halt_poll_allow_shrink").symlink_to("/proc/version")
    with polling_idle(folder) as idle:
        assert idle.startswith("as the machine runs it (haltpoll parameters not writable")
        # The two written before the refusal are back already, during the run.
        assert (folder / "guest_halt_poll_ns").read_text().strip() == "0"
        assert (folder / "guest_halt_poll_grow_start").read_text().strip() == "50000"
