"""Hypothesis strategies for requests to every SCIM and SAML endpoint.

Requests name the seeded world's ids and tokens by placeholders
(``{{alice}}``, ``{{token:acme}}``) and its signed SAML responses by
:class:`~tests.fuzz.conftest.Signed` values, which the world fills in when it
sends them; they are mostly near the real surface (known endpoints,
valid-looking tokens and bodies with one thing wrong) and sometimes far from
it (random methods, paths, bytes). Filters and PATCH paths come from the
grammar: the trees of ``tests/unit/test_filter_properties.py``, written by its
:class:`Renderer` in any valid spelling, plus its token noise.

Everything drawn can travel over HTTP as well as to the core: header values
are Latin-1 without line breaks (what HTTP can carry), text has no lone
surrogates (what UTF-8 can encode).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

from pbidentity.query import GROUP_FIELDS
from tests.fuzz.conftest import ID_NAMES
from tests.fuzz.conftest import MUTATIONS
from tests.fuzz.conftest import SAML
from tests.fuzz.conftest import SAML_MAX_BODY
from tests.fuzz.conftest import SAML_RESPONSES
from tests.fuzz.conftest import SCIM
from tests.fuzz.conftest import SCIM_MAX_BODY
from tests.fuzz.conftest import TOKEN_NAMES
from tests.fuzz.conftest import Form
from tests.fuzz.conftest import Padded
from tests.fuzz.conftest import Sent
from tests.fuzz.conftest import Signed
from tests.scim.helpers import ENTERPRISE
from tests.scim.helpers import GROUP
from tests.scim.helpers import PATCH
from tests.scim.helpers import USER
from tests.unit.test_filter_properties import ROLE_URN
from tests.unit.test_filter_properties import Renderer
from tests.unit.test_filter_properties import filters
from tests.unit.test_filter_properties import leaves
from tests.unit.test_filter_properties import logic
from tests.unit.test_filter_properties import noise
from tests.unit.test_filter_properties import raw_filters
from tests.unit.test_filter_properties import raw_leaf
from tests.unit.test_filter_properties import raw_logic

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
#: Stand-ins the world replaces with its seeded ids and tokens when it sends a request.
ID_PLACEHOLDERS = [f"{{{{{name}}}}}" for name in ID_NAMES]
TOKEN_PLACEHOLDERS = [f"{{{{token:{name}}}}}" for name in TOKEN_NAMES]

# -- text -----------------------------------------------------------------------------

unicode = st.characters(exclude_categories=["Cs"])
text = st.text(unicode, max_size=20)
#: What an HTTP header value can carry: Latin-1, no line breaks.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,16}", fullmatch=True)
#: Integers as a client may write them: small, negative, past 64 bits, not integers at all.
# Hypothesis replays integers of more than 128 bits unreliably (its shrinker
# then reports a flaky strategy), so the random ones stay below 10**30, and
# longer numbers are written digit by digit.
big_integers = st.one_of(
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1]),
    st.integers(2**31, 10**30),
    st.integers(-(10**30), -(2**31)),
)
long_digits = st.text("0123456789", min_size=20, max_size=400)
integer_text = st.one_of(
    st.integers(-3, 1001).map(str),
    big_integers.map(str),
    big_integers.map(str),
    long_digits,
    st.sampled_from(["", "0", "-0", "+1", "1.5", "1e3", " 2", "0x10", "٣", "NaN", "many"]),
    text,
)


# -- grammar: filters and PATCH paths -------------------------------------------------


def rendered(trees: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """Trees written as filter text in a random valid spelling."""
    return st.builds(
        lambda tree, rnd: Renderer(rnd).render(tree), trees, st.randoms(use_true_random=False)
    )


group_filters = logic(leaves(list(GROUP_FIELDS.values())))
#: Filter text: on Users, on Groups, raw (any attribute name), token noise, or anything.
filter_text = st.one_of(
    rendered(filters), rendered(group_filters), rendered(raw_filters), noise, text
)

PATCH_ATTRIBUTES = [
    "userName",
    "displayName",
    "title",
    "active",
    "externalId",
    "nickName",
    "name",
    "name.givenName",
    "name.formatted",
    "emails",
    "emails.value",
    "phoneNumbers",
    "addresses",
    "addresses.streetAddress",
    "roles",
    "members",
    "members.value",
    "groups",
    "password",
    "id",
    "meta",
    "meta.created",
    "schemas",
    "x509Certificates",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:manager",
    f"{ENTERPRISE}:manager.value",
    ENTERPRISE,
    f"{ROLE_URN}:role",
    ROLE_URN,
    f"{USER}:name.familyName",
    f"{USER}:emails",
    f"{GROUP}:members",
    f"{GROUP}:displayName",
    "urn:ietf:params:scim:schemas:core:2.0:Nope:x",
]
MULTI_VALUED = ["emails", "Emails", "members", "MEMBERS", "phoneNumbers", "addresses", "roles"]
SUB_ATTRIBUTES = ["value", "display", "primary", "type", "$ref", "streetAddress", "nope"]


@st.composite
def value_paths(draw: st.DrawFn) -> str:
    """``attr[filter]`` and ``attr[filter].sub``, the filter from the grammar."""
    attribute = draw(st.sampled_from(MULTI_VALUED))
    inner = draw(raw_logic(raw_leaf(["type", "value", "primary", "display", "Value"])))
    body = Renderer(draw(st.randoms(use_true_random=False))).render(inner, 0, attribute)
    sub = draw(st.none() | st.sampled_from(SUB_ATTRIBUTES))
    prefix = draw(st.sampled_from(["", "", f"{USER}:", f"{GROUP}:"]))
    return f"{prefix}{attribute}[{body}]" + (f".{sub}" if sub else "")


patch_paths = st.one_of(
    st.sampled_from(PATCH_ATTRIBUTES),
    value_paths(),
    st.sampled_from(PATCH_ATTRIBUTES).map(str.upper),
    noise,
    text,
)


# -- JSON bodies ------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


def dumps(document: Any, ascii_only: bool) -> bytes:
    """JSON as different clients write it (stdlib json: big integers, escapes or raw UTF-8)."""
    return json.dumps(document, ensure_ascii=ascii_only).encode()


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the shaped value, sometimes any JSON at all in its place."""
    return st.one_of(value, value, value, json_values)


