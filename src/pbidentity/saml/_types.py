"""The values the SAML layer hands around: the SP's own settings and validation reports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from typing import Literal

import attrs

__all__ = [
    "EMAIL_NAMEID",
    "Finding",
    "Report",
    "ServiceProvider",
    "Severity",
]

#: The NameID format pbidentity asks for: the member's email address.
EMAIL_NAMEID = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

#: ``error`` blocks saving or signing in, ``warning`` deserves the admin's
#: attention, ``info`` is worth knowing.
Severity = Literal["error", "warning", "info"]

_ORDER = {"error": 0, "warning": 1, "info": 2}


@attrs.frozen(kw_only=True)
class ServiceProvider:
    """The app's side of one tenant's SAML connection: what the admin pastes into the IdP.

    Every URL is absolute and specific to the tenant; the ACS URL and the
    entity ID (the audience URI) are exactly what responses are checked
    against.
    """

    entity_id: str
    acs_url: str
    metadata_url: str
    login_url: str
    nameid_format: str = EMAIL_NAMEID
    #: The attribute statements the admin adds in the IdP: name -> what it holds.
    attribute_statements: tuple[tuple[str, str], ...] = (
        ("email", "user.email"),
        ("firstName", "user.firstName"),
        ("lastName", "user.lastName"),
    )


@attrs.frozen(kw_only=True)
class Finding:
    """One thing the validator found, in words the admin can act on.

    ``code`` is stable (``cert.expired``) for programs and tests; ``message``
    says what is wrong, ``where`` which part of the configuration or response,
    and ``suggestion`` what to do about it.
    """

    code: str
    severity: Severity
    message: str
    where: str = ""
    suggestion: str = ""

    def to_dict(self) -> dict[str, str]:
        """The finding as plain data (JSON output, admin pages)."""
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "where": self.where,
            "suggestion": self.suggestion,
        }


def _errors_first(found: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(found, key=lambda f: _ORDER[f.severity]))


@attrs.frozen
class Report:
    """The findings of one validation, errors first."""

    findings: tuple[Finding, ...] = attrs.field(default=(), converter=_errors_first)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that block saving (or signing in)."""
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings that deserve attention but block nothing."""
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        """Whether nothing blocks: no error among the findings."""
        return not self.errors

    def codes(self) -> set[str]:
        """The codes of all findings (handy in tests and scripts)."""
        return {f.code for f in self.findings}

    def plus(self, more: Iterable[Finding]) -> Report:
        """A report with more findings."""
        return Report((*self.findings, *more))

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data: ``{"ok": ..., "findings": [...]}``."""
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings]}

    def render(self) -> str:
        """The report as lines of text, one finding per line, for a terminal."""
        if not self.findings:
            return "No findings: the configuration looks right."
        lines = []
        for f in self.findings:
            where = f" [{f.where}]" if f.where else ""
            line = f"{f.severity.upper():7} {f.code}{where}: {f.message}"
            if f.suggestion:
                line += f" {f.suggestion}"
            lines.append(line)
        return "\n".join(lines)
