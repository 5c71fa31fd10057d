"""The plain HTML pages the SAML endpoints answer with when the host app gives none.

Escaped text only, never cached: an error page, and the default result page
(:func:`default_result_page`) for apps that pass no ``on_result``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from pbidentity.http import Response
from pbidentity.saml._outcomes import Authorized
from pbidentity.saml._outcomes import SignInFailure
from pbidentity.saml._outcomes import SignInOutcome

__all__ = ["NO_STORE", "default_result_page", "page"]

_HTML = (("Content-Type", "text/html; charset=utf-8"),)
NO_STORE = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))


def page(
    status: int, title: str, message: str, *, extra: Sequence[tuple[str, str]] = ()
) -> Response:
    """A minimal HTML page saying ``title`` and ``message``."""
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(message)}</p></body></html>"
    )
    return Response(status=status, headers=(*_HTML, *NO_STORE, *extra), body=body.encode())


def default_result_page(outcome: SignInOutcome) -> Response:
    """A plain page for an ACS outcome, for apps that pass no ``on_result``."""
    if isinstance(outcome, SignInFailure):
        finding = outcome.finding
        text = finding.message + (f" {finding.suggestion}" if finding.suggestion else "")
        return page(outcome.status, "Sign-in refused", text)
    if isinstance(outcome, Authorized):
        return page(
            200,
            "SAML configuration active",
            f"The test sign-in as {outcome.name_id} succeeded; the new configuration is active.",
        )
    return page(200, "Signed in", f"Signed in as {outcome.member.user_name}.")