def users() -> st.SearchStrategy[dict[str, Any]]:
    """User bodies: schema-shaped, with random values, echoes, strings for booleans."""
    emails = st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "value": _maybe(st.emails() | text),
                "type": _maybe(st.sampled_from(["work", "home", "other", "WORK"])),
                "primary": _maybe(st.booleans() | st.sampled_from(["True", "false", "yes"])),
                "display": text,
            },
        ),
        max_size=4,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "schemas": _maybe(
                st.lists(
                    st.sampled_from([USER, ENTERPRISE, ROLE_URN, "urn:scim:schemas:core:2.0"]),
                    max_size=3,
                )
            ),
            "userName": _maybe(
                st.emails() | text | st.sampled_from(["alice@acme.test", "ALICE@ACME.TEST"])
            ),
            "externalId": _maybe(text | st.just("00u-alice")),
            "displayName": _maybe(text),
            "active": _maybe(st.booleans() | st.sampled_from(["True", "False", "yes", ""])),
            "name": _maybe(
                st.fixed_dictionaries(
                    {}, optional={"givenName": _maybe(text), "familyName": _maybe(text)}
                )
            ),
            "emails": _maybe(emails),
            "password": text,
            "groups": _maybe(st.lists(st.fixed_dictionaries({"value": text}), max_size=2)),
            "id": _maybe(st.sampled_from(ID_PLACEHOLDERS) | text),
            "meta": _maybe(st.fixed_dictionaries({}, optional={"version": text})),
            "roles": _maybe(
                st.lists(
                    st.fixed_dictionaries(
                        {"value": _maybe(st.sampled_from(["admin", "Admin", '{"x": 1}']) | text)},
                        optional={"primary": st.booleans()},
                    ),
                    max_size=2,
                )
            ),
            ENTERPRISE: _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "department": _maybe(text),
                        "manager": _maybe(
                            st.fixed_dictionaries(
                                {"value": st.sampled_from(ID_PLACEHOLDERS) | text}
                            )
                        ),
                    },
                )
            ),
            ROLE_URN: _maybe(
                st.fixed_dictionaries(
                    {"role": _maybe(st.sampled_from(["admin", "MAKER", "viewer", ""]) | text)}
                )
            ),
        },
    )


