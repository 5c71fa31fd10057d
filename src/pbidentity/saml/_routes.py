"""The SAML endpoints over HTTP: metadata, login, ACS and finish, under the service's prefix.

:class:`SamlEndpoints` turns a :class:`~pbidentity.http.Request` into a call
of the sign-in part and its outcome into a :class:`~pbidentity.http.Response`:
it reads the ACS form, keeps a verified outcome under a one-time code, and
hands it to the host app's ``on_result`` only at the finish step, in the
browser whose binding cookie holds the sign-in's nonce. It decides no
sign-in itself, and answers every failure with a page, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from typing import Literal
from urllib.parse import parse_qsl
from urllib.parse import quote
from urllib.parse import urlencode

import attrs

from pbidentity.domain import Tenant
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.saml._binding import REQUEST_ID
from pbidentity.saml._binding import binding
from pbidentity.saml._binding import binding_cookie
from pbidentity.saml._binding import browser_nonces
from pbidentity.saml._binding import code_hash
from pbidentity.saml._context import SamlContext
from pbidentity.saml._outcomes import Authorized
from pbidentity.saml._outcomes import SamlConnections
from pbidentity.saml._outcomes import SignIn
from pbidentity.saml._outcomes import SignInFailure
from pbidentity.saml._outcomes import SignInOutcome
from pbidentity.saml._outcomes import error_finding
from pbidentity.saml._pages import NO_STORE
from pbidentity.saml._pages import default_result_page
from pbidentity.saml._pages import page
from pbidentity.saml._protocol import sp_metadata
from pbidentity.saml._signin import SignInFlow
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report
from pbidentity.storage import Transaction

__all__ = ["SamlEndpoints"]

log = logging.getLogger("pbidentity.saml")

#: How long a verified outcome waits for its browser at the finish step; the
#: browser follows the redirect at once, so this only covers a slow network.
_OUTCOME_LIFETIME = timedelta(minutes=2)

_ALLOWED = {"metadata": "GET, HEAD", "login": "GET", "acs": "POST", "finish": "GET"}


class SamlEndpoints:
    """The four endpoints of every tenant, served by :meth:`handle`."""

    def __init__(self, context: SamlContext, sign_ins: SignInFlow) -> None:
        self._context = context
        self._sign_ins = sign_ins

    def handle(self, request: Request) -> Response:
        """Serve one request to the metadata, login, ACS or finish endpoint of a tenant."""
        try:
            return self._dispatch(request)
        except StorageUnavailableError:
            return page(
                503,
                "Sign-in is unavailable",
                "The app cannot reach its database right now. Try again in a minute.",
                extra=(("Retry-After", "5"),),
            )
        except Exception:
            error_id = secrets.token_hex(6)
            log.exception("SAML request failed (error id %s)", error_id)
            return page(
                500,
                "Sign-in failed",
                f"An unexpected error occurred (error id {error_id}).",
            )

    def _dispatch(self, request: Request) -> Response:
        context = self._context
        parts = [p for p in request.path.split("/") if p]
        # No workspace slug has a NUL, and PostgreSQL refuses to look one up.
        if len(parts) != 2 or "\x00" in request.path:
            return page(404, "Not found", "There is no SAML endpoint here.")
        slug, endpoint = parts
        method = request.method.upper()
        if endpoint == "metadata" and method in ("GET", "HEAD"):
            with context.storage.transaction(write=False) as tx:
                tenant = tx.find_tenant(slug)
                if tenant is None:
                    return page(404, "Not found", f"There is no workspace {slug!r}.")
                current = context.connections(tx, tenant)
            body = self._metadata(tenant, current)
            return Response(
                status=200,
                headers=(("Content-Type", "application/samlmetadata+xml"),),
                body=b"" if method == "HEAD" else body,
            )
        if endpoint == "login" and method == "GET":
            relay = request.query_value("RelayState") or request.query_value("next")
            try:
                redirect = self._sign_ins.begin(slug, "sign_in", relay, request)
            except NotFoundError as error:
                return page(404, "Single sign-on is not available", str(error))
            return redirect.to_response()
        if endpoint == "acs" and method == "POST":
            return self._acs(request, slug)
        if endpoint == "finish" and method == "GET":
            return self._finish(request, slug)
        if endpoint in _ALLOWED:
            allowed = _ALLOWED[endpoint]
            return page(
                405, "Method not allowed", f"Use {allowed} here.", extra=(("Allow", allowed),)
            )
        return page(404, "Not found", "There is no SAML endpoint here.")

    def _metadata(self, tenant: Tenant, current: SamlConnections) -> bytes:
        """The SP metadata, with the keys the workspace's options need published."""
        options = [c for c in (current.active, current.pending) if c is not None]
        signs = any(c.sign_requests for c in options)
        encrypts = any(c.assertion_encryption != "off" for c in options)
        sp = self._context.service_provider(tenant.slug)
        if not (signs or encrypts):
            return sp_metadata(sp)
        from pbidentity.saml._sp_keys import SpKeyStore

        keys = SpKeyStore(self._context).keys(tenant, create=True)
        return sp_metadata(
            sp,
            signing_keys=keys.signing if signs else (),
            # Newest first: IdPs encrypt to the first certificate listed
            # (SimpleSAMLphp does), and a new encryption key decrypts from the
            # start of its rollover, so an IdP that reads the metadata then
            # moves to the new key before the old one is dropped.
            encryption_keys=tuple(reversed(keys.encryption)) if encrypts else (),
        )

    def _result(self, request: Request, outcome: SignInOutcome) -> Response:
        on_result = self._context.on_result
        if on_result is not None:
            return on_result(request, outcome)
        return default_result_page(outcome)

    def _acs(self, request: Request, slug: str) -> Response:
        context = self._context
        form = self._acs_form(request)
        if isinstance(form, SignInFailure):
            return self._result(request, form)
        outcome = self._sign_ins.consume(slug, form["SAMLResponse"], form.get("RelayState"))
        if isinstance(outcome, SignInFailure):
            # A refusal grants nothing, so it needs no binding to the browser.
            return self._result(request, outcome)
        code = context.new_secret()
        document = _outcome_document(outcome)
        expires = context.clock() + _OUTCOME_LIFETIME
        with context.storage.transaction() as tx:
            tx.add_saml_outcome(outcome.tenant.id, code_hash(code), document, expires)
        finish = f"{context.base_url()}/{quote(slug, safe='')}/finish?{urlencode({'code': code})}"
        # 303: the browser follows with a top-level GET, which carries its
        # SameSite=Lax cookies even after the IdP's cross-site POST.
        return Response(
            status=303,
            headers=(("Location", finish), *NO_STORE, ("Referrer-Policy", "no-referrer")),
        )

    def _acs_form(self, request: Request) -> dict[str, str] | SignInFailure:
        """The ACS form fields, or the refusal of a body that is none (413 or 400)."""
        max_body_bytes = self._context.config.max_body_bytes
        if request.body_truncated or len(request.body) > max_body_bytes:
            return _form_refused(
                error_finding(
                    "response.too_large",
                    f"The sign-in response is larger than {max_body_bytes} bytes.",
                ),
                413,
            )
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        fields: list[tuple[str, str]] = []
        if content_type == "application/x-www-form-urlencoded":
            try:
                # A form body is ASCII (everything else is percent-encoded),
                # and what the escapes stand for is UTF-8.
                fields = parse_qsl(
                    request.body.decode("ascii"),
                    max_num_fields=10,
                    encoding="utf-8",
                    errors="strict",
                )
            except ValueError:  # more fields than any IdP sends, or not text
                return _form_refused(
                    error_finding(
                        "request.malformed",
                        "The sign-in form is malformed: it is not URL-encoded UTF-8 text, or "
                        "it has more than 10 fields.",
                    ),
                    400,
                )
        names = [name for name, _ in fields]
        for name in ("SAMLResponse", "RelayState"):
            if names.count(name) > 1:
                return _form_refused(
                    error_finding(
                        "request.malformed", f"The sign-in form has the field {name} twice."
                    ),
                    400,
                )
        form = dict(fields)
        if not form.get("SAMLResponse"):
            return _form_refused(
                error_finding(
                    "response.missing",
                    "The request carries no SAMLResponse form field; the identity provider "
                    "must POST the response here.",
                ),
                400,
            )
        return form

    def _finish(self, request: Request, slug: str) -> Response:
        """Hand a verified outcome to the host app, in the browser that started the sign-in."""
        context = self._context
        code = request.query_value("code") or ""
        nonces = browser_nonces(request)
        now = context.clock()
        outcome: SignInOutcome | None = None
        used: str | None = None
        tenant: Tenant | None = None
        # Without a code there is nothing to take: no write transaction.
        with context.storage.transaction(write=bool(code)) as tx:
            tenant = tx.find_tenant(slug)
            document = (
                tx.take_saml_outcome(tenant.id, code_hash(code), now)
                if tenant is not None and code
                else None
            )
            if tenant is not None and document is not None:
                data = json.loads(document)
                bound = data.get("binding")
                # The whole point: an outcome that answers a request finishes
                # only where the request's nonce is, in the browser that
                # started it. An IdP-initiated one has no binding by nature.
                matches = [n for n in nonces if hmac.compare_digest(binding(n), bound or "")]
                if bound is not None and not matches:
                    outcome = _finish_refused(
                        tenant,
                        error_finding(
                            "signin.other_browser",
                            "This sign-in was not started in this browser, so it cannot "
                            "finish here.",
                            suggestion="Start the sign-in again from this browser; if this "
                            "keeps happening, allow cookies for this site.",
                        ),
                        data.get("purpose", "sign_in"),
                    )
                else:
                    used = matches[0] if matches else None
                    outcome = _outcome_from(tx, tenant, data)
        if outcome is None:
            outcome = _finish_refused(
                tenant,
                error_finding(
                    "signin.finish",
                    "This sign-in link was already used or has expired.",
                    suggestion="Sign in again.",
                ),
                "sign_in",
                status=400,
            )
        if isinstance(outcome, SignInFailure):
            log.warning(
                "SAML sign-in not finished for workspace %s: %s", slug, outcome.finding.code
            )
        response = self._result(request, outcome)
        extra: list[tuple[str, str]] = []
        if response.header("referrer-policy") is None:
            # The page's URL holds the (now spent) code: no need to send it on.
            extra.append(("Referrer-Policy", "no-referrer"))
        if used is not None:
            rest = [n for n in nonces if n != used]
            extra.append(("Set-Cookie", binding_cookie(context, slug, rest)))
        return attrs.evolve(response, headers=(*response.headers, *extra))


