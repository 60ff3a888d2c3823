"""`inferq health`: does Redis answer, and is every queue served by a worker with its model?

Made for container probes: one Redis PING, then one remote-control broadcast
(``inferq_health``; each worker's consumer answers with the queues it consumes
and the models it has loaded). Collecting stops as soon as every queue asked
about is served, so a healthy check takes milliseconds; an unhealthy one waits
for the timeout, since only then is it known that nobody else will answer.
Nothing here imports TensorFlow or the worker's modules.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from celery import Celery

from inferq.core import exit_codes
from inferq.core.broker import check_broker
from inferq.core.celery_config import celery_config
from inferq.core.constants import HEALTH_COMMAND
from inferq.core.routing import QUEUE_MODELS, queue_names
from inferq.core.settings import Settings

DEFAULT_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True)
class NodeReport:
    """One worker's answer: the queues it consumes, its models (kind -> version)."""

    node: str
    queues: frozenset[str]
    models: Mapping[str, str]
    error: str | None = None  # it answered, but not to our command (not an inferq worker)

    @classmethod
    def from_reply(cls, node: str, reply: Any) -> NodeReport:
        if not isinstance(reply, dict) or "error" in reply or "queues" not in reply:
            error = reply.get("error") if isinstance(reply, dict) else None
            return cls(node, frozenset(), {}, str(error or reply)[:200])
        models = reply.get("models") or {}
        return cls(
            node,
            frozenset(map(str, reply["queues"])),
            {str(kind): str(info.get("version", "?")) for kind, info in models.items()},
        )


class _AllServed(Exception):
    """Raised from the reply callback to stop collecting: the answer is known."""


def serving(queue: str, kind: str, reports: Sequence[NodeReport]) -> NodeReport | None:
    """The first worker that consumes ``queue`` and has its model loaded."""
    return next((r for r in reports if queue in r.queues and kind in r.models), None)


def collect(settings: Settings, wanted: Mapping[str, str], timeout_s: float) -> list[NodeReport]:
    """Every worker's answer within ``timeout_s``, or fewer once ``wanted`` is all served."""
    app = Celery("inferq-health", set_as_current=False)
    config = celery_config(settings)
    # One connection attempt bounded by the timeout, not Celery's patient retries.
    transport = {**config["broker_transport_options"], "max_retries": 1}
    transport |= {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    app.conf.update(config, broker_transport_options=transport, broker_connection_timeout=timeout_s)
    reports: list[NodeReport] = []

    def on_reply(body: Any) -> None:  # {node name: the worker's reply}
        if isinstance(body, dict):
            reports.extend(NodeReport.from_reply(str(n), r) for n, r in body.items())
        if all(serving(q, kind, reports) for q, kind in wanted.items()):
            raise _AllServed

    try:
        app.control.broadcast(HEALTH_COMMAND, reply=True, timeout=timeout_s, callback=on_reply)
    except _AllServed:
        pass
    finally:
        app.close()
    return reports


def problems(
    wanted: Mapping[str, str], reports: Sequence[NodeReport], timeout_s: float
) -> list[str]:
    """Why each queue of ``wanted`` (queue -> model kind) is not served; [] when all are."""
    found = []
    strangers = [r.node for r in reports if r.error is not None]
    for queue, kind in wanted.items():
        if serving(queue, kind, reports):
            continue
        consumers = sorted(r.node for r in reports if queue in r.queues)
        if consumers:
            found.append(
                f"worker up but model not loaded: {', '.join(consumers)} consume "
                f"queue {queue} without the {kind}"
            )
        elif strangers:
            found.append(
                f"no worker consuming queue {queue} ({len(strangers)} worker(s) did "
                f"not know the {HEALTH_COMMAND} command: {', '.join(strangers)})"
            )
        else:
            seen = f"{len(reports)} other worker(s) answered" if reports else "no worker answered"
            found.append(f"no worker consuming queue {queue} ({seen} within {timeout_s:g} s)")
    return found


def check(settings: Settings, logical_queues: Sequence[str], timeout_s: float) -> tuple[int, str]:
    """(exit code, one line) for the queues (``regression``, ``vision``) asked about."""
    try:
        queues = queue_names(logical_queues, settings)
    except ValueError as exc:
        return exit_codes.USAGE, str(exc)
    problem = check_broker(settings, timeout_s)
    if problem is not None:
        return exit_codes.BROKER, f"broker unreachable: {problem}"
    wanted = {q: QUEUE_MODELS[name] for name, q in zip(logical_queues, queues, strict=True)}
    reports = collect(settings, wanted, timeout_s)
    found = problems(wanted, reports, timeout_s)
    if found:
        return exit_codes.UNHEALTHY, "; ".join(found)
    served = [(q, kind, serving(q, kind, reports)) for q, kind in wanted.items()]
    return exit_codes.OK, "; ".join(
        f"queue {q}: {r.node} has the {kind} {r.models[kind]}" for q, kind, r in served if r
    )


def run(settings: Settings, logical_queues: Sequence[str], timeout_s: float) -> int:
    """The command: one line, on stdout when healthy and on stderr when not."""
    code, line = check(settings, logical_queues, timeout_s)
    if code == exit_codes.OK:
        print(f"inferq health: ok: {line}")
    else:
        print(f"inferq health: {line}", file=sys.stderr)
    return code
