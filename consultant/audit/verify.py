"""Checking the audit chain, exporting it, and pruning it after its retention period."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from consultant.audit.chain import _LOCK_KEY, GENESIS, digest, pruned_anchor
from consultant.audit.models import AuditAnchor
from consultant.db import transaction
from consultant.models import AuditEvent, utcnow

_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]
_BATCH = 1000


@dataclass
class Verification:
    events: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sealed_rows(session: Session) -> Iterator[Any]:
    """Sealed events in chain order, a batch at a time (the table grows for years)."""
    last = 0
    while True:
        rows = session.execute(select(_TABLE).where(_TABLE.c.seq > last)
                               .order_by(_TABLE.c.seq).limit(_BATCH)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(factory: sessionmaker[Session]) -> Verification:
    """Walk the chain: every event must follow the previous one and hash to its stored hash.

    An edited event fails its own hash; a deleted one leaves a gap in the sequence and breaks
    the next event's link; a reordering breaks both.  Removing the newest events leaves a shorter
    valid chain: compare ``head_seq``/``head_hash`` with a copy kept elsewhere (an export).
    """
    result = Verification()
    with factory() as session:
        anchor = pruned_anchor(session.connection())
        expected, prev = anchor if anchor is not None else (0, GENESIS)
        result.head_seq, result.head_hash = expected, prev
        unsealed = session.execute(select(func.count()).where(_TABLE.c.seq.is_(None))).scalar_one()
        if unsealed:
            result.problems.append(f"{unsealed} event(s) not sealed into the chain (written "
                                   "outside consultant.db's session factory, or by hand)")
        for row in _sealed_rows(session):
            result.events += 1
            where = f"event {row.seq} (id {row.id}, {row.action})"
            if row.seq != expected + 1:
                result.problems.append(f"events {expected + 1}..{row.seq - 1} are missing "
                                       "(deleted)" if row.seq > expected + 1 else
                                       f"{where}: out of order")
            if row.prev_hash != prev:
                result.problems.append(f"{where}: does not follow the event before it "
                                       "(an earlier event was changed, removed or moved)")
            if digest(row.seq, row.prev_hash, row.case_id, row.actor, row.action, row.detail,
                      row.at) != row.hash:
                result.problems.append(f"{where}: its content was changed after it was written")
            expected, prev = row.seq, row.hash
        result.head_seq, result.head_hash = expected, prev
    return result


def export(factory: sessionmaker[Session], out: IO[str], since: datetime | None = None) -> int:
    """Write the chain (from ``since``) as JSON lines, chain order; returns the line count."""
    count = 0
    with factory() as session:
        for row in _sealed_rows(session):
            if since is not None and row.at < since:
                continue
            out.write(json.dumps({"seq": row.seq, "id": row.id, "at": row.at.isoformat(),
                                  "case_id": row.case_id, "actor": row.actor, "action": row.action,
                                  "detail": row.detail, "prev_hash": row.prev_hash,
                                  "hash": row.hash}, sort_keys=True, default=str) + "\n")
            count += 1
    return count


def prune(factory: sessionmaker[Session], before: datetime, *, dry_run: bool = False) -> int:
    """Delete sealed events older than ``before`` (the retention period), keeping an anchor."""
    with transaction(factory) as session:
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        through = session.execute(select(func.max(_TABLE.c.seq))
                                  .where(_TABLE.c.seq.is_not(None), _TABLE.c.at < before)).scalar()
        if through is None:
            return 0
        count = int(session.execute(select(func.count()).where(_TABLE.c.seq <= through)).scalar_one())
        if dry_run:
            return count
        last_hash = session.execute(select(_TABLE.c.hash).where(_TABLE.c.seq == through)).scalar_one()
        session.add(AuditAnchor(through_seq=through, last_hash=last_hash, pruned=count))
        session.execute(delete(_TABLE).where(_TABLE.c.seq <= through))
        session.add(AuditEvent(case_id=None, actor="system", action="audit_pruned",
                               detail={"through_seq": through, "events": count,
                                       "before": before.isoformat(), "at": utcnow().isoformat()}))
        return count
