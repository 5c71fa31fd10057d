"""Match IdP identities to the existing members of a workspace, before SCIM takes over.

When a tenant switches SCIM on, its IdP (Okta, Entra...) starts pushing people
the app already knows: they signed up by hand, were invited, or came from an
older sync. Each of them must be linked to the member they already are, not
created a second time; and when the match is not certain, an admin must decide.
:func:`plan_links` computes that decision for a whole population at once, as a
:class:`LinkPlan`, without touching anything: applying it is someone else's job.

The matching rules, for each identity:

1. by externalId: the members whose ``externalId`` equals the identity's,
   exactly (it is the IdP's own id, case-sensitive), if the identity has one;
2. by userName: the members whose normalised ``userName`` equals the
   identity's normalised ``userName``;
3. by email: the members whose normalised primary email equals the identity's
   normalised primary email, when both have one.

Normalising is :meth:`LinkPolicy.normalise`: NFKC, surrounding whitespace
removed, case folded, and ``+tags`` of the local part removed only if the
policy says so. That lossy fold only finds candidates: a candidate found by
userName or email is the identity only if the exact keys agree too
(:meth:`LinkPolicy.exact`, :func:`~pbidentity.identity.email_key`), so that
``ceo@straße.test`` or ``ﬁnance@acme.test`` (a ligature) never takes over
the member ``ceo@strasse.test`` or ``finance@acme.test``. Then:

- no candidate at all: ``create`` a member;
- two or more distinct candidates: ``conflict``, the admin merges or fixes the
  members first;
- one member M, found by userName or email, whose address only looks like
  the identity's (equal under the fold, different exact keys): ``conflict``,
  because different addresses may belong to different people;
- one member M, already linked to another identity (both have an externalId
  and they differ): ``conflict``;
- one member M that is deactivated, for an active identity: ``reactivate``,
  the same member id comes back;
- one member M that is SCIM-managed, has the identity's externalId (or both
  have none and M was found by userName), the same normalised userName and the
  same active flag: ``unchanged``;
- otherwise: ``link`` M (record the externalId, mark it SCIM-managed).

``matched_by`` is the first rule that found M. Two safety rules come first,
because guessing would merge or steal accounts:

- identities of the input that share an externalId, a normalised userName or a
  normalised primary email are all ``conflict``, whatever they match;
- identities that have a member among their candidates in common are all
  ``conflict``: linking one of them would change what the others match.

These make a plan stable: applying its changes and planning again gives only
``unchanged`` steps and the very same conflicts. The plan does not depend on
the order of its inputs either: the steps are sorted by normalised userName
and externalId, and reasons sort the ids and values they name.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import pathlib
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Literal

import attrs

from pbidentity.domain import Member
from pbidentity.domain import fold
from pbidentity.exceptions import InputError
from pbidentity.identity import explain_lookalike
from pbidentity.identity import identity_key

__all__ = [
    "Identity",
    "LinkAction",
    "LinkPlan",
    "LinkPolicy",
    "LinkStep",
    "parse_identities",
    "plan_links",
    "read_identities",
]

LinkAction = Literal["create", "link", "reactivate", "unchanged", "conflict"]
_MatchRule = Literal["externalId", "userName", "email"]

# Reasons name at most this many identities or members, then "and N more":
# a reason is one sentence for an admin, and a pathological input (thousands
# of rows with the same email) must not make planning quadratic.
_MAX_NAMED = 5
# A step lists at most this many candidate members (the first by id): enough
# to find them all in the app, bounded for an export of the conflicts.
_MAX_CANDIDATES = 20


@attrs.frozen(kw_only=True)
class LinkPolicy:
    """How identities and members are compared when matching by userName or email."""

    # "keep": jane+x@a.com and jane@a.com are different people (the safe
    # default: some companies give real people plus-addresses).
    # "strip": the +tag is removed before comparing.
    plus_tags: Literal["keep", "strip"] = attrs.field(
        default="keep", validator=attrs.validators.in_(("keep", "strip"))
    )

    def normalise(self, address: str) -> str:
        """Return the comparison key of a userName or an email address.

        NFKC and case folding (:func:`~pbidentity.domain.fold`) after removing
        surrounding whitespace, so that ``"  Jane@Example.COM "`` and the same
        address typed with full-width letters compare equal to
        ``jane@example.com``; then, with ``plus_tags="strip"``, the ``+tag`` of
        a ``local@domain`` value is dropped.
        """
        return self._untagged(fold(address.strip()))

    def exact(self, address: str) -> str:
        """Return the exact key of a userName or an email address.

        :func:`~pbidentity.identity.identity_key` (NFC, the local part
        lower-cased without compatibility mappings, the domain in IDNA2008
        A-label form), then the ``+tag`` dropped as :meth:`normalise` does.
        Two values equal under :meth:`normalise` but not here only look
        alike, and are never linked.
        """
        if address.isascii():
            # Both keys are the address stripped and lower-cased for ASCII
            # (NFKC and NFC leave it alone, case folding is lower-casing, an
            # ASCII domain is its own A-label): skip IDNA for the usual case.
            return self.normalise(address)
        return self._untagged(identity_key(address))

    def _untagged(self, value: str) -> str:
        if self.plus_tags == "strip":
            local, at, domain = value.rpartition("@")
            tagless = local.partition("+")[0]
            # "+team@a.com" keeps its tag: an empty local part is no address.
            if at and tagless and domain:
                value = f"{tagless}@{domain}"
        return value


@attrs.frozen(kw_only=True)
class Identity:
    """One IdP identity as an IdP (or its export file) describes it."""

    user_name: str
    external_id: str | None = None
    emails: tuple[str, ...] = ()  # the primary one first
    active: bool = True
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    role: str | None = None  # the personal role value, as sent; validated elsewhere

    def __attrs_post_init__(self) -> None:
        # Blank values would match each other (every identity without a real
        # id would share the id ""), so they are refused rather than matched.
        if not self.user_name.strip():
            raise InputError("an identity needs a non-empty userName")
        if self.external_id is not None and not self.external_id.strip():
            raise InputError(
                f"identity {self.user_name!r} has a blank externalId; leave it out instead"
            )
        if any(not email.strip() for email in self.emails):
            raise InputError(f"identity {self.user_name!r} has a blank email address")

    @property
    def primary_email(self) -> str | None:
        """The first email address, which is the primary one, or ``None``."""
        return self.emails[0] if self.emails else None

    def attributes(self) -> dict[str, Any]:
        """The canonical SCIM User document of this identity (RFC 7643 core User keys).

        It is what a member created or linked from this identity holds; keys
        whose value would be ``None`` are left out.
        """
        document: dict[str, Any] = {"userName": self.user_name}
        if self.external_id is not None:
            document["externalId"] = self.external_id
        document["active"] = self.active
        name = {
            key: value
            for key, value in (("givenName", self.given_name), ("familyName", self.family_name))
            if value is not None
        }
        if name:
            document["name"] = name
        if self.display_name is not None:
            document["displayName"] = self.display_name
        if self.emails:
            # RFC 7643 §2.4: "primary": true at most once; the others omit it.
            document["emails"] = [
                {"value": email, "primary": True, "type": "work"}
                if index == 0
                else {"value": email, "type": "work"}
                for index, email in enumerate(self.emails)
            ]
        return document


@attrs.frozen(kw_only=True)
class LinkStep:
    """What to do with one identity, and why."""

    action: LinkAction
    identity: Identity
    # The matched member; None for create, and for conflicts without a single one.
    member_id: str | None
    matched_by: _MatchRule | None
    reason: str  # one sentence an admin can act on
    #: The members the identity matched by any rule, sorted by id (at most
    #: 20): the one it links to, or those an admin must choose between.
    candidates: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class LinkPlan:
    """One step per input identity, in a canonical order that ignores the input's."""

    steps: tuple[LinkStep, ...]

    def count(self, action: LinkAction) -> int:
        """How many steps have that action."""
        return sum(1 for step in self.steps if step.action == action)

    @property
    def conflicts(self) -> tuple[LinkStep, ...]:
        """The steps an admin must resolve; nothing is done for them."""
        return tuple(step for step in self.steps if step.action == "conflict")

    @property
    def changes(self) -> tuple[LinkStep, ...]:
        """The steps that write something: create, link and reactivate."""
        return tuple(step for step in self.steps if step.action in ("create", "link", "reactivate"))

    def summary(self) -> str:
        """One line for a preview, e.g. ``3 to create, 10 to link, 0 to reactivate, ...``."""
        counts = dict.fromkeys(("create", "link", "reactivate", "unchanged", "conflict"), 0)
        for step in self.steps:
            counts[step.action] += 1
        conflicts = counts["conflict"]
        return (
            f"{counts['create']} to create, {counts['link']} to link, "
            f"{counts['reactivate']} to reactivate, {counts['unchanged']} unchanged, "
            f"{conflicts} conflict{'' if conflicts == 1 else 's'}"
        )


