"""docker-compose.yml as a new user meets it, checked without Docker (issue 18): one image
built once, Flower's broker settings and health check (run against a real Redis), the
header's bulk commands, the bulk run's ./data check (run by sh), the Compose version.
`python3.11 dev.py compose-check` runs the same things under Docker."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from inferq.ops.redis_server import RedisServer, free_port
from inferq.tools import sample_data
from tests.support.composefile import (
    COMPOSE,
    COMPOSE_ENV,
    argv,
    environment,
    interpolated,
    runs_project_image,
    services,
    workers,
)
from tests.support.harness import ROOT

SENTINEL_ENV = {
    **COMPOSE_ENV,
    "REDIS_SCHEME": "sentinel",
    "SENTINEL_MASTER": "inferq",
    "REDIS_HOSTS": "sentinel-1:26379;sentinel://sentinel-2:26379;sentinel://sentinel-3:26379",
}
OPERATIONS = ROOT / "docs/operations.md"
HEREDOC = re.compile(r"cat > (\S+) <<'EOF'\n(.*?)\nEOF\n", re.DOTALL)
STRANGER = 4242


def services_with(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = interpolated(yaml.safe_load(COMPOSE.read_text()), env)[
        "services"
    ]
    return found


def header() -> list[str]:
    """The comment lines that open docker-compose.yml, without their `# `."""
    lines = []
    for line in COMPOSE.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.removeprefix("#").removeprefix(" "))
    return lines


# One image ---------------------------------------------------------------------------


def test_every_inferq_service_runs_one_image_that_one_service_builds() -> None:
    found = services()
    inferq = {name: s for name, s in found.items() if runs_project_image(s)}
    assert {*workers(), "bulk-score"} <= set(inferq), sorted(inferq)
    images: dict[str, list[str]] = {}
    for name, service in inferq.items():
        assert service.get("image"), f"{name} has no image: name, so compose names one per service"
        assert service.get("pull_policy") == "never", f"{name}: a local image is never pulled"
        images.setdefault(str(service["image"]), []).append(name)
    for image, names in images.items():
        builders = [n for n in names if "build" in found[n]]
        assert len(builders) == 1, f"{image} is built by {builders}: compose builds it once each"
    builder = next(n for n in images["inferq"] if "build" in found[n])
    assert not found[builder].get("profiles"), f"{builder} builds inferq but is in a profile"
    assert {"regression-worker", "vision-worker", "bulk-score"} <= set(images["inferq"])


# Flower ------------------------------------------------------------------------------


def flower_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Celery settings module Flower's command writes, run with Flower's environment."""
    flower = services_with(env)["flower"]
    script = argv(flower["command"])[-1]
    written = HEREDOC.search(script)
    assert written, f"Flower's command writes no settings module: {script}"
    path, body = written.groups()
    flower_env = environment(flower)
    assert path == f"/tmp/{flower_env['CELERY_CONFIG_MODULE']}.py", path
    assert "/tmp" in flower_env["PYTHONPATH"].split(":")
    assert script.rstrip().endswith("exec celery flower --port=5555"), script
    for name, value in flower_env.items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {}
    exec(compile(body, path, "exec"), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("_")}


@pytest.mark.parametrize("env", [COMPOSE_ENV, SENTINEL_ENV], ids=["redis", "sentinel"])
def test_flower_uses_the_workers_broker_with_the_masters_name(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    found = services_with(env)
    url = environment(found["flower"])["CELERY_BROKER_URL"]
    assert url == environment(found["regression-worker"])["INFERQ_REDIS_URL"]
    options = flower_config(env, monkeypatch)["broker_transport_options"]
    if url.startswith("sentinel://"):
        # kombu's Sentinel channel raises "'master_name' transport option must be specified".
        assert options == {"master_name": env["SENTINEL_MASTER"]}
    else:
        assert options == {}


class FakeFlower(BaseHTTPRequestHandler):
    """Answers /api/workers as Flower does: 401 without the password, {} with it."""

    password = ""
    seen: list[str] = []  # noqa: RUF012 - one test's requests, read after the server stops

    def do_GET(self) -> None:
        token = base64.b64encode(self.password.encode()).decode()
        ok = self.headers.get("Authorization") == f"Basic {token}"
        self.seen.append(f"{self.path} {'auth' if ok else 'no auth'}")
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"{}" if ok else b"")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture()
def fake_flower() -> Iterator[int]:
    FakeFlower.password, FakeFlower.seen = COMPOSE_ENV["FLOWER_BASIC_AUTH"], []
    server = HTTPServer(("127.0.0.1", 0), FakeFlower)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    thread.join()
    server.server_close()


