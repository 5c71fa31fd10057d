"""Who may see the portal: the host app's admin, or the holder of a set-up link.

The portal never invents users. Either the host app's ``authorize`` hook
names the signed-in admin and the workspace (:class:`PortalAccess`), or a
customer's IT admin opened a set-up link: a token signed with the install's
secret (HMAC-SHA256), naming one workspace and the sections it opens,
expiring, revocable and single-use. Opening it (a POST: link previews and
scanners only GET) spends it and starts a portal session in a cookie signed
the same way; the session ends with the link's expiry, its revocation, or
:data:`SESSION_LIFETIME`, whichever comes first.

Every form carries a CSRF token bound to the browser's portal cookie (a
random nonce), to the person and to the workspace, so that a token taken
from one session, person or workspace is refused in another.

Nothing here reads a request or writes a response: the handler does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime
from datetime import timedelta
from typing import Literal
from typing import get_args

import attrs
import orjson

__all__ = [
    "SECTIONS",
    "SESSION_LIFETIME",
    "PortalAccess",
    "Section",
    "SessionCookie",
    "Signer",
]

#: The parts of the portal a person can be given.
Section = Literal["sso", "scim", "roles", "members", "audit"]
#: Every section, in the order the navigation shows them.
SECTIONS: tuple[Section, ...] = get_args(Section)

#: The longest a portal session opened by a set-up link lasts.
SESSION_LIFETIME = timedelta(hours=8)

#: The shortest secret accepted: 256 bits, as HMAC-SHA256 wants.
MIN_SECRET_BYTES = 32


def _sections(value: Iterable[str]) -> frozenset[Section]:
    chosen = frozenset(value)
    unknown = sorted(chosen - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown portal sections {unknown}: choose from {list(SECTIONS)}")
    if not chosen:
        raise ValueError("a portal access needs at least one section")
    return frozenset(s for s in SECTIONS if s in chosen)


@attrs.frozen(kw_only=True)
class PortalAccess:
    """Who is looking at the portal, for which workspace, and which sections they may open.

    The host app's ``authorize`` hook returns one for its signed-in admin;
    a set-up link's session gives one whose ``admin_id`` is ``link:<id>``.
    ``admin_id`` is what the audit trail records as the actor.
    """

    admin_id: str
    admin_name: str
    workspace: str
    sections: frozenset[Section] = attrs.field(default=frozenset(SECTIONS), converter=_sections)
    #: The set-up link behind this access (``None`` for the host app's admin).
    link_id: str | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this person."""
        return self.admin_id if self.link_id else f"portal:{self.admin_id}"

    def may(self, section: Section) -> bool:
        """Whether this access opens ``section``."""
        return section in self.sections


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 with the install's secret, one purpose per message kind.

    The purpose is part of what is signed, so that a session cookie can
    never pass for a set-up link or a CSRF token, nor the other way round.
    """

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the portal's secret must be at least {MIN_SECRET_BYTES} bytes "
                "(secrets.token_urlsafe(32) gives one)"
            )
        self._key = key

    def mac(self, purpose: str, message: str) -> str:
        """The signature of ``message`` for ``purpose``, URL-safe."""
        digest = hmac.new(self._key, f"{purpose}\x1f{message}".encode(), hashlib.sha256)
        return _b64(digest.digest())

    def sign(self, purpose: str, document: dict[str, object]) -> str:
        """``document`` as a signed, URL-safe string."""
        body = _b64(orjson.dumps(document))
        return f"{body}.{self.mac(purpose, body)}"

    def unsign(self, purpose: str, value: str | None) -> dict[str, object] | None:
        """The document signed for ``purpose``, or ``None`` if it is not one of ours."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac.encode(), self.mac(purpose, body).encode()):
            return None
        try:
            document = orjson.loads(_unb64(body))
        except (binascii.Error, ValueError):
            return None
        return document if isinstance(document, dict) else None

    def csrf(self, nonce: str, access: PortalAccess) -> str:
        """The CSRF token of a browser's portal cookie, for one person and one workspace."""
        return self.mac("csrf", "\x1f".join((nonce, access.admin_id, access.workspace)))

    def csrf_ok(self, nonce: str | None, access: PortalAccess, submitted: str | None) -> bool:
        """Whether a form's token is the one this browser, person and workspace were given."""
        if not nonce or not submitted:
            return False
        return hmac.compare_digest(self.csrf(nonce, access).encode(), submitted.encode())


@attrs.frozen(kw_only=True)
class SessionCookie:
    """What the portal's cookie holds: a nonce, and the set-up link that opened it (if any)."""

    nonce: str
    link_id: str | None = None
    workspace: str | None = None
    sections: tuple[str, ...] = ()
    #: When a link's session ends (a timestamp), ``0`` without a link.
    ends: int = 0

    @classmethod
    def fresh(cls) -> SessionCookie:
        """A cookie for a browser that had none: a nonce for its CSRF tokens, no link."""
        return cls(nonce=secrets.token_urlsafe(24))

    @classmethod
    def for_link(
        cls, link_id: str, workspace: str, sections: Iterable[str], ends: datetime
    ) -> SessionCookie:
        """The session a set-up link opens, with a new nonce (never the one the browser had)."""
        return cls(
            nonce=secrets.token_urlsafe(24),
            link_id=link_id,
            workspace=workspace,
            sections=tuple(sections),
            ends=int(ends.timestamp()),
        )

    def dump(self, signer: Signer) -> str:
        """The cookie's value."""
        return signer.sign("session", attrs.asdict(self))

    @classmethod
    def load(cls, signer: Signer, value: str | None, now: datetime) -> SessionCookie | None:
        """The cookie's content if it is ours and, for a link's session, not over."""
        document = signer.unsign("session", value)
        if document is None:
            return None
        try:
            cookie = cls(
                nonce=str(document["nonce"]),
                link_id=_optional_str(document.get("link_id")),
                workspace=_optional_str(document.get("workspace")),
                sections=tuple(str(s) for s in _list(document.get("sections"))),
                ends=int(str(document.get("ends", 0))),
            )
        except (KeyError, ValueError):
            return None
        if cookie.link_id is not None and cookie.ends <= now.timestamp():
            return None
        return cookie


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
