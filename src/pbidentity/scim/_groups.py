"""The /Groups endpoints: create, read, replace, patch (members by id or filter), delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import attrs
from scim2_models import Context
from scim2_models import InvalidSyntaxException
from scim2_models import InvalidValueException

from pbidentity.domain import Group
from pbidentity.domain import MemberRef
from pbidentity.exceptions import ConflictError
from pbidentity.http import Response
from pbidentity.scim import _patch
from pbidentity.scim._calls import _asks_for_attributes
from pbidentity.scim._calls import _Call
from pbidentity.scim._calls import _check_if_match
from pbidentity.scim._calls import _check_unchanged
from pbidentity.scim._calls import _Endpoints
from pbidentity.scim._calls import _found
from pbidentity.scim._calls import _GroupChange
from pbidentity.scim._calls import _NewGroup
from pbidentity.scim._calls import _no_content
from pbidentity.scim._calls import _not_modified
from pbidentity.scim._calls import _Render
from pbidentity.scim._calls import _uniqueness
from pbidentity.scim._limits import too_many
from pbidentity.scim._member_operations import _member_ids
from pbidentity.scim._member_operations import _membership_diff
from pbidentity.scim._member_operations import _named_member_changes
from pbidentity.scim._member_operations import _split_member_operations
from pbidentity.scim._render import GROUP_URN
from pbidentity.scim._render import etag
from pbidentity.scim._render import project
from pbidentity.scim._render import render_group
from pbidentity.scim._render import wants
from pbidentity.storage import Transaction

if TYPE_CHECKING:
    pass


class _GroupEndpoints(_Endpoints):
    """The /Groups endpoints of :class:`~pbidentity.scim.ScimService` (listing aside)."""

    def _prepare_create_group(self, call: _Call) -> _NewGroup:
        payload = self._json(call.request)
        attributes, member_ids = self._validate_group(
            payload, Context.RESOURCE_CREATION_REQUEST, call.request.base_url
        )
        member_ids = sorted(set(member_ids or ()))
        self._check_changes(len(member_ids), 0)
        return _NewGroup(attributes=attributes, member_ids=member_ids)

    def _commit_create_group(self, call: _Call, new: _NewGroup) -> _Render:
        now = self.clock()
        group = Group(
            tenant_id=call.tenant.id,
            id=self.new_id(),
            attributes=new.attributes,
            created=now,
            last_modified=now,
        )
        # Checked here, not while computing: a user deleted since then must
        # not be added (the foreign key would refuse it too, less clearly).
        self._check_members_exist(call, new.member_ids)
        try:
            call.tx.add_group(group)
        except ConflictError as error:
            raise _uniqueness(error, "group") from None
        if new.member_ids:
            call.tx.add_memberships(call.tenant.id, group.id, new.member_ids)
        call.life.group_created(group, new.member_ids)
        return self._group_render(call, group, status=201)

    def _get_group(self, call: _Call) -> Response:
        group = self._current_group(call, check_version=False)
        if _not_modified(call.request, group.version):
            return Response(status=304, headers=(("ETag", etag(group.version)),))
        return self._group_render(call, group)()

    def _prepare_replace_group(self, call: _Call) -> _GroupChange:
        payload = self._json(call.request)
        current = self._current_group(call)
        attributes, member_ids = self._validate_group(
            payload, Context.RESOURCE_REPLACEMENT_REQUEST, call.request.base_url
        )
        if member_ids is None:
            # A PUT without "members" leaves them alone: dropping every member
            # because an IdP only meant to rename is the one mistake a group can
            # never recover from.
            return _GroupChange(base=current, attributes=attributes)
        refs = call.tx.group_members(call.tenant.id, [current.id])[current.id]
        add, remove = self._bounded_diff(refs, member_ids)
        return _GroupChange(base=current, attributes=attributes, add=add, remove=remove)

    def _prepare_patch_group(self, call: _Call) -> _GroupChange:
        operations = self._patch_operations(call.request)
        member_ops, other_ops = _split_member_operations(operations)
        current = self._current_group(call)
        attributes = None
        if other_ops:
            patched = _patch.apply_patch(dict(current.attributes), other_ops, self.groups)
            patched.pop("schemas", None)
            patched.pop("members", None)
            attributes, _ = self._validate_group(
                {"schemas": [GROUP_URN], **patched},
                Context.RESOURCE_REPLACEMENT_REQUEST,
                call.request.base_url,
            )
        if not member_ops:
            return _GroupChange(base=current, attributes=attributes)
        named = _named_member_changes(member_ops, self.limits)
        if named is not None:
            # Adds and removes by id (what IdPs send): their cost is that of
            # the ids named, whatever the size of the group. Alone, they need
            # no particular version of the group (an add of a member already
            # in it, or a remove of one not in it, is no change), so
            # concurrent ones on one group do not redo each other; an
            # If-Match still asks for one.
            add = sorted(i for i, stays in named.items() if stays)
            remove = sorted(i for i, stays in named.items() if not stays)
            # Named, not necessarily changed (an add of a member already in
            # the group is none): bounded by what the request could change.
            self._check_changes(len(add), len(remove))
            rebase = attributes is None and call.request.header("if-match") is None
            return _GroupChange(
                base=current, attributes=attributes, add=add, remove=remove, rebase=rebase
            )
        # A replace of the members, or a remove of them all, is applied to the
        # member list with the generic PATCH engine, so every path form
        # behaves exactly as on any attribute, and the difference is written.
        refs = call.tx.group_members(call.tenant.id, [current.id])[current.id]
        document = {"displayName": "-", "members": [{"value": ref.id} for ref in refs]}
        patched = _patch.apply_patch(document, member_ops, self.groups)
        add, remove = self._bounded_diff(refs, _member_ids(patched.get("members") or []))
        return _GroupChange(base=current, attributes=attributes, add=add, remove=remove)

    def _bounded_diff(
        self, refs: Sequence[MemberRef], member_ids: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """The membership difference, refused when it changes more than ``membership_changes``."""
        add, remove = _membership_diff(refs, member_ids)
        self._check_changes(len(add), len(remove))
        return add, remove

    def _check_changes(self, to_add: int, to_remove: int) -> None:
        """Refuse a request that would change more than ``membership_changes`` memberships."""
        if to_add + to_remove > self.limits.membership_changes:
            # Each change costs a role decision and an event: a request that
            # empties a large group must do it in chunks, as it fills one.
            raise too_many(
                "The request",
                to_add + to_remove,
                f"membership changes ({to_add} to add, {to_remove} to remove)",
                "membership_changes",
                self.limits.membership_changes,
            )

    def _commit_replace_group(self, call: _Call, change: _GroupChange) -> _Render:
        return self._group_render(call, self._write_group_change(call, change))

    def _commit_patch_group(self, call: _Call, change: _GroupChange) -> _Render:
        group = self._write_group_change(call, change)
        if self.config.group_patch_returns_resource or _asks_for_attributes(call.request):
            return self._group_render(call, group)
        # RFC 7644 §3.5.2 allows 204; Okta and Entra ID accept it for groups, and
        # rendering every member after each membership change is wasted work.
        version = group.version
        return lambda: Response(status=204, headers=(("ETag", etag(version)),))

    def _write_group_change(self, call: _Call, change: _GroupChange) -> Group:
        """Write a group's new attributes and membership changes over the version they read.

        The membership difference was computed from the members read with
        that version, and every membership change moves the group's version
        (a SCIM change of its members here, a member's deletion in
        ``LifecycleWork.delete``): a group still at that version still has those
        members. Only the users being added are not covered, so they are
        checked here (and by the foreign key).
        """
        current = self._current_group(call, check_version=False)
        if not change.rebase:
            _check_unchanged(current.version, change.base.version, "group", current.id)
        self._check_members_exist(call, change.add)
        removed = change.remove
        if removed:
            # Removes by id may name users who are not members (or no longer
            # are, over a rebased version): only members are removed, and
            # said to be.
            groups = call.tx.member_groups(call.tenant.id, removed)
            removed = [i for i in removed if any(ref.id == current.id for ref in groups[i])]
        if removed:
            call.tx.remove_memberships(call.tenant.id, current.id, removed)
        # The ids that were not members yet: a repeated add is no change.
        added = (
            call.tx.add_memberships(call.tenant.id, current.id, change.add) if change.add else []
        )
        updated = (
            current
            if change.attributes is None
            else attrs.evolve(current, attributes=change.attributes)
        )
        group = self._save_group(call.tx, current, updated, force=bool(added or removed))
        call.life.group_changed(current, group, added=added, removed=removed)
        return group

    def _commit_delete_group(self, call: _Call, _: None) -> _Render:
        # Nothing to compute: the group is read, and deleted, here.
        current = self._current_group(call)
        members = call.tx.group_members(call.tenant.id, [current.id])[current.id]
        call.tx.delete_group(call.tenant.id, current.id)
        call.life.group_deleted(current, [ref.id for ref in members])
        return _no_content

    def _current_group(self, call: _Call, *, check_version: bool = True) -> Group:
        assert call.target is not None  # noqa: S101 - item routes always carry an id
        group = _found(call.tx.get_group(call.tenant.id, call.target), "group", call.target)
        if check_version:
            _check_if_match(call.request, group.version, "group")
        return group

    def _group_render(self, call: _Call, group: Group, status: int = 200) -> _Render:
        """As ``_member_render``, for a group."""
        request = call.request
        attributes, excluded = self._projection(request)
        members = (
            call.tx.group_members(call.tenant.id, [group.id])[group.id]
            if wants("members", attributes, excluded)
            else None
        )

        def render() -> Response:
            doc = render_group(group, request.base_url, members)
            return self._resource_response(
                request, project(doc, attributes, excluded), group.version, status=status
            )

        return render

    def _save_group(self, tx: Transaction, current: Group, updated: Group, *, force: bool) -> Group:
        if not force and updated.attributes == current.attributes:
            return current
        updated = attrs.evolve(updated, version=current.version + 1, last_modified=self.clock())
        try:
            tx.replace_group(updated, expected_version=current.version)
        except ConflictError as error:
            raise _uniqueness(error, "group") from None
        return updated

    def _validate_group(
        self, payload: Any, context: Context, base_url: str
    ) -> tuple[dict[str, Any], list[str] | None]:
        """Check a Group body; return (attributes without members, member ids or None if absent).

        The members are checked here, not by scim2-models: a PUT names every
        member of the group (Okta's custom apps send one on each membership
        update), and validating ten thousand member objects through the
        models cost more than half a second; each is a user id and three
        optional strings. The normalisation before still bounds their number
        and sizes.
        """
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(
                detail="The body must be a JSON object describing a Group."
            )
        normalised = self.groups.normalise(payload)
        members = normalised.pop("members", None)
        document = self._validated(normalised, self.groups, context, base_url, canonical=True)
        document.pop("members", None)
        for key in ("schemas", "id", "meta"):
            document.pop(key, None)
        if not document.get("displayName"):
            raise InvalidValueException(detail="displayName is required for a group.")
        if members is None:
            return document, None
        return document, _member_ids(members)

    def _check_members_exist(self, call: _Call, member_ids: Sequence[str]) -> None:
        if not member_ids:
            return
        known = call.tx.existing_member_ids(call.tenant.id, member_ids)
        unknown = sorted(set(member_ids) - known)
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise InvalidValueException(
                detail=f"members: no user with id {shown}{more} in this workspace; "
                "nothing was changed. Provision the users before adding them to a group."
            )
