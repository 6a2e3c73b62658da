"""Tokens encrypted at rest: what the portals' hashes in Redis hold instead of the tokens.

With `DELIVERY_TOKEN_KEYS` set (Fernet keys, newest first), access and refresh tokens are written
as `fernet:` + a Fernet token made with the newest key, and read with any of the keys
(cryptography's MultiFernet), so a new key can be rolled out before the old one is dropped.
Without keys they are written as they are. Reading accepts both, so turning encryption on needs
no migration; `rotate-keys` rewrites every portal with the newest key.

A plaintext token that itself begins with a marker is written as `plain:` + the token, so what
a portal sends can never pass for ciphertext.

Encryption and decryption happen in Python, around the Lua scripts: the scripts only move the
stored strings.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SEALED = "fernet:"
PLAIN = "plain:"
TOKEN_FIELDS = ("access_token", "refresh_token")


class KeyMissing(Exception):
    """A stored token needs a key this process does not have."""


class TokenCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        self._fernet = MultiFernet([Fernet(k) for k in self.keys]) if self.keys else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, token: str) -> str:
        """What to store for `token`."""
        if self._fernet is not None:
            return SEALED + self._fernet.encrypt(token.encode()).decode("ascii")
        if token.startswith((SEALED, PLAIN)):
            return PLAIN + token
        return token

    def open(self, stored: str) -> str:
        """The token a stored value holds; raises KeyMissing when no key of ours opens it."""
        if stored.startswith(PLAIN):
            return stored[len(PLAIN) :]
        if not stored.startswith(SEALED):
            return stored
        if self._fernet is None:
            raise KeyMissing("a stored token is encrypted and DELIVERY_TOKEN_KEYS is unset")
        try:
            return self._fernet.decrypt(stored[len(SEALED) :].encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise KeyMissing(
                "a stored token is encrypted with a key that is not in DELIVERY_TOKEN_KEYS"
            ) from None

    def current(self, stored: str) -> bool:
        """Whether `stored` is already what `seal` would write now (newest key, or plaintext)."""
        if self._fernet is None:
            return not stored.startswith(SEALED)
        if not stored.startswith(SEALED):
            return False
        try:
            Fernet(self.keys[0]).decrypt(stored[len(SEALED) :].encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def reseal(self, stored: str) -> str:
        """`stored` rewritten with the newest key (plaintext is encrypted). Raises KeyMissing."""
        return self.seal(self.open(stored))


_ciphers: dict[tuple[str, ...], TokenCipher] = {}


def cipher(keys: Sequence[str]) -> TokenCipher:
    """One cipher per key list (building Fernet objects is cheap, but not free per call)."""
    key = tuple(keys)
    if key not in _ciphers:
        _ciphers[key] = TokenCipher(key)
    return _ciphers[key]
