"""The portal's forms: reading a submitted body, and what each form does with plain values.

Bodies are parsed here, with the standard library: ``application/x-www-form-urlencoded``
for every form but the metadata upload, ``multipart/form-data`` for that
one. The actions take plain values and give an outcome; they know nothing
of HTTP.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import attrs

from pbidentity.exceptions import InputError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import ManagedMemberError

if TYPE_CHECKING:
    from pbidentity._front import PbIdentity
    from pbidentity.saml import AuthnRedirect
    from pbidentity.saml import Report

__all__ = ["MAX_METADATA_BYTES", "Form", "Refused", "edit_member", "parse_form", "submit_metadata"]

#: The largest metadata file accepted; real IdP metadata is a few kilobytes.
MAX_METADATA_BYTES = 1024 * 1024


@attrs.frozen
class Form:
    """A submitted form: its text fields and its uploaded files (by field name)."""

    fields: dict[str, str] = attrs.Factory(dict)
    files: dict[str, bytes] = attrs.Factory(dict)
    #: The uploaded files' names as the browser sent them (untrusted text).
    filenames: dict[str, str] = attrs.Factory(dict)

    def get(self, name: str, default: str = "") -> str:
        """A text field's value (the first one sent), or ``default``."""
        return self.fields.get(name, default)


class FormError(ValueError):
    """The body is not a form this portal sends."""


def parse_form(content_type: str | None, body: bytes) -> Form:
    """The form in a POST body; :class:`FormError` for a body no portal page sends."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError("the form is not UTF-8") from None
        fields: dict[str, str] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            fields.setdefault(name, value)
        return Form(fields)
    if kind == "multipart/form-data":
        return _multipart(content_type or "", body)
    raise FormError("send the form from the portal's page")


def _multipart(content_type: str, body: bytes) -> Form:
    # The email parser reads MIME multipart, which form-data is (RFC 7578).
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise FormError("the upload is not a multipart form")
    form = Form()
    for part in message.iter_parts():
        assert isinstance(part, Message)  # noqa: S101 - iter_parts yields messages
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            # A file input left empty is sent as a part with an empty file name.
            if part.get_filename() or data:
                form.files.setdefault(name, data)
                form.filenames.setdefault(name, part.get_filename() or "")
            continue
        try:
            form.fields.setdefault(name, data.decode("utf-8"))
        except UnicodeDecodeError:
            raise FormError(f"the field {name!r} is not UTF-8") from None
    return form


def submit_metadata(
    identity: PbIdentity,
    workspace: str,
    *,
    action: str,
    url: str,
    xml: bytes | None,
    relay_state: str,
    actor: str,
) -> Report | AuthnRedirect:
    """The "From Metadata" form: ``check`` gives the report; ``save`` saves and starts the test.

    ``xml`` is the uploaded file (it wins over ``url``). Saving with errors
    saves nothing and gives the report; otherwise the configuration is saved
    as pending and the answer is the redirect of the test sign-in, which
    makes it active when it succeeds and comes back to ``relay_state``.
    """
    from pbidentity.saml import MetadataFetchError
    from pbidentity.saml import Report

    saml = identity.saml
    url = url.strip()
    if xml is None and not url:
        return _report(
            "metadata.missing",
            "Give the manifest (metadata) URL of the IdP app, or upload its metadata XML.",
        )
    if xml is not None and len(xml) > MAX_METADATA_BYTES:
        return _report(
            "metadata.too_large",
            f"The uploaded file is larger than {MAX_METADATA_BYTES // 1024} KiB; IdP metadata "
            "is a few kilobytes. Check that you picked the metadata XML.",
        )
    if action == "save":
        saved = (
            saml.save_metadata_xml(workspace, xml, source="upload", actor=actor)
            if xml is not None
            else saml.save_metadata_url(workspace, url, actor=actor)
        )
        if not saved.saved:
            return saved.report
        return saml.begin_authorize(workspace, relay_state=relay_state)
    if xml is None:
        try:
            xml = saml.fetch_metadata(url)
        except MetadataFetchError as error:
            # The fetcher's refusal (not https, a private address, a timeout...)
            # carries a finding that tells the admin what to do.
            return Report((error.finding,))
    _, report = saml.check_metadata(workspace, xml)
    return report


def _report(code: str, message: str) -> Report:
    from pbidentity.saml import Finding
    from pbidentity.saml import Report

    return Report((Finding(code=code, severity="error", message=message, where="From Metadata"),))


@attrs.frozen
class Refused:
    """Why an edit was not saved, and the HTTP status that says so."""

    reason: str
    status: int


def edit_member(
    identity: PbIdentity,
    workspace: str,
    member_id: str,
    *,
    given_name: str,
    family_name: str,
    role: str,
    actor: str,
) -> Refused | None:
    """Save the member form; ``None`` when saved, else why not.

    The names are always sent, so that the guard refuses the whole form for a
    member the IdP manages: the admin learns where to make the change
    instead of seeing half of it saved.
    """
    current = identity.members.get(workspace, member_id)
    name = {
        key: value.strip()
        for key, value in (("givenName", given_name), ("familyName", family_name))
        if value.strip()
    }
    try:
        identity.members.edit(
            workspace,
            member_id,
            attributes={"name": name},
            # Re-sending the same role would turn the IdP's decision into the app's.
            role=role if role and role != current.role else None,
            actor=actor,
        )
    except (ManagedMemberError, LastAdminError) as error:
        return Refused(str(error), 409)
    except InputError as error:
        return Refused(str(error), 400)
    return None
