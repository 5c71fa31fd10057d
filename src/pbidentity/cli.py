"""The ``pbidentity`` command: what an operator does from a shell.

Every sub-command is a thin layer over :class:`~pbidentity.admin.Admin` or the
server. A mistake (an unknown tenant, a taken slug, a bad database URL) prints
one line ``pbidentity: error: ...`` on stderr and exits with status 1; usage
mistakes (an unknown option, a port out of range) print one line too, and exit
with 2, as argparse does. No traceback reaches the operator.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any
from typing import NoReturn

from pbidentity import __version__
from pbidentity._converter import converter
from pbidentity.exceptions import PbIdentityError

if TYPE_CHECKING:
    from pbidentity import PbIdentity
    from pbidentity.domain import IdentityProvider
    from pbidentity.saml import Report
    from pbidentity.saml import ServiceProvider

__all__ = ["main"]

DATABASE_ENV = "PBIDENTITY_DATABASE_URL"
DEFAULT_DATABASE = "sqlite:///pbidentity.db"
IDENTITY_ENV = "PBIDENTITY_IDENTITY"


class _Parser(argparse.ArgumentParser):
    """argparse with its usage mistakes on one line, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block first, burying the one line
        # that says what is wrong.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    """A TCP port number: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def _days(text: str) -> int:
    """A whole number of days, at least 1."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"{days} days would prune what was just delivered")
    return days


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser.add_argument(
        "--identity",
        metavar="MODULE:NAME",
        default=os.environ.get(IDENTITY_ENV),
        help="the app's own PbIdentity (or a function returning it), e.g. myapp.identity:identity: "
        f"its database, roles and SAML configuration instead of --database (default: "
        f"${IDENTITY_ENV}; not for serve and db)",
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
    scim_commands.choices["disable"].add_argument(
        "--drop-links",
        action="store_true",
        help="also unlink members from their IdP identities (default: keep the links)",
    )
    activity = scim_commands.add_parser(
        "activity", help="print the SCIM requests a tenant's IdP sent, newest first"
    )
    activity.add_argument("--tenant", required=True, metavar="SLUG")
    activity.add_argument("--failures", action="store_true", help="only the failed ones")
    activity.add_argument("--token", metavar="NAME", help="only this token's")
    activity.add_argument("--limit", type=int, default=50, help="default: 50")
    activity.add_argument("--json", action="store_true", help="print JSON")
    prune_activity = scim_commands.add_parser(
        "prune-activity",
        help="delete every tenant's SCIM requests past the retention and size bound",
    )
    prune_activity.add_argument(
        "--older-than", type=_days, default=14, metavar="DAYS", help="default: 14"
    )
    prune_activity.add_argument(
        "--keep", type=int, default=10_000, metavar="N", help="per tenant (default: 10000)"
    )

    link = commands.add_parser(
        "link",
        help="link existing members to IdP identities from an export (CSV or JSON)",
        description="Match each identity of the file to the tenant's members (externalId, "
        "then userName, then primary email), show the plan, and apply it. Running it again "
        "changes nothing. Exit status 1 when conflicts are left for an admin.",
    )
    link.add_argument("--tenant", required=True, metavar="SLUG")
    link.add_argument("--from", dest="source", required=True, metavar="FILE.csv|FILE.json")
    link.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    link.add_argument("--quiet", action="store_true", help="no progress bar")

    policy = commands.add_parser("policy", help="show or change a tenant's member policy")
    policy_commands = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = policy_commands.add_parser("show", help="print the policy as JSON")
    show.add_argument("--tenant", required=True, metavar="SLUG")
    change = policy_commands.add_parser(
        "set", help="change parts of the policy; members' roles are decided again"
    )
    change.add_argument("--tenant", required=True, metavar="SLUG")
    change.add_argument("--file", metavar="POLICY.json", help="the whole policy, as JSON")
    change.add_argument("--mode", choices=("user-personal", "group-based", "hybrid"))
    change.add_argument(
        "--map",
        action="append",
        metavar="GROUP=ROLE[:PRIORITY]",
        help="map a group (by displayName, or id:<ID>) to a role; repeat; replaces the mappings",
    )
    change.add_argument("--clear-mappings", action="store_true")
    change.add_argument("--default-role", metavar="ROLE")
    change.add_argument("--ties", choices=("more-privileged", "less-privileged"))
    change.add_argument("--admin-guard", choices=("on", "off"))
    change.add_argument("--on-delete", choices=("delete", "deactivate"))
    change.add_argument("--plus-tags", choices=("keep", "strip"))
    change.add_argument(
        "--dry-run",
        action="store_true",
        help="print who would change role, from what to what and by which rule; save nothing",
    )

    audit = commands.add_parser("audit", help="print a tenant's audit trail, oldest first")
    audit.add_argument("--tenant", required=True, metavar="SLUG")
    audit.add_argument("--after", type=int, default=0, metavar="SEQ")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="TYPE",
        help="only events of this type (repeat for several), e.g. member.deactivated",
    )
    audit.add_argument("--actor", help="only events by this actor, e.g. token:okta")
    audit.add_argument(
        "--from", dest="since", metavar="WHEN", help="from this day (YYYY-MM-DD, UTC) or time"
    )
    audit.add_argument(
        "--to", dest="until", metavar="WHEN", help="to this day, included, or before this time"
    )
    audit.add_argument("--newest-first", action="store_true", help="newest events first")
    audit.add_argument("--json", action="store_true", help="print JSON")

    events = commands.add_parser("events", help="the recorded events: prune the delivered ones")
    event_commands = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    prune = event_commands.add_parser(
        "prune",
        help="delete events delivered more than DAYS ago (never undelivered ones)",
    )
    prune.add_argument("--older-than", type=_days, default=90, metavar="DAYS", help="default: 90")

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

    database = commands.add_parser("db", help="the database schema: status and upgrades")
    db_commands = database.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_commands.add_parser("status", help="print the schema revision of the database")
    db_commands.add_parser(
        "upgrade", help="migrate the database to this version's schema (back it up first)"
    )

    serve = commands.add_parser(
        "serve",
        help="serve SCIM, SAML and pbidentity's pages (a SQLite database is upgraded if needed)",
        description="Run the FastAPI reference app (from a source checkout, with the fastapi "
        "extra) on the database, and print the URLs to open, with a one-time owner sign-in "
        "link. From an installed package, serve SCIM, SAML and the set-up portal (/portal, "
        "with the portal extra), and print a one-time set-up link to it.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000, help="0 picks a free one")
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="the app's origin as browsers and IdPs reach it (default: http://HOST:PORT)",
    )
    serve.add_argument(
        "--dev-host",
        action="append",
        metavar="HOST",
        help="a host SAML may reach over plain http; repeat for several (default for a "
        "loopback --host: that host, localhost and 127.0.0.1; otherwise none)",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="ensure a 'demo' tenant with SCIM on, and print a fresh token for it",
    )

    from pbidentity.simulate import DEFAULT_TIMEOUT
    from pbidentity.simulate import DEFAULT_USERS
    from pbidentity.simulate import PROFILES

    simulate = commands.add_parser(
        "simulate",
        help="replay an IdP's provisioning conversation against a SCIM server and check it",
        description="Send what the identity provider PROFILE sends to a SCIM server, check "
        "every answer as that IdP would, and print PASS, FAIL or SKIP per step. Exit status 1 "
        "when a step fails. It creates, changes and deactivates users and groups named "
        "sim-<run id>-...: use a test tenant. Profiles: "
        + "; ".join(f"{name} ({what})" for name, what in PROFILES.items()),
    )
    simulate.add_argument("profile", metavar="PROFILE", help=f"one of {', '.join(PROFILES)}")
    simulate.add_argument("--url", required=True, metavar="SCIM_BASE_URL")
    simulate.add_argument("--token", required=True, help="the bearer token the IdP would send")
    simulate.add_argument(
        "--users", type=int, default=DEFAULT_USERS, metavar="N", help="users to push (min 3)"
    )
    simulate.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"to wait for each answer (default: {DEFAULT_TIMEOUT:g})",
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress on stderr")

    saml = commands.add_parser("saml", help="SAML sign-in: check an IdP's metadata")
    saml_commands = saml.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = saml_commands.add_parser(
        "check",
        help="check an IdP's metadata (a URL or a file) as the admin page does",
        description="Read the IdP metadata at SOURCE (an https URL, fetched with the same "
        "safeguards as the admin page, or a file), run every check of the admin page on it "
        "and print the findings, errors first. Exit status 1 when a finding is an error. "
        "Give --sp-entity-id and --acs-url to check the app's side too.",
    )
    check.add_argument("source", metavar="SOURCE", help="the metadata URL (https) or file")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--dev-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a development host allowed over plain http (a warning instead of an error); "
        "repeat for several",
    )
    check.add_argument(
        "--sp-entity-id", metavar="URL", help="the app's SP entity ID to check (with --acs-url)"
    )
    check.add_argument(
        "--acs-url", metavar="URL", help="the app's ACS URL to check (with --sp-entity-id)"
    )
    check.add_argument(
        "--tenant",
        metavar="SLUG",
        help="check against this workspace: its SP values (from --public-url), its active "
        "configuration and the other workspaces on the same IdP (reads the database)",
    )
    _public_url_option(check)
    status = saml_commands.add_parser(
        "status", help="a workspace's SP values and its active, pending and previous configurations"
    )
    status.add_argument("--tenant", required=True, metavar="SLUG")
    status.add_argument("--json", action="store_true", help="print JSON")
    _public_url_option(status)
    rollback = saml_commands.add_parser(
        "rollback", help="make a workspace's previous SAML configuration active again"
    )
    rollback.add_argument("--tenant", required=True, metavar="SLUG")
    _public_url_option(rollback)
    return parser


PUBLIC_URL_ENV = "PBIDENTITY_PUBLIC_URL"


def _public_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--public-url",
        metavar="URL",
        default=os.environ.get(PUBLIC_URL_ENV),
        help=f"the app's origin as browsers see it, e.g. https://app.example (default: "
        f"${PUBLIC_URL_ENV})",
    )


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
    if args.command == "simulate":  # talks to a SCIM server over HTTP, not to the database
        return _simulate(args)
    if args.identity and args.command in ("serve", "db"):
        raise _input_error(
            f"{args.command} works on --database, not on the app's identity: leave out "
            f"--identity (and ${IDENTITY_ENV})"
        )
    if args.command == "db":
        return _db(args)
    if args.command == "saml":  # reads a file or a URL, not the database
        return _saml(args)
    if args.command == "serve":  # builds its own PbIdentity once it knows its public URL
        from pbidentity._server import serve

        return serve(
            args.database,
            host=args.host,
            port=args.port,
            demo=args.demo,
            public_url=args.public_url,
            dev_hosts=None if args.dev_host is None else frozenset(args.dev_host),
        )
    identity = _identity(args)
    try:
        admin = identity.admin
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
        elif args.command == "scim" and args.action in ("activity", "prune-activity"):
            _scim_activity(identity, args)
        elif args.command == "scim":
            enabled = args.action == "enable"
            keep = enabled or not args.drop_links
            tenant = admin.set_scim_enabled(args.tenant, enabled, keep_links=keep)
            print(
                f"SCIM provisioning is {'on' if tenant.scim_enabled else 'off'} for {tenant.slug}"
                + ("" if keep else "; members were unlinked from their IdP identities")
            )
        elif args.command == "link":
            return _link(identity, args)
        elif args.command == "policy":
            _policy(admin, args)
        elif args.command == "audit":
            _audit(identity, args)
        elif args.command == "tokens":
            _tokens(admin, args)
        elif args.command == "events":
            identity.events.retention = timedelta(days=args.older_than)
            pruned = identity.events.prune()
            events = "event" if pruned == 1 else "events"
            days = "day" if args.older_than == 1 else "days"
            print(f"pruned {pruned} {events} delivered more than {args.older_than} {days} ago")
        return 0
    finally:
        identity.close()


def _simulate(args: argparse.Namespace) -> int:
    from pbidentity.simulate import run

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = run(
        args.profile,
        args.url,
        args.token,
        users=args.users,
        timeout=args.timeout,
        out=sys.stdout,
        progress=None if args.quiet else progress,
    )
    return result.exit_status


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


def _link(identity: Any, args: argparse.Namespace) -> int:
    import pathlib

    from pbidentity.linking import read_identities

    members = identity.members
    identities = read_identities(pathlib.Path(args.source))
    plan = members.plan_links(args.tenant, identities)
    print(f"{len(identities)} identities from {args.source}: {plan.summary()}")
    for step in plan.conflicts:
        print(f"  conflict: {step.identity.user_name}: {step.reason}")
    if args.dry_run:
        for step in plan.changes:
            target = f" -> member {step.member_id} (by {step.matched_by})" if step.member_id else ""
            print(f"  {step.action}: {step.identity.user_name}{target}")
        print("dry run: nothing was changed")
        return 1 if plan.conflicts else 0
    bar = None if args.quiet or not plan.changes else _ProgressBar(sys.stderr)
    result = members.apply_links(args.tenant, plan, progress=bar)
    if bar is not None:
        bar.close()
    print(result.summary())
    for step, reason in result.skipped[len(plan.conflicts) :]:
        print(f"  skipped: {step.identity.user_name}: {reason}")
    return 1 if result.skipped else 0


class _ProgressBar:
    """``[#######.............] 3,500/10,000`` redrawn in place on a terminal."""

    def __init__(self, stream: Any, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done:,}/{total:,}"
        # On a terminal the bar is redrawn in place; in a log, one line per batch.
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _policy(admin: Any, args: argparse.Namespace) -> None:
    import attrs

    from pbidentity.policy import policy_from_mapping
    from pbidentity.roles import GroupMapping

    if args.action == "show":
        _print_json(admin.get_policy(args.tenant).settings())
        return
    if args.file:
        import pathlib

        try:
            document = json.loads(pathlib.Path(args.file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise _input_error(f"cannot read policy file {args.file}: {error}") from error
        current = policy_from_mapping(document)
    else:
        current = admin.get_policy(args.tenant)
    roles = current.roles
    if args.mode:
        roles = attrs.evolve(roles, mode=args.mode)
    if args.clear_mappings:
        roles = attrs.evolve(roles, mappings=())
    if args.map:
        roles = attrs.evolve(
            roles, mappings=tuple(_mapping(text, GroupMapping) for text in args.map)
        )
    if args.default_role:
        roles = attrs.evolve(roles, default_role=args.default_role)
    if args.ties:
        roles = attrs.evolve(roles, prefer_less_privileged=args.ties == "less-privileged")
    if args.admin_guard:
        roles = attrs.evolve(roles, admin_guard=args.admin_guard == "on")
    updated = attrs.evolve(current, roles=roles)
    if args.on_delete:
        updated = attrs.evolve(updated, on_delete=args.on_delete)
    if args.plus_tags:
        updated = attrs.evolve(
            updated, linking=attrs.evolve(updated.linking, plus_tags=args.plus_tags)
        )
    if args.dry_run:
        _print_preview(admin.preview_policy(args.tenant, updated))
        return
    saved = admin.set_policy(args.tenant, updated, actor="cli")
    print(f"policy of {args.tenant} saved; members' roles were decided again")
    _print_json(saved.settings())


def _print_preview(preview: Any) -> None:
    """A policy's preview as the portal shows it: counts per change, examples and their rules."""
    print(
        f"dry run for {preview.workspace}, nothing saved: {preview.role_changes} of "
        f"{preview.members_decided} SCIM-managed members would change role"
        + (
            f"; {preview.rule_changes} would keep theirs by another rule"
            if preview.rule_changes
            else ""
        )
    )
    for change in preview.changes:
        print(f"  {change.count}\t{change.old or '(no role yet)'} -> {change.new}")
        for example in change.examples:
            print(f"    {example.user_name}: {example.rule}")
    print(f"active admins: {preview.admins_before} now, {preview.admins_after} after")
    if preview.refusal is not None:
        print(f"applying would be refused: {preview.refusal}")


def _mapping(text: str, mapping_type: Any) -> Any:
    group, sep, target = text.rpartition("=")
    role, _, priority = target.partition(":")
    if not sep or not group or not role:
        raise _input_error(f"--map {text!r}: expected GROUP=ROLE[:PRIORITY], e.g. Admins=admin:10")
    try:
        rank = int(priority) if priority else 0
    except ValueError:
        raise _input_error(f"--map {text!r}: the priority must be a whole number") from None
    if group.startswith("id:"):
        return mapping_type(role=role, group_id=group[3:], priority=rank)
    return mapping_type(role=role, group_name=group, priority=rank)


def _input_error(message: str) -> PbIdentityError:
    from pbidentity.exceptions import InputError

    return InputError(message)


def _moment(text: str | None, option: str, *, end: bool) -> datetime | None:
    """A day (its start, or for ``end`` the next day's) or an ISO 8601 time, in UTC if naive."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _input_error(
            f"{option} {text!r} is neither a day (2026-12-07) nor a time (2026-12-07T09:30Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _scim_activity(identity: Any, args: argparse.Namespace) -> None:
    from pbidentity._lifecycle import tenant_by_slug
    from pbidentity.scim import ActivityConfig
    from pbidentity.scim import ActivityRecorder

    if args.action == "prune-activity":
        if args.keep < 1:
            raise _input_error("--keep must be at least 1")
        bounds = ActivityConfig(
            retention=timedelta(days=args.older_than), max_per_workspace=args.keep
        )
        recorder = ActivityRecorder(identity.storage, bounds, clock=identity.clock)
        pruned = recorder.prune()
        print(f"pruned {pruned} SCIM request{'' if pruned == 1 else 's'}")
        return
    with identity.storage.transaction(write=False) as tx:
        tenant = tenant_by_slug(tx, args.tenant)
        entries = tx.scim_activity(
            tenant.id,
            limit=max(args.limit, 0),
            failures_only=args.failures,
            token_name=args.token,
        )
    if args.json:
        _print_json(converter.unstructure(list(entries)))
        return
    for entry in entries:
        print(
            f"{entry.at.isoformat(timespec='seconds')}\t{entry.token_name or '-'}\t"
            f"{entry.method}\t{entry.path}\t{entry.status}\t{entry.scim_type or ''}\t"
            f"{entry.detail or ''}\t{entry.id}"
        )


def _audit(identity: Any, args: argparse.Namespace) -> None:
    events = identity.members.audit_trail(
        args.tenant,
        after=args.after,
        limit=args.limit,
        types=args.types,
        actor=args.actor,
        since=_moment(args.since, "--from", end=False),
        until=_moment(args.until, "--to", end=True),
        newest_first=args.newest_first,
    )
    if args.json:
        _print_json(converter.unstructure(list(events)))
        return
    for event in events:
        data = json.dumps(dict(event.data), ensure_ascii=False, sort_keys=True)
        print(
            f"{event.seq}\t{event.occurred.isoformat(timespec='seconds')}\t{event.actor}\t"
            f"{event.type}\t{event.subject_id}\t{data}"
        )


def _db(args: argparse.Namespace) -> int:
    from pbidentity.storage.sql import SCHEMA_REVISION
    from pbidentity.storage.sql import SqlStorage
    from pbidentity.storage.sql import schema_revision
    from pbidentity.storage.sql import upgrade_schema

    if not args.database.startswith(("sqlite", "postgres")):
        raise _input_error(f"{args.database!r} is not a SQL database URL; nothing to migrate")
    storage = SqlStorage.from_url(args.database)
    try:
        if args.action == "status":
            found = schema_revision(storage.engine)
            state = {
                "": "empty",
                None: "not a pbidentity database",
                SCHEMA_REVISION: "up to date",
            }.get(found, "needs: pbidentity db upgrade")
            print(
                f"schema revision {found or '-'}; this pbidentity uses {SCHEMA_REVISION} ({state})"
            )
            return 0
        before, after = upgrade_schema(storage.engine)
        if before == after:
            print(f"the database is already at schema revision {after}")
        else:
            print(f"upgraded the database from schema revision {before or '(empty)'} to {after}")
        return 0
    finally:
        storage.close()


SAML_EXTRA_MISSING = "SAML support needs the saml extra: pip install 'pbidentity[saml]'"

#: The top-level packages of the ``saml`` extra; an import of one of them
#: failing means the extra is not installed (anything else is a bug).
_SAML_EXTRA_PACKAGES = frozenset({"lxml", "xmlsec", "onelogin", "cryptography", "isodate"})


def _identity(args: argparse.Namespace) -> PbIdentity:
    """The app's PbIdentity named by ``--identity``, else a default one on ``--database``."""
    from pbidentity import PbIdentity

    if not args.identity:
        return PbIdentity(args.database)
    module_name, colon, name = args.identity.partition(":")
    if not colon or not module_name or not name:
        raise _input_error(
            f"--identity {args.identity!r}: expected MODULE:NAME, e.g. myapp.identity:identity"
        )
    # As `flask --app` does: the app's modules are found from where the command runs.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found = getattr(importlib.import_module(module_name), name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise  # the app's module itself failed to import something: its own bug
        raise _input_error(f"--identity {args.identity!r}: no module {error.name!r}") from None
    except AttributeError:
        raise _input_error(
            f"--identity {args.identity!r}: module {module_name!r} has no {name!r}"
        ) from None
    identity = found() if callable(found) and not isinstance(found, PbIdentity) else found
    if not isinstance(identity, PbIdentity):
        raise _input_error(
            f"--identity {args.identity!r} names a value of type {type(identity).__name__}, "
            "not a pbidentity.PbIdentity (or a function returning one)"
        )
    return identity


def _saml_service(args: argparse.Namespace) -> Any:
    """The SAML service on the database, for the commands that act on a workspace."""
    from pbidentity import PbIdentity
    from pbidentity.saml import SamlConfig

    if args.identity:
        # The app's own SAML configuration: its public URL, prefix and roles.
        return _identity(args).saml
    if not args.public_url:
        raise _input_error(
            f"give the app's public URL with --public-url (or ${PUBLIC_URL_ENV}): the SP "
            "values of a workspace are built from it"
        )
    config = SamlConfig(
        public_url=args.public_url, dev_hosts=frozenset(getattr(args, "dev_host", ()))
    )
    return PbIdentity(args.database, saml=config).saml


def _saml(args: argparse.Namespace) -> int:
    if args.action == "status":
        return _saml_status(args)
    if args.action == "rollback":
        service = _saml_service(args)
        try:
            restored = service.rollback(args.tenant, actor="cli")
        finally:
            service.storage.close()
        print(f"{args.tenant}: the configuration for {restored.idp.entity_id} is active again")
        return 0
    if args.tenant is not None:
        return _saml_check_tenant(args)
    if (args.sp_entity_id is None) != (args.acs_url is None):
        print(
            "pbidentity saml check: error: --sp-entity-id and --acs-url go together",
            file=sys.stderr,
        )
        return 2
    try:
        from pbidentity.saml._metadata import read_metadata
        from pbidentity.saml._validate import check_connection
        from pbidentity.saml._validate import check_service_provider
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] in _SAML_EXTRA_PACKAGES:
            raise _input_error(SAML_EXTRA_MISSING) from None
        raise
    from pbidentity._clock import utc_now
    from pbidentity.saml import Report
    from pbidentity.saml import ServiceProvider

    dev_hosts = frozenset(args.dev_host)
    now = utc_now()
    body = _saml_metadata_source(args.source, dev_hosts)
    if isinstance(body, Report):
        return _saml_report(body, None, args.json)
    idp, report = read_metadata(body, now=now)
    sp, tenant_slug = _saml_service_provider(args)
    if idp is not None:
        # Without an SP only its NameID format matters to the IdP checks: the default.
        wanted = sp or ServiceProvider(entity_id="", acs_url="", metadata_url="", login_url="")
        report = report.plus(
            check_connection(idp, sp=wanted, now=now, dev_hosts=dev_hosts).findings
        )
    if sp is not None:
        report = report.plus(
            check_service_provider(sp, tenant_slug=tenant_slug, dev_hosts=dev_hosts).findings
        )
    return _saml_report(report, idp, args.json)


def _saml_check_tenant(args: argparse.Namespace) -> int:
    if args.sp_entity_id is not None or args.acs_url is not None:
        print(
            "pbidentity saml check: error: --tenant takes the SP values from the workspace; "
            "leave out --sp-entity-id and --acs-url",
            file=sys.stderr,
        )
        return 2
    service = _saml_service(args)
    try:
        body = _saml_metadata_source(args.source, service.config.dev_hosts)
        if not isinstance(body, bytes):
            return _saml_report(body, None, args.json)
        idp, report = service.check_metadata(args.tenant, body)
    finally:
        service.storage.close()
    return _saml_report(report, idp, args.json)


def _saml_status(args: argparse.Namespace) -> int:
    service = _saml_service(args)
    try:
        sp = service.service_provider(args.tenant)
        connections = service.connections(args.tenant)
    finally:
        service.storage.close()
    described = {
        state: None
        if connection is None
        else {
            "idp_entity_id": connection.idp.entity_id,
            "sso_url": connection.idp.sso_url,
            "certificates": len(connection.idp.certificates),
            "source": connection.source,
            "created": connection.created.isoformat(),
            "activated": None if connection.activated is None else connection.activated.isoformat(),
            "allow_idp_initiated": connection.allow_idp_initiated,
            "unknown_members": connection.unknown_members,
            "roles": {
                "enabled": connection.roles.enabled,
                "attribute": connection.roles.attribute,
                "groups_attribute": connection.roles.groups_attribute,
            },
            "sign_requests": connection.sign_requests,
            "assertion_encryption": connection.assertion_encryption,
            "last_attempt": connection.last_attempt,
        }
        for state, connection in (
            ("active", connections.active),
            ("pending", connections.pending),
            ("previous", connections.previous),
        )
    }
    values = {
        "acs_url": sp.acs_url,
        "audience_uri": sp.entity_id,
        "nameid_format": sp.nameid_format,
        "sp_metadata_url": sp.metadata_url,
        "login_url": sp.login_url,
    }
    if args.json:
        _print_json({"service_provider": values, **described})
        return 0
    print(f"ACS URL (single sign-on URL): {sp.acs_url}")
    print(f"Audience URI (SP entity ID):  {sp.entity_id}")
    print(f"NameID format:                {sp.nameid_format}")
    print(f"SP metadata:                  {sp.metadata_url}")
    for state, info in described.items():
        if info is None:
            print(f"{state}: none")
            continue
        since = f", active since {info['activated']}" if info["activated"] else ""
        print(f"{state}: {info['idp_entity_id']} ({info['sso_url']}){since}")
        roles = info["roles"]
        if roles["enabled"]:
            read = f"attribute '{roles['attribute']}'"
            if roles["groups_attribute"]:
                read += f", groups from '{roles['groups_attribute']}'"
            print(f"  roles from sign-ins: {read}")
        attempt = info["last_attempt"]
        if state == "pending" and attempt and attempt.get("findings"):
            first = attempt["findings"][0]
            print(f"  last test sign-in: {first['code']}: {first['message']}")
    return 0


def _saml_metadata_source(source: str, dev_hosts: frozenset[str]) -> bytes | Report:
    """The metadata document's bytes, or a Report of why it could not be fetched."""
    import re

    # Anything with a scheme goes to the fetcher, which refuses all but https
    # (http only for a dev host) with a finding that says so.
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source):
        from pbidentity.saml import Report
        from pbidentity.saml._fetch import MetadataFetchError
        from pbidentity.saml._fetch import fetch_metadata

        try:
            return fetch_metadata(source, dev_hosts=dev_hosts).body
        except MetadataFetchError as error:
            return Report((error.finding,))
    import pathlib

    try:
        return pathlib.Path(source).read_bytes()
    except OSError as error:
        raise _input_error(
            f"cannot read the metadata file {source}: {error.strerror or error}"
        ) from error


def _saml_service_provider(
    args: argparse.Namespace,
) -> tuple[ServiceProvider | None, str | None]:
    """The app's side of the connection to check, and the tenant slug its URLs must name.

    This is where ``--tenant`` will build the ServiceProvider from the
    tenant's own configuration (and give its slug). Until then the values
    come from ``--sp-entity-id`` and ``--acs-url``, with no tenant to check
    them against; ``(None, None)`` skips the SP-side checks.
    """
    if args.sp_entity_id is None:
        return None, None
    from pbidentity.saml import ServiceProvider

    return (
        ServiceProvider(
            entity_id=args.sp_entity_id, acs_url=args.acs_url, metadata_url="", login_url=""
        ),
        None,
    )


def _saml_report(report: Report, idp: IdentityProvider | None, as_json: bool) -> int:
    if as_json:
        _print_json(report.to_dict())
    else:
        if idp is not None:
            count = len(idp.certificates)
            binding = "HTTP-Redirect" if idp.sso_binding == "redirect" else "HTTP-POST"
            print(
                f"IdP {idp.entity_id or '(no entity ID)'}: SSO {idp.sso_url} ({binding}), "
                f"{count} signing certificate{'' if count == 1 else 's'}"
            )
        print(report.render())
    return 0 if report.ok else 1


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
