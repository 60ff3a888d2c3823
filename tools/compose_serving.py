"""The serving checks of tools/compose_check.py: the Compose version, the one image, Flower,
a prediction and a classification from inside the network, each worker's metrics."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime

from compose_report import Report
from compose_stack import CheckFailed, Stack, wait_for

WORKERS = ("regression-worker", "vision-worker")
MIN_COMPOSE = (2, 3)  # the top-level `name:` (docker-compose.yml's header says so)
ROW = (
    '{"critic_rating": 4.0, "is_action": 1, "is_exclusive_to_us": 0, "is_portable": 0,'
    ' "is_role_playing": 1, "is_sequel": 1, "is_sports": 0, "suitable_for_kids": 0,'
    ' "unit_price": 59.99}'
)
PHOTO = "/app/inferq/data/images/chelsea.jpg"  # a tabby cat (inferq/data/images/README.md)
# A worker's metrics fetched from inside another container, over the compose network.
FETCH = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)
MODEL_INFO = re.compile(r'^inferq_model_info\{[^}]*model="([^"]+)"[^}]*version="([^"]+)"', re.M)
JOBS = re.compile(r"^inferq_jobs_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def image_name(reference: str) -> str:
    """An image as the compose file names it: no default registry, no `:latest`."""
    name = reference.removeprefix("docker.io/").removeprefix("library/")
    return name.removesuffix(":latest")


def started_at(stamp: str) -> float:
    """Docker's RFC 3339 time (nanoseconds, Z) in Unix seconds, to the second."""
    return datetime.fromisoformat(stamp[:19]).replace(tzinfo=UTC).timestamp()


