"""Sentinel settings: the URL form, the master's name required with it and refused
without it, and what kombu's and Celery's Sentinel transports are given."""

from __future__ import annotations

import pytest

from inferq.core.broker import describe, sentinel_addresses
from inferq.core.celery_config import celery_config
from inferq.core.settings import Settings, SettingsError

URL = "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/0"


def test_a_sentinel_url_with_the_master_named_configures_broker_and_backend_alike() -> None:
    settings = Settings.load(
        {
            "INFERQ_REDIS_URL": URL,
            "INFERQ_SENTINEL_MASTER": "inferq",
            "INFERQ_SENTINEL_PASSWORD": "sentinels-own",
            "INFERQ_REDIS_TIMEOUT_S": "3",
        }
    )
    assert settings.uses_sentinel
    config = celery_config(settings)
    assert config["broker_url"] == config["result_backend"] == URL
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["master_name"] == "inferq"
        assert options["sentinel_kwargs"] == {
            "password": "sentinels-own",
            "socket_timeout": 3.0,
            "socket_connect_timeout": 3.0,
        }
        assert options["socket_timeout"] == 3.0  # the master's connections, as before
    assert sentinel_addresses(URL) == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("10.0.0.3", 26379),
    ]
    assert "s3cret" not in describe(settings) and "(master inferq)" in describe(settings)


def test_plain_redis_urls_get_no_sentinel_options() -> None:
    config = celery_config(Settings.load({"INFERQ_REDIS_URL": "redis://r:6379/0"}))
    assert "master_name" not in config["broker_transport_options"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INFERQ_REDIS_URL": URL}, "INFERQ_SENTINEL_MASTER"),
        ({"INFERQ_SENTINEL_MASTER": "inferq"}, "need a sentinel://"),
        (
            {"INFERQ_REDIS_URL": "redis://r:6379/0", "INFERQ_SENTINEL_PASSWORD": "x"},
            "need a sentinel://",
        ),
        ({"INFERQ_REDIS_URL": "sentinel://a:1;redis://b:2", "INFERQ_SENTINEL_MASTER": "m"}, "each"),
        ({"INFERQ_REDIS_URL": "sentinel://:26379", "INFERQ_SENTINEL_MASTER": "m"}, "with a host"),
        (
            {
                "INFERQ_REDIS_URL": "sentinel://a:1/0;sentinel://b:2/3",
                "INFERQ_SENTINEL_MASTER": "m",
            },
            "first sentinel:// part",
        ),
    ],
)
def test_sentinel_settings_that_disagree_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(env)
