"""The sign-in protocol: the AuthnRequest, the ACS's verification, and the member it signs in.

:class:`SignInFlow` starts sign-ins (a signed request id, nothing written)
and consumes the IdP's responses: it routes a response to the connection
its request was made for, has it verified (:mod:`pbidentity.saml._response`),
consumes its ids against replay, and finds (or creates just in time) the
member. An answer to the admin's test sign-in goes to the configuration
part, which activates the pending connection. Nothing here speaks HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

import attrs

from pbidentity._lifecycle import LifecycleWork
from pbidentity._lifecycle import tenant_by_slug
from pbidentity.domain import Member
from pbidentity.domain import RoleDecision
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import LinkConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.http import Request
from pbidentity.saml._binding import BINDINGS_KEPT
from pbidentity.saml._binding import PURPOSES
from pbidentity.saml._binding import REQUEST_ID
from pbidentity.saml._binding import RequestKeys
from pbidentity.saml._binding import binding
from pbidentity.saml._binding import binding_cookie
from pbidentity.saml._binding import browser_nonces
from pbidentity.saml._binding import local_path
from pbidentity.saml._binding import request_mac
from pbidentity.saml._context import SamlContext
from pbidentity.saml._outcomes import Refused
from pbidentity.saml._outcomes import SignIn
from pbidentity.saml._outcomes import SignInFailure
from pbidentity.saml._outcomes import SignInOutcome
from pbidentity.saml._outcomes import error_finding
from pbidentity.saml._protocol import AuthnRedirect
from pbidentity.saml._protocol import redirect_for
from pbidentity.saml._roles import decide_role
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report
from pbidentity.storage import Transaction

if TYPE_CHECKING:
    from pbidentity.saml._attributes import Profile
    from pbidentity.saml._response import Assertion
    from pbidentity.saml._setup import SamlSetup

__all__ = [
    "SAML_EXTRA",
    "SignInFlow",
    "attribute_findings",
    "find_member",
    "profile_of",
    "remember",
]

log = logging.getLogger("pbidentity.saml")

SAML_EXTRA = "SAML sign-in needs the saml extra: pip install 'pbidentity[saml]'"


class SignInFlow:
    """Starting sign-ins and deciding the responses that answer them."""

    def __init__(self, context: SamlContext, keys: RequestKeys, setup: SamlSetup) -> None:
        self._context = context
        self._keys = keys
        #: Activates the pending connection when the admin's test sign-in succeeds.
        self._setup = setup

    # -- Starting a sign-in ----------------------------------------------------

    def begin(
        self,
        slug: str,
        purpose: Literal["sign_in", "authorize"],
        relay_state: str | None,
        browser: Request | None,
    ) -> AuthnRedirect:
        """The redirect to the IdP for a sign-in (or test sign-in) of workspace ``slug``."""
        context = self._context
        now = context.clock()
        relay = local_path(relay_state)
        with context.storage.transaction(write=False) as tx:
            tenant = context.tenant(tx, slug)
            current = context.connections(tx, tenant)
            key = self._keys.stored(tx, tenant)
        connection = current.pending if purpose == "authorize" else current.active
        if connection is None:
            raise NotFoundError(
                "there is no pending SAML configuration to authorize: save one first"
                if purpose == "authorize"
                else f"workspace {slug!r} has no active SAML configuration: SSO is not set up"
            )
        if key is None:
            key = self._keys.create(tenant)
        signing_key = None
        if connection.sign_requests:
            from pbidentity.saml._sp_keys import SpKeyStore

            signing_key = SpKeyStore(context).keys(tenant, create=True).signing_key
        nonce = context.new_secret()
        mark = "a" if purpose == "authorize" else "s"
        body = f"{mark}{int(now.timestamp()):010x}{binding(nonce)}"
        request_id = f"id{body}{request_mac(key, tenant.id, connection.id, body)}"
        if purpose == "authorize":
            # The test sign-in keeps its row: it is an admin's action, and the
            # row ties it to the pending configuration and its RelayState.
            with context.storage.transaction() as tx:
                context.purge(tx, now)
                tx.add_saml_request(
                    SamlRequest(
                        id=request_id,
                        tenant_id=tenant.id,
                        connection_id=connection.id,
                        purpose=purpose,
                        relay_state=relay,
                        created=now,
                        expires=now + context.config.request_lifetime,
                    )
                )
        nonces = [nonce, *(n for n in browser_nonces(browser) if n != nonce)]
        return redirect_for(
            request_id=request_id,
            sp=context.service_provider(slug),
            idp=connection.idp,
            now=now,
            relay_state=relay,
            cookie=binding_cookie(context, slug, nonces[:BINDINGS_KEPT]),
            signing_key=signing_key,
        )

    # -- The ACS -----------------------------------------------------------------

    def consume(
        self, tenant_slug: str, saml_response: str, relay_state: str | None = None
    ) -> SignInOutcome:
        """Verify a posted SAMLResponse and decide: a sign-in, an activation, or a refusal.

        See :meth:`pbidentity.saml.SamlService.consume`.
        """
        context = self._context
        relay = local_path(relay_state)
        purpose: Literal["sign_in", "authorize"] = "sign_in"
        tenant: Tenant | None = None
        try:
            with context.storage.transaction() as tx:
                tenant = tx.find_tenant(tenant_slug)
                if tenant is None:
                    raise Refused(
                        error_finding("tenant.unknown", f"There is no workspace {tenant_slug!r}."),
                        status=404,
                    )
                context.purge(tx, context.clock())
                answered = in_response_to(saml_response, context.config.max_body_bytes)
                request: SamlRequest | None = None
                if answered is not None:
                    # Used up here, before verification: a request id is
                    # good for one response, even one that fails.
                    request = self._answered(tx, tenant, answered)
                if request is not None:
                    purpose = request.purpose
                routed: Refused | tuple[SamlConnection, Literal["sign_in", "authorize"]]
                try:
                    routed = self._connection_for(tx, tenant, answered, request)
                except Refused as refused:
                    routed = refused  # raised after the commit, so that the id stays used
            if isinstance(routed, Refused):
                raise routed
            connection, purpose = routed
            if request is not None and request.relay_state and not relay:
                relay = request.relay_state
            assertion = self._verify(saml_response, tenant, connection, request)
            if purpose == "authorize":
                return self._setup.activate(tenant, connection, assertion, relay)
            return self._sign_in(tenant, connection, assertion, relay, request is None)
        except Refused as refused:
            failure = SignInFailure(
                tenant=tenant,
                purpose=purpose,
                report=Report((refused.finding,)),
                relay_state=relay,
                status=refused.status,
            )
            if purpose == "authorize" and tenant is not None:
                self._setup.record_attempt(tenant, failure.report)
            log.warning(
                "SAML %s refused for workspace %s: %s (%s)",
                purpose,
                tenant_slug,
                refused.finding.code,
                refused.finding.message,
            )
            return failure

    def _answered(self, tx: Transaction, tenant: Tenant, answered: str) -> SamlRequest | None:
        """The request a response answers, used up; ``None`` if unknown, forged, used or expired.

        A member's sign-in request was never stored: its id is checked
        against the tenant's key and consumed in the replay cache. The
        admin's test sign-in request is taken from storage.
        """
        context = self._context
        parsed = REQUEST_ID.fullmatch(answered)
        if parsed is None:
            return None
        mark, issued_hex, _, mac = parsed.groups()
        purpose = PURPOSES[mark]
        now = context.clock()
        issued = datetime.fromtimestamp(int(issued_hex, 16), UTC)
        expires = issued + context.config.request_lifetime
        key = self._keys.stored(tx, tenant)
        if key is None or expires <= now or issued > now + context.config.clock_skew:
            return None
        if purpose == "authorize":
            request = tx.take_saml_request(tenant.id, answered)
            if request is None or request.expires <= now:
                return None
        else:
            active = context.connections(tx, tenant).active
            if active is None:
                return None
            request = SamlRequest(
                id=answered,
                tenant_id=tenant.id,
                connection_id=active.id,
                purpose="sign_in",
                created=issued,
                expires=expires,
            )
        # The MAC covers the connection, so a request made for a configuration
        # replaced since then is as unknown as one never sent.
        body = answered[2:-32]
        if not hmac.compare_digest(mac, request_mac(key, tenant.id, request.connection_id, body)):
            return None
        # ":" cannot occur in an XML ID, so no assertion id can take this slot.
        if purpose == "sign_in" and not tx.remember_assertion(
            tenant.id, f"request:{answered}", expires
        ):
            return None
        return request

    def _connection_for(
        self,
        tx: Transaction,
        tenant: Tenant,
        answered: str | None,
        request: SamlRequest | None,
    ) -> tuple[SamlConnection, Literal["sign_in", "authorize"]]:
        current = self._context.connections(tx, tenant)
        if answered is not None and request is None:
            lifetime = self._context.config.request_lifetime
            raise Refused(
                error_finding(
                    "response.in_response_to",
                    f"The response answers sign-in request {answered!r}, which this app did not "
                    "send, already used, which expired "
                    f"({int(lifetime.total_seconds() // 60)} minutes), or "
                    "whose SSO configuration was replaced meanwhile.",
                    where="Response/@InResponseTo",
                    suggestion="Start the sign-in again from the app.",
                )
            )
        if request is None:
            active = current.active
            if active is None:
                raise Refused(
                    error_finding(
                        "connection.none",
                        "SSO is not set up for this workspace.",
                        suggestion="Ask an admin to set up SAML in Settings, SSO.",
                    ),
                    status=404,
                )
            if not active.allow_idp_initiated:
                raise Refused(
                    error_finding(
                        "response.unsolicited",
                        "This workspace accepts only sign-ins started from the app, and this "
                        "response answers no sign-in request (it was started at the identity "
                        "provider, for example from an app tile).",
                        where="Response/@InResponseTo",
                        suggestion="Sign in from the app's sign-in page, or let an admin allow "
                        "sign-ins started at the identity provider.",
                    )
                )
            return active, "sign_in"
        wanted = current.pending if request.purpose == "authorize" else current.active
        if wanted is None or wanted.id != request.connection_id:
            raise Refused(
                error_finding(
                    "connection.changed",
                    "The SAML configuration changed while this sign-in was under way.",
                    suggestion="Start again: "
                    + ("click Save & authorize." if request.purpose == "authorize" else "sign in."),
                )
            )
        return wanted, request.purpose

    def _verify(
        self,
        saml_response: str,
        tenant: Tenant,
        connection: SamlConnection,
        request: SamlRequest | None,
    ) -> Assertion:
        context = self._context
        try:
            from pbidentity.saml._response import SignInError
            from pbidentity.saml._response import verify_response
            from pbidentity.saml._sp_keys import SpKeyStore
        except ImportError as error:  # pragma: no cover - depends on the installed extras
            raise Refused(error_finding("saml.unavailable", SAML_EXTRA), status=500) from error
        encryption = connection.assertion_encryption
        # With encryption off no key is read: an encrypted assertion is then
        # refused with a finding that says how to turn it on.
        keys = (
            () if encryption == "off" else SpKeyStore(context).keys(tenant, create=True).encryption
        )
        try:
            return verify_response(
                saml_response,
                sp=context.service_provider(tenant.slug),
                idp=connection.idp,
                request_id=None if request is None else request.id,
                now=context.clock(),
                clock_skew=context.config.clock_skew,
                max_bytes=context.config.max_body_bytes,
                decryption_keys=keys,
                require_encryption=encryption == "require",
            )
        except SignInError as error:
            raise Refused(error.finding) from error

    # -- The member ------------------------------------------------------------

    def _sign_in(
        self,
        tenant: Tenant,
        connection: SamlConnection,
        assertion: Assertion,
        relay: str | None,
        idp_initiated: bool,
    ) -> SignIn:
        from pbidentity.saml._identity import other_email

        context = self._context
        profile = profile_of(connection, assertion)
        email = profile.email
        trail = [
            f"response signed by IdP certificate #{assertion.signed_by + 1}",
            "started at the identity provider" if idp_initiated else "answers our sign-in request",
        ]
        ignored = other_email(profile)
        if ignored is not None:
            trail.append(f"the email attribute {ignored} is not the NameID {email}; not matched")
        if not email:
            raise Refused(
                error_finding(
                    "member.no_email",
                    "The identity provider sent no email address, so the sign-in cannot find "
                    "the member.",
                    suggestion="In the IdP app, set the NameID format to EmailAddress or add an "
                    "'email' attribute statement.",
                )
            )
        signed_in = {"idp_initiated": idp_initiated, "created": False}
        findings: list[Finding] = []
        # The usual case (a known, active member) is one write transaction:
        # the assertion id consumed, the member found, the sign-in recorded.
        with context.storage.transaction() as tx:
            remember(tx, tenant, assertion)
            member = find_member(tx, tenant, email)
            if member is not None:
                trail.append(f"matched member {member.id} by email {email}")
                if member.active:
                    self._signed_in_event(tx, tenant, member, signed_in)
        if member is None:
            if connection.unknown_members != "create":
                raise Refused(
                    error_finding(
                        "member.unknown",
                        f"{email} is not a member of this workspace.",
                        suggestion="Ask an admin to assign you the app in the identity provider "
                        "(with provisioning on, that creates your membership).",
                    )
                )
            role = decide_role(
                connection.roles, tenant, context.roles, assertion.attributes, current=None
            )
            member = self.create_member(tenant, email, profile, role=role.decision)
            signed_in["created"] = True
            trail.append(f"created member {member.id} just in time for {email}")
            trail.extend(role.trail)
            findings.extend(role.findings)
            if member.active:
                with context.storage.transaction() as tx:
                    self._signed_in_event(tx, tenant, member, signed_in)
        elif member.active:
            role = decide_role(
                connection.roles, tenant, context.roles, assertion.attributes, member.decision
            )
            trail.extend(role.trail)
            findings.extend(role.findings)
            if role.decision is not None:
                member = self._give_role(tenant, member, role.decision, trail, findings)
        if not member.active:
            raise Refused(
                error_finding(
                    "member.deactivated",
                    f"The membership of {email} in this workspace is deactivated.",
                    suggestion="Ask an admin to reactivate it (in the identity provider when "
                    "provisioning manages it).",
                )
            )
        if findings:
            log.warning(
                "SAML sign-in of member %s in workspace %s: %s",
                member.id,
                tenant.slug,
                "; ".join(f.message for f in findings),
            )
        return SignIn(
            tenant=tenant,
            member=member,
            created=signed_in["created"],
            name_id=assertion.name_id,
            session_index=assertion.session_index,
            attributes=assertion.attributes,
            relay_state=relay,
            idp_initiated=idp_initiated,
            trail=tuple(trail),
            request_id=assertion.in_response_to,
            findings=tuple(findings),
        )

    def _give_role(
        self,
        tenant: Tenant,
        member: Member,
        decision: RoleDecision,
        trail: list[str],
        findings: list[Finding],
    ) -> Member:
        """The member with the role the sign-in decided, saved with its event if it changed."""
        if (member.role, member.role_source, member.role_rule) == (
            decision.role,
            decision.source,
            decision.rule,
        ):
            return member
        context = self._context
        try:
            with context.storage.transaction() as tx:
                current = tx.get_member(tenant.id, member.id)
                if current is None:
                    return member
                lifecycle = LifecycleWork.open(
                    tx,
                    tenant_by_slug(tx, tenant.slug),
                    roles=context.roles,
                    actor="saml",
                    clock=context.clock,
                    new_id=context.new_id,
                )
                # Decided already, by the sign-in: not again from SCIM's last values.
                lifecycle.decide_roles = False
                saved = lifecycle.save(
                    current,
                    attrs.evolve(
                        current,
                        role=decision.role,
                        role_source=decision.source,
                        role_rule=decision.rule,
                    ),
                )
                lifecycle.finish()
        except LastAdminError as refused:
            # The sign-in itself stands: only the role change is refused.
            trail.append(f"role {decision.role} not given: the workspace's last admin")
            findings.append(
                Finding(
                    code="roles.last_admin",
                    severity="warning",
                    message=str(refused),
                    where="role",
                )
            )
            return member
        except ConflictError:
            # Changed by someone else meanwhile: the next sign-in decides again.
            trail.append(f"role {decision.role} not given: the member changed meanwhile")
            return member
        if saved.role != member.role:
            trail.append(f"role changed from {member.role} to {saved.role}")
        return saved

    def _signed_in_event(
        self, tx: Transaction, tenant: Tenant, member: Member, data: Mapping[str, Any]
    ) -> None:
        context = self._context
        context.event(tx, tenant, "member.signed_in", None, "saml", data, subject_id=member.id)

    def create_member(
        self,
        tenant: Tenant,
        email: str,
        profile: Profile,
        *,
        role: RoleDecision | None = None,
    ) -> Member:
        """Create the member ``email`` just in time, named from the profile.

        Its userName and only email are the identity the IdP authenticated
        (never an email attribute naming someone else: a member's emails are
        matching keys of later sign-ins and links). Its role is ``role``, as
        the sign-in decided it, else the least privileged one.
        """
        context = self._context
        given = role or RoleDecision(
            role=context.roles.least_privileged,
            source="app",
            rule=f"set in the app ({context.roles.least_privileged})",
        )
        attributes: dict[str, Any] = {
            "userName": email.strip(),
            "active": True,
            "emails": [{"value": email.strip(), "primary": True, "type": "work"}],
        }
        name = {
            key: value
            for key, value in (("givenName", profile.first_name), ("familyName", profile.last_name))
            if value
        }
        if name:
            attributes["name"] = name
        now = context.clock()
        try:
            with context.storage.transaction() as tx:
                lifecycle = LifecycleWork.open(
                    tx,
                    tenant_by_slug(tx, tenant.slug),
                    roles=context.roles,
                    actor="saml",
                    clock=context.clock,
                    new_id=context.new_id,
                )
                created = lifecycle.create(
                    Member(
                        tenant_id=tenant.id,
                        id=context.new_id(),
                        attributes=attributes,
                        role=given.role,
                        role_source=given.source,
                        role_rule=given.rule,
                        created=now,
                        last_modified=now,
                    )
                )
                lifecycle.finish()
            return created
        except (ConflictError, LinkConflictError):
            # The folded userName or email was taken since the lookup: by a
            # first sign-in of the same person at once (then it is that
            # member), or by someone whose address only looks like this one
            # (then find_member refuses it as a look-alike).
            with context.storage.transaction(write=False) as tx:
                found = find_member(tx, tenant, email)
            if found is None:
                raise Refused(
                    error_finding(
                        "member.unknown",
                        f"The membership of {email} changed while you were signing in.",
                        suggestion="Sign in again.",
                    )
                ) from None
            return found


def remember(tx: Transaction, tenant: Tenant, assertion: Assertion) -> None:
    """Consume the assertion's id: a response is good for one sign-in."""
    # not_on_or_after already includes the clock skew: the id is kept as
    # long as the assertion could be accepted at all.
    expires = assertion.not_on_or_after
    if not tx.remember_assertion(tenant.id, assertion.assertion_id, expires):
        raise Refused(
            error_finding(
                "response.replay",
                f"This response (assertion {assertion.assertion_id!r}) was already used to "
                "sign in; each response is good for one sign-in.",
                where="Assertion/@ID",
                suggestion="Sign in again.",
            )
        )


