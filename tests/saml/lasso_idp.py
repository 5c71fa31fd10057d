"""A SAML IdP made with Lasso, for the interoperability tests: run it under the system's Python.

Lasso (the C library behind the Authentic2 IdP) has Python bindings only for
the operating system's own Python (Debian: ``python3-lasso`` for
``/usr/bin/python3``), so the tests run this script there, as a subprocess,
and talk to it in JSON: one request on stdin, one answer on stdout. It uses
nothing but the standard library and Lasso, and keeps no state between runs:
each run loads the IdP (its metadata, key and certificate) and the SP's
metadata, as Authentic2 does for each request.

Requests (``command`` and its fields):

- ``metadata``: the IdP's metadata (Lasso reads metadata, it does not write
  it; like Authentic2, the IdP writes its own): ``entity_id``, ``sso_url``,
  ``certificate`` (PEM). Answers ``{"metadata": xml}``.
- ``answer``: answer the AuthnRequest of an HTTP-Redirect URL (``url``) or of
  a POST (``saml_request``, ``relay_state``) for a member.
- ``initiate``: an IdP-initiated sign-in to the SP ``sp_entity_id``.

``answer`` and ``initiate`` take ``idp_metadata``, ``private_key`` and
``certificate`` (PEM), ``sp_metadata``, ``name_id`` and ``attributes``
(name to list of values), and ``options``: ``signature_method``
(``rsa-sha1``, ``rsa-sha256``...; absent: Lasso's default),
``encrypt_assertion`` (bool) with ``key_encryption`` (``oaep`` or ``pkcs1``;
absent: Lasso's default). They answer ``{"url", "saml_response",
"relay_state"}``: the form to post to the SP's ACS; or ``{"error"}`` with
Lasso's own words.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any
from urllib.parse import urlsplit

import lasso  # type: ignore[import-not-found]

_METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false"
      protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate>
      </ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="{sso_url}"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        Location="{sso_url}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"""

_SIGNATURE_METHODS = {
    "rsa-sha1": "SIGNATURE_METHOD_RSA_SHA1",
    "rsa-sha256": "SIGNATURE_METHOD_RSA_SHA256",
    "rsa-sha384": "SIGNATURE_METHOD_RSA_SHA384",
    "rsa-sha512": "SIGNATURE_METHOD_RSA_SHA512",
}
_KEY_ENCRYPTION = {
    "oaep": "KEY_ENCRYPTION_METHOD_OAEP",
    "pkcs1": "KEY_ENCRYPTION_METHOD_PKCS1",
}


def _certificate_body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if "-----" not in line)


def metadata(request: dict[str, Any]) -> dict[str, Any]:
    """The IdP's metadata document."""
    return {
        "metadata": _METADATA.format(
            entity_id=request["entity_id"],
            sso_url=request["sso_url"],
            certificate=_certificate_body(request["certificate"]),
        )
    }


def _server(request: dict[str, Any]) -> Any:
    options = request.get("options", {})
    if "key_encryption" in options:
        # Key transport is a process-wide setting of Lasso, as Authentic2 sets it.
        lasso.setDefaultKeyEncryptionMethod(
            getattr(lasso, _KEY_ENCRYPTION[options["key_encryption"]])
        )
    server = lasso.Server.newFromBuffers(
        request["idp_metadata"], request["private_key"], None, request["certificate"]
    )
    if "signature_method" in options:
        server.signatureMethod = getattr(lasso, _SIGNATURE_METHODS[options["signature_method"]])
    server.addProviderFromBuffer(lasso.PROVIDER_ROLE_SP, request["sp_metadata"])
    if options.get("encrypt_assertion"):
        for provider in server.providers.values():
            provider.setEncryptionMode(lasso.ENCRYPTION_MODE_ASSERTION)
    return server


def _attribute_statement(attributes: dict[str, list[str]]) -> Any:
    statement = lasso.Saml2AttributeStatement()
    made = []
    for name, values in attributes.items():
        attribute = lasso.Saml2Attribute()
        attribute.name = name
        attribute.nameFormat = lasso.SAML2_ATTRIBUTE_NAME_FORMAT_BASIC
        attribute_values = []
        for value in values:
            text = lasso.MiscTextNode.newWithString(value)
            text.textChild = True
            attribute_value = lasso.Saml2AttributeValue()
            attribute_value.any = [text]
            attribute_values.append(attribute_value)
        attribute.attributeValue = attribute_values
        made.append(attribute)
    statement.attribute = made
    return statement


def _respond(login: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Authenticate the member for the request ``login`` holds and build the POST to the ACS."""
    login.validateRequestMsg(True, True)
    name_id = lasso.Saml2NameID()
    name_id.format = lasso.SAML2_NAME_IDENTIFIER_FORMAT_EMAIL
    name_id.content = request["name_id"]
    now = datetime.datetime.now(datetime.UTC)

    def iso(moment: datetime.datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    login.buildAssertion(
        lasso.SAML2_AUTHN_CONTEXT_PASSWORD_PROTECTED_TRANSPORT,
        iso(now),
        None,
        iso(now - datetime.timedelta(minutes=1)),
        iso(now + datetime.timedelta(minutes=5)),
    )
    # Lasso makes the NameID for the formats it manages (persistent,
    # transient); an email NameID is the IdP's to set, as Authentic2 does.
    login.assertion.subject.nameID = name_id
    login.nameIdentifier = name_id
    login.assertion.attributeStatement = [_attribute_statement(request["attributes"])]
    login.buildAuthnResponseMsg()
    return {
        "url": login.msgUrl,
        "saml_response": login.msgBody,
        "relay_state": login.msgRelayState,
    }


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """Answer an SP's AuthnRequest (HTTP-Redirect or HTTP-POST) for the member."""
    login = lasso.Login(_server(request))
    if "url" in request:
        login.processAuthnRequestMsg(urlsplit(request["url"]).query)
    else:
        login.processAuthnRequestMsg(request["saml_request"])
        if request.get("relay_state") is not None:
            login.msgRelayState = request["relay_state"]
    return _respond(login, request)


def initiate(request: dict[str, Any]) -> dict[str, Any]:
    """Start a sign-in at the IdP (an app tile): an unsolicited response to the SP."""
    login = lasso.Login(_server(request))
    login.initIdpInitiatedAuthnRequest(request["sp_entity_id"])
    login.request.nameIdPolicy.format = lasso.SAML2_NAME_IDENTIFIER_FORMAT_EMAIL
    login.request.nameIdPolicy.allowCreate = True
    login.request.protocolBinding = lasso.SAML2_METADATA_BINDING_POST
    login.processAuthnRequestMsg(None)
    return _respond(login, request)


def main() -> None:
    """Read one request on stdin, write its answer on stdout."""
    request = json.load(sys.stdin)
    commands = {"metadata": metadata, "answer": answer, "initiate": initiate}
    try:
        result = commands[request["command"]](request)
    except lasso.Error as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
