"""Attacks on the sign-in flow around the response: each must be refused or harmless.

:mod:`tests.saml.test_attacks` tampers with the response itself; these go
through the service and its HTTP endpoints as a browser, another
workspace's admin or a script would: login CSRF, RelayState of any bytes,
malformed ACS forms, unsolicited responses that claim to answer a request,
anonymous sign-in starts, and what one workspace learns of another.
"""

from __future__ import annotations

import json

from pbidentity.admin import Admin
from pbidentity.saml._service import SamlService
from tests.saml.idp import TestIdp
from tests.saml.test_service import activate
from tests.saml.test_service import idp
from tests.saml.test_service import service

__all__ = ["idp", "service"]


# What one workspace learns of another ----------------------------------------------------


def test_checking_or_saving_another_workspaces_idp_never_names_that_workspace(
    service: SamlService, idp: TestIdp
) -> None:
    """Globex's admin loads Initech's IdP: warned that another workspace uses it, never which."""
    Admin(service.storage).create_tenant("initech", "Initech")
    activate(service, idp, "initech")
    _, checked = service.check_metadata("globex", idp.metadata_xml())
    saved = service.save_metadata_xml("globex", idp.metadata_xml())
    for report in (checked, saved.report):
        assert "cert.shared" in report.codes()
        shown = json.dumps(report.to_dict()) + report.render()
        assert "another workspace" in shown
        assert "initech" not in shown.lower()
