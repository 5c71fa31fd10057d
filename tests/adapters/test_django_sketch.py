"""The Django view of the adapters guide, run through Django: it answers as the core does."""

from __future__ import annotations

import itertools
import re
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from pbidentity import PbIdentity
from pbidentity.domain import ApiToken
from pbidentity.http import Request
from pbidentity.saml import SamlConfig
from pbidentity.scim import ScimConfig
from pbidentity.tokens import token_digest

GUIDE = Path(__file__).parents[2] / "docs" / "howto" / "adapters.md"


def _django_view_source() -> str:
    """The first Python block of the guide's Django section."""
    section = GUIDE.read_text().split("## Django", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.fixture(scope="module")
def django_settings() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["app.example"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            DEFAULT_CHARSET="utf-8",
        )
        import django

        django.setup()


SECRET = "t" * 43
CLOCK = datetime(2026, 11, 1, tzinfo=UTC)


def _identity(directory: Path) -> PbIdentity:
    """A fresh database with workspace acme and its token, and deterministic services on it."""
    directory.mkdir()
    ids = itertools.count(1)

    def new_id() -> str:
        return f"00000000-0000-4000-8000-{next(ids):012d}"

    identity = PbIdentity(
        f"sqlite:///{directory / 'pbidentity.db'}",
        scim=ScimConfig(max_body_bytes=2048),
        saml=SamlConfig(public_url="https://app.example"),
        clock=lambda: CLOCK,
        new_id=new_id,
    )
    storage, admin = identity.storage, identity.admin
    admin.create_tenant("acme", "Acme")
    admin.set_scim_enabled("acme", True)
    acme = admin.get_tenant("acme")
    with storage.transaction() as tx:
        tx.add_token(
            ApiToken(
                id="token-1",
                tenant_id=acme.id,
                name="okta",
                digest=token_digest(SECRET),
                created=CLOCK,
            )
        )
    return identity


def test_the_guides_django_view_answers_as_the_core(django_settings: None, tmp_path: Path) -> None:
    """The guide's view, given the identity, answers every case as the core's own router does."""
    from django.test import RequestFactory

    identity = _identity(tmp_path / "django")
    namespace: dict[str, Any] = {"identity": identity}
    exec(compile(_django_view_source(), str(GUIDE), "exec"), namespace)  # noqa: S102
    view = namespace["pbidentity_view"]
    core = _identity(tmp_path / "core")
    router = core.router()
    factory = RequestFactory(headers={"Host": "app.example"})
    auth = {"Authorization": f"Bearer {SECRET}"}
    user = b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@x.test"}'
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        ("GET", "/scim/v2/ServiceProviderConfig", b"", {}),
        ("GET", "/scim/v2/Users", b"", auth),
        ("GET", "/scim/v2/Users?filter=userName%20eq%20%22nobody%22", b"", auth),
        ("POST", "/scim/v2/Users", user, {**auth, "Content-Type": "application/scim+json"}),
        ("POST", "/scim/v2/Users", user, {**auth, "Content-Type": "application/scim+json"}),
        ("POST", "/scim/v2/Users", b"x" * 4096, {**auth, "Content-Type": "application/scim+json"}),
        ("DELETE", "/scim/v2/Users/00000000-0000-4000-8000-000000000001", b"", auth),
        ("GET", "/saml/acme/metadata", b"", {}),
        ("POST", "/saml/acme/acs", b"RelayState=%2F", form),
    ]
    for method, target, body, headers in cases:
        path, _, query = target.partition("?")
        content_type = headers.get("Content-Type", "application/octet-stream")
        django_request = factory.generic(
            method, target, data=body, content_type=content_type, headers=headers
        )
        answer = view(django_request)
        found = router.route(path)
        assert found is not None
        mount, rest = found
        cap = mount.handler.max_body_bytes
        expected = mount.handler.handle(
            Request(
                method=method,
                path=rest,
                base_url="http://app.example" + mount.prefix,
                query=tuple(parse_qsl(query, keep_blank_values=True)),
                headers=tuple(headers.items()),
                body=b"" if len(body) > cap else body,
                body_truncated=len(body) > cap,
            )
        )
        assert answer.status_code == expected.status, (method, target, answer.content[:200])
        assert answer.content == expected.body, (method, target)
        for name, value in expected.headers:
            if name == "X-Request-Id":
                # Every request gets its own, the core's as the view's.
                assert answer[name] != value, (method, target)
                continue
            assert answer[name] == value, (method, target, name)
    identity.close()
    core.close()
