"""What a benchmark records of its workers' settings (inferq.bench.settings_record)."""

from __future__ import annotations

from pathlib import Path

from inferq.bench.settings_record import compose_overrides, label, overrides, worker_settings


def test_plumbing_is_not_an_override_and_tuning_is() -> None:
    env = {
        "INFERQ_REDIS_URL": "redis://127.0.0.1:1/0",
        "INFERQ_REGRESSION_QUEUE": "bench-x",
        "INFERQ_MAX_BATCH_SIZE": "8192",
        "PATH": "/usr/bin",
    }
    assert overrides(env) == {"INFERQ_MAX_BATCH_SIZE": "8192"}
    record = worker_settings(env)
    assert record["defaults"] is False
    assert record["effective"]["max_batch_size"] == 8192
    assert label(record) == "INFERQ_MAX_BATCH_SIZE=8192"


def test_a_plain_environment_is_the_defaults() -> None:
    record = worker_settings({"INFERQ_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert record == {**record, "defaults": True, "overrides": {}}
    assert label(record) == "defaults"
    assert record["effective"]["max_batch_size"] == 64


def test_compose_values_that_differ_from_the_defaults(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        "x-env: &env\n"
        "  INFERQ_MAX_BATCH_SIZE: '64'\n"
        "  INFERQ_REDIS_URL: redis://redis:6379/0\n"
        "services:\n"
        "  worker:\n"
        "    environment:\n"
        "      <<: *env\n"
        "      INFERQ_JOB_SLOTS: '32'\n"
        "      INFERQ_SENTINEL_MASTER: ${SENTINEL_MASTER:-}\n"
        "  plain:\n"
        "    image: x\n"
    )
    assert compose_overrides("worker", compose) == {"INFERQ_JOB_SLOTS": "32"}
    assert compose_overrides("plain", compose) == {}
    assert compose_overrides("worker", tmp_path / "missing.yml") is None