def _outcome_from(tx: Transaction, tenant: Tenant, data: Mapping[str, Any]) -> SignInOutcome:
    """The outcome kept at the ACS, with its tenant, member and connections read again."""
    member_id = data.get("member_id")
    member = tx.get_member(tenant.id, member_id) if member_id else None
    if data["kind"] == "authorize":
        found = {c.id: c for c in tx.saml_connections(tenant.id)}
        connection = found.get(data["connection_id"])
        if connection is None:
            return _finish_refused(
                tenant,
                error_finding(
                    "connection.changed",
                    "The SAML configuration changed while this sign-in was under way.",
                    suggestion="Click Save & authorize again.",
                ),
                "authorize",
            )
        return Authorized(
            tenant=tenant,
            connection=connection,
            previous=found.get(data.get("previous_id") or ""),
            report=_report_from(data["report"]),
            name_id=data["name_id"],
            member=member,
            relay_state=data["relay_state"],
            request_id=data["request_id"],
        )
    if member is None:
        return _finish_refused(
            tenant,
            error_finding(
                "member.unknown",
                "The membership was removed while signing in.",
                suggestion="Ask an admin of the workspace.",
            ),
            "sign_in",
        )
    return SignIn(
        tenant=tenant,
        member=member,
        created=data["created"],
        name_id=data["name_id"],
        session_index=data["session_index"],
        attributes={name: tuple(values) for name, values in data["attributes"].items()},
        relay_state=data["relay_state"],
        idp_initiated=data["idp_initiated"],
        trail=tuple(data["trail"]),
        request_id=data["request_id"],
        findings=_report_from({"findings": data.get("findings", [])}).findings,
    )


