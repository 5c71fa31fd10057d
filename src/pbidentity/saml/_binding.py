"""Binding a sign-in to the browser that started it, and signing its request id.

A sign-in writes nothing when it starts: the AuthnRequest id carries the
purpose, the issue time and the hash of a random nonce kept in the browser's
binding cookie, all signed with the tenant's request key (:class:`RequestKeys`).
The finish step hands an outcome over only where that nonce is. This module
holds those values and their checks; it decides no sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Literal
from urllib.parse import quote

from pbidentity.domain import Tenant
from pbidentity.http import Request
from pbidentity.saml._context import SamlContext
from pbidentity.storage import Transaction

__all__ = [
    "BINDINGS_KEPT",
    "BINDING_COOKIE",
    "PURPOSES",
    "REQUEST_ID",
    "RequestKeys",
    "binding",
    "binding_cookie",
    "browser_nonces",
    "code_hash",
    "local_path",
    "request_mac",
]

#: The cookie that binds a sign-in to the browser that started it (scoped
#: to the tenant's SAML path, so each workspace has its own).
BINDING_COOKIE = "pbidentity_saml"
#: Sign-ins one browser may have under way at once (tabs), newest kept.
BINDINGS_KEPT = 4
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
#: A request id: ``id``, the purpose (s: sign-in, a: the admin's test
#: sign-in), the issue time in hex seconds, the binding (hash of the
#: browser's nonce) and the MAC of all that with the tenant's key.
REQUEST_ID = re.compile(r"id([sa])([0-9a-f]{10})([0-9a-f]{32})([0-9a-f]{32})")
PURPOSES: dict[str, Literal["sign_in", "authorize"]] = {"s": "sign_in", "a": "authorize"}
#: The RelayState characters kept as they are; every other one is
#: percent-encoded, so that a RelayState is always ASCII and header-safe.
_PATH_SAFE = "/-._~!$&'()*+,;=:@%?#"


def local_path(value: str | None) -> str | None:
    """A RelayState kept only if it is a path of this app (never an open redirect).

    Whatever bytes it held, what is kept is ASCII, with no control
    character, so a host app can put it in a ``Location`` header as it is.
    """
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    # Browsers drop tabs and newlines inside URLs ("/\t/evil" is "//evil"),
    # so control characters refuse the whole value rather than being encoded.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value) or len(value) > 2000:
        return None
    try:
        return quote(value, safe=_PATH_SAFE)
    except UnicodeEncodeError:  # a lone surrogate: no text at all
        return None


def binding(nonce: str) -> str:
    """The hash of a browser's nonce, as a request id carries it."""
    return hashlib.sha256(nonce.encode()).hexdigest()[:32]


def request_mac(key: bytes, tenant_id: str, connection_id: str, body: str) -> str:
    """The MAC that makes a request id unforgeable and ties it to its connection."""
    message = "\x1f".join(("pbidentity-saml-request", tenant_id, connection_id, body))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]


def browser_nonces(request: Request | None) -> list[str]:
    """The nonces of the sign-ins under way in the browser (from its binding cookie)."""
    if request is None:
        return []
    found: list[str] = []
    for name, value in request.headers:
        if name != "cookie":
            continue
        for pair in value.split(";"):
            key, _, held = pair.strip().partition("=")
            if key == BINDING_COOKIE:
                found.extend(n for n in held.split(".") if _NONCE.fullmatch(n))
    return found[:BINDINGS_KEPT]


def code_hash(code: str) -> str:
    """How a one-time finish code is kept in storage (never as it is)."""
    return hashlib.sha256(code.encode()).hexdigest()


def binding_cookie(context: SamlContext, slug: str, nonces: Sequence[str]) -> str:
    """The ``Set-Cookie`` value holding ``nonces`` (none: the cookie is deleted)."""
    config = context.config
    path = f"{config.prefix.rstrip('/')}/{quote(slug, safe='')}/"
    # Lax: sent on the top-level GET to the finish URL, never on another
    # site's POST or fetch. Secure whenever the app is served over https.
    attributes = f"; Path={path}; HttpOnly; SameSite=Lax"
    if config.public_url.lower().startswith("https://"):
        attributes += "; Secure"
    if not nonces:
        return f"{BINDING_COOKIE}=; Max-Age=0{attributes}"
    seconds = int(config.request_lifetime.total_seconds())
    return f"{BINDING_COOKIE}={'.'.join(nonces)}; Max-Age={seconds}{attributes}"


class RequestKeys:
    """Each tenant's request signing key, cached (a key never changes)."""

    def __init__(self, context: SamlContext) -> None:
        self._context = context
        #: Tenant id to its request signing key.
        self._keys: dict[str, bytes] = {}

    def stored(self, tx: Transaction, tenant: Tenant) -> bytes | None:
        """The tenant's request signing key; ``None`` if it has none yet."""
        key = self._keys.get(tenant.id)
        if key is not None:
            return key
        secret_key = self._context.config.secret_key
        if secret_key is not None:
            key = hmac.new(
                secret_key.encode(), b"pbidentity-saml-key\x1f" + tenant.id.encode(), "sha256"
            ).digest()
        else:
            stored = tx.saml_signing_key(tenant.id)
            if stored is None:
                return None
            key = stored.encode()
        self._keys[tenant.id] = key
        return key

    def create(self, tenant: Tenant) -> bytes:
        """Make the tenant's key: once per tenant ever, the first instance's wins."""
        with self._context.storage.transaction() as tx:
            key = tx.add_saml_signing_key(tenant.id, secrets.token_hex(32)).encode()
        self._keys[tenant.id] = key
        return key