def run_flower_health(port: int, broker_url: str, tmp_path: Path, master: str = "") -> Any:
    """Flower's health check command, as docker runs it, with this machine's Python."""
    flower = services()["flower"]
    test = flower["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    code = test[3]
    assert "http://127.0.0.1:5555/" in code, "the check asks another port than Flower's"
    script = HEREDOC.search(argv(flower["command"])[-1])
    assert script
    module = environment(flower)["CELERY_CONFIG_MODULE"]
    (tmp_path / f"{module}.py").write_text(script.group(2))
    env = {
        **os.environ,
        **environment(flower),
        "CELERY_BROKER_URL": broker_url,
        "SENTINEL_MASTER": master,
        "PYTHONPATH": str(tmp_path),
    }
    code = code.replace("127.0.0.1:5555", f"127.0.0.1:{port}")
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flowers_health_check_needs_its_broker_and_refreshes_the_workers(
    redis_server: RedisServer, fake_flower: int, tmp_path: Path
) -> None:
    live = run_flower_health(fake_flower, redis_server.url, tmp_path)
    assert live.returncode == 0, live.stderr
    # Flower lists a worker that started after it only once something asks it to refresh.
    assert FakeFlower.seen == ["/api/workers?refresh=1 auth"], FakeFlower.seen
    dead = run_flower_health(fake_flower, f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    assert dead.returncode != 0 and "Error" in dead.stderr, dead.stderr
    sentinels = f"sentinel://127.0.0.1:{free_port()};sentinel://127.0.0.1:{free_port()}/0"
    nameless = run_flower_health(fake_flower, sentinels, tmp_path)
    assert nameless.returncode != 0 and "master_name" in nameless.stderr, nameless.stderr
    assert len(FakeFlower.seen) == 1, "Flower reported healthy without its broker"


# Bulk --------------------------------------------------------------------------------


def header_bulk_commands() -> list[list[str]]:
    """The header's bulk lines (after "A sample input"), split as sh would split them."""
    lines = header()
    start = next(i for i, line in enumerate(lines) if "A sample input" in line)
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        for part in line.strip().split("&&"):
            commands.append(shlex.split(part, comments=True))
    return commands


def in_data(path: str, data: Path) -> Path:
    assert path.startswith("/data/"), f"{path} is not on the ./data mount"
    return data / path.removeprefix("/data/")


def test_the_headers_bulk_commands_write_the_input_the_run_reads(tmp_path: Path) -> None:
    commands = header_bulk_commands()
    assert commands[0] == ["mkdir", "-p", "data"], "./data must exist before Docker makes it"
    assert ["export", "DATA_UID=$(id", "-u)", "DATA_GID=$(id", "-g)"] in commands, commands
    runs = [
        c[c.index("bulk-score") + 1 :] for c in commands if c[:3] == ["docker", "compose", "run"]
    ]
    assert len(runs) == 2, commands
    writer, bulk = runs
    assert writer[:3] == ["python", "-m", "inferq.tools.sample_data"], writer
    sample_data.main([str(in_data(writer[3], tmp_path)), *writer[4:]])
    assert bulk == [], "the bulk line runs the service's own command"
    score = argv(services()["bulk-score"]["command"])
    source = in_data(score[score.index("score") + 1], tmp_path)
    assert source.exists(), f"the sample writer did not write {source}, which the run reads"
    lines = source.read_text().splitlines()
    assert len(lines) == sample_data.SAMPLE_ROWS + 1
    assert "100,000" in " ".join(header()), "the header says how many rows the sample has"


def bulk_entrypoint(data: Path) -> list[str]:
    entrypoint = argv(services()["bulk-score"]["entrypoint"])
    assert entrypoint[:2] == ["sh", "-c"], entrypoint
    # The mount point, not the host's ./data that the message names.
    script = re.sub(r"(?<![.\w])/data\b", str(data), entrypoint[2])
    return ["sh", "-c", script, *entrypoint[3:]]


def as_stranger(command: list[str]) -> list[str]:
    """COMMAND as a user that owns nothing here (root bypasses every permission bit)."""
    if os.getuid() != 0:
        return command
    ids = str(STRANGER)
    return ["setpriv", "--reuid", ids, "--regid", ids, "--clear-groups", *command]


def test_the_bulk_run_refuses_a_data_folder_its_user_cannot_write() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        data = Path(folder) / "data"
        data.mkdir()
        Path(folder).chmod(0o755)
        data.chmod(0o755 if os.getuid() == 0 else 0o555)
        refused = subprocess.run(
            as_stranger([*bulk_entrypoint(data), "echo", "ran"]),
            capture_output=True,
            text=True,
            check=False,
        )
        owner = f"{data.stat().st_uid}:{data.stat().st_gid}"
        assert refused.returncode == 2 and refused.stdout == "", refused
        said = refused.stderr.strip()
        assert "cannot write ./data" in said and f"which belongs to {owner}" in said, said
        uid, gid = owner.split(":")
        assert f"export DATA_UID={uid} DATA_GID={gid}" in said, said
        data.chmod(0o777)
        allowed = subprocess.run(
            as_stranger([*bulk_entrypoint(data), "echo", "ran"]),
            capture_output=True,
            text=True,
            check=False,
        )
        assert allowed.returncode == 0 and allowed.stdout == "ran\n", allowed


# The Compose version -----------------------------------------------------------------


def test_the_compose_version_needed_is_stated_in_the_header_and_the_docs() -> None:
    assert "name" in yaml.safe_load(COMPOSE.read_text()), "no top-level name: (then say why v2)"
    stated = re.search(r"Compose v(\d+)\.(\d+) or later", " ".join(header()))
    assert stated, "docker-compose.yml's header does not say which Compose it needs"
    assert int(stated.group(1)) >= 2, "Compose v1 refuses the top-level name:"
    docs = " ".join(OPERATIONS.read_text().split())
    assert stated.group(0) in docs, f"docs/operations.md does not say {stated.group(0)!r}"
    assert "Compose v1" in docs