def member_lists() -> st.SearchStrategy[Any]:
    """``members`` values: the seeded users (of this tenant or another), unknown ids, junk."""
    ids = st.sampled_from(ID_PLACEHOLDERS) | text
    return _maybe(
        st.lists(
            st.fixed_dictionaries(
                {"value": _maybe(ids)},
                optional={"type": st.sampled_from(["User", "Group", "x"]), "display": text},
            ),
            max_size=4,
        )
    )


def groups() -> st.SearchStrategy[dict[str, Any]]:
    """Group bodies: displayName and members, echoes and junk."""
    return st.fixed_dictionaries(
        {},
        optional={
            "schemas": _maybe(st.lists(st.sampled_from([GROUP, USER]), max_size=2)),
            "displayName": _maybe(text | st.sampled_from(["Engineering", "DESIGN", "Sales"])),
            "externalId": _maybe(text),
            "members": member_lists(),
            "id": text,
        },
    )


def operations() -> st.SearchStrategy[dict[str, Any]]:
    """PATCH operations: any op case, grammar paths, values shaped for them or not."""
    value = st.one_of(
        json_values,
        member_lists(),
        users(),
        st.fixed_dictionaries({"active": st.booleans() | st.sampled_from(["False", "true"])}),
    )
    return st.fixed_dictionaries(
        {"op": _maybe(st.sampled_from(["add", "Add", "replace", "REPLACE", "remove", "Remove"]))},
        optional={"path": _maybe(patch_paths), "value": value},
    )


def patch_bodies() -> st.SearchStrategy[Any]:
    """PatchOp messages, mostly well formed, with 1 to 5 random operations."""
    return _maybe(
        st.fixed_dictionaries(
            {"Operations": _maybe(st.lists(operations(), min_size=1, max_size=5))},
            optional={"schemas": _maybe(st.just([PATCH]))},
        )
    )


search_bodies = st.fixed_dictionaries(
    {},
    optional={
        "schemas": st.just([SEARCH]),
        "filter": _maybe(filter_text),
        "startIndex": _maybe(st.integers(-3, 1001) | big_integers),
        "count": _maybe(st.integers(-3, 1001) | big_integers),
        "attributes": _maybe(st.lists(st.sampled_from(PATCH_ATTRIBUTES) | text, max_size=3)),
        "excludedAttributes": _maybe(st.lists(st.sampled_from(["members", "groups"]), max_size=2)),
        "sortBy": _maybe(st.sampled_from(PATCH_ATTRIBUTES) | text),
        "sortOrder": _maybe(st.sampled_from(["ascending", "DESCENDING", "sideways"])),
        "cursor": _maybe(st.just("") | text),
    },
)


def json_bodies() -> st.SearchStrategy[bytes | Padded]:
    """Any body a SCIM endpoint might get: shaped JSON, any JSON, bytes, too much."""
    documents = st.one_of(users(), groups(), patch_bodies(), search_bodies, json_values)
    return st.one_of(
        st.builds(dumps, documents, st.booleans()),
        st.binary(max_size=64),
        st.sampled_from([b"", b" ", b"{", b"null", b"[]", b'{"Operations": []}', b"\xff\xfe{}"]),
        st.builds(
            Padded,
            st.just(b'{"userName": "'),
            st.integers(SCIM_MAX_BODY - 20, SCIM_MAX_BODY + 2),
            st.just(b'"}'),
        ),
    )


