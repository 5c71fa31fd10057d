"""The ``pbidentity`` command: what an operator does from a shell.

Every sub-command is a thin layer over :class:`~pbidentity.admin.Admin` or the
server. A mistake (an unknown tenant, a taken slug, a bad database URL) prints
one line ``pbidentity: error: ...`` on stderr and exits with status 1; usage
mistakes exit with 2, as argparse does. No traceback reaches the operator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pbidentity import __version__
from pbidentity._converter import converter
from pbidentity.exceptions import PbIdentityError

__all__ = ["main"]

DATABASE_ENV = "PBIDENTITY_DATABASE_URL"
DEFAULT_DATABASE = "sqlite:///pbidentity.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pbidentity",
        description="Operate pbidentity: tenants, the SCIM switch, API tokens, and the server.",
    )
    parser.add_argument("--version", action="version", version=f"pbidentity {__version__}")
    parser.add_argument(
        "--database",
        metavar="URL",
        default=os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE,
        help=f"database URL (default: ${DATABASE_ENV}, else {DEFAULT_DATABASE})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tenants = commands.add_parser("tenants", help="create and list tenants (workspaces)")
    tenant_commands = tenants.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = tenant_commands.add_parser("create", help="create a tenant")
    create.add_argument("slug", help="stable, URL-safe handle, e.g. acme-corp")
    create.add_argument("--name", help="display name (default: the slug)")
    listing = tenant_commands.add_parser("list", help="list tenants")
    listing.add_argument("--json", action="store_true", help="print JSON")

    scim = commands.add_parser("scim", help="switch SCIM provisioning on or off for a tenant")
    scim_commands = scim.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ("enable", "disable"):
        switch = scim_commands.add_parser(action, help=f"{action} SCIM provisioning")
        switch.add_argument("--tenant", required=True, metavar="SLUG")

    tokens = commands.add_parser("tokens", help="create, list and revoke SCIM API tokens")
    token_commands = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create_token = token_commands.add_parser(
        "create", help="create a token; the secret is printed once, as the last line"
    )
    create_token.add_argument("--tenant", required=True, metavar="SLUG")
    create_token.add_argument("--name", required=True, help="what the token is for, e.g. okta")
    list_tokens = token_commands.add_parser("list", help="list a tenant's tokens")
    list_tokens.add_argument("--tenant", required=True, metavar="SLUG")
    list_tokens.add_argument("--json", action="store_true", help="print JSON")
    revoke = token_commands.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("--tenant", required=True, metavar="SLUG")
    revoke.add_argument("name")

    serve = commands.add_parser("serve", help="serve SCIM over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="ensure a 'demo' tenant with SCIM on, and print a fresh token for it",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except PbIdentityError as error:
        print(f"pbidentity: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from pbidentity.admin import Admin
    from pbidentity.storage import open_storage

    storage = open_storage(args.database)
    try:
        admin = Admin(storage)
        if args.command == "serve":
            from pbidentity._server import serve

            return serve(storage, host=args.host, port=args.port, demo=args.demo)
        if args.command == "tenants":
            if args.action == "create":
                tenant = admin.create_tenant(args.slug, args.name)
                print(f"created tenant {tenant.slug} ({tenant.name}); SCIM provisioning is off")
            else:
                tenants = admin.list_tenants()
                if args.json:
                    _print_json(converter.unstructure(list(tenants)))
                for tenant in tenants if not args.json else ():
                    state = "on" if tenant.scim_enabled else "off"
                    print(f"{tenant.slug}\t{tenant.name}\tSCIM {state}")
        elif args.command == "scim":
            tenant = admin.set_scim_enabled(args.tenant, args.action == "enable")
            print(
                f"SCIM provisioning is {'on' if tenant.scim_enabled else 'off'} for {tenant.slug}"
            )
        elif args.command == "tokens":
            _tokens(admin, args)
        return 0
    finally:
        storage.close()


def _tokens(admin: Any, args: argparse.Namespace) -> None:
    if args.action == "create":
        new = admin.create_token(args.tenant, args.name)
        print(
            f"created token {new.token.name!r} for {args.tenant}; "
            "copy it now, it is not shown again:"
        )
        print(new.secret)
    elif args.action == "list":
        tokens = admin.list_tokens(args.tenant)
        if args.json:
            _print_json(
                [
                    {k: v for k, v in converter.unstructure(t).items() if k != "digest"}
                    for t in tokens
                ]
            )
            return
        for token in tokens:
            state = "revoked" if token.revoked else "active"
            used = token.last_used.isoformat(timespec="seconds") if token.last_used else "never"
            print(
                f"{token.name}\t{state}\t"
                f"created {token.created.isoformat(timespec='seconds')}\tlast used {used}"
            )
    else:
        token = admin.revoke_token(args.tenant, args.name)
        print(f"revoked token {token.name!r} of {args.tenant}")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
