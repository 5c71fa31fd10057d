"""A workspace's SAML configuration: save, check, activate, roll back.

:class:`SamlSetup` is what the host app's settings pages drive through
:class:`~pbidentity.saml.SamlService`. Saving checks the IdP's values
(:mod:`pbidentity.saml._validate`) and stores them as the *pending*
connection; the active one keeps serving sign-ins until the admin's test
sign-in with the pending one succeeds (:meth:`SamlSetup.activate`), which
swaps them in one transaction and keeps the old one as *previous*, for
:meth:`SamlSetup.rollback`. It starts no sign-in and verifies no response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

import attrs

from pbidentity.domain import IdentityProvider
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRoles
from pbidentity.domain import Tenant
from pbidentity.exceptions import InputError
from pbidentity.exceptions import PbIdentityError
from pbidentity.saml._context import SamlContext
from pbidentity.saml._outcomes import Authorized
from pbidentity.saml._outcomes import Refused
from pbidentity.saml._outcomes import SamlConnections
from pbidentity.saml._outcomes import SaveResult
from pbidentity.saml._outcomes import error_finding
from pbidentity.saml._roles import authorize_findings
from pbidentity.saml._signin import attribute_findings
from pbidentity.saml._signin import find_member
from pbidentity.saml._signin import profile_of
from pbidentity.saml._signin import remember
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report

if TYPE_CHECKING:
    from pbidentity.saml._response import Assertion

__all__ = ["SamlSetup"]

log = logging.getLogger("pbidentity.saml")

#: How far the IdP's clock may be from ours before the test sign-in warns,
#: and before it refuses (the skew the ACS tolerates is configured apart).
_CLOCK_WARN = timedelta(seconds=60)
_CLOCK_ERROR = timedelta(seconds=300)


class SamlSetup:
    """Saving, checking, activating and rolling back a workspace's SAML configuration."""

    def __init__(self, context: SamlContext) -> None:
        self._context = context

    def connections(self, tenant_slug: str) -> SamlConnections:
        """The tenant's active, pending and previous connections."""
        context = self._context
        with context.storage.transaction(write=False) as tx:
            tenant = context.tenant(tx, tenant_slug)
            return context.connections(tx, tenant)

    # -- Checking --------------------------------------------------------------

    def check_metadata(
        self, tenant_slug: str, xml: bytes
    ) -> tuple[IdentityProvider | None, Report]:
        """Read and check IdP metadata against this tenant without saving anything."""
        from pbidentity.saml._metadata import read_metadata

        idp, report = read_metadata(
            xml, now=self._context.clock(), signs_requests=self._signs_requests(tenant_slug)
        )
        if idp is None:
            return None, report
        return idp, report.plus(self._check(tenant_slug, idp, {}, None).findings)

    def _signs_requests(self, slug: str) -> bool:
        """Whether the workspace's requests are signed (a new configuration keeps the option)."""
        current = self.connections(slug)
        basis = current.active or current.pending
        return basis is not None and basis.sign_requests

    def _check(
        self,
        slug: str,
        idp: IdentityProvider,
        mapping: Mapping[str, str],
        roles: SamlRoles | None,
    ) -> Report:
        from pbidentity.saml._validate import check_connection
        from pbidentity.saml._validate import check_roles
        from pbidentity.saml._validate import check_service_provider

        context = self._context
        with context.storage.transaction(write=False) as tx:
            tenant = context.tenant(tx, slug)
            current = context.connections(tx, tenant)
            active = current.active
            basis = active or current.pending
            # Whether, never where: one workspace's admin learns nothing of the others.
            shared = any(
                c.tenant_id != tenant.id and set(c.idp.certificates) & set(idp.certificates)
                for c in tx.active_saml_connections(idp.entity_id)
            )
        sp = context.service_provider(slug)
        dev_hosts = context.config.dev_hosts
        report = check_connection(
            idp,
            sp=sp,
            now=context.clock(),
            attribute_mapping=mapping or None,
            active=None if active is None else active.idp,
            shared_elsewhere=shared,
            dev_hosts=dev_hosts,
        )
        # The app's own side too: an http public URL in production would make
        # every sign-in fail at the IdP, so the admin learns it here.
        sp_report = check_service_provider(sp, tenant_slug=slug, dev_hosts=dev_hosts)
        # The roles setting the saved configuration will have (carried over if not given).
        reading = roles or (basis.roles if basis is not None else SamlRoles())
        role_findings = check_roles(
            reading, scim_enabled=tenant.scim_enabled, advertised=idp.attributes
        )
        return report.plus((*sp_report.findings, *role_findings))

    def fetch_metadata(self, url: str) -> bytes:
        """Fetch a metadata URL through the safe fetcher (or the ``fetch`` given)."""
        from pbidentity.saml._fetch import fetch_metadata

        config = self._context.config
        fetch = self._context.fetch or fetch_metadata
        fetched = fetch(url, timeout=config.fetch_timeout, dev_hosts=config.dev_hosts)
        return bytes(fetched.body)

    # -- Saving ----------------------------------------------------------------

    def save_metadata_url(self, tenant_slug: str, url: str, **options: Any) -> SaveResult:
        """Fetch the IdP's metadata URL (Okta's "Metadata URL"), check it, save it as pending."""
        from pbidentity.saml._fetch import MetadataFetchError

        try:
            xml = self.fetch_metadata(url.strip())
        except MetadataFetchError as error:
            return SaveResult(report=Report((error.finding,)))
        return self.save_metadata_xml(tenant_slug, xml, source=url.strip(), **options)

    def save_metadata_xml(
        self,
        tenant_slug: str,
        xml: bytes,
        *,
        source: str = "upload",
        attribute_mapping: Mapping[str, str] | None = None,
        allow_idp_initiated: bool | None = None,
        unknown_members: Literal["refuse", "create"] | None = None,
        roles: SamlRoles | None = None,
        actor: str = "app",
    ) -> SaveResult:
        """Check IdP metadata (an uploaded file) and save it as the pending configuration."""
        from pbidentity.saml._metadata import read_metadata

        idp, report = read_metadata(
            xml, now=self._context.clock(), signs_requests=self._signs_requests(tenant_slug)
        )
        if idp is None or not report.ok:
            return SaveResult(report=report)
        return self._save(
            tenant_slug,
            idp,
            report,
            source=source,
            metadata_xml=xml.decode("utf-8", "replace"),
            attribute_mapping=attribute_mapping,
            allow_idp_initiated=allow_idp_initiated,
            unknown_members=unknown_members,
            roles=roles,
            actor=actor,
        )

    def save_fields(
        self,
        tenant_slug: str,
        *,
        entity_id: str,
        sso_url: str,
        certificate: str,
        binding: Literal["redirect", "post"] = "redirect",
        attribute_mapping: Mapping[str, str] | None = None,
        allow_idp_initiated: bool | None = None,
        unknown_members: Literal["refuse", "create"] | None = None,
        roles: SamlRoles | None = None,
        actor: str = "app",
    ) -> SaveResult:
        """Check values typed by hand (entity ID, SSO URL, certificate) and save them as pending."""
        from pbidentity.saml._metadata import idp_from_fields

        idp, report = idp_from_fields(entity_id, sso_url, certificate, binding)
        if idp is None or not report.ok:
            return SaveResult(report=report)
        return self._save(
            tenant_slug,
            idp,
            report,
            source="manual",
            metadata_xml=None,
            attribute_mapping=attribute_mapping,
            allow_idp_initiated=allow_idp_initiated,
            unknown_members=unknown_members,
            roles=roles,
            actor=actor,
        )

    def _save(
        self,
        slug: str,
        idp: IdentityProvider,
        report: Report,
        *,
        source: str,
        metadata_xml: str | None,
        attribute_mapping: Mapping[str, str] | None,
        allow_idp_initiated: bool | None,
        unknown_members: Literal["refuse", "create"] | None,
        roles: SamlRoles | None,
        actor: str,
    ) -> SaveResult:
        context = self._context
        mapping = dict(attribute_mapping or {})
        report = report.plus(self._check(slug, idp, mapping, roles).findings)
        if not report.ok:
            return SaveResult(report=report)
        now = context.clock()
        with context.storage.transaction() as tx:
            tenant = context.tenant(tx, slug)
            current = context.connections(tx, tenant)
            # Options not given carry over from the configuration in use, so
            # re-importing rotated metadata keeps the tenant's choices.
            basis = current.active or current.pending
            if not mapping and basis is not None:
                mapping = dict(basis.attribute_mapping)
            if current.pending is not None:
                tx.delete_saml_connection(tenant.id, current.pending.id)
            pending = SamlConnection(
                id=context.new_id(),
                tenant_id=tenant.id,
                state="pending",
                idp=idp,
                attribute_mapping=mapping,
                allow_idp_initiated=(
                    allow_idp_initiated
                    if allow_idp_initiated is not None
                    else basis is not None and basis.allow_idp_initiated
                ),
                unknown_members=(
                    unknown_members
                    if unknown_members is not None
                    else basis.unknown_members
                    if basis is not None
                    else "refuse"
                ),
                roles=roles or (basis.roles if basis is not None else SamlRoles()),
                sign_requests=basis is not None and basis.sign_requests,
                assertion_encryption="off" if basis is None else basis.assertion_encryption,
                source=source,
                metadata_xml=metadata_xml,
                created=now,
            )
            tx.add_saml_connection(pending)
            context.event(tx, tenant, "saml.saved", pending, actor, {"idp": idp.entity_id})
        log.info("tenant %s saved a pending SAML configuration for %s", slug, idp.entity_id)
        return SaveResult(report=report, connection=pending)

    def update_options(
        self,
        tenant_slug: str,
        *,
        attribute_mapping: Mapping[str, str] | None = None,
        allow_idp_initiated: bool | None = None,
        unknown_members: Literal["refuse", "create"] | None = None,
        roles: SamlRoles | None = None,
        sign_requests: bool | None = None,
        assertion_encryption: Literal["off", "accept", "require"] | None = None,
        actor: str = "app",
    ) -> SamlConnections:
        """Change how sign-ins are handled, on the active and the pending connection.

        These options never change which IdP is trusted, so they apply at
        once, without a test sign-in. ``sign_requests`` and
        ``assertion_encryption`` change what the IdP must do, too: give it
        the SP metadata again (it lists the certificates) before turning on
        what it enforces.
        """
        if unknown_members not in (None, "refuse", "create"):
            raise InputError("unknown_members must be 'refuse' or 'create'")
        if roles is not None and not isinstance(roles, SamlRoles):
            raise InputError("roles must be a SamlRoles value")
        if assertion_encryption not in (None, "off", "accept", "require"):
            raise InputError("assertion_encryption must be 'off', 'accept' or 'require'")
        context = self._context
        with context.storage.transaction() as tx:
            tenant = context.tenant(tx, tenant_slug)
            for connection in tx.saml_connections(tenant.id):
                if connection.state == "previous":
                    continue
                changed = attrs.evolve(
                    connection,
                    attribute_mapping=dict(
                        connection.attribute_mapping
                        if attribute_mapping is None
                        else attribute_mapping
                    ),
                    allow_idp_initiated=connection.allow_idp_initiated
                    if allow_idp_initiated is None
                    else allow_idp_initiated,
                    unknown_members=unknown_members or connection.unknown_members,
                    roles=roles or connection.roles,
                    sign_requests=connection.sign_requests
                    if sign_requests is None
                    else sign_requests,
                    assertion_encryption=assertion_encryption or connection.assertion_encryption,
                    version=connection.version + 1,
                )
                tx.replace_saml_connection(changed, expected_version=connection.version)
                context.event(tx, tenant, "saml.options_changed", changed, actor, {})
            return context.connections(tx, tenant)

    def discard_pending(self, tenant_slug: str, *, actor: str = "app") -> bool:
        """Drop the pending configuration; the active one is untouched."""
        context = self._context
        with context.storage.transaction() as tx:
            tenant = context.tenant(tx, tenant_slug)
            pending = context.connections(tx, tenant).pending
            if pending is None:
                return False
            tx.delete_saml_connection(tenant.id, pending.id)
            context.event(tx, tenant, "saml.discarded", pending, actor, {})
            return True

    def rollback(self, tenant_slug: str, *, actor: str = "app") -> SamlConnection:
        """Make the previous configuration active again (and the active one previous)."""
        context = self._context
        now = context.clock()
        with context.storage.transaction() as tx:
            tenant = context.tenant(tx, tenant_slug)
            current = context.connections(tx, tenant)
            if current.previous is None:
                raise InputError(
                    "there is no previous SAML configuration to go back to in this workspace"
                )
            back = current.previous
            if current.active is not None:
                # Through a free state, as the one-per-state rule wants.
                tx.delete_saml_connection(tenant.id, current.active.id)
            restored = attrs.evolve(back, state="active", activated=now, version=back.version + 1)
            tx.replace_saml_connection(restored, expected_version=back.version)
            if current.active is not None:
                demoted = attrs.evolve(current.active, state="previous", version=1)
                tx.add_saml_connection(demoted)
            context.event(tx, tenant, "saml.rolled_back", restored, actor, {})
        log.info("tenant %s rolled back to SAML configuration %s", tenant_slug, restored.id)
        return restored

    # -- Activation (the admin's test sign-in) ---------------------------------

    def activate(
        self,
        tenant: Tenant,
        connection: SamlConnection,
        assertion: Assertion,
        relay: str | None,
    ) -> Authorized:
        """Make the pending ``connection`` active: the verified test sign-in's ``assertion`` passed.

        Raises :class:`~pbidentity.saml._outcomes.Refused` when the test
        sign-in shows a configuration that would not serve (a clock far off,
        attributes that cannot identify members) or the pending one changed.
        """
        context = self._context
        findings: list[Finding] = [
            Finding(
                code="test.signed_by",
                severity="info",
                message=f"The response was signed by certificate #{assertion.signed_by + 1} of "
                "the pending configuration.",
            )
        ]
        offset = timedelta(seconds=abs(assertion.clock_offset))
        if offset > _CLOCK_ERROR:
            raise Refused(
                error_finding(
                    "test.clock",
                    f"The identity provider's clock is {int(offset.total_seconds())} seconds "
                    "away from this server's; sign-ins would fail at random.",
                    suggestion="Check the time (NTP) of the server and, for a self-hosted IdP, "
                    "of the IdP.",
                )
            )
        if offset > _CLOCK_WARN:
            findings.append(
                Finding(
                    code="test.clock",
                    severity="warning",
                    message=f"The identity provider's clock is {int(offset.total_seconds())} "
                    "seconds away from this server's.",
                    suggestion="Check the server's time synchronisation (NTP).",
                )
            )
        profile = profile_of(connection, assertion)
        findings.extend(
            authorize_findings(connection.roles, tenant, context.roles, assertion.attributes)
        )
        report = Report((*findings, *attribute_findings(connection, assertion)))
        if not report.ok:
            raise Refused(report.errors[0])
        now = context.clock()
        with context.storage.transaction() as tx:
            remember(tx, tenant, assertion)
            member = find_member(tx, tenant, profile.email) if profile.email else None
            if member is None:
                report = report.plus(
                    (
                        Finding(
                            code="test.member",
                            severity="warning",
                            message=f"You signed in as {profile.email or assertion.name_id}, "
                            "who is not a member of this workspace; members sign in with the "
                            "email address of their membership.",
                            suggestion="Check that the IdP sends members' email addresses.",
                        ),
                    )
                )
            current = context.connections(tx, tenant)
            pending = current.pending
            if pending is None or pending.id != connection.id:
                raise Refused(
                    error_finding(
                        "connection.changed",
                        "The pending SAML configuration changed while you were signing in.",
                        suggestion="Click Save & authorize again.",
                    )
                )
            if current.previous is not None:
                tx.delete_saml_connection(tenant.id, current.previous.id)
            previous = None
            if current.active is not None:
                previous = attrs.evolve(
                    current.active, state="previous", version=current.active.version + 1
                )
                tx.replace_saml_connection(previous, expected_version=current.active.version)
            active = attrs.evolve(
                pending,
                state="active",
                activated=now,
                last_attempt=report.to_dict(),
                version=pending.version + 1,
            )
            tx.replace_saml_connection(active, expected_version=pending.version)
            context.event(
                tx, tenant, "saml.activated", active, "saml", {"idp": active.idp.entity_id}
            )
        log.info("tenant %s activated SAML configuration %s", tenant.slug, active.id)
        return Authorized(
            tenant=tenant,
            connection=active,
            previous=previous,
            report=report,
            name_id=assertion.name_id,
            member=member,
            relay_state=relay,
            request_id=assertion.in_response_to,
        )

    def record_attempt(self, tenant: Tenant, report: Report) -> None:
        """Keep the failed test sign-in's findings on the pending connection, for the admin page."""
        context = self._context
        try:
            with context.storage.transaction() as tx:
                pending = context.connections(tx, tenant).pending
                if pending is None:
                    return
                tx.replace_saml_connection(
                    attrs.evolve(
                        pending, last_attempt=report.to_dict(), version=pending.version + 1
                    ),
                    expected_version=pending.version,
                )
                # The first error, whole: the SSO page lists past attempts with it.
                first = report.errors[0] if report.errors else None
                data = {"code": first.code if first else ""}
                if first is not None:
                    data.update(message=first.message, suggestion=first.suggestion or "")
                context.event(tx, tenant, "saml.activation_failed", pending, "saml", data)
        except PbIdentityError:
            log.exception("could not record the failed test sign-in of tenant %s", tenant.slug)
