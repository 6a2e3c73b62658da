"""Where the secret and the tokens may go: the pure address checks (no DNS, no connection)."""

from __future__ import annotations

import pytest

from worker.net.endpoints import (
    DEFAULT_OAUTH_URL,
    Adopted,
    adopt,
    endpoint_problem,
    host_allowed,
    moved_endpoint,
    token_endpoint,
)
from worker.settings import Settings

METHOD = "imconnector.send.status.delivery"
OLD = "https://old.bitrix24.com/rest/"
TEST_NETWORKS = "public,loopback"


def test_the_operator_url_is_trusted_as_set_for_every_portal() -> None:
    s = Settings(oauth_url="https://oauth.example.net/oauth/token/")
    for server in (None, "https://evil.example.com/rest/", "https://oauth.bitrix24.tech/rest/"):
        assert token_endpoint(s, server).url == "https://oauth.example.net/oauth/token/"
        assert token_endpoint(s, server).source == "operator"


def test_without_an_override_the_portals_own_allowed_server_is_used() -> None:
    s = Settings()
    assert token_endpoint(s, None).url == DEFAULT_OAUTH_URL
    regional = token_endpoint(s, "https://oauth.bitrix24.tech/rest/")
    assert regional.url == "https://oauth.bitrix24.tech/oauth/token/"
    assert regional.source == "server_endpoint"


@pytest.mark.parametrize(
    "server",
    [
        "https://evil.example.com/rest/",
        "https://oauth.bitrix.info.evil.com/rest/",
        "https://evil.com/oauth.bitrix.info/rest/",
        "http://oauth.bitrix.info/rest/",  # https only
        "https://user:pw@oauth.bitrix.info/rest/",
    ],
)
def test_a_server_endpoint_outside_the_allowlist_is_refused(server: str) -> None:
    refused = token_endpoint(Settings(), server)
    assert refused.url is None and refused.problem and refused.refused_host


def test_loopback_http_needs_loopback_networks_and_the_host_listed() -> None:
    server = "http://127.0.0.1:9123/rest/"
    assert token_endpoint(Settings(oauth_hosts="127.0.0.1"), server).url is None
    allowed = Settings(oauth_hosts="127.0.0.1", allowed_endpoint_networks=TEST_NETWORKS)
    assert token_endpoint(allowed, server).url == "http://127.0.0.1:9123/oauth/token/"
    pinned = Settings(oauth_hosts="127.0.0.1:9000", allowed_endpoint_networks=TEST_NETWORKS)
    assert token_endpoint(pinned, server).url is None, "host:port entries pin the port"


def test_host_matching_is_exact() -> None:
    entries = frozenset({("oauth.bitrix.info", None), ("127.0.0.1", 8443)})
    assert host_allowed("https://OAUTH.bitrix.info/x", entries)
    assert not host_allowed("https://sub.oauth.bitrix.info/x", entries)
    assert host_allowed("https://127.0.0.1:8443/x", entries)
    assert not host_allowed("https://127.0.0.1:8444/x", entries)


def test_endpoint_problem_applies_the_loopback_rule() -> None:
    assert endpoint_problem("http://127.0.0.1:1/rest/", loopback_ok=True) is None
    assert endpoint_problem("http://127.0.0.1:1/rest/", loopback_ok=False)
    assert endpoint_problem("http://example.com/rest/", loopback_ok=True)


def test_a_redirect_that_keeps_the_method_gives_the_new_endpoint() -> None:
    new, why = moved_endpoint(
        f"https://new.bitrix24.com/rest/{METHOD}", OLD + METHOD, METHOD, OLD, loopback_ok=False
    )
    assert (new, why) == ("https://new.bitrix24.com/rest/", "")
    relative, _ = moved_endpoint(
        f"/moved/rest/{METHOD}", OLD + METHOD, METHOD, OLD, loopback_ok=False
    )
    assert relative == "https://old.bitrix24.com/moved/rest/"


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("", "no usable Location"),
        (f"http://new.bitrix24.com/rest/{METHOD}", "https"),
        (f"https://u:p@new.bitrix24.com/rest/{METHOD}", "credentials"),
        ("https://new.bitrix24.com/rest/other.method", "method path"),
        ("https://evil.example.com/collect", "method path"),
        (f"https://new.bitrix24.com/rest/{METHOD}?x=1", "query"),
        (f"https://new.bitrix24.com/api/{METHOD}", "/rest/"),
        (f"https://old.bitrix24.com/rest/{METHOD}", "same endpoint"),
        (f"ftp://new.bitrix24.com/rest/{METHOD}", "http"),
    ],
)
def test_an_unsafe_or_foreign_redirect_is_refused(location: str, why: str) -> None:
    new, reason = moved_endpoint(location, OLD + METHOD, METHOD, OLD, loopback_ok=False)
    assert new is None and why in reason


def test_a_refresh_answer_replaces_endpoints_that_pass_the_checks() -> None:
    s = Settings()
    got = adopt(
        s,
        {
            "client_endpoint": "https://new.bitrix24.com/rest",
            "server_endpoint": "https://oauth.bitrix24.tech/rest/",
            "domain": "oauth.bitrix24.tech",  # the OAuth server's host: never stored
        },
    )
    assert got == Adopted("https://new.bitrix24.com/rest/", "https://oauth.bitrix24.tech/rest/")


def test_a_refresh_answer_naming_a_foreign_oauth_host_is_refused() -> None:
    got = adopt(Settings(), {"server_endpoint": "https://evil.example.com/rest/"})
    assert got.server_endpoint is None and got.refusal is not None
    assert got.refusal[0] == "OAUTH_HOST_NOT_ALLOWED" and "evil.example.com" in got.refusal[1]
    operator = Settings(oauth_url="https://oauth.example.net/oauth/token/")
    assert adopt(operator, {"server_endpoint": "https://evil.example.com/rest/"}).refusal is None


def test_a_refresh_answer_with_an_unsafe_client_endpoint_is_refused() -> None:
    got = adopt(Settings(), {"client_endpoint": "http://new.example.com/rest/"})
    assert got.client_endpoint is None and got.refusal is not None
    assert got.refusal[0] == "ENDPOINT_REFUSED"
