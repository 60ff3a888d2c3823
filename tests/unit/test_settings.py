from pathlib import Path

import pytest

from inferq.core.celery_config import celery_config
from inferq.core.settings import Settings, SettingsError
from tests.support.harness import ROOT


def test_defaults() -> None:
    s = Settings.load({})
    assert s.redis_url is None
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert s.regressor_path == Path("models/regressor.h5")
    assert s.effective_job_slots == 2 * s.max_batch_size


def test_values_parse_from_strings() -> None:
    s = Settings.load(
        {"INFERQ_MAX_BATCH_SIZE": "32", "INFERQ_MAX_WAIT_MS": "2.5", "INFERQ_TASK_EVENTS": "false"}
    )
    assert (s.max_batch_size, s.max_wait_ms, s.task_events) == (32, 2.5, False)


def test_unknown_setting_is_an_error_with_a_hint() -> None:
    with pytest.raises(
        SettingsError, match=r"INFERQ_MAX_BATCH .*did you mean INFERQ_MAX_BATCH_SIZE"
    ):
        Settings.load({"INFERQ_MAX_BATCH": "8"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INFERQ_MAX_BATCH_SIZE", "0"),
        ("INFERQ_MAX_BATCH_SIZE", "many"),
        ("INFERQ_MAX_WAIT_MS", "-1"),
        ("INFERQ_REDIS_URL", "http://localhost"),
        ("INFERQ_LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_values_name_the_variable(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.load({key: value})


def test_settings_are_frozen() -> None:
    s = Settings.load({})
    with pytest.raises(ValueError, match="frozen"):
        s.max_batch_size = 3  # type: ignore[misc]


def test_every_setting_is_in_the_configuration_table() -> None:
    readme = (ROOT / "docs" / "configuration.md").read_text()
    missing = [n for n in Settings.model_fields if f"| `INFERQ_{n.upper()}` |" not in readme]
    assert missing == []


def test_the_redis_timeout_reaches_broker_and_result_store_connections() -> None:
    config = celery_config(Settings.load({"INFERQ_REDIS_TIMEOUT_S": "3"}))
    transport = config["broker_transport_options"]
    assert transport["socket_timeout"] == transport["socket_connect_timeout"] == 3.0
    assert config["redis_socket_timeout"] == config["redis_socket_connect_timeout"] == 3.0
    assert Settings.load({}).redis_timeout_s == 10.0
    with pytest.raises(SettingsError):
        Settings.load({"INFERQ_REDIS_TIMEOUT_S": "0"})
