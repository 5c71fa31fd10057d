"""Discovery endpoints: what an IdP reads before it provisions."""

from __future__ import annotations

import json
from typing import Any

from scim2_models import ResourceType
from scim2_models import Schema
from scim2_models import ServiceProviderConfig

from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import ENTERPRISE
from tests.scim.helpers import GROUP
from tests.scim.helpers import ROLE
from tests.scim.helpers import USER
from tests.scim.helpers import assert_error


def _no_nulls(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(_no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nulls(v) for v in value)
    return True


def test_service_provider_config(acme: Workspace) -> None:
    """/ServiceProviderConfig announces PATCH, filter, sort and ETags and the bearer scheme."""
    response = acme.client.get("/ServiceProviderConfig")
    assert response.status_code == 200
    body = response.json()
    config = ServiceProviderConfig.model_validate(body)
    assert config.patch is not None
    assert config.patch.supported
    assert config.filter is not None
    assert config.filter.supported
    assert config.bulk is not None
    assert not config.bulk.supported
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert _no_nulls(body)


def test_schemas_list_core_enterprise_role_and_group(acme: Workspace) -> None:
    """/Schemas lists User, Enterprise User, the role extension and Group, with no nulls (Entra)."""
    body = acme.client.get("/Schemas").json()
    ids = {schema["id"] for schema in body["Resources"]}
    assert ids >= {USER, ENTERPRISE, ROLE, GROUP}
    assert _no_nulls(body)
    for document in body["Resources"]:
        Schema.model_validate(document)
    role = next(s for s in body["Resources"] if s["id"] == ROLE)
    attribute = role["attributes"][0]
    assert attribute["name"] == "role"
    assert attribute["canonicalValues"] == ["admin", "maker", "contributor", "viewer"]


def test_one_schema_and_resource_type_by_id(acme: Workspace) -> None:
    """A single schema or resource type can be read by its id; an unknown one is 404."""
    user = acme.client.get(f"/Schemas/{USER}").json()
    assert user["id"] == USER
    resource_type = acme.client.get("/ResourceTypes/User").json()
    ResourceType.model_validate(resource_type)
    assert resource_type["endpoint"] == "/Users"
    assert {e["schema"] for e in resource_type["schemaExtensions"]} == {ENTERPRISE, ROLE}
    assert resource_type["meta"]["location"] == f"{BASE_URL}/ResourceTypes/User"
    assert_error(acme.client.get("/Schemas/urn:nope"), 404)


def test_discovery_needs_no_token(acme: Workspace) -> None:
    """Discovery describes the service, not a tenant, so it answers without a token."""
    headers = {"Authorization": ""}
    response = acme.client.get("/ServiceProviderConfig", headers=headers)
    assert response.status_code == 200
    assert json.loads(response.content)["schemas"]
