"""Random requests to the portal: never a 5xx or a traceback, and nothing changes without a form.

Hypothesis draws methods, paths (the portal's own and others, hostile
segments), query strings, cookies (the portal's cookie forged or taken from
a real page), headers and bodies (form-encoded, multipart, garbage), with
and without the host's admin. None of them carries a valid CSRF token, so
none may change a thing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pbidentity import PbIdentity
from pbidentity.http import Request
from pbidentity.portal import COOKIE_NAME
from pbidentity.portal import Portal
from pbidentity.saml import SamlConfig
from tests.portal.conftest import SECRET
from tests.portal.conftest import host_admin

BASE = "https://app.example/portal"

_SEGMENTS = st.sampled_from(
    [
        "w",
        "acme",
        "beta",
        "sso",
        "scim",
        "members",
        "tokens",
        "revoke",
        "switch",
        "metadata",
        "authorize",
        "discard",
        "rollback",
        "options",
        "setup",
        "signout",
        "static",
        "portal.css",
        "copy.js",
        "..",
        ".",
        "",
        "%00",
        "<script>",
        "ünïcode",
        "a" * 300,
        "okta",
        "\x00",
    ]
)
_ROUTES = st.sampled_from(
    [
        "/",
        "/setup",
        "/signout",
        "/w/acme/sso",
        "/w/acme/sso/metadata",
        "/w/acme/sso/authorize",
        "/w/acme/sso/discard",
        "/w/acme/sso/rollback",
        "/w/acme/sso/options",
        "/w/acme/scim",
        "/w/acme/scim/switch",
        "/w/acme/scim/tokens",
        "/w/acme/scim/tokens/revoke",
        "/w/acme/members",
        "/w/beta/members",
        "/w/acme/members/nobody",
        "/w/beta/scim/switch",
        "/static/portal.css",
        "/static/copy.js",
    ]
)
_PATHS = st.one_of(
    _ROUTES,
    _ROUTES,
    st.lists(_SEGMENTS, min_size=0, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=80).map(lambda text: "/" + text),
)
_METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "csrf",
            "enabled",
            "name",
            "token",
            "action",
            "metadata_url",
            "role",
            "given_name",
            "unknown_members",
            "allow_idp_initiated",
            "x",
        ]
    ),
    st.text(max_size=40),
    max_size=5,
)


def _form(fields: dict[str, str]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


_BODIES = st.one_of(
    st.tuples(st.just("application/x-www-form-urlencoded"), _FIELDS.map(_form)),
    st.tuples(
        st.just("multipart/form-data; boundary=XyZ"),
        st.binary(max_size=200).map(lambda data: b"--XyZ\r\n" + data + b"\r\n--XyZ--\r\n"),
    ),
    st.tuples(
        st.just("multipart/form-data; boundary=XyZ"),
        st.tuples(
            st.sampled_from([b"csrf", b"action", b"metadata_file", b"x"]),
            st.sampled_from([b"", b'; filename="idp.xml"', b'; filename=""']),
            st.binary(max_size=100),
        ).map(
            lambda part: (
                b'--XyZ\r\nContent-Disposition: form-data; name="'
                + part[0]
                + b'"'
                + part[1]
                + b"\r\n\r\n"
                + part[2]
                + b"\r\n--XyZ--\r\n"
            )
        ),
    ),
    st.tuples(
        st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]),
        st.binary(max_size=200),
    ),
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PbIdentity, Portal, str]]:
    """A portal with two workspaces, a token, a link, a member; and a real cookie of it."""
    directory: Path = tmp_path_factory.mktemp("portal-fuzz")
    identity = PbIdentity(
        f"sqlite:///{directory / 'fuzz.db'}", saml=SamlConfig(public_url="https://app.example")
    )
    for slug in ("acme", "beta"):
        identity.admin.create_tenant(slug)
        identity.admin.create_token(slug, "okta")
        identity.members.add(slug, f"ada@{slug}.test")
    portal = Portal(identity, authorize=host_admin, secret=SECRET)
    portal.links.issue("acme", created_by="owner")
    page = portal.handle(
        Request(
            method="GET", path="/w/acme/scim", base_url=BASE, headers=(("x-test-admin", "acme"),)
        )
    )
    cookie = re.search(rf"{COOKIE_NAME}=([^;]+)", page.header("set-cookie") or "")
    assert cookie is not None
    yield identity, portal, cookie.group(1)
    identity.close()


def _state(identity: PbIdentity, portal: Portal) -> object:
    return [
        (
            identity.admin.get_tenant(slug).scim_enabled,
            [(t.name, t.is_active) for t in identity.admin.list_tokens(slug)],
            [(m.id, m.role, m.attributes) for m in identity.members.all(slug)],
            [(k.id, k.opened, k.revoked) for k in portal.links.list(slug)],
            identity.saml.connections(slug),
        )
        for slug in ("acme", "beta")
    ]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=_METHODS,
    path=_PATHS,
    query=st.lists(
        st.tuples(st.sampled_from(["q", "token", "cursor", "status", "x"]), st.text(max_size=60)),
        max_size=3,
    ),
    body=_BODIES,
    admin=st.sampled_from([None, "acme", "beta", "nowhere"]),
    cookie=st.sampled_from(["real", "forged", "none"]),
    origin=st.sampled_from([None, "null", "https://app.example", "https://evil.example"]),
    truncated=st.booleans(),
)
def test_random_requests_are_answered_and_change_nothing(
    fuzzed: tuple[PbIdentity, Portal, str],
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: tuple[str, bytes],
    admin: str | None,
    cookie: str,
    origin: str | None,
    truncated: bool,
) -> None:
    """No 5xx, no traceback, a page with the security headers, and the stored state unchanged."""
    identity, portal, real_cookie = fuzzed
    headers = [("content-type", body[0])]
    if admin:
        headers.append(("x-test-admin", admin))
    if cookie != "none":
        value = real_cookie if cookie == "real" else real_cookie[:-4] + "AAAA"
        headers.append(("cookie", f"{COOKIE_NAME}={value}"))
    if origin:
        headers.append(("origin", origin))
    before = _state(identity, portal)
    answer = portal.handle(
        Request(
            method=method,
            path=path,
            base_url=BASE,
            query=tuple(query),
            headers=tuple(headers),
            body=body[1],
            body_truncated=truncated,
        )
    )
    assert answer.status < 500, (answer.status, answer.body[:300])
    assert b"Traceback" not in answer.body
    if answer.header("content-type") == "text/html; charset=utf-8":
        assert answer.header("content-security-policy")
        assert answer.header("x-frame-options") == "DENY"
    assert _state(identity, portal) == before


_POST_ROUTES = st.sampled_from(
    [
        "/setup",
        "/w/acme/sso/metadata",
        "/w/acme/sso/options",
        "/w/acme/sso/discard",
        "/w/acme/scim/switch",
        "/w/acme/scim/tokens",
        "/w/acme/scim/tokens/revoke",
        "/w/acme/members/nobody",
    ]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=_POST_ROUTES, body=_BODIES, cookie=st.sampled_from(["real", "none"]))
# Found by this test: a non-ASCII CSRF field made hmac.compare_digest raise (a 500).
@example(path="/setup", body=("application/x-www-form-urlencoded", b"csrf=%C2%80"), cookie="real")
def test_random_forms_from_the_signed_in_admin_are_refused_cleanly(
    fuzzed: tuple[PbIdentity, Portal, str], path: str, body: tuple[str, bytes], cookie: str
) -> None:
    """The admin's own browser, every form, random bodies without a valid token: 4xx, no change."""
    identity, portal, real_cookie = fuzzed
    headers = [("content-type", body[0]), ("x-test-admin", "acme")]
    if cookie == "real":
        headers.append(("cookie", f"{COOKIE_NAME}={real_cookie}"))
    before = _state(identity, portal)
    answer = portal.handle(
        Request(method="POST", path=path, base_url=BASE, headers=tuple(headers), body=body[1])
    )
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    assert _state(identity, portal) == before
