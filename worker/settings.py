"""One settings object, built once from the environment and validated at start-up.

Nothing else in the project reads the environment. Every knob has a default, a unit in its
name, and a rule; a bad value stops the process with a message naming the variable and what it
accepts (`SettingsError`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from worker.errors import SettingsError
from worker.net.addresses import canonical, parse_networks
from worker.net.trust import ALL_NETWORKS, Trust, operator_url_problem, url_problem

T = TypeVar("T")


#: never shown in an error message, a repr or a log line
SECRET_FIELDS = frozenset({"client_secret", "token_keys", "sentry_dsn"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything tunable: each field's environment variable is in `ENV_NAMES`, its rule in
    `RULES` (below); a `#:` comment above a field is its meaning in the configuration
    reference."""

    #: the state store (and the broker unless CELERY_BROKER_URL is set); or kombu's Sentinel form
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: with REDIS_URL in kombu's Sentinel form, the name of the master the sentinels monitor
    redis_sentinel_master: str | None = None
    #: the Celery broker when it is not the state Redis (amqp:// for RabbitMQ)
    broker_url: str | None = None
    #: the OAuth application's client id, for token refresh (without it a refresh parks the portal)
    client_id: str | None = None
    #: the OAuth application's client secret; sent only to the token endpoint, never logged
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    #: the operator's token endpoint for every portal (an override, trusted as set, for the
    #: refresh only); unset: each portal's server_endpoint host (when allowed), else the default
    oauth_url: str | None = None
    #: the only hosts (or host:port) a token endpoint named by a portal may have
    oauth_hosts: str = "oauth.bitrix.info,oauth.bitrix24.tech"
    #: networks a portal's endpoints may resolve to, checked on every connection
    #: (worker/net/trust.py); `loopback` also allows http:// on loopback hosts
    allowed_endpoint_networks: str = "public"
    #: prefix of every Redis key the pipeline owns
    key_prefix: str = "b24d"
    #: items per imconnector.send.status.delivery call (no documented maximum: stay conservative)
    batch_size: int = 50
    #: a partial batch waits at most this long after its oldest item
    flush_window_s: float = 1.0
    #: waits end on ticks this long apart (at most a quarter of the window): one flush task per
    #: tick carries every portal whose wait ends in it; 0 gives each portal a task of its own
    #: (as on RabbitMQ always: its delayed delivery counts whole seconds)
    flush_tick_s: float = 0.25
    #: each portal's fleet-wide budget: the leaky bucket's drain rate (registrations may override)
    rate_per_s: float = 2.0
    #: ... and its burst (the portal allows 50: the rest is left for the connector's own calls)
    rate_burst: int = 45
    #: calls in flight per portal, fleet-wide (a slow portal holds at most this many worker slots)
    portal_max_inflight: int = 2
    #: exponential backoff with equal jitter: attempt n waits in [d/2, d],
    #: d = min(cap, base * 2^(n-1))
    backoff_base_s: float = 1.0
    #: the longest backoff between two attempts
    backoff_cap_s: float = 300.0
    #: transient failures (5xx, network) before a batch's items are dead-lettered
    max_attempts: int = 8
    #: throttled items are retried without an attempt limit until this old
    max_age_s: float = 86_400.0
    #: how long OVERLOAD_LIMIT (and PORTAL_DELETED, before its probe) parks a portal
    overload_park_s: float = 900.0
    #: wait for OPERATION_TIME_LIMIT when the portal gave no operating_reset_at
    operation_limit_wait_s: float = 60.0
    #: connect limit of a call to a portal
    http_connect_timeout_s: float = 5.0
    #: one read of an answer (Bitrix24 ends a request at 60 s: shorter abandons calls that may
    #: succeed); the whole call is bounded by DELIVERY_HTTP_TOTAL_TIMEOUT_S
    http_read_timeout_s: float = 65.0
    #: connect to last byte of one call to a portal, whatever the pace of the bytes: a little
    #: over the platform's 60 s
    http_total_timeout_s: float = 65.0
    #: the most a portal's or OAuth server's answer may hold, on the wire and decoded (answers
    #: are a few hundred bytes, a 50-command batch's about 15 KiB); more is a counted failure
    http_max_answer_bytes: int = 256 * 1024
    #: rule-breaking answers in a row (too large, too slow, unreadable, a crash judging it)
    #: before the portal is parked, its confirmations kept (they never count towards
    #: DELIVERY_MAX_ATTEMPTS, so they are never dead-lettered for it)
    max_bad_answers: int = 3
    #: a flush's claim on its group; renewed every third of it while the HTTP call runs
    lease_ttl_s: float = 5.0
    #: total deadline of a token refresh, connect to last byte; the refresh lock and the
    #: "refresh still out" marker outlive it
    oauth_timeout_s: float = 60.0
    #: the fleet-wide refresh lock; outlives the refresh call (by REFRESH_LOCK_MARGIN)
    refresh_lock_ttl_s: float = 90.0
    #: task sent after each refresh the worker makes (the new auth block); None: off
    tokens_renewed_task: str | None = None
    #: the queue the renewed-tokens task is sent to
    tokens_renewed_queue: str = "celery"
    #: task sent when a producer-owned portal needs fresh tokens; None: off
    token_request_task: str | None = None
    #: the queue the token-request task is sent to
    token_request_queue: str = "celery"  # noqa: S105 (a queue name)
    #: how often beat re-triggers overdue groups
    sweep_interval_s: float = 1.0
    #: the longest countdown ever given to Celery; longer waits go through the sweep
    max_countdown_s: float = 5.0
    #: Celery's redelivery of a dead worker's unacked messages; must outlive any task + countdown
    visibility_timeout_s: float = 300.0
    #: Redis broker: a consumer whose heartbeat is this old is dead; its reserved messages go back
    consumer_ttl_s: float = 10.0
    #: a pool process whose resident memory passed this after a task is replaced by a fresh one
    #: (Celery's worker_max_memory_per_child; 0: off)
    worker_max_memory_mib: int = 256
    #: a repeat of an im.message_id its group delivered this recently is not sent again (0: off)
    dedup_window_s: float = 600.0
    #: rejected payloads kept for the operator (`b24-delivery rejected`)
    rejected_keep: int = 10_000
    #: `batch` (the default): a portal's ready groups go in one `batch` request; `off`: one group
    #: per request (portal.register may override it per portal)
    packing: str = "batch"
    #: groups packed into one `batch` request (the platform's limit is 50 commands)
    pack_groups: int = 50
    #: the share of each portal's sustained rate the fleet spends while its batches are not full
    #: (the rest is left to the connector's own calls); a full batch still goes at the full rate
    portal_budget_share: float = 0.25
    #: the window the budget share is counted over: at most share x rate x window partial calls,
    #: spaced at least the window over that number apart
    portal_budget_window_s: float = 10.0
    #: most elements in one `delivery.confirm_many` message
    confirm_many_max: int = 500
    #: 1: refuse a confirmation without message.id at ingest (the portal keeps it as the message's
    #: external id); 0: accept it, counted as without_message_id and warned once per group
    require_message_id: bool = False
    #: how long a `delivery.sent` record is kept for its receipt, counted from its `sent`
    #: (3 days: a recipient offline over a weekend still confirms; see docs/receipts.md)
    sent_ttl_s: float = 259_200.0
    #: most kept `delivery.sent` records per portal (about 60 MB at most); past it a `sent` is
    #: rejected and counted, so one tenant cannot fill the memory every tenant shares
    sent_max_per_portal: int = 100_000
    #: how long a `delivery.delivered` whose `sent` has not arrived yet waits for it
    receipt_wait_s: float = 60.0
    #: `json` (lines), `console`, or `auto` (console on a terminal); the level is Celery's -l
    log_format: str = "auto"
    #: replicas an ingest waits for (Redis WAIT) before it is acknowledged; 0: asynchronous
    replica_acks: int = 0
    #: how long an ingest waits for those replicas before it goes on (and is counted)
    replica_timeout_ms: int = 100
    #: errors (with secrets masked) to Sentry when set; needs the `sentry` extra
    sentry_dsn: str | None = dataclasses.field(default=None, repr=False)
    #: Fernet keys, newest first: tokens encrypted at rest (unset: plaintext, with a warning)
    token_keys: str | None = dataclasses.field(default=None, repr=False)

    @property
    def endpoint_networks(self) -> frozenset[str]:
        return parse_networks(self.allowed_endpoint_networks)

    @property
    def token_key_list(self) -> list[str]:
        return [k.strip() for k in (self.token_keys or "").split(",") if k.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = ENV_NAMES[field.name]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            parse, rule = RULES[field.name]
            try:
                values[field.name] = parse(raw)
            except (ValueError, TypeError):
                raise SettingsError(f"{_shown(field.name, raw)} is invalid: {rule}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for field in dataclasses.fields(self):
            parse, rule = RULES[field.name]
            value = getattr(self, field.name)
            if value is None:
                continue
            try:
                parse(str(value))
            except (ValueError, TypeError):
                raise SettingsError(f"{_shown(field.name, value)} is invalid: {rule}") from None
        self._check_time_limits()
        if self.redis_url.startswith("sentinel://") and not self.redis_sentinel_master:
            raise SettingsError(
                "REDIS_SENTINEL_MASTER is required when REDIS_URL is a sentinel:// URL: "
                "the name of the master the sentinels monitor"
            )
        if self.backoff_cap_s < self.backoff_base_s:
            raise SettingsError("DELIVERY_BACKOFF_CAP_S must be >= DELIVERY_BACKOFF_BASE_S")
        # the operator's OAuth URL is trusted as set, but http:// needs loopback allowed
        if self.oauth_url and operator_url_problem(self.oauth_url, self.endpoint_networks):
            raise SettingsError(
                f"{_shown('oauth_url', self.oauth_url)} must use https:// (http:// only for a "
                "loopback host when DELIVERY_ALLOWED_ENDPOINT_NETWORKS includes loopback)"
            )

    def trust(self) -> Trust:
        """The trust settings, as the rules of worker/net/trust.py read them."""
        return Trust(self.endpoint_networks, self.oauth_host_entries, self.oauth_url)

    def _check_time_limits(self) -> None:
        """The limits that must nest: a call within its task, a task within Celery's
        redelivery, the refresh lock around the refresh."""
        if self.visibility_timeout_s <= self.task_time_limit_s + self.max_countdown_s:
            raise SettingsError(
                f"DELIVERY_VISIBILITY_TIMEOUT_S must exceed a task's time limit "
                f"({self.task_time_limit_s:g} s: 2 x DELIVERY_HTTP_TOTAL_TIMEOUT_S + "
                "DELIVERY_OAUTH_TIMEOUT_S + 40 s, at least 120 s) "
                "+ DELIVERY_MAX_COUNTDOWN_S, "
                "or Celery would redeliver tasks still running"
            )
        if self.http_total_timeout_s <= self.http_connect_timeout_s:
            raise SettingsError(
                "DELIVERY_HTTP_TOTAL_TIMEOUT_S must exceed DELIVERY_HTTP_CONNECT_TIMEOUT_S: "
                "the total deadline runs from the connect to the answer's last byte"
            )
        if self.refresh_lock_ttl_s < REFRESH_LOCK_MARGIN * self.oauth_timeout_s:
            raise SettingsError(
                f"DELIVERY_REFRESH_LOCK_TTL_S must be at least {REFRESH_LOCK_MARGIN} x "
                "DELIVERY_OAUTH_TIMEOUT_S, or a second process could spend the same refresh token "
                "while the first one's refresh is still under way"
            )

    @property
    def loopback_allowed(self) -> bool:
        """http:// (and loopback addresses) allowed for endpoints: development and tests only."""
        return "loopback" in self.endpoint_networks

    @property
    def oauth_host_entries(self) -> frozenset[tuple[str, int | None]]:
        """BITRIX24_OAUTH_HOSTS as (host, port or None for any port)."""
        return frozenset(_host_entry(e) for e in self.oauth_hosts.split(",") if e.strip())

    def oauth_timeouts(self) -> tuple[float, float]:
        """(connect, read) of a refresh: together at most oauth_timeout_s, which is also the
        refresh's total deadline (worker/net/deadline.py)."""
        connect = min(self.http_connect_timeout_s, self.oauth_timeout_s / 2)
        return connect, self.oauth_timeout_s - connect

    @property
    def broker(self) -> str:
        """The Celery broker's URL: CELERY_BROKER_URL, else the state Redis."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        return urlsplit(self.broker).scheme in AMQP_SCHEMES

    @property
    def task_time_limit_s(self) -> float:
        """A task's hard time limit: one portal call, the call that follows its redirect, then one
        token refresh, each at its total deadline, and a margin (the soft limit is 30 s earlier).
        Every stop grace of the deployment files outlasts it (tests/unit/test_settings.py)."""
        return max(120.0, 2 * self.http_total_timeout_s + self.oauth_timeout_s + 40.0)

    def with_overrides(self, **changes: Any) -> Settings:
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


#: the refresh lock lives at least this many times the refresh call's limit
REFRESH_LOCK_MARGIN = 1.5


def _host_entry(raw: str) -> tuple[str, int | None]:
    """One BITRIX24_OAUTH_HOSTS entry: `host` or `host:port` ([v6]:port), no wildcards."""
    entry = raw.strip().lower()
    if not entry or "*" in entry or "/" in entry or "@" in entry:
        raise ValueError(raw)
    parts = urlsplit("//" + entry)
    host, port = parts.hostname, parts.port  # port: ValueError when not a number
    if not host or parts.netloc.rstrip(":") != entry.rstrip(":"):
        raise ValueError(raw)
    return host, port


def _hosts(raw: str) -> str:
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    if not entries:
        raise ValueError(raw)
    for entry in entries:
        _host_entry(entry)
    return ",".join(e.lower() for e in entries)


def _task_name(raw: str) -> str:
    if not raw or len(raw) > 200 or not all(c.isalnum() or c in "-_.:" for c in raw):
        raise ValueError(raw)
    return raw


#: settings holding a URL, whose user and password are never shown
URL_FIELDS = frozenset({"redis_url", "broker_url", "oauth_url", "sentry_dsn"})
# everything up to the last `@` (a malformed URL's password may hold `/` or `@`)
_USERINFO = re.compile(r"^(?P<scheme>[^:/@]*:/*)?.*@", re.DOTALL)


def _shown(field: str, value: object) -> str:
    """`NAME=value` for an error message; a secret's value, or a URL's password, never shown
    (however malformed the URL)."""
    if field in SECRET_FIELDS:
        return f"{ENV_NAMES[field]}=<hidden>"
    text = str(value)
    if field in URL_FIELDS:
        text = ";".join(_USERINFO.sub(r"\g<scheme>***@", part) for part in text.split(";"))
    return f"{ENV_NAMES[field]}={text!r}"


@dataclasses.dataclass(frozen=True)
class Range(Generic[T]):
    """A number setting's parser: `kind(raw)`, within low..high (ValueError outside). The bounds
    are read too: `portal.register`'s overrides are held to their setting's range."""

    kind: Callable[[str], T]
    low: float
    high: float

    def __call__(self, raw: str) -> T:
        value = self.kind(raw)
        if not self.low <= float(value) <= self.high:  # type: ignore[arg-type]
            raise ValueError(raw)
        return value


def _number(kind: Callable[[str], T], low: float, high: float) -> Range[T]:
    return Range(kind, low, high)


def _memory_mib(raw: str) -> int:
    """0, or a limit above a pool process's own footprint (below it, every task would replace
    its process)."""
    value = int(raw)
    if value != 0 and not 64 <= value <= 65_536:
        raise ValueError(raw)
    return value


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(raw)
        return raw.lower()

    return parse


def _url(raw: str) -> str:
    # the operator's URL is trusted as set; only http:// needs loopback (checked in validate)
    if url_problem(raw, ALL_NETWORKS) is not None:
        raise ValueError(raw)
    return raw


def _networks(raw: str) -> str:
    return canonical(parse_networks(raw))


def _fernet_keys(raw: str) -> str:
    from cryptography.fernet import Fernet

    keys = [k.strip() for k in raw.split(",")]
    if not all(keys):
        raise ValueError("empty key")
    for key in keys:
        Fernet(key)  # ValueError unless 32 url-safe base64-encoded bytes
    return ",".join(keys)


def _redis_url(raw: str) -> str:
    if raw.startswith("sentinel://"):
        from worker.transport.sentinel import parse  # raises ValueError for a malformed list

        parse(raw)
    elif urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(raw)
    return raw


def _sentry_dsn(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.username:
        raise ValueError(raw)
    return raw


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def _broker_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "sentinel", *AMQP_SCHEMES):
        raise ValueError(raw)
    return raw


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError(raw)
    return raw


def _flag(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise ValueError(raw)


def _prefix(raw: str) -> str:
    if not raw or not all(c.isalnum() or c in "-_." for c in raw):
        raise ValueError(raw)
    return raw


_ENV_OVERRIDES = {
    "redis_url": "REDIS_URL",
    "redis_sentinel_master": "REDIS_SENTINEL_MASTER",
    "sentry_dsn": "SENTRY_DSN",
    "broker_url": "CELERY_BROKER_URL",
    "client_id": "BITRIX24_CLIENT_ID",
    "client_secret": "BITRIX24_CLIENT_SECRET",
    "oauth_url": "BITRIX24_OAUTH_URL",
    "oauth_hosts": "BITRIX24_OAUTH_HOSTS",
}
ENV_NAMES = {
    f.name: _ENV_OVERRIDES.get(f.name, "DELIVERY_" + f.name.upper())
    for f in dataclasses.fields(Settings)
}
RULES: dict[str, tuple[Callable[[str], Any], str]] = {
    "redis_url": (
        _redis_url,
        "a redis://, rediss:// or unix:// URL, or sentinels as "
        "sentinel://host:port;sentinel://host:port/db",
    ),
    "redis_sentinel_master": (_text, "a non-empty string"),
    "broker_url": (_broker_url, "an amqp://, amqps://, redis://, rediss:// or sentinel:// URL"),
    "client_id": (_text, "a non-empty string"),
    "client_secret": (_text, "a non-empty string"),
    "oauth_url": (_url, "an https:// URL (http:// only on a loopback host)"),
    "oauth_hosts": (_hosts, "comma-separated hosts or host:port entries (no wildcards)"),
    "key_prefix": (_prefix, "letters, digits, '-', '_' or '.'"),
    "batch_size": (_number(int, 1, 1000), "an integer from 1 to 1000"),
    "flush_window_s": (_number(float, 0.001, 60), "seconds, from 0.001 to 60"),
    "flush_tick_s": (_number(float, 0, 5), "seconds, from 0 (off) to 5"),
    "rate_per_s": (_number(float, 0.01, 10_000), "requests per second, from 0.01 to 10000"),
    "rate_burst": (_number(int, 1, 100_000), "an integer from 1 to 100000"),
    "portal_max_inflight": (_number(int, 1, 1000), "an integer from 1 to 1000"),
    "backoff_base_s": (_number(float, 0.001, 3600), "seconds, from 0.001 to 3600"),
    "backoff_cap_s": (_number(float, 0.001, 86_400), "seconds, from 0.001 to 86400"),
    "max_attempts": (_number(int, 1, 1000), "an integer from 1 to 1000"),
    "max_age_s": (_number(float, 1, 30 * 86_400), "seconds, from 1 to 2592000"),
    "overload_park_s": (_number(float, 0.01, 86_400), "seconds, from 0.01 to 86400"),
    "operation_limit_wait_s": (_number(float, 0.01, 3600), "seconds, from 0.01 to 3600"),
    "http_connect_timeout_s": (_number(float, 0.01, 60), "seconds, from 0.01 to 60"),
    "http_read_timeout_s": (_number(float, 0.01, 120), "seconds, from 0.01 to 120"),
    "http_total_timeout_s": (_number(float, 0.02, 300), "seconds, from 0.02 to 300"),
    "http_max_answer_bytes": (
        _number(int, 1024, 1024 * 1024),
        "bytes, an integer from 1024 to 1048576 (1 MiB)",
    ),
    "max_bad_answers": (_number(int, 1, 100), "an integer from 1 to 100"),
    "lease_ttl_s": (_number(float, 0.1, 3600), "seconds, from 0.1 to 3600"),
    "oauth_timeout_s": (_number(float, 0.02, 300), "seconds, from 0.02 to 300"),
    "refresh_lock_ttl_s": (_number(float, 0.1, 900), "seconds, from 0.1 to 900"),
    "tokens_renewed_task": (_task_name, "a task name: letters, digits, '-', '_', '.', ':'"),
    "tokens_renewed_queue": (_task_name, "a queue name: letters, digits, '-', '_', '.', ':'"),
    "token_request_task": (_task_name, "a task name: letters, digits, '-', '_', '.', ':'"),
    "token_request_queue": (_task_name, "a queue name: letters, digits, '-', '_', '.', ':'"),
    "sweep_interval_s": (_number(float, 0.05, 60), "seconds, from 0.05 to 60"),
    "max_countdown_s": (_number(float, 0.01, 30), "seconds, from 0.01 to 30"),
    "visibility_timeout_s": (_number(float, 1, 86_400), "seconds, from 1 to 86400"),
    "consumer_ttl_s": (_number(float, 2, 3600), "seconds, from 2 to 3600"),
    "worker_max_memory_mib": (_memory_mib, "MiB: 0 (off), or from 64 to 65536"),
    "dedup_window_s": (_number(float, 0, 30 * 86_400), "seconds, from 0 (off) to 2592000"),
    "rejected_keep": (_number(int, 0, 10_000_000), "an integer from 0 to 10000000"),
    "packing": (_choice("off", "batch"), "one of off, batch"),
    "pack_groups": (_number(int, 1, 50), "an integer from 1 to 50"),
    "portal_budget_share": (_number(float, 0.01, 1), "a share, from 0.01 to 1 (1: no limit)"),
    "portal_budget_window_s": (_number(float, 0.1, 3600), "seconds, from 0.1 to 3600"),
    "confirm_many_max": (_number(int, 1, 100_000), "an integer from 1 to 100000"),
    "require_message_id": (_flag, "0 or 1"),
    "sent_ttl_s": (_number(float, 1, 30 * 86_400), "seconds, from 1 to 2592000"),
    "sent_max_per_portal": (_number(int, 1, 10_000_000), "an integer from 1 to 10000000"),
    "receipt_wait_s": (_number(float, 0.05, 3600), "seconds, from 0.05 to 3600"),
    "log_format": (_choice("auto", "json", "console"), "one of auto, json, console"),
    "replica_acks": (_number(int, 0, 16), "an integer from 0 to 16"),
    "replica_timeout_ms": (_number(int, 1, 60_000), "milliseconds, from 1 to 60000"),
    "sentry_dsn": (_sentry_dsn, "an http(s) Sentry DSN with a public key"),
    "allowed_endpoint_networks": (
        _networks,
        "comma-separated names from public, private, loopback",
    ),
    "token_keys": (
        _fernet_keys,
        "comma-separated Fernet keys, newest first (each 32 url-safe base64-encoded bytes, "
        "as Fernet.generate_key() makes)",
    ),
}
