"""The provisioning conversations of Okta, Entra ID, OneLogin and JumpCloud, step by step.

:class:`Conversation` holds the steps every IdP takes (test the connection,
push users, look them up, update a profile, push a group, deactivate,
reactivate, import, unassign) and the checks it makes on each answer. A
profile subclass says only what differs: its headers and the shapes of its
bodies (PUT or PATCH, the case of ``op``, string booleans, how members are
removed) and the few steps only it takes.

A step is a method that sends requests and raises
:class:`~pbidentity.simulate._checks.Failure` or
:class:`~pbidentity.simulate._checks.Skip`; what later steps need (the users'
ids, the pushed group) is recorded on the conversation. A step that needs
what an earlier, failed step should have made is skipped, so one fault gives
one FAIL line. Nothing here prints or decides the exit status: the runner in
:mod:`pbidentity.simulate` does.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

import attrs

from pbidentity import __version__
from pbidentity.simulate._checks import SCIM_MEDIA_TYPE
from pbidentity.simulate._checks import Failure
from pbidentity.simulate._checks import Judge
from pbidentity.simulate._checks import Skip
from pbidentity.simulate._checks import failure
from pbidentity.simulate._checks import field
from pbidentity.simulate._checks import json_value
from pbidentity.simulate._checks import member_ids
from pbidentity.simulate._http import Client
from pbidentity.simulate._http import Response

__all__ = [
    "CONVERSATIONS",
    "Conversation",
    "Entra",
    "Entra2020",
    "JumpCloud",
    "OktaCatalog",
    "OktaCustom",
    "OneLogin",
    "Step",
]

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
EXTENSION_PREFIX = "urn:ietf:params:scim:schemas:extension:"
ONELOGIN_TEMPLATE_SCHEMA = "urn:scim:schemas:core:2.0"
ENTRA_ROLE_TYPE = "WindowsAzureActiveDirectoryRole"

GIVEN_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
FAMILY_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")

#: Group steps need three members: one removed, one deactivated, one kept.
MIN_USERS = 3

Json = dict[str, Any]
#: An attribute as a path: ``("name", "givenName")``, ``(extension URN, "role")``,
#: or with a filter element, ``('emails[type eq "work"]', "value")``.
AttrPath = tuple[str, ...]
Changes = Mapping[AttrPath, Any]
Progress = Callable[[str], None]

_FILTERED = re.compile(r'^(\w+)\[type eq "(\w+)"\]$')


@attrs.define
class Person:
    """A user as the IdP knows it; the IdP's values, not the server's."""

    number: int
    user_name: str
    given_name: str
    family_name: str
    external_id: str
    #: The role attribute value the IdP sends; ``None``: it sends none.
    role: str | None = None

    @property
    def display_name(self) -> str:
        """``Given Family``."""
        return f"{self.given_name} {self.family_name}"


@attrs.define
class User:
    """A user the IdP provisioned: the person and the id the server gave it."""

    person: Person
    id: str
    #: ``None`` while a change of ``active`` was sent but its answer not yet accepted.
    active: bool | None = True


@attrs.define
class PushedGroup:
    """A group the IdP pushed, with the members it believes the group has."""

    id: str
    name: str
    members: list[str]


@attrs.frozen
class RoleAttribute:
    """The app's role attribute, as ``/Schemas`` describes it."""

    urn: str
    values: tuple[str, ...]
    returned: str


@attrs.frozen
class Step:
    """One step of a conversation: a name for the report and what it does."""

    name: str
    run: Callable[[], None]


def _dotted(path: AttrPath) -> str:
    """``name.givenName``, or ``urn:...:User:employeeNumber`` for an extension attribute."""
    if path[0].startswith("urn:"):
        return ":".join(path[:2]) + "".join(f".{part}" for part in path[2:])
    return ".".join(path)


def _nested(changes: Changes) -> Json:
    """``{("name", "givenName"): "K"}`` as ``{"name": {"givenName": "K"}}``."""
    document: Json = {}
    for path, value in changes.items():
        _put(document, path, value)
    return document


def _put(document: Json, path: AttrPath, value: Any) -> None:
    *parents, last = path
    for part in parents:
        if _FILTERED.match(part):  # only Entra sends these, and only as paths
            raise ValueError(f"cannot nest the filtered path {part!r}")
        child = document.get(part)
        if not isinstance(child, dict):
            child = document[part] = {}
        document = child
    document[last] = value


def _read(resource: Json, path: AttrPath) -> Any:
    """The value at ``path`` in a server's answer (names case-insensitive); ``None`` if absent."""
    value: Any = resource
    for part in path:
        if not isinstance(value, dict):
            return None
        filtered = _FILTERED.match(part)
        if filtered:
            items = field(value, filtered.group(1))
            wanted = filtered.group(2)
            matches = [
                item
                for item in (items if isinstance(items, list) else [])
                if isinstance(item, dict) and field(item, "type") == wanted
            ]
            value = matches[0] if matches else None
        else:
            value = field(value, part)
    return value


def _count(query: Sequence[tuple[str, str]]) -> int | None:
    """The ``count`` a query asks for, if it asks."""
    counts = [int(value) for name, value in query if name == "count"]
    return counts[0] if counts else None