_DEFAULT_POLICY = LinkPolicy()
_RULES: tuple[_MatchRule, _MatchRule, _MatchRule] = ("externalId", "userName", "email")
# The matching keys of an identity or a member, normalised once, in _RULES order.
_Keys = tuple[str | None, str | None, str | None]


def plan_links(
    identities: Iterable[Identity],
    members: Iterable[Member],
    policy: LinkPolicy = _DEFAULT_POLICY,
) -> LinkPlan:
    """Plan how each identity links to the members of one tenant (see the module docstring).

    Pure and deterministic: the same identities and members, in any order,
    give an equal plan. Linear in the number of identities and members: every
    lookup goes through a dict built once. Member ids must be unique.
    """
    people = list(identities)
    accounts = list(members)
    _check_unique_ids(accounts)
    normalise = policy.normalise
    people_keys: list[_Keys] = [
        (
            person.external_id,
            normalise(person.user_name),
            normalise(person.emails[0]) if person.emails else None,
        )
        for person in people
    ]
    account_keys = [_member_keys(member, normalise) for member in accounts]
    planner = _Planner(
        people=people,
        people_keys=people_keys,
        people_index=_Index(people_keys),
        labels=[_label(person) for person in people],
        accounts=accounts,
        account_keys=account_keys,
        account_index=_Index(account_keys),
        policy=policy,
    )
    steps = [planner.step(position) for position in range(len(people))]
    return LinkPlan(steps=tuple(steps[i] for i in _canonical_order(people, people_keys)))


