"""The owner's way in before SSO exists: one-time sign-in links, each for one workspace.

Whoever holds a link becomes the workspace's owner, so a link is as narrow
as it can be: it names one workspace, works once, and only within
:data:`LINK_LIFETIME`. Opening it (a GET, which link previews and scanners
make too) only shows a button; the button POSTs the token, and that POST
spends it. Links live in the process: a restart forgets them and prints a
new one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

__all__ = ["INVALID_LINK", "LINK_LIFETIME", "OwnerLinks", "OwnerSignInPage"]

#: How long an owner sign-in link works after it is issued.
LINK_LIFETIME = timedelta(minutes=15)

#: What a used, expired, mistyped or other workspace's link gets.
INVALID_LINK = (
    "This owner sign-in link is not valid: it works once, for its own workspace, within "
    f"{int(LINK_LIFETIME.total_seconds() // 60)} minutes. Restart the app for a new one."
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _Link:
    workspace: str
    expires: datetime


@dataclass(frozen=True)
class OwnerSignInPage:
    """The owner link's page: a button that POSTs the token (opening the link spends nothing)."""

    token: str
    workspace: str
    minutes: int = int(LINK_LIFETIME.total_seconds() // 60)


class OwnerLinks:
    """The owner sign-in links issued in this process, kept as hashes until used or expired."""

    def __init__(
        self,
        *,
        lifetime: timedelta = LINK_LIFETIME,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._links: dict[str, _Link] = {}
        self._lock = threading.Lock()

    def issue(self, workspace: str, token: str | None = None) -> str:
        """A new link's token for ``workspace`` (``token`` if given, else a random one)."""
        token = token or secrets.token_urlsafe(24)
        with self._lock:
            self._links[_digest(token)] = _Link(workspace, self._clock() + self.lifetime)
        return token

    def valid(self, token: str | None, workspace: str | None) -> bool:
        """Whether the link would sign the owner of ``workspace`` in now (nothing is spent)."""
        with self._lock:
            return self._find(token, workspace) is not None

    def redeem(self, token: str | None, workspace: str | None) -> bool:
        """Spend the link: true once, for its own workspace, before it expires."""
        with self._lock:
            key = self._find(token, workspace)
            if key is None:
                return False
            del self._links[key]
            return True

    def _find(self, token: str | None, workspace: str | None) -> str | None:
        if not token or not workspace:
            return None
        now = self._clock()
        for key in [k for k, link in self._links.items() if link.expires <= now]:
            del self._links[key]
        key = _digest(token)
        link = self._links.get(key)
        # The digests are compared by dictionary lookup, which leaks nothing
        # of a token; the workspace is not a secret.
        if link is None or not hmac.compare_digest(link.workspace, workspace):
            return None
        return key
