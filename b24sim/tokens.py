"""Access/refresh token store with single-use refresh tokens and per-portal token versions.

A spent refresh token kills its access token at once; the store keeps a tombstone of both so a
later call or refresh with them can be told apart from a token that never existed ("replaced").
A refresh under way marks its pair as "refreshing" until it is answered.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

TokenState = Literal["valid", "expired", "replaced", "unknown", "webhook", "none"]


@dataclass
class AccessToken:
    member_id: str
    expires_at: float  # time.monotonic()
    webhook: bool = False
    version: int = 0  # the portal's issue sequence: 1 for the first pair, +1 per issue
    refresh: str = ""


@dataclass(frozen=True)
class TokenCheck:
    """What the store knows about one access token at the moment of a call."""

    state: TokenState
    member_id: str | None
    version: int | None
    refresh_in_flight: bool


class TokenStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh -> (member_id, access)
        self._spent: dict[str, str] = {}  # used refresh token -> member_id
        self._replaced: dict[str, AccessToken] = {}  # access tokens killed by a refresh
        self._in_flight: dict[str, int] = {}  # refresh token -> refreshes under way
        self._versions: dict[str, int] = {}

    def issue(self, member_id: str, ttl_s: float) -> tuple[str, str, int]:
        """A new pair and its version."""
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        with self._lock:
            version = self._versions.get(member_id, 0) + 1
            self._versions[member_id] = version
            self._access[access] = AccessToken(
                member_id, time.monotonic() + ttl_s, version=version, refresh=refresh
            )
            self._refresh[refresh] = (member_id, access)
        return access, refresh, version

    def issue_webhook(self, member_id: str, ttl_s: float) -> str:
        token = secrets.token_hex(8)
        with self._lock:
            self._access[token] = AccessToken(member_id, time.monotonic() + ttl_s, webhook=True)
        return token

    def get(self, access: str) -> AccessToken | None:
        with self._lock:
            return self._access.get(access)

    def check(self, access: str) -> TokenCheck:
        """Classify ``access`` now (for the call log)."""
        with self._lock:
            if not access:
                return TokenCheck("none", None, None, False)
            tok = self._access.get(access)
            state: TokenState
            if tok is not None:
                if tok.webhook:
                    state = "webhook"
                elif tok.expires_at <= time.monotonic():
                    state = "expired"
                else:
                    state = "valid"
            else:
                tok = self._replaced.get(access)
                if tok is None:
                    return TokenCheck("unknown", None, None, False)
                state = "replaced"
            flying = self._in_flight.get(tok.refresh, 0) > 0
            return TokenCheck(state, tok.member_id, tok.version or None, flying)

    def expire(self, member_id: str | None = None) -> int:
        past = time.monotonic() - 1.0
        n = 0
        with self._lock:
            for a in self._access.values():
                if member_id is None or a.member_id == member_id:
                    a.expires_at = past
                    n += 1
        return n

    def owner_of_refresh(self, refresh: str) -> str | None:
        """Portal of a live or already-used refresh token."""
        with self._lock:
            entry = self._refresh.get(refresh)
            return entry[0] if entry else self._spent.get(refresh)

    def begin_refresh(self, refresh: str) -> None:
        with self._lock:
            self._in_flight[refresh] = self._in_flight.get(refresh, 0) + 1

    def end_refresh(self, refresh: str) -> None:
        with self._lock:
            left = self._in_flight.get(refresh, 0) - 1
            if left > 0:
                self._in_flight[refresh] = left
            else:
                self._in_flight.pop(refresh, None)

    def consume(self, refresh: str) -> str | None:
        """Spend a refresh token and kill its access token; its member_id, or None if invalid."""
        with self._lock:
            entry = self._refresh.pop(refresh, None)
            if entry is None:
                return None
            self._spent[refresh] = entry[0]
            killed = self._access.pop(entry[1], None)
            if killed is not None:
                self._replaced[entry[1]] = killed
            return entry[0]

    def version(self, member_id: str) -> int:
        with self._lock:
            return self._versions.get(member_id, 0)