def _check_unique_ids(accounts: Sequence[Member]) -> None:
    seen: set[str] = set()
    twice: set[str] = set()
    for member in accounts:
        (twice if member.id in seen else seen).add(member.id)
    if twice:
        raise InputError(
            f"member ids {', '.join(sorted(twice))} are given more than once; pass each member once"
        )


def _member_keys(member: Member, normalise: Callable[[str], str]) -> _Keys:
    # A member may hold blank values an identity cannot: they match nothing.
    email = member.primary_email
    return (
        member.external_id or None,
        normalise(member.user_name) or None,
        (normalise(email) or None) if email else None,
    )


class _Index:
    """Positions of records by each matching key, one dict per rule (in _RULES order).

    Most values belong to one record: ``first`` maps them to it without a list
    per value (100,000 small lists cost more than the matching itself); the
    few values several records share are in ``shared``, with all of them.
    """

    def __init__(self, keys: Sequence[_Keys]) -> None:
        self.first: tuple[dict[str, int], ...] = ({}, {}, {})
        self.shared: tuple[dict[str, list[int]], ...] = ({}, {}, {})
        for rule in range(3):
            first = self.first[rule]
            shared = self.shared[rule]
            for position, key in enumerate(keys):
                value = key[rule]
                if value is not None:
                    found = first.setdefault(value, position)
                    if found != position:
                        shared.setdefault(value, [found]).append(position)

    def is_shared(self, key: _Keys) -> bool:
        """Whether another record has one of key's values (key is in the index)."""
        return any(
            value is not None and value in shared
            for value, shared in zip(key, self.shared, strict=True)
        )

    def lookup(self, key: _Keys) -> list[tuple[int, str, Sequence[int]]]:
        """The records having each of key's values: (rule, value, positions), in _RULES order."""
        found: list[tuple[int, str, Sequence[int]]] = []
        for rule in range(3):
            value = key[rule]
            if value is not None:
                position = self.first[rule].get(value)
                if position is not None:
                    found.append((rule, value, self.shared[rule].get(value) or (position,)))
        return found


