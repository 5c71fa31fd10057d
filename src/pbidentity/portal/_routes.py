"""The portal's route table: which view answers a workspace's page, and in which section.

A route is a method, a path below ``/w/<workspace>`` and the section whose
access it needs (``None``: the set-up links page, the host app's admins'
whatever their sections; its views refuse a link's session). Matching a
path is all this module does: :class:`~pbidentity.portal._portal.Portal`
checks the access and the form before it calls the view.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from pbidentity.http import Response
from pbidentity.portal import _audit_views
from pbidentity.portal import _forms
from pbidentity.portal import _import_views
from pbidentity.portal import _link_views
from pbidentity.portal import _member_views
from pbidentity.portal import _role_views
from pbidentity.portal import _scim_views
from pbidentity.portal import _sso_views
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._access import Section
from pbidentity.portal._views import Context
from pbidentity.portal._views import Refusal

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["Route", "View", "find_route"]

#: A page of a workspace's section, called once its access and form's CSRF token are checked.
View = Callable[["Portal", Context, PortalAccess, _forms.Form], Response]

_ROUTES: tuple[tuple[str, str, Section | None, View], ...] = (
    ("GET", "/sso", "sso", _sso_views.settings),
    ("POST", "/sso/metadata", "sso", _sso_views.save_metadata),
    ("POST", "/sso/authorize", "sso", _sso_views.authorize),
    ("POST", "/sso/discard", "sso", _sso_views.discard),
    ("POST", "/sso/rollback", "sso", _sso_views.roll_back),
    ("POST", "/sso/options", "sso", _sso_views.options),
    ("GET", "/scim", "scim", _scim_views.provisioning),
    ("POST", "/scim/switch", "scim", _scim_views.switch),
    ("POST", "/scim/tokens", "scim", _scim_views.create_token),
    # The token's name goes in the form: a name may hold a slash, which no
    # path segment can (the adapters decode %2F before the portal sees it).
    ("POST", "/scim/tokens/revoke", "scim", _scim_views.revoke_token),
    ("GET", "/scim/import", "scim", _import_views.imports),
    ("POST", "/scim/import", "scim", _import_views.upload),
    ("GET", "/scim/import/(?P<import_id>{s})", "scim", _import_views.plan),
    ("POST", "/scim/import/(?P<import_id>{s})/apply", "scim", _import_views.apply),
    ("GET", "/scim/import/(?P<import_id>{s})/progress", "scim", _import_views.progress),
    ("GET", "/scim/import/(?P<import_id>{s})/conflicts.csv", "scim", _import_views.conflicts_csv),
    ("GET", "/scim/activity", "scim", _scim_views.activity),
    ("GET", "/members", "members", _member_views.members),
    ("GET", "/members/(?P<member>{s})", "members", _member_views.member),
    ("POST", "/members/(?P<member>{s})", "members", _member_views.edit_member),
    ("GET", "/roles", "roles", _role_views.policy),
    ("POST", "/roles/preview", "roles", _role_views.preview),
    ("POST", "/roles/apply", "roles", _role_views.apply),
    ("GET", "/audit", "audit", _audit_views.trail),
    ("GET", "/links", None, _link_views.links),
    ("POST", "/links", None, _link_views.issue),
    ("POST", "/links/revoke", None, _link_views.revoke),
)
_SEGMENT = r"[^/]+"
_COMPILED = tuple(
    (method, re.compile(f"/w/(?P<ws>{_SEGMENT}){path.format(s=_SEGMENT)}/?"), section, view)
    for method, path, section, view in _ROUTES
)


@attrs.frozen
class Route:
    """The route a request's path matched: its section, its view and the path's values."""

    section: Section | None
    view: View
    workspace: str
    #: The other named segments (``member``, ``import_id``), as the adapter decoded them.
    segments: dict[str, str]


def find_route(method: str, path: str) -> Route | None:
    """The route of ``method`` and ``path``; a 405 refusal if only another method has one."""
    for route_method, pattern, section, view in _COMPILED:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method:
            # The adapters decoded the path already: decoding again would let
            # %252F pass for a slash.
            segments = dict(match.groupdict())
            workspace = segments.pop("ws")
            return Route(section, view, workspace, segments)
    if any(pattern.fullmatch(path) for _, pattern, _, _ in _COMPILED):
        raise Refusal(405, "Not allowed", "This page does not take that method.")
    return None
