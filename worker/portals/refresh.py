"""The fleet-wide single-flight token refresh.

A refresh token is single-use, so exactly one process refreshes a portal at a time: a Redis lock
that outlives the OAuth call (settings validation), a check that nobody refreshed the version we
saw, the OAuth call, and the new pair stored by one script that also releases the lock. Everyone
else retries with whatever token version Redis holds by then.

Should two refreshes of one token still meet (a lock lapsed, a process paused), the loser's
`invalid_grant` is not taken at its word: when another process stored a newer pair it retries
with that pair, and while another refresh of the same version is still out it waits for it.
Only when the token was spent and nobody holds its successor (an answer lost after the OAuth
server spent the token) is the portal parked, with that reason.

The refresh goes to the operator's BITRIX24_OAUTH_URL, else to the portal's own OAuth server when
BITRIX24_OAUTH_HOSTS allows its host (the client secret travels with every refresh), else to
oauth.bitrix.info. A producer-owned portal is never refreshed here (worker/portals/ownership.py).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from typing import Any, cast

import requests
import structlog
from redis import Redis

from worker.errors import PortalError
from worker.flush.call import Timeouts, refresh_tokens
from worker.flush.policy import Outcome
from worker.net.answer import finite
from worker.portals import ownership
from worker.portals.crypto import TokenCipher
from worker.settings import Settings
from worker.store.clock import server_time
from worker.store.keys import Keys, text
from worker.store.scripts import script
from worker.store.triggers import SendTask

log = structlog.stdlib.get_logger("worker.portals.refresh")

#: the "refresh still out" marker outlives the refresh's total deadline by this much
MARKER_MARGIN_S = 2.0

_READ = ("version", "refresh_token", "refused_refreshed", "server_endpoint", "token_owner")


class Refresh(enum.Enum):
    REFRESHED = "refreshed"  # we refreshed: retry now
    ALREADY = "already"  # someone else did: retry now
    IN_PROGRESS = "in_progress"  # someone else is: retry shortly


class Refresher:
    """Refreshes a portal's tokens for `PortalStore.refresh` (which also opens stored tokens)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        cipher: TokenCipher,
        open_token: Callable[[str], str],
        send_task: SendTask,
        *,
        session: requests.Session,
    ) -> None:
        self.redis = redis
        self.s = settings
        self.trust = settings.trust()
        #: the refresh's connections: the operator's OAuth URL trusted, else checked
        self.session = session
        self.keys = Keys(settings.key_prefix)
        self.cipher = cipher
        self.open_token = open_token
        self.send_task = send_task
        self._store = script(redis, "store_tokens")
        self._release = script(redis, "release_lock")
        self._claim_request = script(redis, "claim_token_request")

    def refresh(self, member_id: str, seen_version: int, *, refused: str = "") -> Refresh:
        """Refresh the portal's tokens unless someone else has or is. Raises PortalError.

        `refused`: the code that refused the token (NO_AUTH_FOUND, invalid_token), "" when it
        expired. One refresh is tried; when the token that refresh produced is refused too, the
        app has lost access and an AUTH_BROKEN error with that code parks the portal.
        """
        portal_key = self.keys.portal(member_id)
        if text(self.redis.hget(portal_key, "token_owner") or b"") == ownership.PRODUCER:
            return self._request_tokens(member_id, seen_version)
        lock_key = self.keys.refresh_lock(member_id)
        lock = str(uuid.uuid4())
        if not self.redis.set(lock_key, lock, nx=True, px=int(self.s.refresh_lock_ttl_s * 1000)):
            return Refresh.IN_PROGRESS
        attempt = f"{seen_version}:{lock}"
        try:
            raw = dict(zip(_READ, self.redis.hmget(portal_key, list(_READ)), strict=True))
            if not self._still_ours(raw, seen_version, refused=refused):
                return Refresh.ALREADY
            url = self._token_url(member_id, raw["server_endpoint"])
            try:
                token = self.open_token(text(raw["refresh_token"] or b""))
                answer = self._call(member_id, url, token, attempt)
            except PortalError as exc:
                if exc.code != "invalid_grant":
                    raise
                return self._after_invalid_grant(member_id, seen_version, attempt, exc)
            return self._keep(member_id, lock, seen_version, answer, refused=refused)
        except PortalError as exc:
            if exc.outcome is not Outcome.KEY_MISSING:  # no refresh was tried: no failure
                self.redis.hincrby(self.keys.stats, "token_refresh_failures", 1)
            raise
        finally:
            self._release({"lock_key": lock_key}, {"lock_id": lock})
            self.redis.zrem(self.keys.refreshing(member_id), attempt)

    def _still_ours(self, raw: dict[str, Any], seen_version: int, *, refused: str) -> bool:
        """False when someone refreshed since `seen_version`; raises when nobody can."""
        version, again = raw["version"], raw["refused_refreshed"]
        if version is None or raw["refresh_token"] is None:
            raise PortalError(
                Outcome.AUTH_BROKEN, "PORTAL_NOT_REGISTERED", "no tokens stored for this portal"
            )
        if int(version) != seen_version:
            return False
        if refused and again is not None and int(again) == seen_version:
            raise PortalError(
                Outcome.AUTH_BROKEN, refused, "a token fresh from a refresh was refused too"
            )
        if not self.s.client_id or not self.s.client_secret:
            raise PortalError(
                Outcome.AUTH_BROKEN,
                "NO_CREDENTIALS",
                "BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET must be set to refresh tokens",
            )
        return True

    def _token_url(self, member_id: str, server_endpoint: bytes | str | None) -> str:
        """Where this refresh may go; refused (before any connection) when the portal's own
        OAuth server is not an allowed host."""
        endpoint = self.trust.token_endpoint(text(server_endpoint) if server_endpoint else None)
        if endpoint.url is None:
            log.error(
                "OAuth host refused: the client secret was not sent",
                portal=member_id,
                host=endpoint.refused_host,
                alert=True,
            )
            raise PortalError(Outcome.DENIED, "OAUTH_HOST_NOT_ALLOWED", endpoint.problem)
        return endpoint.url

    def _call(
        self, member_id: str, url: str, refresh_token: str, attempt: str
    ) -> dict[str, object]:
        """The OAuth call, announced to the fleet while it is out (with its deadline)."""
        refreshing = self.keys.refreshing(member_id)
        # the call ends by its total deadline (worker/net/deadline.py); the marker outlives it
        out_until = server_time(self.redis) + self.s.oauth_timeout_s + MARKER_MARGIN_S
        self.redis.zadd(refreshing, {attempt: out_until})
        try:
            return refresh_tokens(
                url,
                self.s.client_id or "",
                self.s.client_secret or "",
                refresh_token,
                Timeouts(
                    *self.s.oauth_timeouts(), self.s.oauth_timeout_s, self.s.http_max_answer_bytes
                ),
                self.session,
            )
        except PortalError as exc:
            if exc.code == "NETWORK_ERROR" or exc.outcome is Outcome.BAD_ANSWER:
                # the server may have spent the token and its answer been lost: remember it
                version = attempt.partition(":")[0]
                self.redis.hset(self.keys.portal(member_id), "refresh_lost", version)
            raise

    def _after_invalid_grant(
        self, member_id: str, seen_version: int, attempt: str, error: PortalError
    ) -> Refresh:
        """Our token was spent already: by whom? Retry, wait, or park with the reason."""
        version, lost = self.redis.hmget(self.keys.portal(member_id), ["version", "refresh_lost"])
        if version is not None and int(version) != seen_version:
            log.info("invalid_grant: another process stored a newer pair; retrying with it")
            return Refresh.ALREADY
        refreshing = self.keys.refreshing(member_id)
        now = server_time(self.redis)
        entries = cast(
            list[tuple[bytes, float]], self.redis.zrange(refreshing, 0, -1, withscores=True)
        )
        others = [
            deadline
            for a, deadline in entries
            if text(a) != attempt and text(a).startswith(f"{seen_version}:")
        ]
        self.redis.zremrangebyscore(refreshing, "-inf", now)
        if any(deadline > now for deadline in others):
            log.info("invalid_grant: another refresh of this token is still out; waiting for it")
            return Refresh.IN_PROGRESS
        if others or (lost is not None and int(lost) == seen_version):
            raise PortalError(
                Outcome.AUTH_BROKEN,
                "REFRESH_ANSWER_LOST",
                "the OAuth server spent the refresh token but its answer never arrived; "
                "portal.register must bring new tokens",
            )
        raise error

    def _keep(
        self,
        member_id: str,
        lock: str,
        seen_version: int,
        answer: dict[str, object],
        *,
        refused: str,
    ) -> Refresh:
        """Store the new pair (and the endpoints that passed the checks); announce it."""
        adopted = self.trust.adopt(answer)
        # advice from the OAuth server, checked before use (a day at most; an hour when absurd)
        expires_in = finite(answer.get("expires_in"), 1, 86_400) or 3600
        expires_at = int(server_time(self.redis) + expires_in)
        stored = self._store(
            {
                "portal_key": self.keys.portal(member_id),
                "lock_key": self.keys.refresh_lock(member_id),
            },
            {
                "lock_id": lock,
                "seen_version": str(seen_version),
                "access_token": self.cipher.seal(str(answer["access_token"])),
                "refresh_token": self.cipher.seal(str(answer["refresh_token"])),
                "expires_at": expires_at,
                "refused": int(bool(refused)),
                "client_endpoint": adopted.client_endpoint or "",
                "server_endpoint": adopted.server_endpoint or "",
            },
        )["stored"]
        self.redis.hincrby(self.keys.stats, "token_refreshes", 1)
        if stored:
            self._announce(member_id, answer)
        if adopted.refusal:
            code, description = adopted.refusal
            log.error("refresh answer refused", portal=member_id, reason=description, alert=True)
            raise PortalError(Outcome.DENIED, code, description)
        return Refresh.REFRESHED if stored else Refresh.ALREADY

    def _announce(self, member_id: str, answer: dict[str, object]) -> None:
        names = ["domain", "client_endpoint", "server_endpoint"]
        domain, client, server = (
            text(v) if v else "" for v in self.redis.hmget(self.keys.portal(member_id), names)
        )
        kwargs = ownership.renewed_kwargs(member_id, domain, client, server, dict(answer))
        if ownership.send_renewed(self.send_task, self.s, kwargs):
            log.info("renewed tokens announced", portal=member_id)

    def _request_tokens(self, member_id: str, seen_version: int) -> Refresh:
        """A producer-owned portal: ask its owner once per token version, and wait parked."""
        state = self._claim_request(
            {"portal_key": self.keys.portal(member_id)}, {"token_version": str(seen_version)}
        )["state"]
        if state == "stale":
            return Refresh.ALREADY
        if state == "claimed":
            sent = ownership.send_token_request(self.send_task, self.s, member_id, seen_version)
            log.warning("fresh tokens requested", portal=member_id, sent=sent)
        raise PortalError(
            Outcome.AUTH_BROKEN,
            "WAITING_FOR_TOKENS",
            "token_owner is producer: fresh tokens were requested; portal.register brings them",
        )