@attrs.frozen(kw_only=True)
class _Planner:
    people: list[Identity]
    people_keys: list[_Keys]
    people_index: _Index
    labels: list[str]
    accounts: list[Member]
    account_keys: list[_Keys]
    account_index: _Index
    policy: LinkPolicy
    # The labels of each group of identities sharing a value, sorted once.
    sorted_groups: dict[tuple[int, str], list[tuple[str, int]]] = attrs.field(factory=dict)

    def step(self, position: int) -> LinkStep:
        person = self.people[position]
        key = self.people_keys[position]
        # Each candidate member with the first rule that found it.
        candidates: dict[int, _MatchRule] = {}
        for index, _, group in self.account_index.lookup(key):
            for account in group:
                candidates.setdefault(account, _RULES[index])
        if len(candidates) == 1:
            ids: tuple[str, ...] = (self.accounts[next(iter(candidates))].id,)
        else:
            ids = tuple(sorted(self.accounts[a].id for a in candidates)[:_MAX_CANDIDATES])
        if self.people_index.is_shared(key):
            return self._conflict(person, self._duplicate_reason(position), candidates=ids)
        if not candidates:
            return LinkStep(
                action="create",
                identity=person,
                member_id=None,
                matched_by=None,
                reason=(
                    f"no member matches {self.labels[position]} by externalId, userName or "
                    "email; a new member will be created"
                ),
            )
        if len(candidates) > 1:
            named = sorted((self.accounts[a].id, rule) for a, rule in candidates.items())
            matches = _enumerate(
                _truncate(
                    [f"member {id_} by {rule}" for id_, rule in named[: _MAX_NAMED + 1]],
                    f"{len(named) - _MAX_NAMED} more members",
                )
            )
            return self._conflict(
                person,
                f"{self.labels[position]} matches {matches}; merge or fix them in the app first",
                candidates=ids,
            )

        [(account, rule)] = candidates.items()
        member = self.accounts[account]
        member_key = self.account_keys[account]
        if self._claimed_by_others(member_key):
            names = _truncate(self._named(member_key, None), "others")
            return self._conflict(
                person,
                f"identities {_enumerate(names)} {'both' if len(names) == 2 else 'all'} match "
                f"member {member.id}; keep one of them in the IdP or fix the member in the app "
                "first",
                member_id=member.id,
                matched_by=rule,
                candidates=ids,
            )

        if rule != "externalId":
            # The IdP's own id is exact; a userName or an email was found
            # through the lossy fold and must also be the same address exactly.
            lookalike = self._lookalike(person, member, key, member_key)
            if lookalike is not None:
                return self._conflict(
                    person,
                    f"{self.labels[position]} only looks like member {member.id}'s {lookalike}; "
                    "different addresses may belong to different people, so it is not linked. "
                    "If it is the same person, spell the address the same in the IdP and the "
                    "app; if not, give one of them another address",
                    member_id=member.id,
                    matched_by=rule,
                    candidates=ids,
                )
        if key[0] is not None and member_key[0] is not None and key[0] != member_key[0]:
            return self._conflict(
                person,
                f"{self.labels[position]} matches member {member.id} by {rule}, but member "
                f"{member.id} is already linked to another identity (externalId "
                f"{member_key[0]!r}); fix the member or the identity first",
                member_id=member.id,
                matched_by=rule,
                candidates=ids,
            )
        if not member.active and person.active:
            action: LinkAction = "reactivate"
            reason = (
                f"member {member.id} matches {self.labels[position]} by {rule} and is "
                "deactivated; it will be reactivated with the same id"
            )
        elif (
            member.scim_managed
            and member_key[0] == key[0]
            # Without externalIds only a userName match says "the same person";
            # the userName comparison below implies it, this line says why.
            and (key[0] is not None or rule == "userName")
            and member_key[1] == key[1]
            # Folded alike is not enough to leave the userName as it is: an
            # IdP that respells it (ss to ß) is heard.
            and self.policy.exact(member.user_name) == self.policy.exact(person.user_name)
            and member.active == person.active
        ):
            action = "unchanged"
            reason = f"member {member.id} is already linked to {self.labels[position]}"
        else:
            action = "link"
            reason = (
                f"member {member.id} matches {self.labels[position]} by {rule}; it will be "
                "linked to this identity and managed by SCIM"
            )
        return LinkStep(
            action=action,
            identity=person,
            member_id=member.id,
            matched_by=rule,
            reason=reason,
            candidates=ids,
        )

    def _lookalike(
        self, person: Identity, member: Member, key: _Keys, member_key: _Keys
    ) -> str | None:
        """What of the member only looks like the identity's address, described; or ``None``.

        A userName or primary email equal to the identity's under the fold
        (``key`` and ``member_key`` hold the folded values) but with another
        exact key: the characters that made them fold alike are named, so
        that the admin sees why.
        """
        pairs = (
            ("userName", person.user_name, member.user_name, 1),
            ("email", person.primary_email, member.primary_email, 2),
        )
        for what, ours, theirs, rule in pairs:
            if (
                ours is not None
                and theirs is not None
                and key[rule] is not None
                and key[rule] == member_key[rule]
                and self.policy.exact(ours) != self.policy.exact(theirs)
            ):
                return f"{what} {theirs!r} ({explain_lookalike(ours, theirs)})"
        return None

    def _claimed_by_others(self, member_key: _Keys) -> bool:
        """Whether the member is a candidate of more than one identity."""
        claimer: int | None = None
        for _, _, group in self.people_index.lookup(member_key):
            if len(group) > 1 or (claimer is not None and group[0] != claimer):
                return True
            claimer = group[0]
        return False

    def _named(self, key: _Keys, exclude: int | None, rule: int | None = None) -> list[str]:
        """The sorted labels of the identities sharing key's values (or only rule's).

        At most _MAX_NAMED + 1 of them, without ``exclude``. Each group is
        sorted once and merged lazily: a group of thousands of identities
        costs one sort, not one per identity that names it.
        """
        ordered = []
        for found, value, group in self.people_index.lookup(key):
            if rule is not None and found != rule:
                continue
            cached = self.sorted_groups.get((found, value))
            if cached is None:
                cached = sorted((self.labels[p], p) for p in group)
                self.sorted_groups[found, value] = cached
            ordered.append(cached)
        seen = {exclude}
        names: list[str] = []
        for label, position in heapq.merge(*ordered):
            if position not in seen:
                seen.add(position)
                names.append(label)
                if len(names) > _MAX_NAMED:
                    break
        return names

    def _duplicate_reason(self, position: int) -> str:
        key = self.people_keys[position]
        parts = []
        for rule, _, group in self.people_index.lookup(key):
            if len(group) > 1:
                others = _truncate(
                    self._named(key, position, rule), f"{len(group) - 1 - _MAX_NAMED} more"
                )
                parts.append(f"same {_RULES[rule]} as {_enumerate(others)}")
        return (
            f"{self.labels[position]} appears more than once in the input ({'; '.join(parts)}); "
            "keep a single identity per person in the IdP first"
        )

    @staticmethod
    def _conflict(
        person: Identity,
        reason: str,
        *,
        member_id: str | None = None,
        matched_by: _MatchRule | None = None,
        candidates: tuple[str, ...] = (),
    ) -> LinkStep:
        return LinkStep(
            action="conflict",
            identity=person,
            member_id=member_id,
            matched_by=matched_by,
            reason=reason,
            candidates=candidates,
        )


