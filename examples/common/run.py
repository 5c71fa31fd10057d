"""Running a reference app from a shell: its options, its dev hosts, and the URLs to open."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from urllib.parse import urlencode

from examples.common.context import DEMO_WORKSPACE
from examples.common.context import AppContext
from examples.common.owner import LINK_LIFETIME

__all__ = ["options", "startup_lines"]


def options(prog: str, description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m examples.<app>``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--database",
        default="sqlite:///pbidentity.db",
        metavar="URL",
        help="database URL (default: sqlite:///pbidentity.db, in the current directory)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--demo",
        action="store_true",
        help=f"create the {DEMO_WORKSPACE!r} workspace with SCIM on, if it is missing",
    )
    return parser.parse_args(argv)


def startup_lines(ctx: AppContext) -> list[str]:
    """What to print at start: SCIM's base URL, the app, the owner's sign-in link, the portal."""
    url = ctx.site.public_url
    lines = [f"SCIM base URL: {ctx.site.scim_base_url}", f"App: {url}/"]
    workspace = ctx.owner_workspace
    if workspace is None:
        lines.append("No workspace yet: create one with `pbidentity tenants create SLUG`.")
        return lines
    if ctx.owner_token:
        query = urlencode({"token": ctx.owner_token, "workspace": workspace})
        # A new link at every start, printed once, here.
        lines.append(f"Owner sign-in: {url}/bootstrap?{query}")
        minutes = int(LINK_LIFETIME.total_seconds() // 60)
        lines.append(
            f"Owner sign-in link: works once, for {workspace}, within {minutes} minutes; "
            "restart the app for a new one."
        )
    lines.append(f"SSO settings: {ctx.site.portal_url}/w/{workspace}/sso")
    return lines
