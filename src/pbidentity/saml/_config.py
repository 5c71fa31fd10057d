"""How the app's SAML side is reached and how strict it is (:class:`SamlConfig`).

Values only: nothing here touches storage or the network.
"""

from __future__ import annotations

import ipaddress
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import attrs

from pbidentity.exceptions import ConfigurationError

if TYPE_CHECKING:
    # Keys need cryptography (the saml extra); the setting's type does not.
    from pbidentity.saml._keys import SpKeys

__all__ = ["SamlConfig", "local_dev_hosts", "new_secret"]


def new_secret() -> str:
    """An unguessable value: a browser's binding nonce, a one-time code."""
    return secrets.token_urlsafe(32)


@attrs.frozen(kw_only=True)
class SamlConfig:
    """How the app's SAML side is reached and how strict it is.

    ``public_url`` is the app's origin as browsers and IdPs see it
    (``https://app.example``): every SP value (entity ID, ACS URL) is built
    from it, and responses are checked against exactly those values, so it
    must not depend on how a request happened to arrive behind a proxy.
    """

    public_url: str
    #: Where :meth:`SamlService.handle` is mounted in the app.
    prefix: str = "/saml"
    #: How far the IdP's clock may be off when checking validity windows.
    clock_skew: timedelta = timedelta(seconds=120)
    #: How long a sign-in started here may take at the IdP.
    request_lifetime: timedelta = timedelta(minutes=10)
    #: The largest ACS POST body accepted; bigger ones are refused unread.
    max_body_bytes: int = 512 * 1024
    #: Hosts allowed over plain http and on private addresses (metadata URLs,
    #: SSO URLs, the app itself): for development only, empty in production.
    dev_hosts: frozenset[str] = frozenset()
    #: Seconds to wait for a metadata URL.
    fetch_timeout: float = 10.0
    #: The secret that signs sign-in request ids (each tenant gets a key
    #: derived from it). ``None``, the default: each tenant's key is made at
    #: random once and kept in storage, so every app instance on the
    #: database shares it with nothing to configure. Set it to keep the
    #: secret in the app's own configuration (every instance the same).
    secret_key: str | None = attrs.field(default=None, repr=False)
    #: The SP's key pairs for every workspace: ``encryption`` decrypts
    #: assertions, the first of ``signing`` signs AuthnRequests, all are
    #: published in the SP metadata. ``None``, the default: each workspace
    #: gets key pairs made for it and kept in storage the first time it turns
    #: on encrypted assertions or signed requests. Set it to keep the keys in
    #: the app's own secret store (roll them over by editing it).
    sp_keys: SpKeys | None = None

    def __attrs_post_init__(self) -> None:
        if "://" not in self.public_url:
            raise ConfigurationError(
                f"SamlConfig.public_url must be the app's absolute origin, such as "
                f"https://app.example, not {self.public_url!r}"
            )


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_dev_hosts(host: str, public_url: str | None) -> frozenset[str]:
    """The ``dev_hosts`` of an app served on ``host`` and reached at ``public_url``.

    The machine itself (loopback metadata and SSO URLs, such as a test IdP's)
    only when both are loopback: the app is then reachable from this machine
    alone. Served on another address, or published at another URL (a proxy,
    a tunnel), others reach it, so plain http and private addresses are
    refused and the public URL must be https. ``public_url`` ``None`` means
    ``http://{host}:{port}``.
    """
    if not _is_loopback(host):
        return frozenset()
    if public_url is not None and not _is_loopback(urlsplit(public_url).hostname or ""):
        return frozenset()
    return frozenset({host, "localhost", "127.0.0.1"})
