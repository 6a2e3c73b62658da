"""Settings: defaults, parsing, and a clear error naming the variable and the rule."""

from __future__ import annotations

import pytest

from tests.harness import ROOT, run_python
from worker.errors import SettingsError
from worker.settings import ENV_NAMES, RULES, Settings


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.oauth_url == "https://oauth.bitrix.info/oauth/token/"
    assert s.client_id is None and s.client_secret is None
    assert s.batch_size == 50 and s.flush_window_s == 1.0


def test_every_setting_has_an_env_name_and_a_rule() -> None:
    assert set(ENV_NAMES) == set(RULES)
    assert ENV_NAMES["redis_url"] == "REDIS_URL"
    assert all(n.startswith(("DELIVERY_", "BITRIX24_", "REDIS_")) for n in ENV_NAMES.values())


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "DELIVERY_BATCH_SIZE": "20",
            "DELIVERY_FLUSH_WINDOW_S": "0.5",
            "BITRIX24_OAUTH_URL": "http://127.0.0.1:9/oauth/token/",
        }
    )
    assert (s.batch_size, s.flush_window_s) == (20, 0.5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DELIVERY_BATCH_SIZE", "0", "an integer from 1 to 1000"),
        ("DELIVERY_BATCH_SIZE", "many", "an integer from 1 to 1000"),
        ("DELIVERY_FLUSH_WINDOW_S", "-1", "seconds, from 0.001 to 60"),
        ("BITRIX24_OAUTH_URL", "http://oauth.example.com/", "https://"),
        ("REDIS_URL", "http://x", "redis://"),
        ("DELIVERY_LOG_FORMAT", "xml", "one of auto, json, console"),
    ],
)
def test_invalid_values_name_the_variable_and_the_rule(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value) and message in str(info.value)


def test_cross_field_rules() -> None:
    with pytest.raises(SettingsError, match="DELIVERY_LEASE_TTL_S"):
        Settings.from_env({"DELIVERY_LEASE_TTL_S": "10", "DELIVERY_HTTP_READ_TIMEOUT_S": "30"})


def test_secret_is_not_in_repr() -> None:
    assert "hunter2" not in repr(Settings.from_env({"BITRIX24_CLIENT_SECRET": "hunter2"}))


def test_worker_refuses_to_start_with_a_bad_setting() -> None:
    env = {"DELIVERY_BATCH_SIZE": "-5", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    run = run_python("-m", "celery", "-A", "worker", "worker", env=env)
    assert run.returncode != 0
    assert (
        "DELIVERY_BATCH_SIZE='-5' is invalid: an integer from 1 to 1000" in run.stderr + run.stdout
    )