# -- requests ---------------------------------------------------------------------------

METHODS = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    st.sampled_from(["HEAD", "OPTIONS", "TRACE", "PROPFIND", "get", "Patch", "M-SEARCH"]),
    st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/scim+json",
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/SCIM+JSON;charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        ";",
    ]
)
SCIM_RESOURCES = [
    "Users",
    "Groups",
    "users",
    "GROUPS",
    "Schemas",
    "ResourceTypes",
    "ServiceProviderConfig",
    "serviceproviderconfig",
    "Bulk",
    "Me",
    ".search",
]
ODD_SEGMENTS = ["..", ".", "%2F", "%2e%2e", "", "User", "Group", USER, GROUP, ".search", "ü☃"]


def authorizations() -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """No Authorization, each seeded token (its own tenant, another, SCIM off, revoked), junk."""
    tokens = st.sampled_from(TOKEN_PLACEHOLDERS)
    value = st.one_of(
        tokens.map(lambda t: f"Bearer {t}"),
        tokens.map(lambda t: f"Bearer {t}"),
        tokens.map(lambda t: f"  bearer   {t}  "),
        tokens.map(lambda t: f"Bearer {t[:-1]}"),
        header_text.map(lambda t: f"Bearer {t}"),
        st.sampled_from(["Basic YTpi", "Bearer", "Bearer ", "Token x"]),
        header_text,
    )
    return st.one_of(st.just(()), value.map(lambda v: (("Authorization", v),)))


def other_headers() -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """Content-Type, If-Match, If-None-Match, Accept and invented headers, some huge."""
    etags = st.one_of(
        st.integers(0, 5).map(lambda v: f'W/"{v}"'),
        st.sampled_from(["*", '"1"', "W/", '"', ", ,", 'W/"1", W/"2"']),
        header_text,
    )
    header = st.one_of(
        st.tuples(st.just("Content-Type"), CONTENT_TYPES | header_text),
        st.tuples(st.sampled_from(["If-Match", "If-None-Match"]), etags),
        st.tuples(st.just("Accept"), st.sampled_from(["application/scim+json", "*/*", "x"])),
        st.tuples(header_names, header_text),
        st.tuples(header_names, st.integers(1000, 8000).map(lambda n: "h" * n)),  # a huge header
    )
    return st.lists(header, max_size=4).map(tuple)


def scim_paths() -> st.SearchStrategy[str]:
    """Known endpoints with ids, odd segments and random tails, under the prefix or near it."""
    ids = ID_PLACEHOLDERS
    segment = st.one_of(st.sampled_from(ids), st.sampled_from(ODD_SEGMENTS), text)
    prefix = st.sampled_from([SCIM, SCIM, SCIM, f"{SCIM}/", "/scim", f"{SCIM}x", "", SAML])
    resource = st.sampled_from(SCIM_RESOURCES) | text
    return st.builds(
        lambda p, r, rest, sep: p + sep + r + "".join(f"/{s}" for s in rest),
        prefix,
        resource,
        st.lists(segment, max_size=3),
        st.sampled_from(["/", "/", "/", "//"]),
    )


QUERY_NAMES = [
    "filter",
    "startIndex",
    "count",
    "attributes",
    "excludedAttributes",
    "sortBy",
    "sortOrder",
    "cursor",
    "STARTINDEX",
    "Filter",
]


