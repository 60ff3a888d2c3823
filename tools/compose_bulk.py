"""The bulk checks of tools/compose_check.py: the compose file's own header commands run
verbatim, a ./data the run's user cannot write, and a worker stopped mid-run."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from compose_report import Report
from compose_stack import COMPOSE, DATA, CheckFailed, Stack, csv_rows, wait_for

SAMPLE_ROWS = 100_000  # what `python -m inferq.tools.sample_data` writes by default
BIG_ROWS = 1_000_000
BIG_IN, BIG_OUT = "check-big.csv", "check-big-out.csv"
CREATED = ("in.csv", "out.csv", BIG_IN, BIG_OUT)
STRANGER = "4242"  # a user that owns nothing here
PARTS_BEFORE_STOP = 2
RUN_TIMEOUT_S = 1200.0


def header_commands() -> str:
    """The bulk lines of docker-compose.yml's header comment, as a user would paste them:
    the indented command lines after the one that announces the sample input."""
    lines = COMPOSE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "A sample input" in line)
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        commands.append(line.removeprefix("#   "))
    if not commands:
        raise CheckFailed("docker-compose.yml's header has no bulk commands")
    return "\n".join(["set -e", *commands])


def make_big_input() -> None:
    """BIG_ROWS rows: the sample input the header's commands wrote, over and over (made
    here, not in a container: each `docker compose run` copies the image under vfs)."""
    header, *rows = (DATA / "in.csv").read_text().splitlines(keepends=True)
    if not rows:
        raise CheckFailed("data/in.csv is empty: the header's commands did not run")
    with (DATA / BIG_IN).open("w") as out:
        out.write(header)
        for index in range(BIG_ROWS):
            out.write(rows[index % len(rows)])


class BulkChecks:
    def __init__(self, stack: Stack, report: Report) -> None:
        self.stack, self.report = stack, report

    def header_commands(self) -> None:
        script = header_commands()
        done = self.stack.shell(script, timeout_s=RUN_TIMEOUT_S)
        rows_in = csv_rows(DATA / "in.csv")[0] if (DATA / "in.csv").exists() else 0
        rows_out, errors = csv_rows(DATA / "out.csv") if (DATA / "out.csv").exists() else (0, 0)
        ok = done.code == 0 and rows_in == SAMPLE_ROWS and rows_out == rows_in and errors == 0
        steps = script.count("\n")
        figure = (
            f"{steps} lines, exit {done.code}: {rows_in:,} rows in, {rows_out:,} scored, "
            f"{errors} errors, {done.seconds:.0f} s"
        )
        if done.code != 0:
            figure += f" ({done.last_line()})"
        self.report.line(ok, "bulk: the header's commands, verbatim", figure)

    def wrong_owner(self) -> None:
        other = Stack(env={**self.stack.env, "DATA_UID": STRANGER, "DATA_GID": STRANGER})
        done = other.run("run", "--rm", "--no-deps", "bulk-score", timeout_s=300)
        said = done.err.strip().splitlines()[-1] if done.err.strip() else ""
        ok = (
            done.code == 2
            and "cannot write ./data" in said
            and f"DATA_UID={self.owner()[0]}" in said
        )
        self.report.line(ok, "bulk: ./data its user cannot write", f"exit {done.code}: {said}")

    @staticmethod
    def owner() -> tuple[int, int]:
        info = DATA.stat()
        return info.st_uid, info.st_gid

    def stop_mid_run(self) -> None:
        make_big_input()
        started = time.monotonic()
        run = self.stack.popen(
            "run",
            "--rm",
            "bulk-score",
            "inferq",
            "score",
            f"/data/{BIG_IN}",
            "-o",
            f"/data/{BIG_OUT}",
            "--resume",
        )
        parts = DATA / f"{BIG_OUT}.inferq-parts"
        wait_for(lambda: part_count(parts) >= PARTS_BEFORE_STOP, timeout_s=600, step_s=0.5)
        at_stop = part_count(parts)
        worker = self.stack.running("regression-worker")[0]
        stop = self.stack.run("stop", "regression-worker", timeout_s=120)
        code = self.stack.inspect(worker, "{{.State.ExitCode}}")
        warm = "Warm shutdown" in self.stack.docker("logs", "--tail", "200", worker).text
        self.stack.run("start", "regression-worker", timeout_s=120)
        try:
            out, err = run.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            run.kill()
            out, err = run.communicate()
        rows, errors = csv_rows(DATA / BIG_OUT) if (DATA / BIG_OUT).exists() else (0, 0)
        ok = stop.code == 0 and code == "0" and warm and run.returncode == 0
        ok = ok and rows == BIG_ROWS and errors == 0
        figure = (
            f"stopped with {at_stop} files in the parts folder, in {stop.seconds:.1f} s, "
            f"exit {code}"
            f"{' (Warm shutdown)' if warm else ', no warm shutdown in its log'}; started again; "
            f"the run exited {run.returncode}: {rows:,} of {BIG_ROWS:,} rows, {errors} errors, "
            f"{time.monotonic() - started:.0f} s"
        )
        if run.returncode != 0:
            figure += f" ({(out + err).strip().splitlines()[-1:]})"
        self.report.line(ok, "bulk: a worker stopped mid-run (docker compose stop)", figure)
        self.stack.wait_healthy(["regression-worker"], timeout_s=600)

    def remove_files(self) -> None:
        """What the checks wrote into ./data: the files, their part folders and locks."""
        for name in CREATED:
            for path in DATA.glob(f"{name}*"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def part_count(folder: Path) -> int:
    """Entries in a run's parts folder (its finished chunks, and its manifest)."""
    try:
        return sum(1 for _ in folder.iterdir())
    except OSError:
        return 0
