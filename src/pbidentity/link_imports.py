"""Link imports: an IdP export's link plan kept in storage and applied one bounded batch at a time.

:meth:`Members.apply_links <pbidentity.members.Members.apply_links>` applies
a whole plan in one call, which suits the command line. A web page cannot
hold a request (or SQLite's write lock) for the minutes a plan of 100,000
identities takes, and its browser tab may close half-way. So
:class:`LinkImports` keeps the plan server-side (:class:`~pbidentity.domain.LinkImport`
and its chunks of steps), and each :meth:`LinkImports.apply_next` applies one
chunk of at most :data:`CHUNK` steps in one transaction that also claims the
chunk and records what it did:

- resumable: what is applied is recorded with the members it changed, so a
  closed tab resumes where the last committed batch stopped;
- safe from two tabs: a chunk is claimed by a conditional update, and a
  second claimant of the same chunk changes nothing; the steps themselves are
  idempotent (a create finds its member created, a link finds it linked);
- fresh: each step is checked against the member as it is now, as
  :meth:`~pbidentity.members.Members.apply_links` does, so a plan uploaded
  an hour ago never forces a change the members no longer fit.

Imports expire (a day by default) and a workspace keeps a few at most; older
ones are deleted when a new one is uploaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from typing import Literal

import attrs

from pbidentity._lifecycle import tenant_by_slug
from pbidentity.domain import LinkImport
from pbidentity.exceptions import NotFoundError
from pbidentity.linking import Identity
from pbidentity.linking import LinkPlan
from pbidentity.linking import LinkStep
from pbidentity.members import Members

__all__ = ["CHUNK", "ImportList", "LinkImports", "import_state"]

#: Steps per stored chunk, and so per batch of apply: one transaction each.
CHUNK = 250
# Chunks stored per transaction when an import is kept.
_CHUNKS_PER_WRITE = 20

#: The lists of steps an import keeps: what apply changes, and what it leaves.
ImportList = Literal["changes", "conflicts", "unchanged"]
LISTS: tuple[ImportList, ...] = ("changes", "conflicts", "unchanged")

# A stored step names its fields in full: the chunks are read by people too
# (a database console) and compress well either way.
_IDENTITY_FIELDS = (
    "user_name",
    "external_id",
    "emails",
    "active",
    "given_name",
    "family_name",
    "display_name",
    "role",
)


def import_state(record: LinkImport) -> Literal["planned", "applying", "applied"]:
    """Where an import is: planned (nothing applied), applying (started), applied (finished)."""
    if record.finished is not None:
        return "applied"
    if record.started is not None:
        return "applying"
    return "planned"


@attrs.frozen
class LinkImports:
    """Stage a link plan in storage, read it back in pages, and apply it batch by batch.

    ``lifetime`` is how long an import is kept after its upload; ``keep``
    is how many imports a workspace keeps (the oldest go first); ``chunk``
    is the steps per chunk of a new import, and so per batch of apply.
    """

    members: Members
    lifetime: timedelta = timedelta(days=1)
    keep: int = 5
    chunk: int = CHUNK

    def stage(
        self, slug: str, identities: Sequence[Identity], *, source: str, actor: str
    ) -> LinkImport:
        """Plan these identities against the workspace's members and keep the plan; nothing changes.

        Planning reads the members without a write lock; the plan is then
        stored a few chunks per short transaction (the workspace's expired
        and surplus imports deleted in the first), and shown only once whole.
        """
        plan = self.members.plan_links(slug, identities)
        return self.keep_plan(slug, plan, source=source, actor=actor)

    def keep_plan(self, slug: str, plan: LinkPlan, *, source: str, actor: str) -> LinkImport:
        """Store a plan made already as a new import (see :meth:`stage`)."""
        lists: dict[ImportList, tuple[LinkStep, ...]] = {
            "changes": plan.changes,
            "conflicts": plan.conflicts,
            "unchanged": tuple(s for s in plan.steps if s.action == "unchanged"),
        }
        size = self.chunk
        chunks: list[tuple[str, int, str]] = []
        for name, steps in lists.items():
            for position, start in enumerate(range(0, len(steps), size)):
                chunks.append((name, position, _dump(steps[start : start + size])))
        if not lists["changes"]:
            # One empty change chunk: applying it is what records the end.
            chunks.append(("changes", 0, "[]"))
        sizes: dict[str, int] = {name: -(-len(steps) // size) for name, steps in lists.items()}
        sizes["changes"] = max(sizes["changes"], 1)
        sizes["size"] = size
        counts = {
            action: plan.count(action)
            for action in ("create", "link", "reactivate", "unchanged", "conflict")
        }
        now = self.members.clock()
        with self.members.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            tx.purge_link_imports(now)
            for old in tx.link_imports(tenant.id)[max(self.keep - 1, 0) :]:
                tx.delete_link_import(tenant.id, old.id)
            record = LinkImport(
                id=self.members.new_id(),
                tenant_id=tenant.id,
                source=source,
                created_by=actor,
                created=now,
                expires=now + self.lifetime,
                counts=counts,
                chunks=sizes,
                result={
                    "created": 0,
                    "linked": 0,
                    "reactivated": 0,
                    "unchanged": counts["unchanged"],
                    "skipped": counts["conflict"],
                },
                complete=False,
            )
            tx.add_link_import(record)
        # A few chunks per transaction: a plan of 200,000 steps never holds
        # the write lock (SQLite's one writer) for more than a moment. Until
        # the last is stored the import is incomplete: not shown, not applied.
        try:
            for start in range(0, len(chunks), _CHUNKS_PER_WRITE):
                with self.members.storage.transaction() as tx:
                    tx.add_link_import_chunks(
                        tenant.id, record.id, chunks[start : start + _CHUNKS_PER_WRITE]
                    )
            with self.members.storage.transaction() as tx:
                tx.complete_link_import(tenant.id, record.id)
        except BaseException:
            with self.members.storage.transaction() as tx:
                tx.delete_link_import(tenant.id, record.id)
            raise
        return attrs.evolve(record, complete=True)

    def get(self, slug: str, import_id: str) -> LinkImport:
        """One of the workspace's imports; :class:`NotFoundError` if there is none or it expired."""
        with self.members.storage.transaction(write=False) as tx:
            tenant = tenant_by_slug(tx, slug)
            record = tx.get_link_import(tenant.id, import_id)
        return self._alive(slug, import_id, record)

    def recent(self, slug: str) -> list[LinkImport]:
        """The workspace's imports that have not expired, newest first."""
        now = self.members.clock()
        with self.members.storage.transaction(write=False) as tx:
            tenant = tenant_by_slug(tx, slug)
            return [r for r in tx.link_imports(tenant.id) if r.expires > now and r.complete]

    def steps(
        self, slug: str, import_id: str, list_name: ImportList, *, start: int, count: int
    ) -> list[LinkStep]:
        """Up to ``count`` steps of one list from position ``start`` (reads a chunk or two)."""
        found: list[LinkStep] = []
        with self.members.storage.transaction(write=False) as tx:
            tenant = tenant_by_slug(tx, slug)
            record = self._alive(slug, import_id, tx.get_link_import(tenant.id, import_id))
            size = record.chunks["size"]
            position = start
            while len(found) < count:
                chunk = tx.link_import_chunk(tenant.id, import_id, list_name, position // size)
                if chunk is None:
                    break
                offset = position % size
                steps = _load(chunk[0])[offset : offset + count - len(found)]
                if not steps:
                    break
                found += steps
                position += len(steps)
        return found

    def start(self, slug: str, import_id: str) -> LinkImport:
        """Ask for the import to be applied; :meth:`apply_next` then applies its batches.

        Asking twice (two tabs) is asking once.
        """
        with self.members.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            self._alive(slug, import_id, tx.get_link_import(tenant.id, import_id))
            tx.start_link_import(tenant.id, import_id, self.members.clock())
            record = tx.get_link_import(tenant.id, import_id)
        return self._alive(slug, import_id, record)

    def apply_next(self, slug: str, import_id: str, *, actor: str) -> LinkImport:
        """Apply the next chunk of a started import in one transaction; the import as it is then.

        Does nothing for an import not started, finished, or whose next
        chunk another request claimed first.
        """
        with self.members.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            record = self._alive(slug, import_id, tx.get_link_import(tenant.id, import_id))
            position = record.applied
            if record.started is None or position >= record.chunks["changes"]:
                return record
            if not tx.claim_link_import_chunk(tenant.id, import_id, position):
                return self._alive(slug, import_id, tx.get_link_import(tenant.id, import_id))
            chunk = tx.link_import_chunk(tenant.id, import_id, "changes", position)
            if chunk is None:
                raise NotFoundError(f"link import {import_id!r} lost its batch {position + 1}")
            batch = _load(chunk[0])
            done = self.members.apply_link_batch(tx, tenant, batch, actor=actor)
            result = dict(record.result)
            result["created"] += done.created
            result["linked"] += done.linked
            result["reactivated"] += done.reactivated
            result["unchanged"] += done.unchanged
            result["skipped"] += len(done.skipped)
            index = {id(step): i for i, step in enumerate(batch)}
            outcome = json.dumps({"skipped": [[index[id(s)], why] for s, why in done.skipped]})
            last = position + 1 == record.chunks["changes"]
            finished = self.members.clock() if last else None
            tx.record_link_import_chunk(
                tenant.id,
                import_id,
                position,
                outcome=outcome,
                result=result,
                finished=finished,
            )
            return attrs.evolve(
                record, applied=position + 1, result=result, finished=finished or record.finished
            )

    def skipped(self, slug: str, import_id: str) -> Iterator[tuple[LinkStep, str]]:
        """The steps not applied with why: the plan's conflicts, then those refused at apply.

        Read a chunk per transaction, so that an export of every conflict
        never holds one open for long.
        """
        record = self.get(slug, import_id)
        for name in ("conflicts", "changes"):
            for position in range(record.chunks.get(name, 0)):
                with self.members.storage.transaction(write=False) as tx:
                    chunk = tx.link_import_chunk(record.tenant_id, import_id, name, position)
                if chunk is None:
                    continue
                steps = _load(chunk[0])
                if name == "conflicts":
                    yield from ((step, step.reason) for step in steps)
                elif chunk[1] is not None:
                    for index, why in json.loads(chunk[1])["skipped"]:
                        yield steps[index], why

    def _alive(self, slug: str, import_id: str, record: LinkImport | None) -> LinkImport:
        if record is None or not record.complete or record.expires <= self.members.clock():
            raise NotFoundError(
                f"workspace {slug!r} has no link import {import_id!r} (imports are kept for "
                f"{_duration(self.lifetime)}); upload the file again"
            )
        return record


def _duration(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


def _dump(steps: Sequence[LinkStep]) -> str:
    return json.dumps([_step_document(step) for step in steps], ensure_ascii=False)


def _load(text: str) -> list[LinkStep]:
    return [_step_from(document) for document in json.loads(text)]


def _step_document(step: LinkStep) -> dict[str, Any]:
    identity = step.identity
    return {
        "action": step.action,
        "identity": {
            name: getattr(identity, name)
            for name in _IDENTITY_FIELDS
            if getattr(identity, name) not in (None, ())
        },
        "member_id": step.member_id,
        "matched_by": step.matched_by,
        "reason": step.reason,
        "candidates": list(step.candidates),
    }


def _step_from(document: dict[str, Any]) -> LinkStep:
    fields = dict(document["identity"])
    fields["emails"] = tuple(fields.get("emails", ()))
    return LinkStep(
        action=document["action"],
        identity=Identity(**fields),
        member_id=document["member_id"],
        matched_by=document["matched_by"],
        reason=document["reason"],
        candidates=tuple(document["candidates"]),
    )