def _label(person: Identity) -> str:
    """How reasons name an identity: its userName, and its externalId when it has one."""
    if person.external_id is None:
        return repr(person.user_name)
    return f"{person.user_name!r} (externalId {person.external_id!r})"


def _truncate(names: list[str], rest: str) -> list[str]:
    """At most _MAX_NAMED names, then ``rest`` ("3 more") if there were more."""
    if len(names) <= _MAX_NAMED:
        return names
    return [*names[:_MAX_NAMED], rest]


def _enumerate(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _canonical_order(people: Sequence[Identity], keys: Sequence[_Keys]) -> list[int]:
    """Positions sorted by (normalised userName, externalId), then by every field.

    Only input duplicates share a normalised userName, so the full
    comparison runs on their few runs alone: equal sort keys then mean equal
    identities, and the plan never depends on the input order.
    """
    order = sorted(range(len(people)), key=lambda i: (keys[i][1], keys[i][0] or ""))
    start = 0
    while start < len(order):
        first = keys[order[start]]
        end = start + 1
        while end < len(order) and keys[order[end]][1] == first[1]:
            end += 1
        if end - start > 1:
            order[start:end] = sorted(order[start:end], key=lambda i: _full_key(people[i]))
        start = end
    return order


def _full_key(person: Identity) -> tuple[Any, ...]:
    def optional(value: str | None) -> tuple[bool, str]:
        return (value is not None, value or "")

    return (
        person.external_id or "",
        person.user_name,
        person.emails,
        person.active,
        optional(person.given_name),
        optional(person.family_name),
        optional(person.display_name),
        optional(person.role),
    )


# Reading identities from an IdP export.
#
# Column headers (and flat JSON keys) are compared lower-cased, without spaces
# and underscores, so "First name", "first_name" and "firstName" are one
# column. Each field lists its aliases in priority order: when a file has two
# of them, the first non-empty one wins.
_FIELDS: dict[str, tuple[str, ...]] = {
    "user_name": ("username", "login"),
    "external_id": ("externalid", "id", "oktaid", "objectid"),
    "email": ("email", "primaryemail", "emails"),
    "second_email": ("secondemail", "secondaryemail"),
    "given_name": ("firstname", "givenname"),
    "family_name": ("lastname", "familyname", "surname"),
    "display_name": ("displayname",),
    "active": ("status", "active"),
    "role": ("role",),
}
_ALIASES: dict[str, tuple[str, int]] = {
    alias: (field, rank) for field, aliases in _FIELDS.items() for rank, alias in enumerate(aliases)
}
# Okta user statuses: every one but DEPROVISIONED is a person who still
# belongs (a suspended or locked-out user comes back without a new account).
_OKTA_STATUSES: dict[str, bool] = {
    "active": True,
    "provisioned": True,
    "staged": True,
    "recovery": True,
    "password_expired": True,
    "locked_out": True,
    "suspended": True,
    "deprovisioned": False,
}
_STATUSES: dict[str, bool] = {
    **_OKTA_STATUSES,
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "1": True,
    "0": False,
}
_LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
# Control characters, and surrogates (JSON's "\ud800" alone): no name or
# address holds one, and a NUL or a lone surrogate cannot even be stored.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
# How errors name a field: as the SCIM attribute it becomes.
_FIELD_NAMES = {
    "user_name": "userName",
    "external_id": "externalId",
    "second_email": "email",
    "given_name": "givenName",
    "family_name": "familyName",
    "display_name": "displayName",
}


def read_identities(path: pathlib.Path, *, limit: int | None = None) -> list[Identity]:
    """Read the identities of an IdP export: a ``.csv`` or a ``.json`` file.

    CSV is an Okta users report or a hand-written file (userName or email
    column required); JSON is a list of SCIM User documents or flat objects,
    or a SCIM ListResponse. Raises :class:`InputError` naming the file, the
    line (CSV) or index (JSON) and the problem; an unreadable file raises
    :class:`OSError`. ``limit`` is as in :func:`parse_identities`.
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(
            f"{path}: cannot read identities from a {suffix or 'suffix-less'!r} file; "
            "use a .csv or .json file"
        )
    return parse_identities(
        path.read_bytes(), name=str(path), kind="csv" if suffix == ".csv" else "json", limit=limit
    )


def parse_identities(
    data: bytes | str,
    *,
    name: str = "the file",
    kind: Literal["csv", "json"] | None = None,
    limit: int | None = None,
) -> list[Identity]:
    """Read the identities of an IdP export held in memory (an upload), as :func:`read_identities`.

    ``data`` is the file's bytes (UTF-8, with or without a byte order mark)
    or its text; ``name`` is how errors name it. ``kind`` says CSV or JSON;
    without it, a file whose first character is ``[`` or ``{`` is JSON and
    any other is CSV. With ``limit``, a file of more identities is refused
    (:class:`InputError`) as soon as the one past the limit is read.
    """
    if isinstance(data, bytes):
        try:
            # utf-8-sig: Excel saves "CSV UTF-8" with a byte order mark.
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{name}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
    else:
        text = data.removeprefix("\ufeff")
    if kind is None:
        kind = "json" if text.lstrip()[:1] in ("[", "{") else "csv"
    if kind == "csv":
        return _read_csv(name, text, limit)
    return _read_json(name, text, limit)


def _too_many(name: str, limit: int) -> InputError:
    return InputError(
        f"{name}: more than {limit:,} identities; split the export into files of at most "
        f"{limit:,} and import them one after the other"
    )


def _canonical(header: str) -> str:
    return header.strip().lower().replace(" ", "").replace("_", "")


def _read_csv(path: str, text: str, limit: int | None) -> list[Identity]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
    except csv.Error as error:
        raise InputError(f"{path}: line 1: not a CSV row ({error})") from None
    columns: dict[str, list[tuple[int, int]]] = {}
    for index, name in enumerate(header):
        alias = _ALIASES.get(_canonical(name))
        if alias is not None:
            field, rank = alias
            columns.setdefault(field, []).append((rank, index))
    if "user_name" not in columns and "email" not in columns:
        found = ", ".join(repr(name) for name in header) or "none"
        raise InputError(
            f"{path}: no userName or email column (found columns: {found}); "
            "name one of them 'userName' or 'email'"
        )
    ordered = {field: [index for _, index in sorted(found)] for field, found in columns.items()}
    identities: list[Identity] = []
    end = reader.line_num
    while True:
        try:
            row = next(reader, None)
        except csv.Error as error:
            # A quote never closed, or a field past csv's size limit.
            raise InputError(f"{path}: line {end + 1}: not a CSV row ({error})") from None
        if row is None:
            break
        # A row may span several lines (a quoted newline): name its first one.
        start, end = end + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines, often at the end of a hand-written file
        values: dict[str, str] = {}
        for field, indexes in ordered.items():
            for index in indexes:
                cell = row[index].strip() if index < len(row) else ""
                if cell:
                    values[field] = cell
                    break
        if limit is not None and len(identities) >= limit:
            raise _too_many(path, limit)
        identities.append(_identity(values, values.get("active"), f"{path}: line {start}"))
    return identities


def _read_json(path: str, text: str, limit: int | None) -> list[Identity]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise InputError(
            f"{path}: not a list of users (arrays or objects nested too deeply)"
        ) from None
    items: Any = data
    if isinstance(data, dict):
        # RFC 7644 §3.4.2: Resources may be left out when there are no results.
        empty = _LIST_RESPONSE in (data.get("schemas") or ())
        items = data.get("Resources", [] if empty else None)
    if not isinstance(items, list):
        raise InputError(
            f'{path}: expected a list of users or a SCIM ListResponse with "Resources"'
        )
    if limit is not None and len(items) > limit:
        raise _too_many(path, limit)
    return [_json_identity(item, f"{path}: index {index}") for index, item in enumerate(items)]


def _json_identity(item: object, where: str) -> Identity:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object, not {type(item).__name__}")
    # In a SCIM document "id" is the id the service provider gave, not the
    # IdP's: only a flat object's "id" is an externalId.
    scim = "schemas" in item
    values: dict[str, str] = {}
    ranks: dict[str, int] = {}
    active: object = None
    active_rank = len(_FIELDS["active"])
    emails: list[str] = []
    role = roles = None
    for key, value in item.items():
        canonical = _canonical(str(key))
        if str(key).endswith(":User"):
            # An extension (the role extension, the enterprise one): only its role matters here.
            if isinstance(value, dict) and value.get("role") is not None:
                role = role or _text(value["role"], f"{key}.role", where)
            continue
        if canonical == "emails" and isinstance(value, list):
            emails = _scim_values(value, key, where)
            continue
        if canonical == "roles" and isinstance(value, list):
            roles = next(iter(_scim_values(value, key, where)), None)
            continue
        if canonical == "name" and isinstance(value, dict):
            for sub, field in (("givenName", "given_name"), ("familyName", "family_name")):
                text = _text(value.get(sub), f"name.{sub}", where)
                if text is not None:
                    values[field], ranks[field] = text, -1
            continue
        alias = _ALIASES.get(canonical)
        if alias is None or (scim and canonical == "id"):
            continue
        field, rank = alias
        if field == "active":
            if value is not None and rank < active_rank:
                active, active_rank = value, rank
            continue
        text = _text(value, str(key), where)
        if text is not None and rank < ranks.get(field, len(_FIELDS[field])):
            values[field], ranks[field] = text, rank
    if emails:
        # The SCIM list says which address is primary; it wins over a flat "email".
        values["email"] = emails[0]
    chosen_role = role or roles
    if chosen_role is not None:
        values["role"] = chosen_role
    return _identity(values, active, where, extra_emails=emails[1:])


def _text(value: object, key: str, where: str) -> str | None:
    """A string value, stripped; empty means absent. Numbers are accepted as ids are."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(f"{where}: {key} must be a string, not {type(value).__name__}")
    return str(value).strip() or None


def _scim_values(elements: list[Any], key: str, where: str) -> list[str]:
    """The values of a SCIM multi-valued attribute (or a list of strings), primary first."""
    found: list[tuple[bool, str]] = []
    for element in elements:
        if isinstance(element, dict):
            text = _text(element.get("value"), f"{key}.value", where)
            primary = element.get("primary") is True
        else:
            text, primary = _text(element, key, where), False
        if text is not None:
            found.append((not primary, text))
    # Stable: the primary one first, the others in the order given.
    return [text for _, text in sorted(found, key=lambda pair: pair[0])]


def _identity(
    values: Mapping[str, str], active: object, where: str, *, extra_emails: Sequence[str] = ()
) -> Identity:
    # One search over every value (the usual case finds nothing), then which one.
    if _CONTROL.search("".join((*values.values(), *extra_emails))) is not None:
        _refuse_control(values, extra_emails, where)
    emails: list[str] = []
    for address in (values.get("email"), *extra_emails, values.get("second_email")):
        if address and address not in emails:
            emails.append(address)
    user_name = values.get("user_name") or (emails[0] if emails else None)
    if user_name is None:
        raise InputError(f"{where}: no userName and no email")
    return Identity(
        user_name=user_name,
        external_id=values.get("external_id"),
        emails=tuple(emails),
        active=_active(active, where),
        given_name=values.get("given_name"),
        family_name=values.get("family_name"),
        display_name=values.get("display_name"),
        role=values.get("role"),
    )


def _refuse_control(values: Mapping[str, str], extra_emails: Sequence[str], where: str) -> None:
    for field, value in (*values.items(), *(("email", e) for e in extra_emails)):
        control = _CONTROL.search(value)
        if control is not None:
            kind = "surrogate" if "\ud800" <= control.group() <= "\udfff" else "control character"
            raise InputError(
                f"{where}: {_FIELD_NAMES.get(field, field)} holds the {kind} "
                f"U+{ord(control.group()):04X}; remove it"
            )


def _active(value: object, where: str) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        status = value.strip().lower().replace(" ", "_")
        if not status:
            return True
        if status in _STATUSES:
            return _STATUSES[status]
    statuses = ", ".join(status.upper() for status in _OKTA_STATUSES)
    raise InputError(
        f"{where}: unknown status {value!r}; use an Okta status ({statuses}) or true/false"
    )
