"""Token secrets: generation, hashing and constant-time verification.

Tokens are 32 random bytes (256 bits), so a plain SHA-256 is enough to store them: a slow
KDF (argon2, bcrypt) exists to slow down guessing of *low-entropy* passwords, and nobody can
enumerate 2**256 candidates at any speed. A fast, unsalted hash also lets the server find a
token by its hash through a unique index, and check it on every MQTT CONNECT without burning
CPU. The price is that operator-chosen tokens must be long random strings too; see
``MIN_TOKEN_LENGTH``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "ems_"  # noqa: S105 - a public marker, not a secret
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES = 32
# 62**43 > 2**256, so 43 base62 digits hold any 32-byte value; padding keeps length constant.
_BODY_LENGTH = 43
# An operator-chosen token (EMS_ADMIN_TOKEN...) shorter than this is refused: with an unsalted
# fast hash, only length and randomness protect it.
MIN_TOKEN_LENGTH = 32


def _base62(value: int) -> str:
    digits: list[str] = []
    while value:
        value, rem = divmod(value, 62)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits)).rjust(_BODY_LENGTH, "0")


def generate_token() -> str:
    """A new secret: ``ems_`` + base62 of 32 random bytes (47 characters)."""
    return TOKEN_PREFIX + _base62(int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big"))


def hash_token(token: str) -> str:
    """SHA-256 hex digest of the token: the only form the server stores."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def verify_token(token: str, token_hash: str) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    return hmac.compare_digest(hash_token(token).encode(), token_hash.lower().encode())


def is_strong_token(token: str) -> bool:
    """Long enough to be stored with a fast hash (see the module docstring)."""
    return len(token) >= MIN_TOKEN_LENGTH and not token.isspace()
