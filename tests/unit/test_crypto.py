"""Tokens at rest: what is stored, what is read back, and the key settings."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from worker.errors import SettingsError
from worker.portals.crypto import KeyMissing, TokenCipher
from worker.settings import Settings

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_with_keys_tokens_are_stored_encrypted_and_read_back() -> None:
    c = TokenCipher([NEW])
    stored = c.seal("AT-secret-1")
    assert stored.startswith("fernet:") and "AT-secret-1" not in stored
    assert c.open(stored) == "AT-secret-1"
    assert c.seal("AT-secret-1") != stored  # a fresh IV every time


def test_plaintext_is_read_whether_or_not_keys_are_set() -> None:
    assert TokenCipher([]).open("AT-1") == "AT-1"
    assert TokenCipher([NEW]).open("AT-1") == "AT-1"  # stored before encryption was turned on


def test_a_token_that_looks_encrypted_cannot_pass_for_ciphertext() -> None:
    plain = TokenCipher([])
    for token in ("fernet:gAAAAAB-not-really", "plain:x"):
        stored = plain.seal(token)
        assert plain.open(stored) == token
        assert TokenCipher([NEW]).open(stored) == token


def test_a_missing_key_is_named_not_guessed() -> None:
    stored = TokenCipher([OLD]).seal("RT-1")
    with pytest.raises(KeyMissing, match="DELIVERY_TOKEN_KEYS is unset"):
        TokenCipher([]).open(stored)
    with pytest.raises(KeyMissing, match="not in DELIVERY_TOKEN_KEYS"):
        TokenCipher([NEW]).open(stored)


def test_rotation_with_both_keys_live() -> None:
    before = TokenCipher([OLD]).seal("RT-1")
    both = TokenCipher([NEW, OLD])
    assert both.open(before) == "RT-1"  # the old key's tokens stay readable
    assert not both.current(before)
    after = both.reseal(before)
    assert both.current(after)
    assert TokenCipher([NEW]).open(after) == "RT-1"  # the old key can be dropped
    assert both.current(both.reseal(after)) and both.reseal("AT-plain").startswith("fernet:")


def test_key_settings_are_validated_and_never_shown() -> None:
    s = Settings.from_env({"DELIVERY_TOKEN_KEYS": f" {NEW} ,{OLD}"})
    assert s.token_key_list == [NEW, OLD]
    assert NEW not in repr(s)
    broken = NEW[:-4] + "!!!="
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"DELIVERY_TOKEN_KEYS": f"{OLD},{broken}"})
    message = str(info.value)
    assert "DELIVERY_TOKEN_KEYS" in message and "Fernet keys" in message
    assert OLD not in message and broken not in message


def test_a_redis_password_is_not_shown_in_an_error() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"REDIS_URL": "http://:hunter2@redis:6379/0"})
    assert "REDIS_URL='http://***@redis:6379/0'" in str(info.value)


def test_network_settings() -> None:
    assert Settings.from_env({}).endpoint_networks == frozenset({"public"})
    with pytest.raises(SettingsError, match="DELIVERY_ALLOWED_ENDPOINT_NETWORKS"):
        Settings.from_env({"DELIVERY_ALLOWED_ENDPOINT_NETWORKS": "public,intranet"})
    with pytest.raises(SettingsError, match=r"BITRIX24_OAUTH_URL.*loopback"):
        Settings.from_env({"BITRIX24_OAUTH_URL": "http://127.0.0.1:9/oauth/token/"})