def query_pairs() -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """Query strings: every list parameter with grammar filters, huge ints, junk; repeated keys."""
    pair = st.one_of(
        st.tuples(st.just("filter"), filter_text),
        st.tuples(st.sampled_from(["startIndex", "count", "STARTINDEX", "Count"]), integer_text),
        st.tuples(st.sampled_from(["startIndex", "count"]), big_integers.map(str)),
        st.tuples(
            st.sampled_from(["attributes", "excludedAttributes", "sortBy"]),
            st.lists(st.sampled_from(PATCH_ATTRIBUTES) | text, max_size=3).map(",".join),
        ),
        st.tuples(st.just("sortOrder"), st.sampled_from(["ascending", "descending", "x"])),
        st.tuples(st.just("cursor"), st.just("") | text | st.from_regex(r"[A-Za-z0-9_-]{0,60}")),
        st.tuples(st.sampled_from(QUERY_NAMES) | text, text),
    )
    return st.lists(pair, max_size=5).map(tuple)


def any_requests() -> st.SearchStrategy[Sent]:
    """Random methods, paths, headers, query strings and bodies, mostly aimed at SCIM."""
    return st.builds(
        lambda method, path, query, auth, headers, body: Sent(
            method, path, query, auth + headers, body
        ),
        METHODS,
        scim_paths() | saml_paths(),
        query_pairs(),
        authorizations(),
        other_headers(),
        json_bodies(),
    )


def _scim(
    method: st.SearchStrategy[str],
    path: st.SearchStrategy[str],
    body: st.SearchStrategy[bytes],
    query: st.SearchStrategy[tuple[tuple[str, str], ...]] | None = None,
) -> st.SearchStrategy[Sent]:
    """Requests with a mostly valid token and JSON content type, so the body gets parsed."""
    valid = st.just((("Authorization", "Bearer {{token:acme}}"),))
    auth = st.one_of(valid, valid, valid, valid, authorizations())
    headers = st.one_of(
        st.just((("Content-Type", "application/scim+json"),)),
        other_headers(),
    )
    return st.builds(
        lambda m, p, q, a, h, b: Sent(m, p, q, a + h, b),
        method,
        path,
        query if query is not None else st.just(()),
        auth,
        headers,
        body,
    )


def item_paths(resource: str) -> st.SearchStrategy[str]:
    """``/Users/<id>`` or ``/Groups/<id>``: a seeded id of either tenant, or junk."""
    ids = st.sampled_from(ID_PLACEHOLDERS) | text
    return ids.map(lambda i: f"{SCIM}/{resource}/{i}")


def searches() -> st.SearchStrategy[Sent]:
    """List and search requests: GET with query strings, POST .search with SearchRequests."""
    resource = st.sampled_from(["Users", "Groups"])
    listing = _scim(
        st.just("GET"),
        resource.map(lambda r: f"{SCIM}/{r}"),
        st.just(b""),
        query_pairs(),
    )
    search = _scim(
        st.just("POST"),
        resource.map(lambda r: f"{SCIM}/{r}/.search"),
        st.builds(dumps, _maybe(search_bodies), st.booleans()),
    )
    return listing | search


def writes() -> st.SearchStrategy[Sent]:
    """POST and PUT of Users and Groups with shaped bodies, and DELETE."""
    user_body = st.builds(dumps, users(), st.booleans())
    group_body = st.builds(dumps, groups(), st.booleans())
    return st.one_of(
        _scim(st.just("POST"), st.just(f"{SCIM}/Users"), user_body),
        _scim(st.just("PUT"), item_paths("Users"), user_body),
        _scim(st.just("POST"), st.just(f"{SCIM}/Groups"), group_body),
        _scim(st.just("PUT"), item_paths("Groups"), group_body),
        _scim(
            st.just("DELETE"),
            item_paths("Users") | item_paths("Groups"),
            st.just(b""),
        ),
    )


def patches() -> st.SearchStrategy[Sent]:
    """PATCH of Users and Groups with grammar paths."""
    body = st.builds(dumps, patch_bodies(), st.booleans())
    path = item_paths("Users") | item_paths("Groups")
    return _scim(st.just("PATCH"), path, body, st.just(()) | query_pairs())


# -- SAML ---------------------------------------------------------------------------------

