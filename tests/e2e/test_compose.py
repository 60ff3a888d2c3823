"""docker-compose.yml and the Dockerfile, checked without Docker (none runs here).

PyYAML reads the compose file and the variables are substituted as compose would;
every `inferq ...` command line in either file is parsed by inferq's own click
commands; every INFERQ_* variable goes through Settings; the model paths are
compared with the files `inferq models build` writes.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import click
import pytest
import yaml  # type: ignore[import-untyped]
from click.testing import CliRunner

from inferq.cli import main
from inferq.core.settings import Settings, SettingsError, unknown_setting_names
from tests.support.composefile import (
    COMPOSE,
    COMPOSE_ENV,
    DEVICE_KEYS,
    DOCKERIGNORE,
    ROOT,
    SETTING_MENTIONS,
    SETTING_NAME,
    SPEC_TOP_LEVEL,
    Invocation,
    argv,
    builds_project_image,
    check_invocation,
    environment,
    gpu_devices,
    healthcheck_commands,
    ignored_by_docker,
    inferq_invocations,
    interpolate,
    parse_inferq,
    read_dockerfile,
    services,
    shell_commands,
    worker_queues,
    workers,
)
from worker.loading.classifier import classifier_file


def test_only_compose_spec_top_level_keys() -> None:
    keys = set(yaml.safe_load(COMPOSE.read_text()))
    unknown = {k for k in keys if k not in SPEC_TOP_LEVEL and not k.startswith("x-")}
    assert not unknown, f"not in the Compose specification: {sorted(unknown)} (no `version:`)"


def test_every_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        check = service.get("healthcheck") or {}
        test = check.get("test")
        assert test and test != ["NONE"] and not check.get("disable"), f"{name}: no healthcheck"
        assert healthcheck_commands(test), f"{name}: healthcheck test {test!r} runs nothing"


def test_redis_persists_and_requires_the_password() -> None:
    redis = services()["redis"]
    script = argv(redis["command"])[2]
    command = next(c for c in shell_commands(script.split("<<")[0]) if "redis-server" in c)
    server = command[command.index("redis-server") :]
    flags = dict(zip(server[2::2], server[3::2], strict=False))
    assert server[1] == "-" and flags.get("--appendonly") == "yes", server  # config on stdin
    assert flags.get("--maxmemory-policy", "noeviction") == "noeviction", server
    assert "requirepass $REDIS_PASSWORD" in script, script
    assert any(str(v).endswith(":/data") for v in redis.get("volumes", [])), "AOF not on a volume"


def test_no_password_on_a_command_line() -> None:
    secret = COMPOSE_ENV["REDIS_PASSWORD"]
    for name, service in services().items():
        seen = [
            *argv(service.get("command", [])),
            *argv((service.get("healthcheck") or {}).get("test", [])),
        ]
        assert not [part for part in seen if secret in part], f"{name}: password in argv"


def test_inferq_commands_name_real_commands_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [check_invocation(i, monkeypatch).command.name for i in inferq_invocations()]
    # The file has these at least; an empty list would mean the walk found nothing.
    assert {"worker", "health", "score", "build"} <= set(seen), seen


def test_inferq_variables_are_settings() -> None:
    environments = {name: environment(s) for name, s in services().items()}
    environments["Dockerfile ENV"] = read_dockerfile().env
    for where, env in environments.items():
        unknown = unknown_setting_names(env)
        assert not unknown, f"{where}: {unknown}"
        if any(key.startswith("INFERQ_") for key in env):
            try:
                Settings.load(env)
            except SettingsError as exc:
                pytest.fail(f"{where}: {exc}")


def test_setting_names_in_operator_files_exist() -> None:
    known = {f"INFERQ_{name.upper()}" for name in Settings.model_fields}
    for path in SETTING_MENTIONS:
        if path.exists():
            unknown = set(SETTING_NAME.findall(path.read_text())) - known
            assert not unknown, f"{path.relative_to(ROOT)} names no such setting: {sorted(unknown)}"


def dockerignore_patterns() -> list[str]:
    if not DOCKERIGNORE.exists():
        return []
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def package_files() -> list[str]:
    """Every file of the packages pyproject.toml installs (sources and package data)."""
    found = []
    for folder in ("inferq", "worker", "producer"):
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in relative and "_cache" not in relative:
                found.append(relative)
    return found


def test_dockerfile_copies_exist_and_reach_the_build() -> None:
    copied = read_dockerfile().copied
    assert copied, "the Dockerfile copies nothing"
    patterns = dockerignore_patterns()
    for source in copied:
        path = ROOT / source
        assert path.exists(), f"Dockerfile copies {source}, which is not in the repository"
        if path.resolve() == ROOT:
            # The whole context: what .dockerignore lets through is what goes in.
            files = ["pyproject.toml", "requirements.lock", "README.md", *package_files()]
        else:
            found = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            files = [file.relative_to(ROOT).as_posix() for file in found]
        for relative in files:
            if "__pycache__" not in relative:
                assert not ignored_by_docker(relative, patterns), f".dockerignore drops {relative}"


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    patterns = dockerignore_patterns()
    for relative in (
        ".venv/bin/python",
        ".git/HEAD",
        "models/regressor.h5",
        "data/in.csv",
        "tests/conftest.py",
        ".env",
        "bench/gpu.py",
        "inferq/__pycache__/x.pyc",
    ):
        assert ignored_by_docker(relative, patterns), f"{relative} would be sent to the builder"


def built_model_files(directory: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The files `inferq models build --dir DIRECTORY` writes, with training and the
    weight conversion replaced by stand-ins that write to the paths they are given."""
    import inferq.tools.lite0.convert
    import inferq.tools.models_build
    import inferq.tools.training
    from inferq.tools.training import TrainReport

    def write_csv(path: Path, rows: int, seed: int = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("stand-in\n")
        return path

    def train(csv_path: Path, target: str, out: Path, **_: object) -> TrainReport:
        out.write_bytes(b"stand-in")
        return TrainReport(out, rows=1, final_loss=0.0, test_mse_scaled=0.0, test_mae_usd=0.0)

    def build_lite0_model(out: Path) -> Path:
        out.write_bytes(b"stand-in")
        return out

    monkeypatch.setattr(inferq.tools.models_build, "write_csv", write_csv)
    monkeypatch.setattr(inferq.tools.training, "train", train)
    monkeypatch.setattr(inferq.tools.lite0.convert, "build_lite0_model", build_lite0_model)
    result = CliRunner().invoke(main, ["models", "build", "--dir", str(directory)])
    assert result.exit_code == 0, result.output
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def model_files_needed(queues: list[str], settings: Settings) -> list[Path]:
    needed = [settings.regressor_path] if "regression" in queues else []
    classifier = classifier_file(settings) if "vision" in queues else None
    return needed + ([classifier] if classifier is not None else [])


def test_model_paths_are_files_the_image_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = built_model_files(tmp_path, monkeypatch)
    assert {"regressor.h5", "efficientnet_lite0.h5"} <= built, built
    image = read_dockerfile()
    builds = [i for i in inferq_invocations() if i.args[:2] == ["models", "build"]]
    assert len(builds) == 1, "the Dockerfile must run `inferq models build` once"
    build_dir = PurePosixPath(str(parse_inferq(builds[0].args, monkeypatch).params["directory"]))
    assert build_dir.is_absolute(), f"models built into a relative folder: {build_dir}"

    def in_image(path: Path | PurePosixPath) -> PurePosixPath:
        return image.workdir / PurePosixPath(str(path))

    serving = {name: (environment(services()[name]), q) for name, q in workers().items()}
    image_queues = worker_queues(image.cmd)
    assert image_queues is not None, f"the image's CMD is not a worker: {image.cmd}"
    serving["Dockerfile CMD"] = (image.env, image_queues)
    for where, (env, queues) in serving.items():
        for path in model_files_needed(queues, Settings.load(env)):
            where_built = in_image(path)
            assert where_built.parent == build_dir, f"{where}: {where_built} not in {build_dir}"
            assert where_built.name in built, f"{where}: models build writes no {where_built.name}"
        for name, value in env.items():
            if value.startswith(f"{build_dir}/"):
                relative = PurePosixPath(value).relative_to(build_dir).as_posix()
                assert relative in built, f"{where}: {name}={value} is not built ({sorted(built)})"


def test_workers_scale_with_docker_compose_scale() -> None:
    found = workers()
    assert "vision" in found.get("vision-worker", []), "no vision-worker serving `vision`"
    for name in found:
        service = services()[name]
        # Each of these must be unique per container: `--scale` would refuse or collide.
        for key in ("container_name", "hostname", "ports"):
            assert key not in service, f"{name} cannot scale: it sets {key}"


def test_gpu_reservation_is_well_formed_and_optional() -> None:
    gpu = {name: s for name, s in services().items() if gpu_devices(s)}
    assert gpu, "no service reserves a GPU"
    image_args = read_dockerfile().args
    for name, service in gpu.items():
        assert "gpu" in (service.get("profiles") or []), f"{name}: the default stack is CPU-only"
        for device in gpu_devices(service):
            assert set(device) <= DEVICE_KEYS, f"{name}: unknown keys {set(device) - DEVICE_KEYS}"
            assert device.get("driver") == "nvidia", device
            assert isinstance(device.get("capabilities"), list), device
            assert "gpu" in device["capabilities"], device
            assert ("count" in device) != ("device_ids" in device), "count or device_ids, not both"
            count = device.get("count", 1)
            assert count == "all" or (isinstance(count, int) and count >= 1), device
            assert all(isinstance(i, str) for i in device.get("device_ids", [])), device
        limits = (service.get("deploy") or {}).get("resources", {}).get("limits") or {}
        assert "devices" not in limits, f"{name}: devices belong under reservations"
        # A reserved GPU with the CPU-only TensorFlow wheel is a silent CPU run.
        args = (service.get("build") or {}).get("args") or {}
        assert set(args) <= image_args, (
            f"{name}: the Dockerfile has no ARG {set(args) - image_args}"
        )
        assert str(args.get("TF_CUDA")) == "true", f"{name}: built without the CUDA wheels"
        assert name in workers(), f"{name}: not an inferq worker"
    for name, service in services().items():
        if name not in gpu:
            assert "gpu" not in (service.get("profiles") or []), f"{name} in profile gpu, no GPU"


def test_flower_watches_the_workers_broker() -> None:
    flower = [s for s in services().values() if "flower" in str(s.get("image", ""))]
    assert len(flower) == 1, "one Flower service"
    service = flower[0]
    assert "celery flower" in " ".join(argv(service["command"])), "Flower's command runs no Flower"
    broker_urls = {
        environment(s)["INFERQ_REDIS_URL"] for n, s in services().items() if n in workers()
    }
    assert len(broker_urls) == 1, broker_urls
    env = environment(service)
    command = argv(service["command"])
    given = [a.split("=", 1)[1] for a in command if a.startswith("--broker=")]
    assert (given or [env.get("CELERY_BROKER_URL", "")]) == list(broker_urls), "Flower's broker"
    if "flower" not in (ROOT / "requirements.lock").read_text().lower():
        # Not a dependency: the project's image has no Flower to run. Built here, it has
        # a Dockerfile of its own that pins Flower, and what it copies reaches the build.
        if builds_project_image(service):
            build = service["build"]
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else ""
            assert dockerfile not in ("", "Dockerfile"), "the project's Dockerfile has no Flower"
            image_file = read_dockerfile(ROOT / dockerfile)
            assert "flower==" in " ".join(image_file.runs), f"{dockerfile} does not pin Flower"
            for source in image_file.copied:
                assert (ROOT / source).is_file(), f"{dockerfile} copies {source}: no such file"
                assert not ignored_by_docker(source, dockerignore_patterns()), source
        image = str(service.get("image", ""))
        assert ":" in image and not image.endswith(":latest"), f"Flower image not pinned: {image}"


def test_bulk_score_reads_and_writes_its_data_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [i for i in inferq_invocations() if i.args[:1] == ["score"] and "command" in i.where]
    assert runs, "no `inferq score` service"
    for run in runs:
        name = run.where.split(":")[0]
        service = services()[name]
        assert service.get("profiles"), f"{name} is one-off: it belongs in a profile"
        mounts = {}
        for volume in service.get("volumes", []):
            source, target, *mode = str(volume).split(":")
            mounts[PurePosixPath(target)] = (source, mode)
        params = parse_inferq(run.args, monkeypatch).params
        for value in (params["source"], params["output"]):
            path = PurePosixPath(str(value))
            mount = next((m for m in mounts if path.is_relative_to(m)), None)
            assert mount is not None, f"{name}: {path} is on no mounted folder"
            assert mounts[mount][1] != ["ro"], f"{name}: {mount} is read-only"
            assert mounts[mount][0].startswith("./"), f"{name}: {mount} is not a bind mount"


def test_depends_on_names_services_that_start_with_it() -> None:
    found = services()
    for name, service in found.items():
        depends = service.get("depends_on") or {}
        conditions = depends if isinstance(depends, dict) else {key: {} for key in depends}
        for target, how in conditions.items():
            assert target in found, f"{name} depends on no such service {target}"
            if (how or {}).get("condition") == "service_healthy":
                assert found[target].get("healthcheck"), f"{target} has no healthcheck"
            if not service.get("profiles"):
                assert not found[target].get("profiles"), f"{name} needs {target} (a profile)"


@pytest.mark.parametrize(
    "args",
    [
        ["worker", "--queue", "vision"],  # an option that does not exist
        ["workers", "--queues", "vision"],  # a command that does not exist
        ["health", "--timeout-s", "soon"],  # a value of the wrong type
        ["score", "/data/in.csv"],  # -o is required
        ["models"],  # a group without its command
    ],
)
def test_command_check_refuses_mistakes(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(click.UsageError):
        parse_inferq(args, monkeypatch)


def test_queue_and_setting_checks_refuse_mistakes(monkeypatch: pytest.MonkeyPatch) -> None:
    bad_queue = Invocation("test", ["worker", "--queues", "images"], {})
    with pytest.raises(pytest.fail.Exception, match="unknown queue"):
        check_invocation(bad_queue, monkeypatch)
    assert unknown_setting_names({"INFERQ_MAX_BATCH": "8"})
    with pytest.raises(ValueError, match="neither a default"):
        interpolate("redis-cli -a $REDIS_PASSWORD ping", {"REDIS_PASSWORD": "x"})
    with pytest.raises(ValueError, match="required"):
        interpolate("${REDIS_PASSWORD:?set it}", {})
    assert interpolate("a $$b ${C:-d} ${E:?x}", {"E": "e"}) == "a $b d e"


def test_dockerignore_matching() -> None:
    patterns = [".venv", "**/__pycache__", "models", "!models/keep.h5"]
    allow_list = ["*", "!inferq", "**/__pycache__"]
    assert ignored_by_docker("tests/conftest.py", allow_list)
    assert not ignored_by_docker("inferq/cli/__init__.py", allow_list)
    assert ignored_by_docker("inferq/__pycache__/cli.pyc", allow_list)
    assert ignored_by_docker(".venv/lib/x.py", patterns)
    assert ignored_by_docker("inferq/__pycache__/cli.pyc", patterns)
    assert not ignored_by_docker("inferq/models.py", patterns)
    assert ignored_by_docker("models/regressor.h5", patterns)
    assert not ignored_by_docker("models/keep.h5", patterns)
