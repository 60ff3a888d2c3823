"""What a benchmark's workers ran with: the shipped defaults, or which settings differed.

A headline figure is only worth what a user deploys, so every `inferq bench` command
starts its workers with the defaults and records, beside each figure, any INFERQ_
variable its workers' environment set that changes how a worker performs (the
plumbing that only says where things are, like the Redis URL, queue names and model
paths, does not count). Where docker-compose.yml gives a service other values, the
benchmark can run a second time with those (``compose_overrides``).

    record = worker_settings(env)   # {"defaults": bool, "overrides": {...}, "effective": {...}}
    label(record)                   # "defaults" or "INFERQ_MAX_BATCH_SIZE=8192"
    compose_overrides("regression-worker")   # {} where compose keeps the defaults
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inferq.core.settings import ENV_PREFIX, Settings

# Where things are and who is who: set by every benchmark, no bearing on speed.
PLUMBING = frozenset(
    {
        "redis_url",
        "sentinel_master",
        "sentinel_password",
        "regressor_path",
        "regression_queue",
        "vision_queue",
        "models_dir",
        "image_root",
        "ready_file",
        "metrics_port",
        "metrics_host",
        "process_index",
        "log_level",
        "classifier_weights",
        "allow_download",
    }
)
# The figures that decide a worker's speed, recorded with their effective values.
EFFECTIVE = (
    "max_batch_size",
    "bulk_batch_size",
    "bulk_max_delay_ms",
    "max_wait_ms",
    "job_slots",
    "vision_max_batch_size",
    "vision_max_wait_ms",
    "decode_threads",
    "regressor_xla",
    "mixed_precision",
    "task_events",
)
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def overrides(env: Mapping[str, str]) -> dict[str, str]:
    """The INFERQ_ variables in ``env`` that set a tuning value (plumbing left out),
    whether or not the value happens to equal the default: what was set is recorded."""
    found = {}
    for key, value in sorted(env.items()):
        name = key[len(ENV_PREFIX) :].lower()
        if key.startswith(ENV_PREFIX) and name in Settings.model_fields and name not in PLUMBING:
            found[key] = value
    return found


def worker_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The record for the JSON's ``settings``: the overrides a worker started with
    ``env`` has, and the effective tuning values it runs with. A worker inherits this
    process's environment under ``env`` (inferq.ops.worker_process), so an INFERQ_
    variable exported to the benchmark itself counts too."""
    env = {**os.environ, **env}
    settings = Settings.load({k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
    effective: dict[str, Any] = {}
    for name in EFFECTIVE:
        if name in Settings.model_fields:  # a field another branch has not added yet
            effective[name] = getattr(settings, name)
    effective["job_slots"] = settings.effective_job_slots
    effective["decode_threads"] = settings.effective_decode_threads
    found = overrides(env)
    return {"defaults": not found, "overrides": found, "effective": effective}


def label(record: Mapping[str, Any]) -> str:
    """One line to print beside a figure: ``defaults`` or the overrides."""
    found: Mapping[str, str] = record["overrides"]
    return "defaults" if not found else ", ".join(f"{k}={v}" for k, v in found.items())


def compose_env(service: str, path: Path = COMPOSE_FILE) -> dict[str, str] | None:
    """The tuning INFERQ_ variables docker-compose.yml gives ``service`` (anchors and
    merges resolved), or None where the file or a YAML reader is missing (an installed
    package has no compose file; PyYAML comes with the dev extras)."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return None
    if not path.exists():
        return None
    services = yaml.safe_load(path.read_text()).get("services", {})
    environment = services.get(service, {}).get("environment") or {}
    if isinstance(environment, list):  # the KEY=VALUE list form
        environment = dict(item.split("=", 1) for item in environment if "=" in item)
    values = {str(k): str(v) for k, v in environment.items() if not str(v).startswith("$")}
    return overrides(values)


def compose_overrides(service: str, path: Path = COMPOSE_FILE) -> dict[str, str] | None:
    """The compose service's tuning values that differ from the shipped defaults: empty
    where compose runs the defaults (no second run needed), None where unknown."""
    env = compose_env(service, path)
    if env is None:
        return None
    defaults = Settings.load({}).model_dump()
    differ = {}
    for key, value in env.items():
        name = key[len(ENV_PREFIX) :].lower()
        if Settings.load({key: value}).model_dump()[name] != defaults[name]:
            differ[key] = value
    return differ


def compose_status(compose: Mapping[str, Any]) -> str | None:
    """The line a benchmark prints for compose's run when it has no figures of its own
    (not run, no compose file here, or compose runs the defaults); None when it has."""
    if compose.get("skipped"):
        return "compose: not run (--no-compose)"
    if not compose["known"]:
        return "compose: docker-compose.yml or PyYAML not found here"
    if compose["same_as_defaults"]:
        return f"compose ({compose['service']}): the defaults, the same figures"
    return None
