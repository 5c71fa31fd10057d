"""What the settings forms do once the app has read them: plain values in, an outcome out."""

from __future__ import annotations

from dataclasses import dataclass

from examples.common.context import AppContext
from pbidentity.exceptions import InputError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import ManagedMemberError
from pbidentity.saml import AuthnRedirect
from pbidentity.saml import Finding
from pbidentity.saml import MetadataFetchError
from pbidentity.saml import Report

__all__ = ["MAX_METADATA_BYTES", "Refused", "edit_member", "submit_metadata"]

#: The largest metadata file accepted; real IdP metadata is a few kilobytes.
MAX_METADATA_BYTES = 1024 * 1024


def submit_metadata(
    ctx: AppContext, workspace: str, *, action: str, url: str, xml: bytes | None
) -> Report | AuthnRedirect:
    """The "From Metadata" form: ``check`` gives the report; ``save`` saves and starts the test.

    ``xml`` is the uploaded file (it wins over ``url``), at most
    ``MAX_METADATA_BYTES + 1`` bytes as read. Saving with errors saves
    nothing and gives the report; otherwise the configuration is saved as
    pending and the answer is the redirect of the admin's test sign-in,
    which makes it active when it succeeds.
    """
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
            ctx.identity.saml.save_metadata_xml(workspace, xml, source="upload")
            if xml is not None
            else ctx.identity.saml.save_metadata_url(workspace, url)
        )
        if not saved.saved:
            return saved.report
        return ctx.identity.saml.begin_authorize(
            workspace, relay_state=f"/w/{workspace}/settings/sso"
        )
    if xml is None:
        try:
            xml = ctx.identity.saml.fetch_metadata(url)
        except MetadataFetchError as error:
            # The fetcher's refusal (not https, a private address, a timeout...)
            # carries a finding that tells the admin what to do.
            return Report((error.finding,))
    _, report = ctx.identity.saml.check_metadata(workspace, xml)
    return report


def _report(code: str, message: str) -> Report:
    return Report((Finding(code=code, severity="error", message=message, where="From Metadata"),))


@dataclass(frozen=True)
class Refused:
    """Why an edit was not saved, and the HTTP status that says so."""

    reason: str
    status: int


def edit_member(
    ctx: AppContext,
    workspace: str,
    member_id: str,
    *,
    given_name: str,
    family_name: str,
    role: str,
) -> Refused | None:
    """Save the member form; ``None`` when saved, else why not.

    The names are always sent, so that the app's guard refuses the whole
    form for a member the IdP manages: the admin learns where to make the
    change instead of seeing half of it saved.
    """
    current = ctx.identity.members.get(workspace, member_id)
    name = {
        key: value.strip()
        for key, value in (("givenName", given_name), ("familyName", family_name))
        if value.strip()
    }
    try:
        ctx.identity.members.edit(
            workspace,
            member_id,
            attributes={"name": name},
            # Re-sending the same role would turn the IdP's decision into the app's.
            role=role if role and role != current.role else None,
        )
    except (ManagedMemberError, LastAdminError) as error:
        return Refused(str(error), 409)
    except InputError as error:
        return Refused(str(error), 400)
    return None
