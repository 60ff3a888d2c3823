"""Reading docker-compose.yml and the Dockerfile as Docker would, for tests/e2e/test_compose.py:
compose variable substitution, Dockerfile instructions, and every `inferq ...` command
line in either, resolved through inferq's own click commands."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]

from inferq.cli import main
from inferq.core.routing import queue_names
from inferq.core.settings import Settings, SettingsError
from tests.support.harness import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Files that name settings for operators; a name that is not a setting stops a worker.
SETTING_MENTIONS = [COMPOSE, DOCKERFILE, ROOT / "docs/operations.md", ROOT / "bench/gpu.py"]

# What the variables hold when the file is used; their values do not matter here.
COMPOSE_ENV = {"REDIS_PASSWORD": "compose-test-secret", "FLOWER_BASIC_AUTH": "ops:compose-test"}
SPEC_TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
DEVICE_KEYS = {"driver", "count", "device_ids", "capabilities", "options"}
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "!"}
SETTING_NAME = re.compile(r"\bINFERQ_[A-Z0-9_]*[A-Z0-9]\b")


# Compose variable substitution -----------------------------------------------------

_REFERENCE = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's substitution of `${...}` in one string.

    A reference without a default (`:-`) or an error (`:?`) fails: compose would
    quietly put an empty string there, and a bare `$NAME` meant for a shell inside
    the container (which must be written `$$NAME`) would be replaced by compose.
    """

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        body = _BRACED.fullmatch(match.group(2) or "")
        if match.group(3) or body is None or body.group(2) is None:
            raise ValueError(f"{match.group(0)!r} has neither a default (:-) nor an error (:?)")
        name, operator, argument = body.groups()
        if "$" in argument:
            raise ValueError(f"{match.group(0)!r}: nested substitution is not checked here")
        value = env.get(name)
        present = value is not None and (value != "" or not operator.startswith(":"))
        if operator.endswith("-"):
            return value if present and value is not None else argument
        if operator.endswith("?"):
            if not present or value is None:
                raise ValueError(f"{name} is required: {argument}")
            return value
        return argument if present else ""

    return _REFERENCE.sub(one, text)


def interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


# The Dockerfile -------------------------------------------------------------------


ROOT_DIR = PurePosixPath("/")


@dataclass
class Dockerfile:
    workdir: PurePosixPath = ROOT_DIR
    env: dict[str, str] = field(default_factory=dict)
    args: set[str] = field(default_factory=set)
    copied: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        yield keyword.upper(), arguments.strip()


def read_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    image = Dockerfile()
    for keyword, arguments in instructions(path.read_text()):
        if keyword == "WORKDIR":
            image.workdir = image.workdir / arguments
        elif keyword == "ENV":
            tokens = shlex.split(arguments)
            if "=" in tokens[0]:
                image.env.update({k: v for k, _, v in (t.partition("=") for t in tokens)})
            else:  # the legacy `ENV NAME value` form
                image.env[tokens[0]] = " ".join(tokens[1:])
        elif keyword == "ARG":
            image.args.add(arguments.split("=", 1)[0])
        elif keyword in ("COPY", "ADD"):
            tokens = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
            if not any(t.startswith("--from") for t in tokens):
                image.copied.extend(t for t in tokens[:-1] if not t.startswith("--"))
        elif keyword == "RUN":
            image.runs.append(arguments)
        elif keyword == "CMD":
            image.cmd = json.loads(arguments)
    return image


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell line: split at ;, &&, ||, |, leading keywords off."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in SHELL_OPERATORS:
            commands.append([])
        elif commands[-1] or token not in SHELL_KEYWORDS:
            commands[-1].append(token)
    return [c for c in commands if c]


