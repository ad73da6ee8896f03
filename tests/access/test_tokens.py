"""Token secrets: format, hashing, constant-time verification."""

from __future__ import annotations

import hashlib
import string

from ems_access import MIN_TOKEN_LENGTH, TOKEN_PREFIX, generate_token, hash_token, verify_token
from ems_access.tokens import is_strong_token


def test_generated_token_format() -> None:
    token = generate_token()
    assert token.startswith(TOKEN_PREFIX)
    body = token.removeprefix(TOKEN_PREFIX)
    assert len(body) == 43
    assert set(body) <= set(string.ascii_letters + string.digits)


def test_generated_tokens_differ() -> None:
    assert len({generate_token() for _ in range(200)}) == 200


def test_hash_is_sha256_hex() -> None:
    token = generate_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


def test_verify() -> None:
    token = generate_token()
    stored = hash_token(token)
    assert verify_token(token, stored)
    assert verify_token(token, stored.upper())
    assert not verify_token(token + "x", stored)
    assert not verify_token(generate_token(), stored)
    assert not verify_token(token, "not-a-hash-é")


def test_strength() -> None:
    assert is_strong_token(generate_token())
    assert not is_strong_token("x" * (MIN_TOKEN_LENGTH - 1))
    assert not is_strong_token(" " * MIN_TOKEN_LENGTH)
