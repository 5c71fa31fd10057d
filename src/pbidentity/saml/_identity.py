"""Who a verified sign-in is: the member whose address is exactly the one the IdP authenticated.

The IdP vouches for one person per assertion: its NameID when that is an
email address (the emailAddress format, or a value that looks like one),
else the mapped email attribute. An email attribute beside an email NameID is
profile data; it never chooses the member (a response for ``owner@...`` whose
email attribute says ``ceo@...`` is the owner's sign-in).

The member is found through the storage's folded indexes, which are cheap
but lossy (:func:`~pbidentity.domain.fold`), and kept only if its userName,
or else exactly one of its emails, has the identity's exact
:func:`~pbidentity.identity.email_key`. A candidate equal only under the fold
(``ceo@straße.test`` against ``ceo@strasse.test``) is refused with
``member.lookalike``: signing it in would let one person act as another.

Nothing here verifies a signature or writes: it reads one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from pbidentity.domain import Member
from pbidentity.domain import fold
from pbidentity.exceptions import InputError
from pbidentity.identity import email_key
from pbidentity.identity import email_spellings
from pbidentity.identity import explain_lookalike
from pbidentity.identity import identity_key
from pbidentity.saml._attributes import Profile
from pbidentity.saml._types import Finding
from pbidentity.storage import Transaction

__all__ = ["IdentityRefused", "find_member", "identity_findings", "other_email"]

# Candidates read per spelling. Only a single candidate is ever signed in, so
# a truncated list can only lead to a refusal (two exact matches are
# ambiguous, any look-alike refuses), never to the wrong member.
_CANDIDATES = 20


class IdentityRefused(Exception):
    """The sign-in's identity matches no member safely; carries the finding that says why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def _error(code: str, message: str, *, suggestion: str = "") -> Finding:
    return Finding(code=code, severity="error", message=message, suggestion=suggestion)


def find_member(tx: Transaction, tenant_id: str, address: str) -> Member | None:
    """The member the IdP-authenticated ``address`` is, exactly; ``None`` if nobody is.

    Raises :class:`IdentityRefused` with ``member.invalid_email`` (the address
    has no exact key), ``member.lookalike`` (a member's address is equal to it
    only under the fold) or ``member.ambiguous`` (several members have it as
    an email, none as userName).
    """
    try:
        key = email_key(address)
        spellings = email_spellings(address)
    except InputError as error:
        raise IdentityRefused(
            _error(
                "member.invalid_email",
                f"The identity provider signed you in as {address!r}, which is not an email "
                f"address this app can match exactly: {error}.",
                suggestion="Ask an admin to correct the address in the identity provider "
                "(the user's username or email, whichever the NameID carries).",
            )
        ) from None
    candidates: dict[str, Member] = {}
    for spelling in spellings:
        found = tx.members_matching(
            tenant_id, user_name=spelling, email=spelling, limit=_CANDIDATES
        )
        for member in found:
            candidates.setdefault(member.id, member)
    ordered = [candidates[i] for i in sorted(candidates)]
    by_user_name = [m for m in ordered if identity_key(m.user_name) == key]
    if len(by_user_name) == 1:
        return by_user_name[0]
    by_email = [m for m in ordered if any(identity_key(e) == key for e in _emails(m))]
    exact_ids = {m.id for m in (*by_user_name, *by_email)}
    lookalikes = [m for m in ordered if m.id not in exact_ids]
    if lookalikes:
        raise IdentityRefused(_lookalike(address, lookalikes[0], spellings))
    exact = by_user_name or by_email
    if len(exact) > 1:
        raise IdentityRefused(
            _error(
                "member.ambiguous",
                f"Several members of this workspace have the address {address!r}; the sign-in "
                "cannot tell which one is you.",
                suggestion="Ask an admin to give each member their own email address.",
            )
        )
    return exact[0] if exact else None


def _emails(member: Member) -> list[str]:
    values: Sequence[Any] = member.attributes.get("emails") or ()
    return [str(e["value"]) for e in values if isinstance(e, Mapping) and e.get("value")]


def _lookalike(address: str, member: Member, spellings: Sequence[str]) -> Finding:
    folded = {fold(s) for s in spellings}
    theirs = next(
        (v for v in (member.user_name, *_emails(member)) if fold(v) in folded), member.user_name
    )
    return _error(
        "member.lookalike",
        f"The identity provider signed you in as {address!r}, which only looks like "
        f"{theirs!r}, the address of a member of this workspace: "
        f"{explain_lookalike(address, theirs)}. Different addresses may belong to different "
        "people, so the sign-in is refused rather than made as that member.",
        suggestion="If it is the same person, an admin spells the address the same in the "
        "identity provider and the app; if not, one of them gets another address.",
    )


def other_email(profile: Profile) -> str | None:
    """The email attribute's address when it is not the identity's (exactly); else ``None``."""
    attribute, identity = profile.email_attribute, profile.email
    if attribute is None or identity is None or attribute == identity:
        return None
    try:
        same = email_key(attribute) == email_key(identity)
    except InputError:
        same = False
    return None if same else attribute


def identity_findings(profile: Profile) -> list[Finding]:
    """What the test sign-in tells the admin about the identity members will sign in with."""
    attribute = other_email(profile)
    if attribute is None:
        return []
    return [
        Finding(
            code="attributes.email_differs",
            severity="warning",
            message=f"Members sign in as their NameID ({profile.email!r} here); the email "
            f"attribute names another address ({attribute!r}), which is kept as profile data "
            "and never chooses the member.",
            where="attribute email",
            suggestion="If members are known in the app by the email attribute's address, have "
            "the IdP send that address as the NameID (Okta: Application username Email; Entra: "
            "Name ID from user.mail).",
        )
    ]
