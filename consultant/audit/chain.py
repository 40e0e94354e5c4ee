"""Sealing audit events into a hash chain, transparently, at commit.

Every transaction that added ``AuditEvent`` rows gives them, just before it commits, the next
sequence numbers and ``hash = sha256(seq | prev_hash | canonical JSON of the event)``.  Sealing
at commit (not at insert) keeps the chain's order the commit order, and holds the chain's lock
(PostgreSQL: a transaction-level advisory lock; SQLite: its single writer, BEGIN IMMEDIATE)
only for the last moment of a transaction, after it has taken every row lock it needs — so it
cannot deadlock with them.  The listeners are installed on each session factory
(consultant.db.make_session_factory); the dozens of ``session.add(AuditEvent(...))`` calls need
no change.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, event, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from consultant.models import AuditEvent

GENESIS = "0" * 64
_PENDING = "caseconsultant.audit_pending"
# pg_advisory_xact_lock key: any fixed 64-bit number, the same in every process.
_LOCK_KEY = 0x43435F4155444954  # "CC_AUDIT"
_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]


def digest(seq: int, prev_hash: str, case_id: int | None, actor: str, action: str,
           detail: Any, at: datetime) -> str:
    """The hash of one event, over every column a reader relies on."""
    body = json.dumps([seq, prev_hash, case_id, actor, action, detail, at.isoformat()],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def install(factory: sessionmaker[Session]) -> None:
    """Seal audit events written through sessions of ``factory``."""
    event.listen(factory, "after_flush", _note_new_events)
    event.listen(factory, "before_commit", _seal)


def _note_new_events(session: Session, _context: Any) -> None:
    if any(isinstance(obj, AuditEvent) for obj in session.new):
        session.info[_PENDING] = True


def _seal(session: Session) -> None:
    # before_commit also fires when a savepoint is released: sealing there would take the
    # chain's lock and read its head twice per transaction.  The events stay pending (and
    # unsealed rows are found again below) until the outermost commit.
    if session.in_nested_transaction():
        return
    session.flush()  # before_commit runs before commit's own final flush
    if not session.info.pop(_PENDING, False):
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_TAKE_LOCK, {"key": _LOCK_KEY})
    # The chain's head and the unsealed rows in one statement (after the lock, so it reads
    # every chain commit made before ours).  Hashed from the rows as stored, not the objects in
    # memory, so the digest is over exactly what verify reads back.
    found = conn.execute(_HEAD_AND_UNSEALED).all()
    last = next((r for r in found if r.seq is not None), None)
    rows = [r for r in found if r.seq is None]
    seq, prev = (int(last.seq), str(last.hash)) if last is not None else (0, GENESIS)
    if last is None:
        anchor = pruned_anchor(conn)
        if anchor is not None:
            seq, prev = anchor
    sealed = []
    for row in rows:
        seq += 1
        own = digest(seq, prev, row.case_id, row.actor, row.action, row.detail, row.at)
        sealed.append({"row_id": row.id, "new_seq": seq, "new_prev": prev, "new_hash": own})
        prev = own
    if sealed:
        # One executemany for the transaction's events (psycopg pipelines it: one round trip).
        conn.execute(_SEAL, sealed)


# Built once: every transaction with an audit event runs these, and building a statement and
# its cache key costs more CPU than running it (bench/stages.py).
_TAKE_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_HEAD_AND_UNSEALED = (
    select(_TABLE).where(or_(_TABLE.c.seq.is_(None),
                             _TABLE.c.seq == select(func.max(_TABLE.c.seq)).scalar_subquery()))
    .order_by(_TABLE.c.id))
_SEAL = (update(_TABLE).where(_TABLE.c.id == bindparam("row_id"))
         .values(seq=bindparam("new_seq"), prev_hash=bindparam("new_prev"),
                 hash=bindparam("new_hash")))


def pruned_anchor(conn: Any) -> tuple[int, str] | None:
    """Where the chain continues after retention pruning removed its oldest events."""
    from consultant.audit.models import AuditAnchor

    row = conn.execute(select(AuditAnchor.through_seq, AuditAnchor.last_hash)
                       .order_by(AuditAnchor.through_seq.desc()).limit(1)).first()
    return (int(row.through_seq), str(row.last_hash)) if row is not None else None
