"""docker-compose.yml's `sentinel` profile, checked without Docker: a replica and three
Sentinels only in that profile, and every inferq service switched to the Sentinels by
the three variables the file names (the same Settings a worker would load)."""

from __future__ import annotations

import yaml  # type: ignore[import-untyped]

from inferq.core.settings import Settings
from tests.support.composefile import COMPOSE, COMPOSE_ENV, environment, interpolated

SENTINEL_ENV = {
    **COMPOSE_ENV,
    "REDIS_SCHEME": "sentinel",
    "SENTINEL_MASTER": "inferq",
    "REDIS_HOSTS": "sentinel-1:26379;sentinel://sentinel-2:26379;sentinel://sentinel-3:26379",
}
PROFILE_SERVICES = {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}


def services(env: dict[str, str]) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = interpolated(yaml.safe_load(COMPOSE.read_text()), env)[
        "services"
    ]
    return found


def inferq_settings(env: dict[str, str]) -> dict[str, Settings]:
    return {
        name: Settings.load(environment(service))
        for name, service in services(env).items()
        if "INFERQ_REDIS_URL" in environment(service)
    }


def test_sentinel_services_start_only_with_their_profile() -> None:
    found = services(COMPOSE_ENV)
    in_profile = {n for n, s in found.items() if "sentinel" in (s.get("profiles") or [])}
    assert in_profile == PROFILE_SERVICES
    replica = found["redis-replica"]["command"][-1]  # type: ignore[index]
    assert "--replicaof redis 6379" in replica and "masterauth $REDIS_PASSWORD" in replica
    for name in PROFILE_SERVICES - {"redis-replica"}:
        script = found[name]["command"][-1]  # type: ignore[index]
        assert "sentinel monitor inferq redis 6379 2" in script
        assert "exec redis-server /tmp/sentinel.conf --sentinel" in script


def test_workers_use_redis_by_default_and_the_sentinels_when_told() -> None:
    plain = inferq_settings(COMPOSE_ENV)
    assert plain and not any(s.uses_sentinel for s in plain.values())
    sentinel = inferq_settings(SENTINEL_ENV)
    assert sentinel.keys() == plain.keys()
    for name, settings in sentinel.items():
        assert settings.uses_sentinel and settings.sentinel_master == "inferq", name
        assert settings.broker_url.count("sentinel://") == 3, settings.broker_url
        assert settings.broker_url.startswith("sentinel://:compose-test-secret@sentinel-1:26379;")
