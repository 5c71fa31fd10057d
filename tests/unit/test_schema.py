"""Resource descriptions, discovery documents and body normalisation (scim._schema)."""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_models import Context
from scim2_models import EnterpriseUser
from scim2_models import ResourceType
from scim2_models import Schema
from scim2_models import ScimProvider
from scim2_models import ServiceProviderConfig
from scim2_models import User
from scim2_tester import Status
from scim2_tester import check_server

from pbidentity.exceptions import ConfigurationError
from pbidentity.scim._schema import CORE_GROUP_URN
from pbidentity.scim._schema import CORE_USER_URN
from pbidentity.scim._schema import DEFAULT_ROLE_URN
from pbidentity.scim._schema import ENTERPRISE_URN
from pbidentity.scim._schema import PayloadError
from pbidentity.scim._schema import ResourceSpec
from pbidentity.scim._schema import group_resource
from pbidentity.scim._schema import lookup
from pbidentity.scim._schema import make_role_extension
from pbidentity.scim._schema import normalise_group_payload
from pbidentity.scim._schema import normalise_payload
from pbidentity.scim._schema import normalise_user_payload
from pbidentity.scim._schema import resource_types_document
from pbidentity.scim._schema import schemas_document
from pbidentity.scim._schema import service_provider_config
from pbidentity.scim._schema import user_resource

DATA = Path(__file__).parent.parent / "data"
BASE_URL = "https://app.example/scim/v2"
ROLES = ("admin", "maker", "viewer")
APP_URN = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def load(name: str) -> Any:
    """A sample payload from tests/data, named after its source."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def users() -> ResourceSpec:
    """The User resource with the default role URN and three roles."""
    return user_resource(DEFAULT_ROLE_URN, ROLES)


@pytest.fixture(scope="module")
def groups() -> ResourceSpec:
    """The Group resource."""
    return group_resource()


@pytest.fixture(scope="module")
def discovery(
    users: ResourceSpec, groups: ResourceSpec
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The three discovery documents, as the service would publish them."""
    return (
        schemas_document([users, groups], BASE_URL),
        resource_types_document([users, groups], BASE_URL),
        service_provider_config(BASE_URL, max_results=1000, max_payload=1024 * 1024),
    )


