"""API tokens: how they are made, shown once, stored and checked.

A token is ``pbi_`` followed by 43 URL-safe characters (256 random bits). The
prefix lets secret scanners recognise a leaked token. Only the SHA-256 digest
is stored: a fast hash is enough because the secret has full entropy (there is
nothing to brute-force), and it lets the token be found by an indexed lookup.
The digest is then compared once more with :func:`hmac.compare_digest` so that
no code path depends on a variable-time comparison of secret material.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_PREFIX", "generate_token", "token_digest", "token_matches"]

TOKEN_PREFIX = "pbi_"  # noqa: S105 - a public prefix, not a secret
_TOKEN_BYTES = 32


def generate_token() -> str:
    """A new random token secret, to be shown to the admin once."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def token_digest(secret: str) -> str:
    """The value stored for a token: the hex SHA-256 digest of its secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_matches(secret: str, digest: str) -> bool:
    """Whether ``secret`` is the token whose stored digest is ``digest``, in constant time."""
    return hmac.compare_digest(token_digest(secret), digest)
