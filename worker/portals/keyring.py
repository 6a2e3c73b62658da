"""The keys of the tokens at rest, fleet-wide: the start-up check and `rotate-keys`.

A worker that cannot read a stored token would fail every call of that portal, so it refuses to
start instead, naming the portal and the missing key's setting. The check reads a bounded sample
of the portals (the first `STARTUP_SAMPLE` the portals set yields): a fleet shares one key list,
so a key missing for one portal is missing for most.

Rotation: put the new key first in `DELIVERY_TOKEN_KEYS` and keep the old one after it (every
worker then writes with the new key and reads both), run `rotate-keys`, then drop the old key.
Each portal is rewritten under WATCH, so a refresh or registration that lands meanwhile wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT

from worker.errors import SettingsError
from worker.portals.crypto import TOKEN_FIELDS, KeyMissing, TokenCipher, cipher
from worker.settings import Settings
from worker.store.keys import Keys, text

log = structlog.stdlib.get_logger("worker.portals.keyring")

STARTUP_SAMPLE = 1000
_BATCH = 200


def check_stored_tokens(r: redis.Redis, settings: Settings, limit: int = STARTUP_SAMPLE) -> int:
    """How many portals were checked; raises KeyMissing (naming the portal) on the first one
    whose stored tokens this process cannot read."""
    keys = Keys(settings.key_prefix)
    tokens = cipher(settings.token_key_list)
    checked = 0
    batch: list[str] = []
    for member in r.sscan_iter(keys.portals, count=_BATCH):
        batch.append(text(member))
        if len(batch) >= _BATCH or checked + len(batch) >= limit:
            _check_batch(r, keys, tokens, batch)
            checked += len(batch)
            batch = []
            if checked >= limit:
                return checked
    _check_batch(r, keys, tokens, batch)
    return checked + len(batch)


def _check_batch(r: redis.Redis, keys: Keys, tokens: TokenCipher, members: list[str]) -> None:
    pipe = r.pipeline(transaction=False)
    for member in members:
        pipe.hmget(keys.portal(member), list(TOKEN_FIELDS))
    for member, values in zip(members, pipe.execute(), strict=True):
        for value in values:
            if value is not None:
                try:
                    tokens.open(text(value))
                except KeyMissing as exc:
                    raise KeyMissing(f"portal {member}: {exc}") from None


def startup_check(settings: Settings) -> None:
    """At worker start: warn without keys; exit (a clear message) when a stored token needs a key
    this worker lacks. An unreachable Redis skips the check (the worker waits for Redis)."""
    if not settings.token_key_list:
        log.warning(
            "tokens are stored in plaintext: set DELIVERY_TOKEN_KEYS to encrypt them at rest"
        )
    from worker.runtime import connect

    try:
        r = connect(settings, timeout_s=5)  # a plain URL, or the sentinels' current master
        r.set_retry(Retry(NoBackoff(), 0))  # one quick try: a Redis that is down must not
    except (redis.RedisError, ValueError) as exc:  # hold up the worker's start
        log.warning("stored tokens not checked: Redis unavailable", error=type(exc).__name__)
        return
    try:
        checked = check_stored_tokens(r, settings)
    except KeyMissing as exc:
        raise SystemExit(f"b24-delivery: refusing to start: {exc}") from None
    except redis.RedisError as exc:
        log.warning("stored tokens not checked: Redis unavailable", error=type(exc).__name__)
        return
    finally:
        r.close()
    log.info("stored tokens readable", portals_checked=checked)


@dataclass
class Rotation:
    portals: int = 0
    rewritten: int = 0
    unreadable: list[str] = field(default_factory=list)


def rotate_keys(r: redis.Redis, settings: Settings) -> Rotation:
    """Rewrite every portal's tokens with the newest key (plaintext ones get encrypted)."""
    tokens = cipher(settings.token_key_list)
    if not tokens.enabled:
        raise SettingsError("DELIVERY_TOKEN_KEYS must be set (newest key first) to rotate keys")
    keys = Keys(settings.key_prefix)
    result = Rotation()
    for raw in r.sscan_iter(keys.portals, count=_BATCH):
        member = text(raw)
        result.portals += 1
        try:
            if _rotate_one(r, keys.portal(member), tokens):
                result.rewritten += 1
        except KeyMissing:
            result.unreadable.append(member)
    return result


def _rotate_one(r: redis.Redis, key: str, tokens: TokenCipher) -> bool:
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                values = pipe.hmget(key, list(TOKEN_FIELDS))
                new: dict[EncodableT, EncodableT] = {
                    name: tokens.reseal(text(value))
                    for name, value in zip(TOKEN_FIELDS, values, strict=True)
                    if value is not None and not tokens.current(text(value))
                }
                if not new:
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.hset(key, mapping=new)
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # the portal changed meanwhile: read it again