class ServingChecks:
    def __init__(self, stack: Stack, report: Report) -> None:
        self.stack, self.report = stack, report

    def compose_version(self) -> None:
        found = self.stack.run("version", "--short", timeout_s=60).out.strip().lstrip("v")
        numbers = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
        ok = numbers >= MIN_COMPOSE
        self.report.line(
            ok, "Compose version", f"{found} (at least {MIN_COMPOSE[0]}.{MIN_COMPOSE[1]})"
        )

    def one_build(self) -> None:
        every = Stack(env=self.stack.env, profiles=["bulk", "sentinel"])
        config = every.run("config", "--format", "json", timeout_s=60)
        services = json.loads(config.out)["services"]
        users = sorted(n for n, s in services.items() if s.get("image") == "inferq")
        # Each image a service builds (inferq, and Flower's own) -> the services building it.
        builders: dict[str, list[str]] = {}
        for name, service in sorted(services.items()):
            if "build" in service:
                builders.setdefault(image_name(service.get("image", name)), []).append(name)
        built = every.run("build", timeout_s=3600)
        # Once per image: the classic builder's "Successfully tagged", or BuildKit's
        # "naming to" (pip's own "Successfully built inferq" inside the build is not one).
        tags = re.findall(r"^Successfully tagged (\S+)$|naming to (\S+)", built.text, re.M)
        builds = Counter(image_name(classic or buildkit) for classic, buildkit in tags)
        ok = (
            built.code == 0
            and builders.get("inferq") is not None
            and all(len(names) == 1 for names in builders.values())
            and builds == Counter(dict.fromkeys(builders, 1))
        )
        made = ", ".join(f"{image} by {'+'.join(names)}" for image, names in builders.items())
        counted = ", ".join(f"{image} {n}x" for image, n in sorted(builds.items())) or "none"
        figure = (
            f"{len(users)} services run image inferq ({', '.join(users)}); built: {made}; "
            f"`docker compose build` built {counted} in {built.seconds:.0f} s, exit {built.code}"
        )
        self.report.line(ok, "each image built once", figure)

    # Flower ----------------------------------------------------------------------

    def flower(self, path: str, password: str | None = "right") -> tuple[int, object]:
        port = self.stack.env["FLOWER_PORT"]
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        user, _, secret = self.stack.env["FLOWER_BASIC_AUTH"].partition(":")
        if password is not None:
            given = secret if password == "right" else password
            token = base64.b64encode(f"{user}:{given}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def worker_hosts(self) -> dict[str, str]:
        """Container name -> its hostname (the `@host` of its Celery node name)."""
        names = [n for service in WORKERS for n in self.stack.running(service)]
        return {name: self.stack.inspect(name, "{{.Config.Hostname}}") for name in names}

    def flower_lists_workers(self) -> None:
        hosts = self.worker_hosts()
        flower = self.stack.running("flower")[0]
        flower_started = started_at(self.stack.inspect(flower, "{{.State.StartedAt}}"))
        ready = [self.ready_at(name) for name in hosts]
        started = time.monotonic()

        def listed() -> set[str]:
            code, workers = self.flower("/api/workers")  # no ?refresh=1, as a user asks
            nodes = workers if code == 200 and isinstance(workers, dict) else {}
            return {
                name for name, host in hosts.items() if any(n.endswith(f"@{host}") for n in nodes)
            }

        wait_for(lambda: len(listed()) == len(hosts), timeout_s=90, step_s=3)
        found = listed()
        figure = (
            f"{len(found)} of {len(hosts)} workers in /api/workers (no refresh) "
            f"{time.monotonic() - started:.0f} s after all were healthy; Flower started "
            f"{max(ready) - flower_started:.0f} s before the last one was ready"
        )
        ok = bool(hosts) and len(found) == len(hosts) and max(ready) > flower_started
        self.report.line(ok, "Flower lists workers that started after it", figure)

    def ready_at(self, container: str) -> int:
        """When the worker wrote its ready file (its models loaded), in Unix seconds."""
        done = self.stack.docker("exec", container, "stat", "-c", "%Y", "/tmp/inferq-ready")
        if done.code != 0:
            raise CheckFailed(f"{container}: no ready file: {done.text}")
        return int(done.out.strip())

    def flower_password(self) -> None:
        without, _ = self.flower("/api/workers", password=None)
        wrong, _ = self.flower("/api/workers", password="not-the-password")
        right, workers = self.flower("/api/workers")
        count = len(workers) if isinstance(workers, dict) else 0
        ok = without == 401 and wrong == 401 and right == 200 and count > 0
        figure = (
            f"HTTP {without} without, {wrong} with a wrong one, {right} with it ({count} workers)"
        )
        self.report.line(ok, "Flower's API and its password", figure)

    # Jobs from inside the network ------------------------------------------------

    def prediction(self) -> None:
        done = self.stack.exec("regression-worker", "inferq", "predict", "--json", ROW)
        try:
            record = json.loads(done.out.splitlines()[-1])
            figure = f"${record['earnings_usd']:,.0f} from {record['model']}"
        except (IndexError, KeyError, ValueError):
            record, figure = {}, done.last_line()
        ok = done.code == 0 and record.get("earnings_usd", 0) > 0
        self.report.line(
            ok, "a prediction from inside the network", f"{figure} in {done.seconds:.1f} s"
        )

    def classification(self) -> None:
        done = self.stack.exec("vision-worker", "inferq", "classify", "--json", "--top", "1", PHOTO)
        try:
            label = json.loads(done.out.splitlines()[-1])["labels"][0]
            figure = f"chelsea.jpg: {label['label']} {label['score']:.2f}"
        except (IndexError, KeyError, ValueError):
            label, figure = {}, done.last_line()
        top = str(label.get("label", ""))
        ok = done.code == 0 and ("cat" in top or top == "tabby")
        self.report.line(
            ok, "a classification from inside the network", f"{figure} in {done.seconds:.1f} s"
        )

    def metrics(self) -> None:
        figures, ok = [], True
        for name in self.worker_hosts():
            done = self.stack.exec(
                "regression-worker", "python", "-c", FETCH, f"http://{name}:9808/metrics"
            )
            models = MODEL_INFO.findall(done.out)
            jobs = sum(float(n) for n in JOBS.findall(done.out))
            ok = ok and done.code == 0 and bool(models)
            shown = ", ".join(f"{m} {v[:12]}" for m, v in models) or done.last_line()
            figures.append(f"{name}: {shown}, {jobs:.0f} jobs")
        self.report.line(ok and bool(figures), "each worker's metrics", "; ".join(figures))