SLUGS = st.sampled_from(["acme", "globex", "initech", "nobody", "ACME"]) | text


def saml_paths() -> st.SearchStrategy[str]:
    """The three endpoints of each workspace, with odd slugs and tails."""
    endpoint = st.sampled_from(["metadata", "login", "acs", "ACS", "finish"]) | text
    tail = st.sampled_from(["", "", "/", "/x", "//"])
    return st.builds(lambda s, e, t: f"{SAML}/{s}/{e}{t}", SLUGS, endpoint, tail)


relay_states = st.one_of(
    st.sampled_from(["/projects/7", "//evil.example", "https://evil.example", "/a\\b", ""]),
    text,
    text.map(lambda t: "/" + t),
    st.integers(1000, 3000).map(lambda n: "/" + "r" * n),
)


def logins() -> st.SearchStrategy[Sent]:
    """Sign-in starts and metadata reads with random RelayState and methods."""
    query = st.lists(
        st.tuples(st.sampled_from(["RelayState", "next", "relaystate", "x"]), relay_states),
        max_size=3,
    ).map(tuple)
    return st.builds(
        lambda m, s, e, q, h: Sent(m, f"{SAML}/{s}/{e}", q, h),
        st.sampled_from(["GET", "GET", "HEAD", "POST", "DELETE"]),
        SLUGS,
        st.sampled_from(["login", "metadata"]),
        query,
        other_headers(),
    )


def saml_responses() -> st.SearchStrategy[str | Signed]:
    """SAMLResponse values: the test IdPs' signed responses, mutated; random base64, XML, text."""
    signed = st.builds(
        Signed,
        st.sampled_from(SAML_RESPONSES),
        st.sampled_from(sorted(MUTATIONS)),
        st.integers(0, 10**6),
        st.integers(0, 7),
    )
    xml = st.sampled_from(
        [
            b"<samlp:Response/>",
            b'<Response InResponseTo="id-acme-1"/>',
            b'<?xml version="1.0"?><x:y xmlns:x="urn:x"/>',
            b"<a>" * 50,
        ]
    )
    return st.one_of(
        signed,
        signed,
        signed,
        st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        xml.map(lambda b: base64.b64encode(b).decode()),
        text,
    )


def acs_posts() -> st.SearchStrategy[Sent]:
    """ACS form posts: signed responses and their mutations, duplicated and extra fields."""
    field = st.one_of(
        st.tuples(st.just("SAMLResponse"), saml_responses()),
        st.tuples(st.just("RelayState"), relay_states),
        st.tuples(st.sampled_from(["samlresponse", "SAMLRequest", "SigAlg"]) | text, text),
    )
    fields = st.tuples(
        st.tuples(st.just("SAMLResponse"), saml_responses()),
        st.lists(field, max_size=12),
        st.booleans(),
    ).map(lambda t: [t[0], *t[1]] if t[2] else [*t[1], t[0]])
    form = st.builds(
        lambda pairs, encoding: Form(tuple(pairs), encoding),
        fields,
        st.sampled_from(["utf-8", "utf-8", "latin-1"]),
    )
    body: st.SearchStrategy[bytes | Form | Padded] = st.one_of(
        form,
        form,
        form,
        st.binary(max_size=64),
        st.builds(
            Padded, st.just(b"SAMLResponse="), st.integers(SAML_MAX_BODY - 20, SAML_MAX_BODY + 20)
        ),
    )
    content_type = st.one_of(
        st.just("application/x-www-form-urlencoded"),
        st.just("application/x-www-form-urlencoded"),
        st.just("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        CONTENT_TYPES,
    )
    return st.builds(
        lambda slug, ct, extra, b, q: Sent(
            "POST", f"{SAML}/{slug}/acs", q, (("Content-Type", ct), *extra), b
        ),
        st.sampled_from(["acme", "acme", "globex", "initech", "nobody"]),
        content_type,
        other_headers(),
        body,
        st.just(()) | query_pairs(),
    )