def _nulls(value: Any, where: str = "$") -> Iterator[str]:
    if value is None:
        yield where
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nulls(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nulls(item, f"{where}[{index}]")


# -- discovery documents ---------------------------------------------------------------


def test_discovery_documents_contain_no_null(discovery: Any) -> None:
    """No null anywhere in the three discovery documents (Entra rejects nulls)."""
    assert list(_nulls(discovery)) == []


def test_schemas_parse_with_scim2_models(discovery: Any) -> None:
    """Every Schema document parses as a scim2-models Schema, nothing lost."""
    schemas, _, _ = discovery
    for document in schemas:
        parsed = Schema.model_validate(document, scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        assert parsed.id == document["id"]
        assert parsed.name == document["name"]
        assert len(parsed.attributes or []) == len(document["attributes"])
        assert document["meta"] == {
            "resourceType": "Schema",
            "location": f"{BASE_URL}/Schemas/{document['id']}",
        }


def test_schemas_list_resources_extensions_and_discovery_schemas(discovery: Any) -> None:
    """/Schemas lists User, enterprise, role, Group and the discovery schemas."""
    schemas, _, _ = discovery
    assert [(d["id"], d["name"]) for d in schemas] == [
        (CORE_USER_URN, "User"),
        (ENTERPRISE_URN, "EnterpriseUser"),
        (DEFAULT_ROLE_URN, "AppRole"),
        (CORE_GROUP_URN, "Group"),
        ("urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig", "ServiceProviderConfig"),
        ("urn:ietf:params:scim:schemas:core:2.0:ResourceType", "ResourceType"),
        ("urn:ietf:params:scim:schemas:core:2.0:Schema", "Schema"),
    ]


def test_role_attribute_definition_announces_the_app_roles(discovery: Any) -> None:
    """The role is a readWrite, caseless single string; canonicalValues are the roles."""
    schemas, _, _ = discovery
    role_schema = next(d for d in schemas if d["id"] == DEFAULT_ROLE_URN)
    (role,) = role_schema["attributes"]
    assert role["name"] == "role"
    assert role["type"] == "string"
    assert role["multiValued"] is False
    assert role["caseExact"] is False
    assert role["mutability"] == "readWrite"
    assert role["returned"] == "default"
    assert role["canonicalValues"] == list(ROLES)
    assert "roles" in role["description"]


def test_attribute_definitions_are_complete(discovery: Any) -> None:
    """Each attribute carries every RFC 7643 §7 characteristic; complex ones list subAttributes."""
    schemas, _, _ = discovery
    user = next(d for d in schemas if d["id"] == CORE_USER_URN)
    by_name = {a["name"]: a for a in user["attributes"]}
    required_keys = {"name", "type", "multiValued", "required", "caseExact"}
    required_keys |= {"mutability", "returned", "uniqueness"}
    for attribute in user["attributes"]:
        assert required_keys <= attribute.keys(), attribute["name"]
    assert by_name["userName"]["uniqueness"] == "server"
    assert by_name["userName"]["required"] is True
    assert by_name["groups"]["mutability"] == "readOnly"
    assert by_name["password"]["mutability"] == "writeOnly"
    assert by_name["password"]["returned"] == "never"
    assert {s["name"] for s in by_name["emails"]["subAttributes"]} >= {"value", "type", "primary"}
    assert by_name["profileUrl"]["referenceTypes"] == ["external"]
    assert "\n" not in by_name["name"]["description"]


def test_resource_types_parse_and_declare_optional_extensions(discovery: Any) -> None:
    """User and Group resource types parse; their extensions are not required."""
    _, resource_types, _ = discovery
    parsed = [
        ResourceType.model_validate(d, scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        for d in resource_types
    ]
    assert [(r.id, r.endpoint, r.schema_) for r in parsed] == [
        ("User", "/Users", CORE_USER_URN),
        ("Group", "/Groups", CORE_GROUP_URN),
    ]
    user = resource_types[0]
    assert user["schemaExtensions"] == [
        {"schema": ENTERPRISE_URN, "required": False},
        {"schema": DEFAULT_ROLE_URN, "required": False},
    ]
    assert user["meta"]["location"] == f"{BASE_URL}/ResourceTypes/User"
    assert resource_types[1]["schemaExtensions"] == []


def test_service_provider_config_announces_capabilities(discovery: Any) -> None:
    """PATCH, filter, sort, ETag on; bulk and changePassword off; bearer token."""
    _, _, config = discovery
    parsed = ServiceProviderConfig.model_validate(config, scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    assert parsed.patch is not None
    assert parsed.patch.supported is True
    assert parsed.bulk is not None
    assert parsed.bulk.supported is False
    assert parsed.filter is not None
    assert parsed.filter.supported is True
    assert parsed.filter.max_results == 1000
    assert parsed.change_password is not None
    assert parsed.change_password.supported is False
    assert parsed.sort is not None
    assert parsed.sort.supported is True
    assert parsed.etag is not None
    assert parsed.etag.supported is True
    (scheme,) = config["authenticationSchemes"]
    assert scheme["type"] == "oauthbearertoken"
    assert scheme["name"] == "OAuth Bearer Token"
    assert scheme["primary"] is True
    assert "rfc6750" in scheme["specUri"]


def test_scim_provider_from_discovery_builds_the_user_model(discovery: Any) -> None:
    """ScimProvider.from_discovery accepts them; its User model reads the role."""
    schemas, resource_types, config = discovery
    provider = ScimProvider.from_discovery(
        [Schema.model_validate(d) for d in schemas],
        [ResourceType.model_validate(d) for d in resource_types],
        ServiceProviderConfig.model_validate(config),
    )
    model = provider.model_for("User")
    assert model is not None
    user = model.model_validate(
        {
            "schemas": [CORE_USER_URN],
            "userName": "kim@example.com",
            DEFAULT_ROLE_URN: {"role": "maker"},
        },
        scim_ctx=Context.RESOURCE_CREATION_REQUEST,
    )
    dumped = user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    assert dumped[DEFAULT_ROLE_URN] == {"role": "maker"}
    assert provider.model_for("Group") is not None


def _discovery_app(discovery: Any) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving only the three discovery endpoints, as the service would."""
    schemas, resource_types, config = discovery
    collections = {"Schemas": schemas, "ResourceTypes": resource_types}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        parts = environ["PATH_INFO"].strip("/").split("/")[2:]  # after /scim/v2
        status, body = "404 Not Found", _error(404)
        if environ["REQUEST_METHOD"] != "GET":
            status, body = "405 Method Not Allowed", _error(405)
        elif parts == ["ServiceProviderConfig"]:
            status, body = "200 OK", config
        elif len(parts) == 1 and parts[0] in collections:
            items = collections[parts[0]]
            status, body = "200 OK", _list(items)
        elif len(parts) == 2 and parts[0] in collections:
            found = [d for d in collections[parts[0]] if d["id"] == parts[1]]
            if found:
                status, body = "200 OK", found[0]
        start_response(status, [("Content-Type", "application/scim+json")])
        return [json.dumps(body).encode()]

    return app


def _error(status: int) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": str(status),
        "detail": "no",
    }


def _list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(items),
        "itemsPerPage": len(items),
        "startIndex": 1,
        "Resources": items,
    }


def test_scim2_tester_discovery_checks_pass(discovery: Any) -> None:
    """scim2-tester's discovery checks all pass, service description included."""
    client = WSGISCIMClient(_discovery_app(discovery), base_url=BASE_URL)
    results = check_server(client, include_tags={"discovery"})
    ran = [r for r in results if r.status is not Status.SKIPPED]
    failures = [f"{r.title}: {r.reason}" for r in ran if r.status is not Status.SUCCESS]
    assert failures == []
    assert len(ran) >= 10
    assert client.provider.model_for("User") is not None


# -- the role extension ------------------------------------------------------------------


@pytest.mark.parametrize(
    "schemas",
    [[CORE_USER_URN, APP_URN], [CORE_USER_URN]],
    ids=["urn-listed", "urn-omitted"],
)
@pytest.mark.parametrize(
    "context",
    [Context.RESOURCE_CREATION_REQUEST, Context.RESOURCE_REPLACEMENT_REQUEST],
)
def test_role_extension_validates_with_or_without_its_urn_in_schemas(
    schemas: list[str], context: Context
) -> None:
    """The role validates whether or not the IdP lists its URN in schemas."""
    extension = make_role_extension(APP_URN)
    model = User.__class_getitem__(EnterpriseUser | extension)
    user = model.model_validate(
        {"schemas": schemas, "userName": "kim@example.com", APP_URN: {"role": "maker"}},
        scim_ctx=context,
    )
    assert user[extension].role == "maker"


def test_role_extension_is_built_once_per_urn() -> None:
    """One class per URN, so parameterised User models stay cached."""
    assert make_role_extension(APP_URN) is make_role_extension(APP_URN)
    assert make_role_extension(APP_URN) is not make_role_extension(DEFAULT_ROLE_URN)
    assert make_role_extension(APP_URN).__schema__ == APP_URN


@pytest.mark.parametrize("urn", ["not-a-urn", ENTERPRISE_URN, CORE_USER_URN.upper()])
def test_role_extension_refuses_bad_urns(urn: str) -> None:
    """A role URN that is not a URN, or is a standard schema's, is a configuration error."""
    with pytest.raises(ConfigurationError):
        make_role_extension(urn)


# -- the spec tree ----------------------------------------------------------------------


def test_lookup_ignores_case(users: ResourceSpec) -> None:
    """Core, dotted, extension and common attributes are found in any case."""
    given = lookup(users, None, "NAME.givenname")
    assert given is not None
    assert given.name == "givenName"
    employee = lookup(users, ENTERPRISE_URN.upper(), "EMPLOYEENUMBER")
    assert employee is not None
    assert employee.name == "employeeNumber"
    manager = lookup(users, ENTERPRISE_URN, "manager.VALUE")
    assert manager is not None
    assert manager.name == "value"
    assert manager.case_exact
    role = lookup(users, DEFAULT_ROLE_URN.lower(), "Role")
    assert role is not None
    assert role.canonical_values == ROLES
    assert lookup(users, None, "externalid") is not None
    assert lookup(users, None, "nope") is None
    assert lookup(users, "urn:example:unknown:2.0:User", "role") is None
    assert lookup(users, None, "name.nope") is None


def test_mutability_of_service_owned_attributes(users: ResourceSpec, groups: ResourceSpec) -> None:
    """id, meta and User.groups are readOnly; Group.members is readWrite."""
    assert [lookup(users, None, n).mutability for n in ("id", "meta", "groups")] == [  # type: ignore[union-attr]
        "readOnly",
        "readOnly",
        "readOnly",
    ]
    members = lookup(groups, None, "members")
    assert members is not None
    assert members.mutability == "readWrite"
    assert members.multi_valued
    assert groups.model.__name__ == "Group"
    assert users.extensions_urns() == (ENTERPRISE_URN, DEFAULT_ROLE_URN)


def test_specs_are_immutable(users: ResourceSpec) -> None:
    """The spec tree is shared by every request: its mappings refuse writes."""
    with pytest.raises(TypeError):
        users.core.attributes["x"] = users.core.attributes["username"]  # type: ignore[index]


# -- normalising bodies -------------------------------------------------------------------


def test_okta_put_echo_drops_read_only_and_write_only_attributes(users: ResourceSpec) -> None:
    """Okta's PUT echoes id, meta, groups, password: dropped and reported."""
    result = normalise_user_payload(load("okta-put-user-echo.json"), users)
    assert result.dropped == ("id", "groups", "password", "meta")
    assert result.ignored == ()
    document = result.document
    assert not {"id", "meta", "groups", "password"} & document.keys()
    assert document[DEFAULT_ROLE_URN] == {"role": "maker"}
    users.model.model_validate(_routable(document), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)


def test_okta_create_user_validates(users: ResourceSpec) -> None:
    """Okta's POST (with groups: [] and a placeholder password) validates once normalised."""
    result = normalise_user_payload(load("okta-create-user.json"), users)
    assert result.dropped == ("groups", "password")
    users.model.model_validate(
        _routable(result.document), scim_ctx=Context.RESOURCE_CREATION_REQUEST
    )


def _routable(document: dict[str, Any]) -> dict[str, Any]:
    """Okta's samples use okta.local, a domain scim2-models' email check refuses."""
    routable: dict[str, Any] = json.loads(
        json.dumps(document).replace("@okta.local", "@okta.example.com")
    )
    return routable


def test_entra_create_user_lists_the_role_urn_and_drops_empty_values(users: ResourceSpec) -> None:
    """Entra omits extension URNs and sends "": URNs are added, empties dropped."""
    result = normalise_user_payload(load("entra-create-user.json"), users)
    document = result.document
    assert document["schemas"] == [CORE_USER_URN, DEFAULT_ROLE_URN]
    assert ENTERPRISE_URN not in document  # its only attribute was ""
    assert document["roles"] == [
        {"primary": True, "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"}
    ]
    users.model.model_validate(document, scim_ctx=Context.RESOURCE_CREATION_REQUEST)


def test_onelogin_odd_core_urn_and_string_booleans(users: ResourceSpec) -> None:
    """OneLogin's odd core URN is replaced; "true" strings become booleans."""
    document = normalise_user_payload(load("onelogin-template-user.json"), users).document
    assert document["schemas"] == [CORE_USER_URN]
    assert document["active"] is True
    assert document["emails"] == [{"value": "kate@onelogin.example", "primary": True}]
    assert "title" not in document
    users.model.model_validate(document, scim_ctx=Context.RESOURCE_CREATION_REQUEST)


def test_rfc7643_enterprise_user_validates(users: ResourceSpec) -> None:
    """RFC 7643 §8.3 validates once normalised; readOnly manager.displayName goes."""
    document = normalise_user_payload(load("rfc7643-8.3-enterprise-user.json"), users).document
    assert document[ENTERPRISE_URN]["manager"] == {
        "value": "26118915-6090-4610-87e4-49d8ca9f808d",
        "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
    }
    users.model.model_validate(document, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)


def test_names_take_their_canonical_case(users: ResourceSpec) -> None:
    """Attribute, sub-attribute and extension URN keys in any case come out in canonical case."""
    payload = {
        "USERNAME": "kim@example.com",
        "Name": {"GIVENNAME": "Kim"},
        "name.FamilyName": "Akers",
        ENTERPRISE_URN.upper(): {"EmployeeNumber": "7"},
        f"{ENTERPRISE_URN}:department": "Sales",
        "EMAILS": {"VALUE": "kim@example.com", "Primary": "TRUE"},
    }
    document = normalise_payload(payload, users).document
    assert document == {
        "schemas": [CORE_USER_URN, ENTERPRISE_URN],
        "userName": "kim@example.com",
        "name": {"givenName": "Kim", "familyName": "Akers"},
        ENTERPRISE_URN: {"employeeNumber": "7", "department": "Sales"},
        "emails": [{"value": "kim@example.com", "primary": True}],
    }


def test_unknown_keys_are_left_out_and_reported(users: ResourceSpec) -> None:
    """Unknown keys and extension blocks never fail a PUT; they are reported."""
    payload = {
        "userName": "kim@example.com",
        "x-custom": 1,
        "name": {"givenName": "Kim", "nick": "K"},
        "urn:example:unknown:2.0:User": {"a": 1},
        "nullBlock": None,
        ENTERPRISE_URN: None,
    }
    result = normalise_payload(payload, users)
    assert result.document == {
        "schemas": [CORE_USER_URN],
        "userName": "kim@example.com",
        "name": {"givenName": "Kim"},
    }
    assert result.ignored == ("x-custom", "name.nick", "urn:example:unknown:2.0:User", "nullBlock")


def test_group_members_are_kept_in_canonical_case(groups: ResourceSpec) -> None:
    """A Group body keeps members (the service splits them), in canonical case."""
    result = normalise_group_payload(
        {"DisplayName": "Ops", "id": "g1", "Members": [{"Value": "u1", "$REF": "x"}]}, groups
    )
    assert result.document == {
        "schemas": [CORE_GROUP_URN],
        "displayName": "Ops",
        "members": [{"value": "u1", "$ref": "x"}],
    }
    assert result.dropped == ("id",)
    assert groups.normalise(load("rfc7643-8.4-group.json"))["displayName"] == "Tour Guides"


@pytest.mark.parametrize("body", [[], "user", 3, None])
def test_a_body_that_is_not_an_object_is_invalid_syntax(users: ResourceSpec, body: Any) -> None:
    """A body that is not a JSON object is refused with invalidSyntax and says what was expected."""
    with pytest.raises(PayloadError) as caught:
        normalise_payload(body, users)
    assert caught.value.scim_type == "invalidSyntax"
    assert caught.value.status == 400
    assert "User" in caught.value.detail


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"userName": "k", "name": "Kim Akers"}, "name"),
        ({"userName": "k", "emails": ["kim@example.com"]}, "emails[0]"),
        ({"userName": ["k"]}, "userName"),
        ({"userName": "k", ENTERPRISE_URN: "x"}, ENTERPRISE_URN),
    ],
)
def test_wrong_shapes_are_invalid_values(users: ResourceSpec, payload: Any, where: str) -> None:
    """Wrong shapes (string for complex, list for single...) are invalidValue."""
    with pytest.raises(PayloadError) as caught:
        normalise_payload(payload, users)
    assert caught.value.scim_type == "invalidValue"
    assert caught.value.detail.startswith(where)