def _random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Conversation:
    """What every IdP does, in order; subclasses give the shapes of what they send.

    ``users`` people are pushed (named ``sim-<run id>-<n>@example.com`` so that
    runs never collide), plus one that exists before the IdP links it.
    ``progress`` receives a line now and then during long steps.
    """

    #: The profile name, as given on the command line.
    profile: ClassVar[str]
    #: One line saying which IdP configuration this is.
    description: ClassVar[str]
    headers: ClassVar[Mapping[str, str]] = {}
    content_type: ClassVar[str] = SCIM_MEDIA_TYPE
    #: Entra's validator requires ``application/scim+json`` on every answer.
    scim_media_type: ClassVar[bool] = False
    plus_for_spaces: ClassVar[bool] = False
    page_size: ClassVar[int] = 100
    #: Whether a user PATCH must answer 200 with the user; otherwise 204 is taken too.
    user_patch_200: ClassVar[bool] = False
    user_answer: ClassVar[str] = "with the user"
    #: The name of the unassign step, which says what this IdP does.
    unassign_name: ClassVar[str] = "unassign users: deactivate them"
    remove_members_name: ClassVar[str] = "remove a member by filter and add one in one request"

    def __init__(self, client: Client, *, users: int, run_id: str, progress: Progress) -> None:
        self.client = client
        self.judge = Judge(scim_media_type=self.scim_media_type)
        self.run_id = run_id
        self.progress = progress
        self.people = [self.person(number) for number in range(1, users + 1)]
        self.users: list[User] = []
        self.linked: User | None = None
        self.group: PushedGroup | None = None
        self.role: RoleAttribute | None = None
        self.no_role = "the role attribute was not looked for"
        self.placeholder_password = _random_text(12)

    # ------------------------------------------------------------------ the steps

    def steps(self) -> list[Step]:
        """The conversation, in the order the IdP has it."""
        return [
            *self.discovery_steps(),
            Step("refuse a wrong token with 401", self.refuse_wrong_token),
            Step("test connection", self.test_connection),
            Step("push new users: look up, then create", self.push_users),
            Step("refuse a duplicate userName with 409", self.refuse_duplicate),
            Step("find a user by its upper-cased userName", self.find_upper_cased),
            *self.lookup_steps(),
            Step("link a user that already exists", self.link_existing),
            *self.role_steps(),
            Step("update a profile", self.update_profile),
            Step("look up a group by displayName", self.look_up_group),
            Step("create a group", self.create_group),
            *self.group_read_steps(),
            Step("add members", self.add_members_step),
            *self.repeat_steps(),
            Step("rename a group", self.rename_group_step),
            Step(self.remove_members_name, self.change_members_step),
            *self.overwrite_steps(),
            Step("deactivate a user", self.deactivate),
            Step("keep a deactivated user readable and in its groups", self.keep_deactivated),
            Step("reactivate the same user", self.reactivate),
            Step("import users page by page", self.import_users),
            Step(self.unassign_name, self.unassign_users),
            Step("delete the group", self.delete_group),
        ]

    def discovery_steps(self) -> list[Step]:
        """Reading ``/Schemas`` for the role attribute, for the IdPs that send a role."""
        return []

    def lookup_steps(self) -> list[Step]:
        """Lookups other than by userName."""
        return []

    def role_steps(self) -> list[Step]:
        """How this IdP sends a role after creation."""
        return []

    def group_read_steps(self) -> list[Step]:
        """Reads of the new group particular to this IdP."""
        return []

    def repeat_steps(self) -> list[Step]:
        """Membership requests this IdP repeats."""
        return []

    def overwrite_steps(self) -> list[Step]:
        """Authoritative membership overwrites."""
        return []

    # ------------------------------------------------------------------ shapes to override

    def external_id(self) -> str:
        """The IdP's own id for a user, in its format."""
        raise NotImplementedError

    def user_filter(self, user_name: str) -> list[tuple[str, str]]:
        """The query of a lookup by userName."""
        return [("filter", f'userName eq "{user_name}"')]

    def group_filter(self, name: str) -> list[tuple[str, str]]:
        """The query of a lookup by displayName."""
        return [("filter", f'displayName eq "{name}"')]

    def user_body(self, person: Person) -> Json:
        """The body of ``POST /Users``."""
        raise NotImplementedError

    def update_user(self, user: User, changes: Changes) -> Response:
        """Send a profile change the way this IdP does."""
        raise NotImplementedError

    def set_active(self, user: User, active: bool) -> Response:
        """Deactivate or reactivate the way this IdP does."""
        raise NotImplementedError

    def test_connection(self) -> None:
        """What the admin's "Test connection" button sends, and what it checks."""
        raise NotImplementedError

    def group_body(self, name: str, members: Sequence[str]) -> Json:
        """The body of ``POST /Groups``."""
        return {"schemas": [CORE_GROUP], "displayName": name, "members": self.refs(members)}

    def initial_members(self) -> list[str]:
        """The members a new group is created with."""
        return []

    def add_members(self, group: PushedGroup, ids: Sequence[str]) -> Response:
        """Add members the way this IdP does."""
        return self.patch_group(group, [{"op": "add", "path": "members", "value": self.refs(ids)}])

    def rename_group(self, group: PushedGroup, name: str) -> Response:
        """Rename a group the way this IdP does."""
        return self.patch_group(group, [{"op": "replace", "path": "displayName", "value": name}])

    def change_members(
        self, group: PushedGroup, remove: Sequence[str], add: Sequence[str]
    ) -> Response:
        """Remove some members and add others in one request."""
        operations: list[Json] = [
            {"op": "remove", "path": f'members[value eq "{member}"]'} for member in remove
        ]
        if add:
            operations.append({"op": "add", "path": "members", "value": self.refs(add)})
        return self.patch_group(group, operations)

    def profile_changes(self, user: User) -> Changes:
        """What the profile update step changes."""
        number = user.person.number
        return {
            ("name", "givenName"): f"{GIVEN_NAMES[number % len(GIVEN_NAMES)]}ine",
            ("name", "familyName"): f"{user.person.family_name}-Smith",
        }

    def unassign(self, user: User) -> None:
        """Take the app away from a user: deactivation, unless the IdP deletes."""
        if user.active is not False:
            self.switch(user, active=False)

    # ------------------------------------------------------------------ what the steps share

    def person(self, number: int, label: str | None = None) -> Person:
        """A person of this run; ``label`` replaces the number in the userName."""
        return Person(
            number=number,
            user_name=f"sim-{self.run_id}-{label or number}@example.com",
            given_name=GIVEN_NAMES[number % len(GIVEN_NAMES)],
            family_name=FAMILY_NAMES[number % len(FAMILY_NAMES)],
            external_id=self.external_id(),
        )

    def need_users(self, count: int) -> list[User]:
        """The first ``count`` pushed users, or a skip when the push failed before them."""
        if len(self.users) < count:
            raise Skip(
                f"needs {count} user{'s' if count > 1 else ''} from 'push new users', which failed"
            )
        return self.users[:count]

    def need_group(self) -> PushedGroup:
        """The pushed group, or a skip when it could not be created."""
        if self.group is None:
            raise Skip("needs the group from 'create a group', which failed")
        return self.group

    def tick(self, what: str, done: int, total: int) -> None:
        """Report progress about ten times during a long step."""
        if total >= 20 and (done % max(total // 10, 1) == 0 or done == total):
            self.progress(f"{what}: {done}/{total}")

    def refs(self, ids: Iterable[str]) -> list[Json]:
        """Member references as the IdP sends them."""
        return [{"value": member} for member in ids]

    def patch(self, path: str, operations: list[Json]) -> Response:
        """A PATCH request with the PatchOp schema."""
        return self.client.send(
            "PATCH", path, body={"schemas": [PATCH_OP], "Operations": operations}
        )

    def patch_group(self, group: PushedGroup, operations: list[Json]) -> Response:
        """A PATCH of the pushed group."""
        return self.patch(f"/Groups/{group.id}", operations)

    def get_user(self, user: User, what: str) -> tuple[Json, Response]:
        """Read a user by id and check it is the same user."""
        response = self.client.get(f"/Users/{user.id}")
        resource = self.judge.resource(response, 200, what=what)
        if field(resource, "id") != user.id:
            raise failure(f"the user {user.id}", response)
        return resource, response

    def lookup_user(self, user_name: str) -> tuple[list[Json], Response]:
        """Look a user up by userName as this IdP does; only that userName may come back."""
        query = self.user_filter(user_name)
        response = self.client.get("/Users", query)
        resources = self.judge.listing(response, count=_count(query))
        for resource in resources:
            found = field(resource, "userName")
            if not isinstance(found, str) or found.casefold() != user_name.casefold():
                raise failure(
                    f"only users named {user_name} (the filter was ignored?), "
                    f"got {json_value(found)} among {len(resources)}",
                    response,
                )
        return resources, response

    def expect_user(self, response: Response, user: User, *, active: bool) -> Json:
        """Check a user update's answer: 200 with the same user, ``active`` as expected.

        A PATCH may answer 204 (RFC 7644 §3.5.2) where the IdP takes it; the
        user is then read back instead.
        """
        if response.status == 204 and response.method == "PATCH" and not self.user_patch_200:
            resource, response = self.get_user(user, "after a PATCH answered 204")
        else:
            resource = self.judge.resource(response, 200, what=self.user_answer)
            if field(resource, "id") != user.id:
                raise failure(f"the same id {user.id}", response)
        self.judge.active(resource, active, response)
        return resource

    def switch(self, user: User, *, active: bool) -> None:
        """Deactivate or reactivate ``user`` and check the answer."""
        # Until the answer is accepted, whether the server changed the user is unknown.
        user.active = None
        self.expect_user(self.set_active(user, active), user, active=active)
        user.active = active

    def check_group(self, group: PushedGroup, what: str) -> Json:
        """Read the group back: its name and exactly the members the IdP believes it has."""
        response = self.client.get(f"/Groups/{group.id}")
        resource = self.judge.resource(response, 200, what="with the group")
        name = field(resource, "displayName")
        if name != group.name:
            raise failure(f"displayName {json_value(group.name)} {what}", response)
        found = member_ids(resource)
        if len(found) != len(set(found)):
            raise failure(f"each member listed once {what}", response)
        if set(found) != set(group.members):
            missing = sorted(set(group.members) - set(found))
            extra = sorted(set(found) - set(group.members))
            raise failure(
                f"members {sorted(group.members)} {what} (missing {missing}, unexpected {extra})",
                response,
            )
        return resource

    # ------------------------------------------------------------------ shared steps

    def discover_role(self) -> None:
        """Find the app's role attribute: an extension ``...:User`` schema with ``role``."""
        response = self.client.get("/Schemas")
        document = response.document
        if response.status != 200 or not isinstance(document, dict):
            self.no_role = f"GET /Schemas answered {response.status}"
            raise Skip(f"no role attribute: {self.no_role}")
        schemas = field(document, "Resources")
        for schema in schemas if isinstance(schemas, list) else []:
            urn = field(schema, "id") if isinstance(schema, dict) else None
            if (
                not isinstance(urn, str)
                or not urn.lower().startswith(EXTENSION_PREFIX)
                or not urn.endswith(":User")
                or urn.lower() == ENTERPRISE_USER.lower()
            ):
                continue
            for attribute in field(schema, "attributes") or []:
                if isinstance(attribute, dict) and str(field(attribute, "name")).lower() == "role":
                    values = tuple(str(v) for v in field(attribute, "canonicalValues") or ())
                    returned = str(field(attribute, "returned") or "default").lower()
                    self.role = RoleAttribute(urn=urn, values=values, returned=returned)
                    self.assign_roles()
                    self.progress(f"role attribute: {urn} {list(values)}")
                    return
        self.no_role = "/Schemas lists no extension schema '...:User' with a 'role' attribute"
        raise Skip(f"no role attribute: {self.no_role}")

    def assign_roles(self) -> None:
        """Decide the role each person is sent with, once the role attribute is known."""

    def refuse_wrong_token(self) -> None:
        """A wrong bearer token must get 401 with a SCIM Error body, and no data."""
        wrong = f"sim-wrong-{secrets.token_hex(16)}"
        response = self.client.send(
            "GET", "/Users", query=[("startIndex", "1"), ("count", "1")], token=wrong
        )
        self.judge.error(response, 401)

    def push_users(self) -> None:
        """For each person: the lookup finds nobody, then POST creates the user (201, an id)."""
        total = len(self.people)
        for done, person in enumerate(self.people, 1):
            found, response = self.lookup_user(person.user_name)
            if found:
                raise failure(f"no user named {person.user_name} before the push", response)
            response = self.client.send("POST", "/Users", body=self.user_body(person))
            resource = self.judge.resource(response, 201, what="with the created user")
            name = field(resource, "userName")
            if not isinstance(name, str) or name.casefold() != person.user_name.casefold():
                raise failure(f"userName {json_value(person.user_name)}", response)
            if field(resource, "active") not in (None, True):
                raise failure("a new user active (true)", response)
            self.users.append(User(person=person, id=field(resource, "id")))
            self.tick("push new users", done, total)

    def refuse_duplicate(self) -> None:
        """Creating the same userName again must be 409 with a SCIM Error body."""
        user = self.need_users(1)[0]
        response = self.client.send("POST", "/Users", body=self.user_body(user.person))
        self.judge.error(response, 409)

    def find_upper_cased(self) -> None:
        """The lookup ignores case (RFC 7643 §4.1.1): Okta's own test searches it upper-cased."""
        user = self.need_users(1)[0]
        found, response = self.lookup_user(user.person.user_name.upper())
        ids = [field(resource, "id") for resource in found]
        if ids != [user.id]:
            raise failure(f"exactly the user {user.id}, got {ids}", response)

    def link_existing(self) -> None:
        """A user the app had before: the IdP's lookup finds it, and it is updated, not created."""
        person = self.person(0, label="existing")
        # The app's own record, made before provisioning: no externalId, nothing IdP-specific.
        response = self.client.send(
            "POST",
            "/Users",
            body={
                "schemas": [CORE_USER],
                "userName": person.user_name,
                "name": {"givenName": person.given_name, "familyName": person.family_name},
                "emails": [{"value": person.user_name, "type": "work", "primary": True}],
                "active": True,
            },
        )
        existing = field(self.judge.resource(response, 201, what="for the app's own user"), "id")
        found, response = self.lookup_user(person.user_name)
        ids = [field(resource, "id") for resource in found]
        if ids != [existing]:
            raise failure(f"the lookup to find the existing user {existing}, got {ids}", response)
        user = User(person=person, id=existing)
        changes = {
            ("externalId",): person.external_id,
            ("name", "givenName"): person.given_name,
        }
        self.expect_user(self.update_user(user, changes), user, active=True)
        self.linked = user

    def update_profile(self) -> None:
        """A profile change: 200 with the user; read back, the change is there, still active."""
        user = self.need_users(1)[0]
        changes = self.profile_changes(user)
        response = self.update_user(user, changes)
        self.expect_user(response, user, active=True)
        resource, response = self.get_user(user, "after the update")
        for path, value in changes.items():
            found = _read(resource, path)
            if found != value:
                raise failure(
                    f"{_dotted(path)} {json_value(value)} after the update, "
                    f"got {json_value(found)}",
                    response,
                )
        self.judge.active(resource, True, response)
        user.person.given_name = changes.get(("name", "givenName"), user.person.given_name)
        user.person.family_name = changes.get(("name", "familyName"), user.person.family_name)

    def look_up_group(self) -> None:
        """The IdP looks the group up by displayName before creating it: nothing yet."""
        name = f"sim-{self.run_id} Engineering"
        query = self.group_filter(name)
        response = self.client.get("/Groups", query)
        found = self.judge.listing(response, count=_count(query))
        if found:
            names = [field(resource, "displayName") for resource in found]
            raise failure(f"no group named {name} yet, got {names}", response)

    def create_group(self) -> None:
        """POST /Groups: 201 with an id, the name and the members sent."""
        name = f"sim-{self.run_id} Engineering"
        members = self.initial_members()
        response = self.client.send("POST", "/Groups", body=self.group_body(name, members))
        resource = self.judge.resource(response, 201, what="with the created group")
        if field(resource, "displayName") != name:
            raise failure(f"displayName {json_value(name)}", response)
        if field(resource, "members") is not None and set(member_ids(resource)) != set(members):
            raise failure(f"members {members}", response)
        self.group = PushedGroup(id=field(resource, "id"), name=name, members=list(members))

    def add_members_step(self) -> None:
        """Add three users; read back, the group has exactly them."""
        group = self.need_group()
        new = [user.id for user in self.need_users(MIN_USERS) if user.id not in group.members]
        self.judge.status(self.add_members(group, new), 200, 204)
        group.members.extend(new)
        self.check_group(group, "after adding members")

    def rename_group_step(self) -> None:
        """A rename keeps every member (a rename that empties a group is a known bug)."""
        group = self.need_group()
        name = f"{group.name} Renamed"
        self.judge.status(self.rename_group(group, name), 200, 204)
        group.name = name
        self.check_group(group, "after the rename")

    def change_members_step(self) -> None:
        """Remove exactly one member (never all of them) and add another in the same request."""
        group = self.need_group()
        users = self.need_users(MIN_USERS)
        remove = [users[1].id]
        add = [self.linked.id] if self.linked is not None else []
        self.judge.status(self.change_members(group, remove, add), 200, 204)
        group.members = [m for m in group.members if m not in remove] + add
        self.check_group(group, "after removing one member")

    def deactivate(self) -> None:
        """``active: false``: 200 with the user, and active false."""
        user = self.need_users(1)[0]
        self.switch(user, active=False)

    def keep_deactivated(self) -> None:
        """A deactivated user stays readable (200, active false), findable, and in its groups."""
        user = self.need_users(1)[0]
        if user.active is not False:
            raise Skip("needs the user from 'deactivate a user', which failed")
        resource, response = self.get_user(user, "for a deactivated user")
        self.judge.active(resource, False, response)
        found, response = self.lookup_user(user.person.user_name)
        if [field(r, "id") for r in found] != [user.id]:
            raise failure(f"the lookup to find the deactivated user {user.id}", response)
        if self.group is not None and user.id in self.group.members:
            self.check_group(self.group, "with the deactivated user still a member")

    def reactivate(self) -> None:
        """``active: true``: the same id comes back active, also in the IdP's lookup."""
        user = self.need_users(1)[0]
        if user.active is not False:
            raise Skip("needs the user from 'deactivate a user', which failed")
        self.switch(user, active=True)
        resource, response = self.get_user(user, "for the reactivated user")
        self.judge.active(resource, True, response)
        # A lookup that still says active:false makes Okta reactivate again and again.
        found, response = self.lookup_user(user.person.user_name)
        if [field(r, "id") for r in found] != [user.id]:
            raise failure(f"the lookup to find the reactivated user {user.id}", response)
        self.judge.active(found[0], True, response)

    def import_users(self) -> None:
        """Read every user with startIndex/count paging: each once, ours all there and active."""
        expected = [user for user in [*self.users, self.linked] if user is not None]
        if not expected:
            raise Skip("needs the users from 'push new users', which failed")
        seen: dict[str, Json] = {}
        start, pages, total = 1, 0, 0
        while True:
            response = self.client.get(
                "/Users", [("startIndex", str(start)), ("count", str(self.page_size))]
            )
            resources = self.judge.listing(response, count=self.page_size)
            total = field(response.document, "totalResults")
            first = field(response.document, "startIndex")
            if first is not None and first != start:
                raise failure(f"startIndex {start} as asked", response)
            for resource in resources:
                identifier = str(field(resource, "id"))
                if identifier in seen:
                    raise failure(f"each user on one page only; {identifier} came twice", response)
                seen[identifier] = resource
            pages += 1
            if pages % 20 == 0:
                self.progress(f"import users: {len(seen)}/{total}")
            if not resources or len(seen) >= total:
                break
            start += len(resources)
        if len(seen) < total:
            raise failure(
                f"totalResults={total} users, but paging stopped after {len(seen)}", response
            )
        missing = [user.person.user_name for user in expected if user.id not in seen]
        if missing:
            raise Failure(
                f"expected every pushed user in the import; missing {missing} "
                f"after reading {len(seen)} users in {pages} pages"
            )
        inactive = [
            user.person.user_name
            for user in expected
            if user.active is True and field(seen[user.id], "active") is False
        ]
        if inactive:
            raise Failure(
                f"expected active users to be imported active; active:false for {inactive}"
            )

    def unassign_users(self) -> None:
        """The end of the run: every user pushed or linked loses the app, as this IdP does it."""
        users = [user for user in [*self.users, self.linked] if user is not None]
        if not users:
            raise Skip("no user was pushed")
        for done, user in enumerate(users, 1):
            self.unassign(user)
            self.tick("unassign users", done, len(users))

    def delete_group(self) -> None:
        """DELETE /Groups/{id}: 204, then the group is gone (404)."""
        group = self.need_group()
        self.judge.status(self.client.send("DELETE", f"/Groups/{group.id}"), 204, 200)
        response = self.client.get(f"/Groups/{group.id}")
        self.judge.status(response, 404, what="for a deleted group")
        self.group = None


class _Okta(Conversation):
    """Okta: the shared parts of custom and catalogue app integrations."""

    headers: ClassVar[Mapping[str, str]] = {
        "User-Agent": "Okta SCIM Client 1.0.0",
        "Accept": SCIM_MEDIA_TYPE,
    }
    content_type = "application/scim+json; charset=utf-8"
    unassign_name = "unassign users: deactivate them (Okta never deletes)"
    #: Whether the role extension URN is listed in ``schemas`` (undocumented: both happen).
    lists_role_urn: ClassVar[bool] = False

    def discovery_steps(self) -> list[Step]:
        return [Step("discover the role attribute in /Schemas", self.discover_role)]

    def role_steps(self) -> list[Step]:
        return [
            Step("read back the role the IdP sent", self.read_back_role),
            Step("accept an empty role", self.empty_role),
        ]

    def external_id(self) -> str:
        return "00u" + _random_text(17)

    def user_filter(self, user_name: str) -> list[tuple[str, str]]:
        return [*super().user_filter(user_name), ("startIndex", "1"), ("count", "100")]

    def group_filter(self, name: str) -> list[tuple[str, str]]:
        return [*super().group_filter(name), ("startIndex", "1"), ("count", "100")]

    def user_body(self, person: Person) -> Json:
        body: Json = {
            "schemas": [CORE_USER],
            "userName": person.user_name,
            "name": {"givenName": person.given_name, "familyName": person.family_name},
            "emails": [{"primary": True, "value": person.user_name, "type": "work"}],
            "displayName": person.display_name,
            "locale": "en-US",
            "externalId": person.external_id,
            "groups": [],
            # Okta sends a random password even without password sync; servers must ignore it.
            "password": self.placeholder_password,
            "active": True,
        }
        if self.role is not None and person.role is not None:
            body[self.role.urn] = {"role": person.role}
            if self.lists_role_urn:
                body["schemas"].append(self.role.urn)
        return body

    def refs(self, ids: Iterable[str]) -> list[Json]:
        names = {user.id: user.person.user_name for user in [*self.users, self.linked] if user}
        return [{"value": member, "display": names.get(member, member)} for member in ids]

    def test_connection(self) -> None:
        """``GET /Users?startIndex=1&count=2`` (a ListResponse even when empty), then a lookup."""
        response = self.client.get("/Users", [("startIndex", "1"), ("count", "2")])
        self.judge.listing(response, count=2)
        probe = f"sim-{self.run_id}-probe@example.com"
        response = self.client.get(
            "/Users", [("filter", f'userName eq "{probe}"'), ("startIndex", "1"), ("count", "1")]
        )
        if self.judge.listing(response, count=1):
            raise failure(f"no user named {probe}", response)

    def assign_roles(self) -> None:
        """Give each person a role, as an admin does in Okta's assignment dialog."""
        values = self.role.values if self.role is not None else ()
        for person in self.people if values else ():
            # From the end of the list: apps list roles from the most privileged, and a
            # simulated user need not start as an admin.
            person.role = values[-1 - (person.number - 1) % len(values)]

    def read_back_role(self) -> None:
        """GET must return the role extension as sent, or Okta sees drift and pushes again."""
        role = self.need_role()
        if not role.values:
            raise Skip("the role attribute lists no canonicalValues, so no role was sent")
        if role.returned in ("never", "request"):
            raise Skip(f"the role attribute is returned {role.returned!r}")
        user = self.need_users(1)[0]
        resource, response = self.get_user(user, "with the role")
        extension = field(resource, role.urn)
        found = field(extension, "role") if isinstance(extension, dict) else None
        sent = user.person.role or ""
        if not isinstance(found, str) or found.casefold() != sent.casefold():
            raise failure(
                f"{role.urn} role {json_value(sent)} as sent, got {json_value(found)}", response
            )

    def empty_role(self) -> None:
        """Pushing an empty role must not error (Okta sends one when the value is cleared)."""
        role = self.need_role()
        user = self.need_users(2)[1]
        self.expect_user(self.update_user(user, {(role.urn, "role"): ""}), user, active=True)
        user.person.role = ""

    def need_role(self) -> RoleAttribute:
        """The discovered role attribute, or a skip saying why there is none."""
        if self.role is None:
            raise Skip(f"no role attribute: {self.no_role}")
        return self.role


class OktaCustom(_Okta):
    """Okta custom app integration: a GET then a PUT of the whole resource for every change."""

    profile = "okta-custom"
    description = "Okta custom app integration (App Integration Wizard): PUT for every update"
    lists_role_urn = True
    remove_members_name = "replace a group's members with PUT"

    def update_user(self, user: User, changes: Changes) -> Response:
        # Okta reads the user, overlays its changes and PUTs everything back, echoing
        # read-only attributes (id, meta, groups) and a placeholder password.
        resource, _ = self.get_user(user, "before the PUT")
        body = json.loads(json.dumps(resource))
        for path, value in changes.items():
            _put(body, path, value)
        body["password"] = self.placeholder_password
        return self.client.send("PUT", f"/Users/{user.id}", body=body)

    def set_active(self, user: User, active: bool) -> Response:
        return self.update_user(user, {("active",): active})

    def put_group(self, group: PushedGroup, name: str, members: Sequence[str]) -> Response:
        """PUT the whole group as Okta knows it: id, name and the full member list."""
        body = {
            "schemas": [CORE_GROUP],
            "id": group.id,
            "displayName": name,
            "members": self.refs(members),
        }
        return self.client.send("PUT", f"/Groups/{group.id}", body=body)

    def add_members(self, group: PushedGroup, ids: Sequence[str]) -> Response:
        return self.put_group(group, group.name, [*group.members, *ids])

    def rename_group(self, group: PushedGroup, name: str) -> Response:
        return self.put_group(group, name, group.members)

    def change_members(
        self, group: PushedGroup, remove: Sequence[str], add: Sequence[str]
    ) -> Response:
        kept = [member for member in group.members if member not in remove]
        return self.put_group(group, group.name, [*kept, *add])


class OktaCatalog(_Okta):
    """Okta catalogue (OIN) app: PATCH, with Okta's path-less replaces."""

    profile = "okta-catalog"
    description = "Okta catalogue (OIN) app: PATCH for updates, path-less replace of active"

    def overwrite_steps(self) -> list[Step]:
        return [Step("replace all members (Push Now)", self.push_now)]

    def update_user(self, user: User, changes: Changes) -> Response:
        return self.patch(f"/Users/{user.id}", [{"op": "replace", "value": _nested(changes)}])

    def set_active(self, user: User, active: bool) -> Response:
        return self.patch(f"/Users/{user.id}", [{"op": "replace", "value": {"active": active}}])

    def rename_group(self, group: PushedGroup, name: str) -> Response:
        # Okta puts the group's id inside the value; the server must ignore it.
        return self.patch_group(
            group, [{"op": "replace", "value": {"id": group.id, "displayName": name}}]
        )

    def push_now(self) -> None:
        """Okta's "Push Now" replaces ``members`` with its full list: an authoritative overwrite."""
        group = self.need_group()
        users = self.need_users(MIN_USERS)
        members = [users[0].id, users[2].id, users[1].id]
        response = self.patch_group(
            group, [{"op": "replace", "path": "members", "value": self.refs(members)}]
        )
        self.judge.status(response, 200, 204)
        group.members = members
        self.check_group(group, "after replacing all members")


class Entra(Conversation):
    """Microsoft Entra ID without ``aadOptscim062020``: capitalised ops, string booleans."""

    profile = "entra"
    description = 'Microsoft Entra ID, default mode: capitalised ops, "True"/"False" strings'
    scim_media_type = True
    plus_for_spaces = True
    # Entra's validator pages with count=5.
    page_size = 5
    user_patch_200 = True
    user_answer = "with the user (Entra's validator wants the resource back)"
    unassign_name = "unassign users: soft delete (active false), then DELETE"
    remove_members_name = "remove members listed by value, add one, in one request"

    def discovery_steps(self) -> list[Step]:
        return [Step("discover the role attribute in /Schemas", self.discover_role)]

    def lookup_steps(self) -> list[Step]:
        return [
            Step("find a user by externalId", self.find_by_external_id),
            Step("find a user by an unquoted externalId", self.find_by_bare_external_id),
        ]

    def role_steps(self) -> list[Step]:
        return [Step("accept a role sent as a JSON string", self.role_as_json_string)]

    def group_read_steps(self) -> list[Step]:
        return [Step("find the group with excludedAttributes=members", self.find_group_lean)]

    def op(self, name: str) -> str:
        """``Replace``: this mode capitalises ops."""
        return name.capitalize()

    def value(self, value: Any) -> Any:
        """Booleans as ``"True"``/``"False"`` strings, as this mode sends them."""
        return str(value) if isinstance(value, bool) else value

    def external_id(self) -> str:
        return str(uuid.uuid4())

    def group_filter(self, name: str) -> list[tuple[str, str]]:
        return [*super().group_filter(name), ("excludedAttributes", "members")]

    def app_role(self) -> str:
        """The app role value: one the app lists (the last, usually least privileged), else Admin.

        Entra app roles are defined by the app's vendor to match the app's roles.
        """
        if self.role is not None and self.role.values:
            return self.role.values[-1]
        return "Admin"

    def user_body(self, person: Person) -> Json:
        return {
            "schemas": [CORE_USER, ENTERPRISE_USER],
            "externalId": person.external_id,
            "userName": person.user_name,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": person.user_name}],
            "meta": {"resourceType": "User"},
            "name": {
                "formatted": person.display_name,
                "familyName": person.family_name,
                "givenName": person.given_name,
            },
            "roles": [{"primary": True, "type": ENTRA_ROLE_TYPE, "value": self.app_role()}],
            # Entra never sends null, but does send empty strings.
            ENTERPRISE_USER: {"department": ""},
        }

    def update_user(self, user: User, changes: Changes) -> Response:
        operations = [
            {"op": self.op("replace"), "path": _dotted(path), "value": self.value(value)}
            for path, value in changes.items()
        ]
        return self.patch(f"/Users/{user.id}", operations)

    def set_active(self, user: User, active: bool) -> Response:
        return self.update_user(user, {("active",): active})

    def profile_changes(self, user: User) -> Changes:
        local, _, domain = user.person.user_name.partition("@")
        return {
            **super().profile_changes(user),
            # A filtered path; Entra may target an element that does not exist yet.
            ('emails[type eq "work"]', "value"): f"{local}-moved@{domain}",
            (ENTERPRISE_USER, "employeeNumber"): f"E{user.person.number:04d}",
        }

    def group_body(self, name: str, members: Sequence[str]) -> Json:
        # Entra creates the group bare, then adds members with PATCH.
        return {
            "schemas": [CORE_GROUP],
            "externalId": str(uuid.uuid4()),
            "displayName": name,
            "meta": {"resourceType": "Group"},
        }

    def add_members(self, group: PushedGroup, ids: Sequence[str]) -> Response:
        return self.patch_group(
            group, [{"op": self.op("add"), "path": "members", "value": self.refs(ids)}]
        )

    def rename_group(self, group: PushedGroup, name: str) -> Response:
        return self.patch_group(
            group, [{"op": self.op("replace"), "path": "displayName", "value": name}]
        )

    def change_members(
        self, group: PushedGroup, remove: Sequence[str], add: Sequence[str]
    ) -> Response:
        # The value list names the members to remove; removing all of them is the bug to catch.
        operations = [{"op": "Remove", "path": "members", "value": self.refs(remove)}]
        if add:
            operations.append({"op": "Add", "path": "members", "value": self.refs(add)})
        return self.patch_group(group, operations)

    def test_connection(self) -> None:
        """A lookup of a random GUID: 200 and an empty ListResponse."""
        response = self.client.get("/Users", self.user_filter(str(uuid.uuid4())))
        found = self.judge.listing(response)
        if found:
            raise failure("an empty ListResponse for a random userName", response)

    def find_by_external_id(self) -> None:
        """``externalId eq "<id>"``: exactly that user."""
        user = self.need_users(1)[0]
        self.find_external(user, f'externalId eq "{user.person.external_id}"')

    def find_by_bare_external_id(self) -> None:
        """``externalId eq <id>``, unquoted, as Entra's documentation shows it."""
        user = self.need_users(1)[0]
        self.find_external(user, f"externalId eq {user.person.external_id}")

    def find_external(self, user: User, expression: str) -> None:
        """Filter users with ``expression``: exactly ``user`` must come back."""
        response = self.client.get("/Users", [("filter", expression)])
        ids = [field(resource, "id") for resource in self.judge.listing(response)]
        if ids != [user.id]:
            raise failure(f"exactly the user {user.id} for {expression}, got {ids}", response)

    def role_as_json_string(self) -> None:
        """A role as a JSON document serialised into the string ``value``: accepted."""
        user = self.need_users(1)[0]
        role = [{"primary": True, "type": ENTRA_ROLE_TYPE, "value": self.app_role()}]
        response = self.patch(
            f"/Users/{user.id}",
            [{"op": self.op("add"), "path": "roles", "value": json.dumps(role)}],
        )
        resource = self.expect_user(response, user, active=True)
        roles = field(resource, "roles")
        # A server that stores the JSON text as the role's value did not understand it.
        if isinstance(roles, list) and self.app_role() not in [
            field(item, "value") for item in roles if isinstance(item, dict)
        ]:
            raise failure(f"roles with the value {json_value(self.app_role())}", response)

    def find_group_lean(self) -> None:
        """The group is found by displayName, without its members (Entra asks to exclude them)."""
        group = self.need_group()
        response = self.client.get("/Groups", self.group_filter(group.name))
        found = self.judge.listing(response)
        if [field(resource, "id") for resource in found] != [group.id]:
            raise failure(f"exactly the group {group.id}", response)
        if field(found[0], "members") is not None:
            raise failure("no members with excludedAttributes=members", response)

    def unassign(self, user: User) -> None:
        # A soft delete first (active false), then the hard DELETE.
        super().unassign(user)
        self.judge.status(self.client.send("DELETE", f"/Users/{user.id}"), 204, 200)
        response = self.client.get(f"/Users/{user.id}")
        self.judge.status(response, 404, what="for a deleted user")


class Entra2020(Entra):
    """Microsoft Entra ID with ``aadOptscim062020``: path-less replaces with dotted keys."""

    profile = "entra-2020"
    description = "Microsoft Entra ID with aadOptscim062020: path-less replace, dotted/URN keys"
    remove_members_name = "remove a member by filter and add one in one request"

    def op(self, name: str) -> str:
        return name

    def value(self, value: Any) -> Any:
        return value

    def profile_changes(self, user: User) -> Changes:
        # Dotted and URN-qualified keys; the filtered email path stays with the default mode.
        return {
            path: value
            for path, value in super().profile_changes(user).items()
            if not _FILTERED.match(path[0])
        }

    def update_user(self, user: User, changes: Changes) -> Response:
        value = {_dotted(path): change for path, change in changes.items()}
        return self.patch(f"/Users/{user.id}", [{"op": "replace", "value": value}])

    def set_active(self, user: User, active: bool) -> Response:
        return self.patch(
            f"/Users/{user.id}", [{"op": "replace", "path": "active", "value": active}]
        )

    def change_members(
        self, group: PushedGroup, remove: Sequence[str], add: Sequence[str]
    ) -> Response:
        return Conversation.change_members(self, group, remove, add)


class OneLogin(Conversation):
    """OneLogin: bodies rendered from an admin's template, PUT for users, PATCH for groups."""

    profile = "onelogin"
    description = "OneLogin: template bodies (urn:scim:schemas:core:2.0), PUT users, PATCH groups"
    headers: ClassVar[Mapping[str, str]] = {
        "User-Agent": f"pbidentity-simulate/{__version__} (onelogin)",
        "Accept": SCIM_MEDIA_TYPE,
    }
    unassign_name = "deprovision users: suspend them (PUT active false)"

    def external_id(self) -> str:
        return str(secrets.randbelow(900_000_000) + 100_000_000)

    def user_body(self, person: Person, *, active: bool = True) -> Json:
        # The template's own schema URN and its string booleans, as rendered.
        return {
            "schemas": [ONELOGIN_TEMPLATE_SCHEMA],
            "userName": person.user_name,
            "externalId": person.external_id,
            "name": {"givenName": person.given_name, "familyName": person.family_name},
            "emails": [{"value": person.user_name, "primary": "true"}],
            "active": "true" if active else "false",
            "title": "",
        }

    def update_user(self, user: User, changes: Changes) -> Response:
        body = self.user_body(user.person, active=user.active is not False)
        for path, value in changes.items():
            _put(body, path, value)
        return self.client.send("PUT", f"/Users/{user.id}", body=body)

    def set_active(self, user: User, active: bool) -> Response:
        return self.client.send(
            "PUT", f"/Users/{user.id}", body=self.user_body(user.person, active=active)
        )

    def test_connection(self) -> None:
        """A first page of users: 200 and a ListResponse."""
        response = self.client.get("/Users", [("startIndex", "1"), ("count", "1")])
        self.judge.listing(response, count=1)


class JumpCloud(Conversation):
    """JumpCloud: a real test user and group, repeated adds, path-less replaces."""

    profile = "jumpcloud"
    description = "JumpCloud: test connection creates and deletes a user and a group"
    headers: ClassVar[Mapping[str, str]] = {
        "User-Agent": f"pbidentity-simulate/{__version__} (jumpcloud)",
        "Accept": SCIM_MEDIA_TYPE,
    }
    unassign_name = "unbind users: deactivate them"
    remove_members_name = "remove a member listed by value and add one in one request"

    def repeat_steps(self) -> list[Step]:
        return [Step("add a member again", self.add_again)]

    def external_id(self) -> str:
        return secrets.token_hex(12)

    def user_body(self, person: Person) -> Json:
        return {
            "schemas": [CORE_USER],
            "userName": person.user_name,
            "externalId": person.external_id,
            "name": {"givenName": person.given_name, "familyName": person.family_name},
            "displayName": person.display_name,
            "emails": [{"value": person.user_name, "type": "work", "primary": True}],
            "active": True,
        }

    def update_user(self, user: User, changes: Changes) -> Response:
        return self.patch(f"/Users/{user.id}", [{"op": "replace", "value": _nested(changes)}])

    def set_active(self, user: User, active: bool) -> Response:
        return self.update_user(user, {("active",): active})

    def initial_members(self) -> list[str]:
        # JumpCloud does not create empty groups: the first member comes with the POST.
        return [user.id for user in self.users[:1]]

    def rename_group(self, group: PushedGroup, name: str) -> Response:
        return self.patch_group(group, [{"op": "replace", "value": {"displayName": name}}])

    def change_members(
        self, group: PushedGroup, remove: Sequence[str], add: Sequence[str]
    ) -> Response:
        operations = [{"op": "remove", "path": "members", "value": self.refs(remove)}]
        if add:
            operations.append({"op": "add", "path": "members", "value": self.refs(add)})
        return self.patch_group(group, operations)

    def add_again(self) -> None:
        """The same add sent again changes nothing: 2xx, and the member is listed once."""
        group = self.need_group()
        user = self.need_users(1)[0]
        self.judge.status(self.add_members(group, [user.id]), 200, 204)
        self.check_group(group, "after adding a member twice")

    def test_connection(self) -> None:
        """Create a test user and a test group, then delete both (or deactivate the user)."""
        person = self.person(0, label="test")
        response = self.client.send("POST", "/Users", body=self.user_body(person))
        user = User(person=person, id=field(self.judge.resource(response, 201), "id"))
        body = self.group_body(f"sim-{self.run_id} JumpCloud test", [user.id])
        response = self.client.send("POST", "/Groups", body=body)
        group_id = field(self.judge.resource(response, 201, what="for the test group"), "id")
        self.judge.status(self.client.send("DELETE", f"/Groups/{group_id}"), 204, 200)
        response = self.client.send("DELETE", f"/Users/{user.id}")
        if response.status in (405, 501):
            # JumpCloud deactivates the test user when DELETE is not supported.
            self.switch(user, active=False)
        else:
            self.judge.status(response, 204, 200)


#: Every profile by name, in the order the help lists them.
CONVERSATIONS: Mapping[str, type[Conversation]] = {
    conversation.profile: conversation
    for conversation in (OktaCustom, OktaCatalog, Entra, Entra2020, OneLogin, JumpCloud)
}
