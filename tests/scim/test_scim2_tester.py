"""scim2-tester's whole compliance run (discovery, CRUD on Users and Groups) against the service."""

from __future__ import annotations

from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_tester import Status
from scim2_tester import check_server

from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.conftest import Workspace

_PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


def test_every_scim2_tester_check_passes(app: ScimWsgiApp, acme: Workspace) -> None:
    """check_server through the real WSGI adapter finds no deviation, error or critical issue."""
    client = WSGISCIMClient(
        app, base_url=BASE_URL, headers={"Authorization": f"Bearer {acme.token}"}
    )
    results = check_server(client)
    ran = [r for r in results if r.status is not Status.SKIPPED]
    failures = [f"{r.status.name} {r.title}: {r.reason}" for r in ran if r.status not in _PASSING]
    assert not failures, "\n".join(failures)
    assert len(ran) > 30
    assert {r.resource_type for r in ran} >= {"User", "Group"}