def profile_of(connection: SamlConnection, assertion: Assertion) -> Profile:
    """The person the assertion describes, through the connection's attribute mapping.

    Its ``email`` is the identity the sign-in matches: the NameID when it
    is an email address, else the mapped email attribute.
    """
    from pbidentity.saml._attributes import map_profile

    return map_profile(
        assertion.attributes,
        mapping=connection.attribute_mapping or None,
        name_id=assertion.name_id,
        name_id_format=assertion.name_id_format,
    )


def attribute_findings(connection: SamlConnection, assertion: Assertion) -> list[Finding]:
    """What the test sign-in tells the admin about the attributes the IdP sends."""
    from pbidentity.saml._attributes import check_attributes
    from pbidentity.saml._identity import identity_findings

    _, findings = check_attributes(
        list(assertion.attributes),
        mapping=connection.attribute_mapping or None,
        name_id=assertion.name_id,
        name_id_format=assertion.name_id_format,
    )
    return [*findings, *identity_findings(profile_of(connection, assertion))]


def find_member(tx: Transaction, tenant: Tenant, email: str) -> Member | None:
    """The member the IdP's identity names, if any; a look-alike is refused."""
    # Exact identities, never the lossy fold: see pbidentity.saml._identity.
    from pbidentity.saml._identity import IdentityRefused
    from pbidentity.saml._identity import find_member as find_by_identity

    try:
        return find_by_identity(tx, tenant.id, email)
    except IdentityRefused as refused:
        raise Refused(refused.finding) from None


