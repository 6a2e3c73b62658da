"""Where the secret and the tokens may go: the pure rules of worker/net/trust.py (no DNS, no
connection)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.net.trust import DEFAULT_OAUTH_URL, Adopted, Trust
from worker.settings import Settings

METHOD = "imconnector.send.status.delivery"
OLD = "https://old.bitrix24.com/rest/"
TEST_NETWORKS = "public,loopback"


def test_the_operator_url_is_trusted_as_set_for_every_portal() -> None:
    s = Settings(oauth_url="https://oauth.example.net/oauth/token/")
    for server in (None, "https://evil.example.com/rest/", "https://oauth.bitrix24.tech/rest/"):
        assert s.trust().token_endpoint(server).url == "https://oauth.example.net/oauth/token/"
        assert s.trust().token_endpoint(server).source == "operator"


def test_without_an_override_the_portals_own_allowed_server_is_used() -> None:
    trust = Settings().trust()
    assert trust.token_endpoint(None).url == DEFAULT_OAUTH_URL
    regional = trust.token_endpoint("https://oauth.bitrix24.tech/rest/")
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
    refused = Settings().trust().token_endpoint(server)
    assert refused.url is None and refused.problem and refused.refused_host


def test_loopback_http_needs_loopback_networks_and_the_host_listed() -> None:
    server = "http://127.0.0.1:9123/rest/"
    assert Settings(oauth_hosts="127.0.0.1").trust().token_endpoint(server).url is None
    allowed = Settings(oauth_hosts="127.0.0.1", allowed_endpoint_networks=TEST_NETWORKS)
    assert allowed.trust().token_endpoint(server).url == "http://127.0.0.1:9123/oauth/token/"
    pinned = Settings(oauth_hosts="127.0.0.1:9000", allowed_endpoint_networks=TEST_NETWORKS)
    assert pinned.trust().token_endpoint(server).url is None, "host:port entries pin the port"


def test_host_matching_is_exact() -> None:
    trust = Trust(oauth_hosts=frozenset({("oauth.bitrix.info", None), ("127.0.0.1", 8443)}))
    assert trust.host_allowed("https://OAUTH.bitrix.info/x")
    assert not trust.host_allowed("https://sub.oauth.bitrix.info/x")
    assert trust.host_allowed("https://127.0.0.1:8443/x")
    assert not trust.host_allowed("https://127.0.0.1:8444/x")


def test_the_endpoint_rule_applies_the_loopback_rule() -> None:
    dev = Trust(frozenset({"public", "loopback"}))
    assert dev.url_problem("http://127.0.0.1:1/rest/") is None
    assert Trust().url_problem("http://127.0.0.1:1/rest/")
    assert dev.url_problem("http://example.com/rest/")


def test_a_redirect_that_keeps_the_method_gives_the_new_endpoint() -> None:
    new, why = Trust().moved_endpoint(
        f"https://new.bitrix24.com/rest/{METHOD}", OLD + METHOD, METHOD, OLD
    )
    assert (new, why) == ("https://new.bitrix24.com/rest/", "")
    relative, _ = Trust().moved_endpoint(f"/moved/rest/{METHOD}", OLD + METHOD, METHOD, OLD)
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
        (f"https://10.0.0.7/rest/{METHOD}", "is private"),
        (f"https://[::ffff:169.254.169.254]/rest/{METHOD}", "never receives tokens"),
    ],
)
def test_an_unsafe_or_foreign_redirect_is_refused(location: str, why: str) -> None:
    new, reason = Trust().moved_endpoint(location, OLD + METHOD, METHOD, OLD)
    assert new is None and why in reason


def test_a_refresh_answer_replaces_endpoints_that_pass_the_checks() -> None:
    got = (
        Settings()
        .trust()
        .adopt(
            {
                "client_endpoint": "https://new.bitrix24.com/rest",
                "server_endpoint": "https://oauth.bitrix24.tech/rest/",
                "domain": "oauth.bitrix24.tech",  # the OAuth server's host: never stored
            },
        )
    )
    assert got == Adopted("https://new.bitrix24.com/rest/", "https://oauth.bitrix24.tech/rest/")


def test_a_refresh_answer_naming_a_foreign_oauth_host_is_refused() -> None:
    got = Settings().trust().adopt({"server_endpoint": "https://evil.example.com/rest/"})
    assert got.server_endpoint is None and got.refusal is not None
    assert got.refusal[0] == "OAUTH_HOST_NOT_ALLOWED" and "evil.example.com" in got.refusal[1]
    operator = Settings(oauth_url="https://oauth.example.net/oauth/token/")
    assert (
        operator.trust().adopt({"server_endpoint": "https://evil.example.com/rest/"}).refusal
        is None
    )


def test_a_refresh_answer_with_an_unsafe_client_endpoint_is_refused() -> None:
    got = Settings().trust().adopt({"client_endpoint": "http://new.example.com/rest/"})
    assert got.client_endpoint is None and got.refusal is not None
    assert got.refusal[0] == "ENDPOINT_REFUSED"


def test_the_operators_oauth_url_is_trusted_for_the_refresh_only() -> None:
    """BITRIX24_OAUTH_URL on an internal host: the refresh's connections trust it as set; a call
    to a portal (whose client_endpoint may name that very host) trusts no host at all."""
    s = Settings(oauth_url="https://oauth.corp.internal:8443/oauth/token/")
    trust = s.trust()
    assert trust.oauth_policy().is_trusted("oauth.corp.internal", 8443)
    assert trust.oauth_policy().request_problem(s.oauth_url or "") is None
    portal = trust.portal_policy()
    assert portal.trusted == frozenset()
    assert not portal.is_trusted("oauth.corp.internal", 8443)
    assert Trust().oauth_policy().trusted == frozenset(), "no operator URL: nothing trusted"


@given(
    st.text(max_size=300),
    st.sampled_from(["", "https://p.example/rest/", "http://127.0.0.1:9/rest/"]),
    st.dictionaries(st.sampled_from(["client_endpoint", "server_endpoint"]), st.text(max_size=80)),
)
def test_the_rules_answer_any_input(location: str, old: str, answer: dict[str, object]) -> None:
    """A redirect's Location and a refresh answer come from the portal: any text gets an
    answer, never an exception."""
    for trust in (Trust(), Settings(allowed_endpoint_networks=TEST_NETWORKS).trust()):
        new, why = trust.moved_endpoint(location, old + METHOD, METHOD, old)
        assert (new is None) != (why == "")
        assert isinstance(trust.adopt(answer), Adopted)
        trust.token_endpoint(location)
        trust.url_problem(location)
