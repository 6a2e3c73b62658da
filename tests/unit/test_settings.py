"""Settings: defaults, parsing, and a clear error naming the variable and the rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness import ROOT, run_python
from worker.errors import SettingsError
from worker.settings import ENV_NAMES, RULES, Settings


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.oauth_url is None, "an override only: unset, each portal's own OAuth server"
    assert s.oauth_hosts == "oauth.bitrix.info,oauth.bitrix24.tech"
    assert s.allowed_endpoint_networks == "public" and not s.loopback_allowed
    assert s.oauth_timeout_s == 60.0 and s.refresh_lock_ttl_s >= 1.5 * s.oauth_timeout_s
    assert s.http_connect_timeout_s + s.http_read_timeout_s >= 70, "covers the portal's 60 s"
    assert s.tokens_renewed_task is None and s.tokens_renewed_queue == "celery"
    assert s.token_request_task is None and s.token_request_queue == "celery"
    assert s.client_id is None and s.client_secret is None
    assert s.batch_size == 50 and s.flush_window_s == 1.0
    assert s.broker_url is None and s.broker == s.redis_url and s.dedup_window_s == 600
    assert s.require_message_id is False


def test_every_setting_has_an_env_name_and_a_rule() -> None:
    assert set(ENV_NAMES) == set(RULES)
    assert ENV_NAMES["redis_url"] == "REDIS_URL"
    # SENTRY_DSN: the name the Sentry SDK and its users already know; CELERY_BROKER_URL: Celery's
    prefixes = ("DELIVERY_", "BITRIX24_", "REDIS_", "SENTRY_", "CELERY_BROKER_URL")
    assert all(n.startswith(prefixes) for n in ENV_NAMES.values())


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "DELIVERY_BATCH_SIZE": "20",
            "DELIVERY_FLUSH_WINDOW_S": "0.5",
            "BITRIX24_OAUTH_URL": "http://127.0.0.1:9/oauth/token/",
            "DELIVERY_ALLOWED_ENDPOINT_NETWORKS": "Loopback, public",
        }
    )
    assert (s.batch_size, s.flush_window_s) == (20, 0.5)
    assert s.allowed_endpoint_networks == "public,loopback"
    assert s.endpoint_networks == frozenset({"public", "loopback"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DELIVERY_BATCH_SIZE", "0", "an integer from 1 to 1000"),
        ("DELIVERY_BATCH_SIZE", "many", "an integer from 1 to 1000"),
        ("DELIVERY_FLUSH_WINDOW_S", "-1", "seconds, from 0.001 to 60"),
        ("BITRIX24_OAUTH_URL", "http://oauth.example.com/", "https://"),
        ("REDIS_URL", "http://x", "redis://"),
        ("DELIVERY_LOG_FORMAT", "xml", "one of auto, json, console"),
        ("BITRIX24_OAUTH_HOSTS", "*.bitrix.info", "no wildcards"),
        ("BITRIX24_OAUTH_HOSTS", "https://oauth.bitrix.info/", "host:port"),
        ("BITRIX24_OAUTH_HOSTS", "oauth.bitrix.info:http", "host:port"),
        ("DELIVERY_ALLOWED_ENDPOINT_NETWORKS", "public,internet", "public, private, loopback"),
        ("DELIVERY_TOKENS_RENEWED_TASK", "bad name!", "a task name"),
        ("DELIVERY_REQUIRE_MESSAGE_ID", "yes", "0 or 1"),
        ("DELIVERY_FLUSH_TICK_S", "-0.25", "seconds, from 0 (off) to 5"),
        ("DELIVERY_FLUSH_TICK_S", "nan", "seconds, from 0 (off) to 5"),
        ("DELIVERY_FLUSH_TICK_S", "inf", "seconds, from 0 (off) to 5"),
        ("DELIVERY_FLUSH_TICK_S", "6", "seconds, from 0 (off) to 5"),
    ],
)
def test_invalid_values_name_the_variable_and_the_rule(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value) and message in str(info.value)


def test_require_message_id_is_a_flag() -> None:
    assert Settings.from_env({"DELIVERY_REQUIRE_MESSAGE_ID": "1"}).require_message_id is True
    assert Settings.from_env({"DELIVERY_REQUIRE_MESSAGE_ID": "0"}).require_message_id is False


def test_cross_field_rules() -> None:
    # Redis's visibility-timeout fallback must never redeliver a task still running
    with pytest.raises(SettingsError, match="DELIVERY_VISIBILITY_TIMEOUT_S"):
        Settings.from_env({"DELIVERY_VISIBILITY_TIMEOUT_S": "100"})
    with pytest.raises(SettingsError, match="DELIVERY_VISIBILITY_TIMEOUT_S"):
        Settings.from_env(
            {"DELIVERY_VISIBILITY_TIMEOUT_S": "180", "DELIVERY_HTTP_READ_TIMEOUT_S": "120"}
        )


def test_the_lease_no_longer_needs_to_outlive_the_call() -> None:
    # renewed while the call runs: a 5 s lease with the platform's full 60 s call is valid
    s = Settings.from_env({"DELIVERY_LEASE_TTL_S": "5", "DELIVERY_HTTP_READ_TIMEOUT_S": "65"})
    assert s.lease_ttl_s == 5 and s.task_time_limit_s == 2 * 65 + 60 + 40


def test_the_answer_limits_have_safe_defaults_and_nest() -> None:
    s = Settings.from_env({})
    assert s.http_max_answer_bytes == 256 * 1024 <= 1024 * 1024
    assert 60 < s.http_total_timeout_s <= 70  # a little over the platform's 60 s
    assert 1 <= s.max_bad_answers < s.max_attempts
    # the task's hard limit grows with the total deadline (two calls: a redirect followed)
    longer = Settings.from_env({"DELIVERY_HTTP_TOTAL_TIMEOUT_S": "80"})
    assert longer.task_time_limit_s == s.task_time_limit_s + 2 * 15
    with pytest.raises(SettingsError, match="DELIVERY_MAX_BAD_ANSWERS='0' is invalid"):
        Settings.from_env({"DELIVERY_MAX_BAD_ANSWERS": "0"})
    with pytest.raises(SettingsError, match="DELIVERY_HTTP_TOTAL_TIMEOUT_S must exceed"):
        Settings.from_env({"DELIVERY_HTTP_TOTAL_TIMEOUT_S": "4"})
    with pytest.raises(SettingsError, match="DELIVERY_HTTP_MAX_ANSWER_BYTES='2000000' is invalid"):
        Settings.from_env({"DELIVERY_HTTP_MAX_ANSWER_BYTES": "2000000"})


def test_broker_url_selects_the_broker() -> None:
    assert not Settings.from_env({}).broker_is_amqp
    s = Settings.from_env({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert s.broker_is_amqp and s.broker.startswith("amqp://") and s.redis_url.startswith("redis")
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL='http://x' is invalid: an amqp://"):
        Settings.from_env({"CELERY_BROKER_URL": "http://x"})


def test_secret_is_not_in_repr() -> None:
    assert "hunter2" not in repr(Settings.from_env({"BITRIX24_CLIENT_SECRET": "hunter2"}))


def test_worker_refuses_to_start_with_a_bad_setting() -> None:
    env = {"DELIVERY_BATCH_SIZE": "-5", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    run = run_python("-m", "celery", "-A", "worker", "worker", env=env)
    assert run.returncode != 0
    assert (
        "DELIVERY_BATCH_SIZE='-5' is invalid: an integer from 1 to 1000" in run.stderr + run.stdout
    )


def test_oauth_hosts_are_hosts_or_host_port() -> None:
    s = Settings.from_env({"BITRIX24_OAUTH_HOSTS": "OAuth.Example.com, 127.0.0.1:8443,[::1]"})
    assert s.oauth_host_entries == {
        ("oauth.example.com", None),
        ("127.0.0.1", 8443),
        ("::1", None),
    }


def test_the_refresh_lock_must_outlive_the_refresh_call() -> None:
    with pytest.raises(SettingsError, match="DELIVERY_REFRESH_LOCK_TTL_S"):
        Settings.from_env({"DELIVERY_OAUTH_TIMEOUT_S": "60", "DELIVERY_REFRESH_LOCK_TTL_S": "61"})
    ok = Settings.from_env({"DELIVERY_OAUTH_TIMEOUT_S": "2", "DELIVERY_REFRESH_LOCK_TTL_S": "3"})
    assert ok.oauth_timeouts() == (1.0, 1.0)
    assert sum(Settings().oauth_timeouts()) == 60.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CELERY_BROKER_URL", "ftp://guest:S3CRET-pw@rabbit:5672//"),
        ("CELERY_BROKER_URL", "rabbit://guest:S3CRET/pw@@rabbit:5672"),
        ("REDIS_URL", "http://:S3CRET-pw@redis:6379/0"),
        ("REDIS_URL", "sentinel://:S3CRET-pw@h1;sentinel://:S3CRET-pw@h2/0x"),
        ("BITRIX24_OAUTH_URL", "https://user:S3CRET-pw@oauth.example.net/oauth/token/"),
        ("BITRIX24_OAUTH_URL", "http://user:S3CRET-pw@[::1/oauth/token/"),
        ("SENTRY_DSN", "ftp://key:S3CRET-pw@sentry.example/1"),
    ],
)
def test_a_malformed_url_never_shows_its_password(name: str, value: str) -> None:
    """The error names the variable and the rule; the URL's password stays hidden, however
    malformed the URL."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert name in message and "S3CRET" not in message


def test_a_plain_http_oauth_url_error_hides_its_password() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"BITRIX24_OAUTH_URL": "http://u:S3CRET-pw@127.0.0.1:9/oauth/token/"})
    assert "S3CRET" not in str(info.value)


#: what an operator's environment may hold: any text, and the shapes that parse half-way
HOSTILE_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e309", "nan", "-inf", "0x10", "1_000", "١٢", "\x00"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(ENV_NAMES.values())), HOSTILE_VALUES, max_size=6))
def test_any_environment_gives_settings_or_an_error_naming_a_variable(env: dict[str, str]) -> None:
    """Hostile settings: whatever the environment holds, the worker starts with valid settings
    or stops with a SettingsError that names one of the variables it was given; never another
    exception."""
    error: SettingsError | None = None
    try:
        Settings.from_env(env)
    except SettingsError as exc:
        error = exc
    if error is not None:
        named = [name for name in ENV_NAMES.values() if name in str(error)]
        assert named, f"the error names no variable: {error}"
