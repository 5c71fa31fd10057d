"""The /Users endpoints: create, read, replace, patch and delete a user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import attrs
import orjson
from scim2_models import ConflictException
from scim2_models import Context
from scim2_models import InvalidSyntaxException
from scim2_models import InvalidValueException
from scim2_models import UniquenessException

from pbidentity._lifecycle import identity_of
from pbidentity.domain import Member
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.http import Response
from pbidentity.scim import _patch
from pbidentity.scim import _schema
from pbidentity.scim._calls import _Call
from pbidentity.scim._calls import _check_if_match
from pbidentity.scim._calls import _Endpoints
from pbidentity.scim._calls import _fill_manager_reference
from pbidentity.scim._calls import _found
from pbidentity.scim._calls import _MemberChange
from pbidentity.scim._calls import _no_content
from pbidentity.scim._calls import _not_modified
from pbidentity.scim._calls import _Profile
from pbidentity.scim._calls import _Render
from pbidentity.scim._calls import _uniqueness
from pbidentity.scim._limits import too_large
from pbidentity.scim._render import USER_URN
from pbidentity.scim._render import etag
from pbidentity.scim._render import project
from pbidentity.scim._render import render_member
from pbidentity.scim._render import wants

if TYPE_CHECKING:
    pass


class _UserEndpoints(_Endpoints):
    """The /Users endpoints of :class:`~pbidentity.scim.ScimService` (listing aside)."""

    def _prepare_create_user(self, call: _Call) -> _Profile:
        document = self._user_document(self._json(call.request), call.request.base_url)
        # A user created without "active" is active; saying so in the document
        # keeps filters (active eq true) and the member's state in agreement.
        document.setdefault("active", True)
        attributes, role_attribute = self._checked_profile(call, document, None)
        return _Profile(attributes=attributes, role_attribute=role_attribute)

    def _commit_create_user(self, call: _Call, profile: _Profile) -> _Render:
        attributes, role_attribute = profile.attributes, profile.role_attribute
        # Matched here, not while computing: whom the identity links to depends
        # on the other members, as only the write transaction sees them (a few
        # indexed lookups). The profile itself depends on no stored row.
        step = call.life.link_step(identity_of(attributes))
        if step.action == "conflict":
            raise ConflictException(detail=f"{step.reason}; nothing was changed.")
        if step.action == "create":
            now = self.clock()
            member = Member(
                tenant_id=call.tenant.id,
                id=self.new_id(),
                attributes=attributes,
                role_attribute=role_attribute,
                scim_managed=True,
                created=now,
                last_modified=now,
            )
            try:
                member = call.life.create(member)
            except ConflictError as error:
                raise _uniqueness(error, "user") from None
        else:
            assert step.member_id is not None  # noqa: S101 - every other step names one
            existing = call.tx.get_member(call.tenant.id, step.member_id)
            if existing is None:
                # Deleted by a concurrent request since it was matched: redo
                # the whole unit on fresh data (it will create the user).
                raise NotFoundError(f"member {step.member_id!r} was deleted meanwhile")
            if existing.scim_managed and existing.active:
                # Already provisioned: the IdP must update it, not create it
                # again (Okta's SPEC test expects 409 here).
                raise UniquenessException(
                    detail=f"The user is already provisioned: its {step.matched_by} matches "
                    f"user {existing.id} (userName {existing.user_name!r}); update that user "
                    "instead of creating it again."
                )
            # Linked (a member the app had before provisioning) or reactivated
            # (a deprovisioned one): the same id comes back, with the profile
            # the IdP sent.
            updated = attrs.evolve(
                existing, attributes=attributes, role_attribute=role_attribute, scim_managed=True
            )
            member = self._save_member(call, existing, updated, matched_by=step.matched_by)
        request, version = call.request, member.version

        def render() -> Response:
            doc = render_member(member, request.base_url, self.config.role_urn, None)
            return self._resource_response(request, doc, version, status=201)

        return render

    def _get_user(self, call: _Call) -> Response:
        member = self._current_member(call, check_version=False)
        if _not_modified(call.request, member.version):
            return Response(status=304, headers=(("ETag", etag(member.version)),))
        return self._member_render(call, member)()

    def _prepare_replace_user(self, call: _Call) -> _MemberChange:
        payload = self._json(call.request)
        current = self._current_member(call)
        document = self._user_document(payload, call.request.base_url)
        if "active" not in document:
            # Okta and others PUT what they read back, but a PUT that does not
            # mention "active" must never (re)activate or deactivate anyone.
            document["active"] = current.active
        if not _mentions(payload, self.config.role_urn) and current.role_attribute is not None:
            # A PUT without the role extension says nothing about the role:
            # keep the value the IdP sent before (the role policy uses it).
            document[self.config.role_urn] = {"role": current.role_attribute}
        return self._member_change(call, current, document)

    def _prepare_patch_user(self, call: _Call) -> _MemberChange:
        operations = self._patch_operations(call.request)
        current = self._current_member(call)
        patched = _patch.apply_patch(self._document(current), operations, self.users)
        patched.pop("schemas", None)
        return self._member_change(call, current, patched)

    def _commit_member_change(self, call: _Call, change: _MemberChange) -> _Render:
        """Write a user's new profile over the version it was computed from."""
        # Not read again: the UPDATE only matches the member at the version
        # the change was computed from (what was read then is what is
        # stored, so only the columns that differ are written). One moved
        # since is a version conflict, one deleted since a 404 (as it would
        # be a moment later): one round trip less per write on PostgreSQL.
        current = change.base
        updated = attrs.evolve(
            current,
            attributes=change.attributes,
            role_attribute=change.role_attribute,
            scim_managed=True,
        )
        return self._member_render(call, self._save_member(call, current, updated))

    def _document(self, member: Member) -> dict[str, Any]:
        """The member's canonical document with its role extension, as a client sees it."""
        document = dict(member.attributes)
        if member.role_attribute is not None:
            document[self.config.role_urn] = {"role": member.role_attribute}
        return document

    def _user_document(self, payload: Any, base_url: str) -> dict[str, Any]:
        """The canonical document of a POST or PUT body (role extension included)."""
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(detail="The body must be a JSON object describing a User.")
        document = self.users.normalise(payload)
        document.pop("schemas", None)
        _fill_manager_reference(document, base_url)
        return document

    def _member_change(
        self, call: _Call, current: Member, document: dict[str, Any]
    ) -> _MemberChange:
        """The change that makes ``document`` (canonical, role extension included) the profile.

        An unchanged profile gives an equal member, which ``_save_member`` keeps as it is.
        """
        attributes, role_attribute = self._checked_profile(call, document, current)
        return _MemberChange(base=current, attributes=attributes, role_attribute=role_attribute)

    def _checked_profile(
        self, call: _Call, document: dict[str, Any], current: Member | None
    ) -> tuple[dict[str, Any], str | None]:
        """Check a new profile against the stored one; return (attributes, role attribute).

        The stored document was valid when it was written, so only the
        top-level attributes that differ from it are checked: an Okta PUT that
        echoes the whole profile with one change, or a PATCH of ``active``,
        costs a check of that change, not of the whole profile (a creation
        differs from an empty profile everywhere). Plain values are checked by
        the schema's rules here (see ``_plain_change``); anything else goes
        through scim2-models, with userName, which every User needs.
        """
        before = self._document(current) if current is not None else {}
        changed = {
            key for key in document.keys() | before.keys() if document.get(key) != before.get(key)
        }
        stored = current.attributes if current is not None else {}
        attributes = {key: value for key, value in stored.items() if key in document}
        role = current.role_attribute if current is not None else None
        plain = {key for key in changed if self._plain_change(key, document.get(key))}
        attributes.update({key: document[key] for key in plain if key in document})
        rest = changed - plain
        if rest:
            partial = {key: document[key] for key in rest if key in document}
            partial["userName"] = document.get("userName")
            context = (
                Context.RESOURCE_CREATION_REQUEST
                if current is None
                else Context.RESOURCE_REPLACEMENT_REQUEST
            )
            schemas = [USER_URN, *(urn for urn in self._extension_urns if urn in partial)]
            validated, validated_role = self._validate_user(
                {"schemas": schemas, **partial}, context, call.request.base_url
            )
            attributes.update(validated)
            if self.config.role_urn in changed:
                role = validated_role
        user_name = attributes.get("userName")
        if not isinstance(user_name, str) or not user_name.strip():
            raise InvalidValueException(
                detail="userName is required: it is the unique identifier of the user "
                "(usually the email address)."
            )
        if changed - {"active"}:
            # (De)activation alone is never refused, whatever the size.
            self._check_profile_size(attributes, current)
        return attributes, role

    def _check_profile_size(self, attributes: Mapping[str, Any], current: Member | None) -> None:
        """Refuse a profile that grows past ``profile_bytes`` as stored JSON.

        Every read, listing page and later write of the member costs its
        size. A change that does not grow a profile already over the limit
        (stored before it was lowered) is let through, so that an IdP can
        always trim such a member.
        """
        allowed = self.limits.profile_bytes
        size = len(orjson.dumps(attributes))
        if size <= allowed:
            return
        if current is not None and size <= len(orjson.dumps(current.attributes)):
            return
        raise too_large("The user's profile", size, "bytes as JSON", "profile_bytes", allowed)

    def _commit_delete_user(self, call: _Call, _: None) -> _Render:
        # Nothing to compute: the member is read, and deleted, here.
        current = self._current_member(call)
        # Removed, or only deactivated when the tenant keeps deprovisioned
        # members (their work and memberships stay; a re-assignment brings
        # the same member back).
        call.life.delete(current)
        return _no_content

    def _current_member(self, call: _Call, *, check_version: bool = True) -> Member:
        assert call.target is not None  # noqa: S101 - item routes always carry an id
        member = _found(call.tx.get_member(call.tenant.id, call.target), "user", call.target)
        if check_version:
            _check_if_match(call.request, member.version, "user")
        return member

    def _plain_change(self, key: str, value: Any) -> bool:
        """Whether a changed top-level core attribute is plainly of its schema's type.

        Plain means a string or boolean, or a complex attribute (``name``,
        each element of ``emails``) made only of those: for them the schema's
        type, mutability, necessity and, for multi-valued ones, the single
        primary are all there is to check (the rules scim2-models applies,
        from the same schema). References, binaries, dates, extensions and
        the role are left to scim2-models.
        """
        spec = self.users.attribute(self.users.core, key)
        return spec is not None and _plain(spec, value)

    def _save_member(
        self, call: _Call, current: Member, updated: Member, *, matched_by: str | None = "id"
    ) -> Member:
        # An unchanged member keeps its version (and ETag); see LifecycleWork.save.
        try:
            return call.life.save(current, updated, matched_by=matched_by)
        except ConflictError as error:
            raise _uniqueness(error, "user") from None

    def _member_render(self, call: _Call, member: Member) -> _Render:
        """Read what the member's response needs now; render it when called.

        A write calls it after its transaction has ended: rendering is
        computation, which never holds the write lock.
        """
        request = call.request
        attributes, excluded = self._projection(request)
        groups = (
            call.tx.member_groups(call.tenant.id, [member.id])[member.id]
            if wants("groups", attributes, excluded)
            else None
        )

        def render() -> Response:
            doc = render_member(member, request.base_url, self.config.role_urn, groups)
            return self._resource_response(
                request, project(doc, attributes, excluded), member.version
            )

        return render

    def _validate_user(
        self, payload: Any, context: Context, base_url: str
    ) -> tuple[dict[str, Any], str | None]:
        """Check a canonical User document with scim2-models; return (attributes, role)."""
        document = self._validated(payload, self.users, context, base_url, canonical=True)
        for key in ("schemas", "id", "meta", "groups", "password"):
            document.pop(key, None)
        role_block = document.pop(self.config.role_urn, None) or {}
        return document, self._role(role_block.get("role"))

    def _role(self, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # no role sent: the role policy decides, never "admin" by default
        role = self.roles.canonical(str(value))
        if role is None:
            raise InvalidValueException(
                detail=f"role {value!r} is not one of this app's roles: "
                f"{', '.join(self.roles.names)}."
            )
        return role


def _plain(spec: _schema.AttributeSpec, value: Any, *, element: bool = False) -> bool:
    """Whether ``value`` is plainly of ``spec``'s type (see ``ScimService._plain_change``)."""
    if spec.mutability != "readWrite":
        return False
    if value is None:
        return not spec.required
    if spec.multi_valued and not element:
        # RFC 7643 §2.4: at most one element may be primary.
        return (
            spec.is_complex
            and isinstance(value, list)
            and all(_plain(spec, item, element=True) for item in value)
            and sum(1 for item in value if item.get("primary") is True) <= 1
        )
    if spec.type == "boolean":
        return isinstance(value, bool)
    if spec.type == "string":
        # Canonical values of a sub-attribute ("work", "home") are an open
        # list, as scim2-models' extensible enums treat them; a top-level
        # attribute with canonical values is left to scim2-models.
        return isinstance(value, str) and (element or not spec.canonical_values)
    if spec.type != "complex" or not isinstance(value, dict) or not value:
        return False
    if any(sub.required and sub.name not in value for sub in spec.sub_attributes.values()):
        return False
    return all(
        (sub := spec.sub(name)) is not None
        and not sub.is_complex
        and not sub.multi_valued
        and _plain(sub, item, element=True)
        for name, item in value.items()
    )


def _mentions(payload: Any, urn: str) -> bool:
    return isinstance(payload, dict) and any(key.lower() == urn.lower() for key in payload)