def in_response_to(saml_response: str, max_bytes: int) -> str | None:
    """The InResponseTo of a posted response, read only to route it (it is verified later).

    Malformed input is refused here with the same finding verification would give.
    """
    if len(saml_response) > max_bytes * 4 // 3 + 4:
        raise Refused(
            error_finding(
                "response.too_large", f"The sign-in response is larger than {max_bytes} bytes."
            ),
            status=413,
        )
    try:
        xml = base64.b64decode("".join(saml_response.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise Refused(
            error_finding("response.malformed", "The SAMLResponse is not valid base64."),
            status=400,
        ) from error
    try:
        from lxml import etree
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise Refused(error_finding("saml.unavailable", SAML_EXTRA), status=500) from error
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as error:
        raise Refused(
            error_finding(
                "response.malformed", f"The SAMLResponse is not well-formed XML: {error}."
            ),
            status=400,
        ) from error
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise Refused(
            error_finding(
                "response.malformed",
                "The SAMLResponse carries a document type declaration, which SAML forbids.",
            ),
            status=400,
        )
    value = root.get("InResponseTo")
    if value is None:
        claimed = root.xpath(".//*[@InResponseTo]")
        if claimed:
            # No InResponseTo on the Response, yet something in it answers a
            # request: a response to someone's SP-initiated sign-in, stripped
            # to pass as one the IdP started. Refused wherever the claim is.
            name = etree.QName(claimed[0]).localname
            raise Refused(
                error_finding(
                    "response.in_response_to",
                    f"The response passes for one the identity provider started, yet its {name} "
                    "answers a sign-in request.",
                    where=f"{name}/@InResponseTo",
                    suggestion="Start the sign-in again from the app.",
                )
            )
    return None if value is None else str(value)