def _form_refused(finding: Finding, status: int) -> SignInFailure:
    return SignInFailure(tenant=None, purpose="sign_in", report=Report((finding,)), status=status)


def _finish_refused(
    tenant: Tenant | None,
    finding: Finding,
    purpose: Literal["sign_in", "authorize"],
    *,
    status: int = 403,
) -> SignInFailure:
    return SignInFailure(tenant=tenant, purpose=purpose, report=Report((finding,)), status=status)


def _outcome_document(outcome: SignIn | Authorized) -> str:
    """A verified outcome as JSON, for the finish step (ids, not copies, of stored things)."""
    parsed = REQUEST_ID.fullmatch(outcome.request_id or "")
    common = {
        "binding": parsed.group(3) if parsed else None,
        "name_id": outcome.name_id,
        "relay_state": outcome.relay_state,
        "request_id": outcome.request_id,
    }
    if isinstance(outcome, Authorized):
        return json.dumps(
            {
                **common,
                "kind": "authorize",
                "purpose": "authorize",
                "connection_id": outcome.connection.id,
                "previous_id": outcome.previous.id if outcome.previous else None,
                "report": outcome.report.to_dict(),
                "member_id": outcome.member.id if outcome.member else None,
            }
        )
    return json.dumps(
        {
            **common,
            "kind": "sign_in",
            "purpose": "sign_in",
            "member_id": outcome.member.id,
            "created": outcome.created,
            "session_index": outcome.session_index,
            "attributes": {name: list(values) for name, values in outcome.attributes.items()},
            "idp_initiated": outcome.idp_initiated,
            "trail": list(outcome.trail),
            "findings": [f.to_dict() for f in outcome.findings],
        }
    )


def _report_from(data: Mapping[str, Any]) -> Report:
    return Report(
        tuple(
            Finding(
                code=f["code"],
                severity=f["severity"],
                message=f["message"],
                where=f["where"],
                suggestion=f["suggestion"],
            )
            for f in data["findings"]
        )
    )
