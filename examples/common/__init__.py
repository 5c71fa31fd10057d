"""What both reference apps share: the services, the host's sign-in and session, its few pages.

The FastAPI and Flask apps differ only in how they speak HTTP. What a host
app owns (who is signed in, who is an admin, what a sign-in outcome leads
to, the owner's way in before SSO exists) lives here, in plain functions
over plain values; what pbidentity's set-up portal does (SSO, SCIM, role
policy, members, audit) is mounted from the library, not written again.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEMPLATES"]

#: The Jinja2 templates of the host's own pages (sign-in, owner link, home).
#: They borrow the portal's stylesheet and copy button, served under ``/portal/static``.
TEMPLATES = Path(__file__).parent / "templates"
