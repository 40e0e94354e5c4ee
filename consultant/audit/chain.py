"""Sealing audit events into a hash chain, transparently, at commit.

Every transaction that added ``AuditEvent`` rows gives them, just before it commits, the next
sequence numbers and ``hash = sha256(seq | prev_hash | canonical JSON of the event)``.  Sealing
at commit (not at insert) keeps the chain's order the commit order, and holds the chain's lock
(PostgreSQL: a transaction-level advisory lock; SQLite: its single writer, BEGIN IMMEDIATE)
only for the last moment of a transaction, after it has taken every row lock it needs — so it
cannot deadlock with them.  The listeners are installed on each session factory
(consultant.db.make_session_factory); the dozens of ``session.add(AuditEvent(...))`` calls need
no change.

New events are not flushed with the rest of the session's changes: they are held in memory and
inserted at commit, sealed, in one statement for the transaction (an INSERT at flush and an
UPDATE at commit, with a SELECT between, cost every processed mail three statements).  The one
exception is an event flushed inside a savepoint: it is written unsealed as before, so that
rolling the savepoint back takes it with it, and sealed from its row at commit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, event, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from consultant.models import AuditEvent, utcnow

GENESIS = "0" * 64
# Per outermost transaction (cleared when it ends, see _forget): the events held for the seal;
# whether events were flushed inside a savepoint (unsealed rows to seal at commit); whether the
# seal has run (the transaction is committing).
_HELD = "caseconsultant.audit_held"
_WRITTEN_UNSEALED = "caseconsultant.audit_written_unsealed"
_SEALED = "caseconsultant.audit_sealed"
# pg_advisory_xact_lock key: any fixed 64-bit number, the same in every process.
_LOCK_KEY = 0x43435F4155444954  # "CC_AUDIT"
_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]


def digest(seq: int, prev_hash: str, case_id: int | None, actor: str, action: str,
           detail: Any, at: datetime) -> str:
    """The hash of one event, over every column a reader relies on.

    ``at`` in UTC: PostgreSQL returns a timestamp in the reading session's time zone, which
    must not change the hash (the database keeps the instant, not the zone)."""
    body = json.dumps([seq, prev_hash, case_id, actor, action, detail,
                       at.astimezone(UTC).isoformat()],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def install(factory: sessionmaker[Session]) -> None:
    """Seal audit events written through sessions of ``factory``."""
    event.listen(factory, "before_flush", _hold_new_events)
    event.listen(factory, "before_commit", _seal)
    event.listen(factory, "after_transaction_end", _forget)


def _hold_new_events(session: Session, _context: Any, _instances: Any) -> None:
    new = [obj for obj in session.new if isinstance(obj, AuditEvent)]
    if not new:
        return
    if session.in_nested_transaction() or session.info.get(_SEALED):
        # Written now, unsealed: a savepoint's rollback must take them with it, and an event
        # added after this transaction's seal (by commit's own last flush) must not be lost.
        # Sealed from their rows at the outermost commit, or the next one (verify reports
        # them until then).
        session.info[_WRITTEN_UNSEALED] = True
        return
    held: list[AuditEvent] = session.info.setdefault(_HELD, [])
    at = utcnow()  # what the column's default would have given them at this flush
    for obj in new:
        session.expunge(obj)
        if obj.at is None:
            obj.at = at
        held.append(obj)


def _forget(session: Session, transaction: SessionTransaction) -> None:
    # A rolled-back transaction's held events go with it, and the next transaction starts
    # with none.
    if transaction.parent is None:
        for key in (_HELD, _WRITTEN_UNSEALED, _SEALED):
            session.info.pop(key, None)


def _seal(session: Session) -> None:
    # before_commit also fires when a savepoint is released: sealing there would take the
    # chain's lock and read its head twice per transaction.  The events stay held (or
    # unsealed rows) until the outermost commit.
    if session.in_nested_transaction():
        return
    session.flush()  # before_commit runs before commit's own final flush
    session.info[_SEALED] = True
    events: list[AuditEvent] = session.info.pop(_HELD, [])
    if not events and not session.info.pop(_WRITTEN_UNSEALED, False):
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_TAKE_LOCK, {"key": _LOCK_KEY})
    # The chain's head and any unsealed rows in one statement (after the lock, so it reads
    # every chain commit made before ours).  Unsealed rows are a savepoint's, or written
    # around the chain (which verify reports until a commit like this one seals them).
    found = conn.execute(_HEAD_AND_UNSEALED).all()
    last = next((r for r in found if r.seq is not None), None)
    seq, prev = (int(last.seq), str(last.hash)) if last is not None else (0, GENESIS)
    if last is None:
        anchor = pruned_anchor(conn)
        if anchor is not None:
            seq, prev = anchor
    # Each event hashed over exactly what verify reads back: a row as stored; a held event as
    # it will be stored (its detail through JSON, as the column stores it).
    written = [(r.at, r.id, r.case_id, r.actor, r.action, r.detail)
               for r in found if r.seq is None]
    pending = [(e.at, None, _case_id(e), e.actor, e.action, json.loads(json.dumps(e.detail or {})))
               for e in events]
    updates, inserts = [], []
    # In the order they happened (a stable sort: ties keep rows before held events, as the
    # rows were flushed earlier).
    for at, row_id, case_id, actor, action, detail in sorted([*written, *pending],
                                                              key=lambda item: item[0]):
        seq += 1
        own = digest(seq, prev, case_id, actor, action, detail, at)
        if row_id is not None:
            updates.append({"row_id": row_id, "new_seq": seq, "new_prev": prev, "new_hash": own})
        else:
            inserts.append({"case_id": case_id, "actor": actor, "action": action,
                            "detail": detail, "at": at, "seq": seq, "prev_hash": prev,
                            "hash": own})
        prev = own
    # One executemany each (psycopg pipelines it: one round trip).
    if updates:
        conn.execute(_SEAL, updates)
    if inserts:
        conn.execute(_INSERT, inserts)


def _case_id(held: AuditEvent) -> int | None:
    """A held event's case: its case_id, or the id its ``case`` got from this commit's flush
    (the event was added before the case was inserted)."""
    if held.case_id is not None:
        return held.case_id
    case = held.__dict__.get("case")  # as given; never loaded (the event is not in a session)
    return case.id if case is not None else None


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
_INSERT = insert(_TABLE)


def pruned_anchor(conn: Any) -> tuple[int, str] | None:
    """Where the chain continues after retention pruning removed its oldest events."""
    from consultant.audit.models import AuditAnchor

    row = conn.execute(select(AuditAnchor.through_seq, AuditAnchor.last_hash)
                       .order_by(AuditAnchor.through_seq.desc()).limit(1)).first()
    return (int(row.through_seq), str(row.last_hash)) if row is not None else None