def ignored_by_docker(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `relative` (or a folder above it) out of the context."""
    excluded = False
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


# Services ----------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    where: str
    args: list[str]  # after `inferq`
    env: dict[str, str]


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return dict(interpolated(document, COMPOSE_ENV))


def services() -> dict[str, dict[str, Any]]:
    found = load_compose().get("services")
    assert isinstance(found, dict) and found, "no services"
    return found


def builds_project_image(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    context = build.get("context", ".") if isinstance(build, dict) else build
    return context in (".", "./")


def runs_project_image(service: Mapping[str, Any]) -> bool:
    """Built from the Dockerfile here, or runs the image another service builds so."""
    built = {s.get("image") for s in services().values() if builds_project_image(s)}
    return builds_project_image(service) or service.get("image") in built - {None}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """The service's environment as the container sees it (image ENV first)."""
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        assert all("=" in item for item in declared), f"pass-through variables: {declared}"
        declared = dict(item.split("=", 1) for item in declared)
    for name, value in declared.items():
        # YAML 1.1 reads yes/on/true as booleans where compose may not: quote them.
        assert isinstance(value, str | int | float) and not isinstance(value, bool), (
            f"{name}: {value!r} is not a string or a number"
        )
    base = read_dockerfile().env if runs_project_image(service) else {}
    return {**base, **{name: str(value) for name, value in declared.items()}}


def argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def healthcheck_commands(test: Any) -> list[list[str]]:
    if isinstance(test, str):
        return shell_commands(test)
    if test and test[0] == "CMD-SHELL":
        return shell_commands(" ".join(test[1:]))
    if test and test[0] == "CMD":
        return [list(test[1:])]
    return []


def inferq_invocations() -> Iterator[Invocation]:
    """Every `inferq ...` in the compose file (commands, health checks) and the Dockerfile."""
    for name, service in services().items():
        env = environment(service)
        if "command" in service:
            command = argv(service["command"])
            if command and command[0] == "inferq":
                yield Invocation(f"{name}: command", command[1:], env)
        test = (service.get("healthcheck") or {}).get("test")
        for command in healthcheck_commands(test):
            if command[0] == "inferq":
                yield Invocation(f"{name}: healthcheck", command[1:], env)
    image = read_dockerfile()
    for run in image.runs:
        for command in shell_commands(run):
            if command[0] == "inferq":
                yield Invocation("Dockerfile RUN", command[1:], image.env)
    if image.cmd[:1] == ["inferq"]:
        yield Invocation("Dockerfile CMD", image.cmd[1:], image.env)


def parse_inferq(args: list[str], monkeypatch: pytest.MonkeyPatch) -> click.Context:
    """Resolve `inferq ARGS` as the CLI would, without running it.

    An unknown command or option, a bad value or a missing argument raises click's
    UsageError. Paths are inside the container, so only their existence is not checked.
    """
    command: click.Command = main
    context = click.Context(main, info_name="inferq")
    rest, name = list(args), "inferq"
    while isinstance(command, click.Group):
        if not rest:
            raise click.UsageError(f"`{name}` needs a subcommand", context)
        sub = command.get_command(context, rest[0])
        if sub is None:
            raise click.UsageError(f"`{name}` has no command {rest[0]!r}", context)
        if isinstance(sub, click.Group):
            context = click.Context(sub, info_name=rest[0], parent=context)
        command, name, rest = sub, rest[0], rest[1:]
    for param in command.params:
        if isinstance(param.type, click.Path) and param.type.exists:
            monkeypatch.setattr(param.type, "exists", False)
    return command.make_context(name, rest, parent=context)


def check_invocation(invocation: Invocation, monkeypatch: pytest.MonkeyPatch) -> click.Context:
    try:
        context = parse_inferq(invocation.args, monkeypatch)
        if context.command.name in ("worker", "health"):
            settings = Settings.load(invocation.env)
            queue_names(str(context.params["queues"]).split(","), settings)
    except (click.UsageError, SettingsError, ValueError) as exc:
        message = exc.format_message() if isinstance(exc, click.UsageError) else str(exc)
        pytest.fail(f"{invocation.where}: `inferq {shlex.join(invocation.args)}`: {message}")
    return context


def worker_queues(command: list[str]) -> list[str] | None:
    """The logical queues of an `inferq worker` command line; None for other commands."""
    if command[:2] != ["inferq", "worker"]:
        return None
    if "--queues" in command:
        return command[command.index("--queues") + 1].split(",")
    option = next(p for p in main.commands["worker"].params if p.name == "queues")
    return str(option.default).split(",")


def workers() -> dict[str, list[str]]:
    """Service name -> the logical queues of its `inferq worker` command."""
    found = {}
    for name, service in services().items():
        queues = worker_queues(argv(service.get("command") or []))
        if queues is not None:
            found[name] = queues
    return found


def gpu_devices(service: Mapping[str, Any]) -> list[Any]:
    resources = (service.get("deploy") or {}).get("resources") or {}
    return list((resources.get("reservations") or {}).get("devices") or [])
