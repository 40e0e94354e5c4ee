"""Deliver queued outbox messages exactly once: claim, send, record; reconcile after crashes.

The row moves ``pending → sending`` (committed) before the SMTP conversation starts, and
``sending → sent`` after it.  A row found in ``sending`` whose sender is gone therefore means
"outcome unknown": it is never blindly re-sent; it is reconciled against the Sent copy (or the
Maildir) and otherwise handed to a human as ``needs_check``.

A sender may go on with further due rows after its own (``send_batch``), claimed in groups of
``[smtp_out] send_group``: one commit claims a group, the relay takes its messages one after
another on one connection, and one commit records them all as sent and claims the next group.
A backlog then costs one commit per group instead of one or two per answer.  The price is the
crash window: a sender killed mid-group leaves the whole group in ``sending`` (the answers it
had handed over, and those it had not yet tried), and each is reconciled as above; nothing is
ever sent twice.  ``send_group = 1`` keeps it to one answer at a time.  The database work is a
few Core statements on one connection kept for the run.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.selectable import Select

from consultant.db import transaction
from consultant.models import (
    FAILED,
    OUT_FAILED,
    OUT_NEEDS_CHECK,
    OUT_PENDING,
    OUT_SENDING,
    OUT_SENT,
    SENT,
    AuditEvent,
    Case,
    Outbox,
    Requester,
    utcnow,
)
from consultant.outbox.compose import envelope_sender
from consultant.outbox.sentcopy import SentFolder
from consultant.outbox.transport import (
    MaildirTransport,
    PermanentFailure,
    TemporaryFailure,
    Transport,
)
from consultant.quota import charging
from consultant.settings import Settings

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600


@dataclass(frozen=True)
class Claimed:
    """A row this process has moved to ``sending``: what the SMTP conversation needs."""

    id: int
    case_id: int | None
    kind: str
    message_id: str
    to_addr: str
    raw: bytes
    approved_by: str | None


Hook = Callable[[Claimed], None]
_CLAIMED = (Outbox.id, Outbox.case_id, Outbox.kind, Outbox.message_id, Outbox.to_addr, Outbox.raw,
            Outbox.approved_by)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(Outbox.status == OUT_PENDING,
                or_(Outbox.next_attempt_at.is_(None), Outbox.next_attempt_at <= now))


def _claim_in(conn: Connection, outbox_id: int | None, n: int = 1) -> list[Claimed]:
    """Move ``outbox_id`` (or, for None, the ``n`` oldest due rows no other sender holds) to
    ``sending`` in the caller's transaction, oldest first; empty if none is pending and due."""
    now = utcnow()
    if outbox_id is not None:
        ids = [outbox_id]
    else:
        # SKIP LOCKED: two senders draining together take different rows instead of queueing
        # on the same ones (PostgreSQL; SQLite writers are serialised anyway).  A statement of
        # its own: as a subquery of the UPDATE, PostgreSQL may run it more than once, and each
        # run skips the rows the last one locked, so LIMIT n claimed more than n rows.
        ids = list(conn.execute(select(Outbox.id).where(_due(now)).order_by(Outbox.id).limit(n)
                                .with_for_update(skip_locked=True)).scalars())
        if not ids:
            return []
    target = Outbox.id.in_(ids)
    # The status test in the UPDATE itself makes the claim atomic: of two senders claiming one
    # row, the second waits for the first's row lock, re-reads the row and claims nothing.
    rows = conn.execute(
        update(Outbox).where(target, _due(now), Outbox.to_addr.not_in(_undeliverable()))
        .values(status=OUT_SENDING, attempts=Outbox.attempts + 1, sending_started_at=now,
                claimed_by=_owner())
        .returning(*_CLAIMED)).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def _release_in(conn: Connection, ids: list[int]) -> None:
    """Give claimed rows whose SMTP conversation never started back to ``pending``, with the
    attempt their claim counted taken back."""
    if ids:
        conn.execute(update(Outbox).where(Outbox.id.in_(ids), Outbox.status == OUT_SENDING)
                     .values(status=OUT_PENDING, attempts=Outbox.attempts - 1,
                             sending_started_at=None, claimed_by=None))


def _undeliverable() -> Select[str]:
    return select(Requester.email).where(Requester.undeliverable_at.is_not(None))


def _hold_undeliverable(session: Session) -> None:
    """Pending rows to an address a hard bounce marked undeliverable go to ``needs_check``
    instead of out (and are never claimed): nothing more is sent there until a human clears
    the mark."""
    held = session.connection().execute(
        update(Outbox).where(Outbox.status == OUT_PENDING, Outbox.to_addr.in_(_undeliverable()))
        .values(status=OUT_NEEDS_CHECK,
                last_error="not sent: the address is marked undeliverable (`requesters show "
                           "ADDRESS`); after `requesters clear-undeliverable ADDRESS`, "
                           "`outbox resolve ID --resend`")
        .returning(Outbox.id, Outbox.case_id, Outbox.to_addr)).all()
    for outbox_id, case_id, to_addr in held:
        # Through the session, so the audit chain seals it at commit (as _record_sent_in).
        session.add(AuditEvent(case_id=case_id, actor="system", action="needs_check",
                               detail={"outbox_id": outbox_id, "why": f"{to_addr} is marked undeliverable"}))


def _record_sent_in(session: Session, outbox_ids: list[int], how: str) -> None:
    """Record ``outbox_ids`` as sent (and their answers' cases), in the caller's transaction."""
    if not outbox_ids:
        return
    conn = session.connection()
    rows = conn.execute(update(Outbox).where(Outbox.id.in_(outbox_ids))
                        .values(status=OUT_SENT, sent_at=utcnow(), last_error=None)
                        .returning(Outbox.id, Outbox.case_id, Outbox.kind, Outbox.message_id)).all()
    assert len(rows) == len(set(outbox_ids)), f"outbox rows vanished while being sent: {outbox_ids}"
    answered = [case_id for _, case_id, kind, _ in rows if case_id is not None and kind == "answer"]
    if answered:
        conn.execute(update(Case).where(Case.id.in_(answered)).values(status=SENT))
    for outbox_id, case_id, kind, message_id in sorted(rows):
        # Added through the session, not inserted through the connection: the audit chain
        # seals the events a session added when it commits (consultant.audit.chain).
        session.add(AuditEvent(case_id=case_id, actor="system", action="sent",
                               detail={"outbox_id": outbox_id, "message_id": message_id,
                                       "kind": kind, "how": how}))


def _engine(factory: sessionmaker[Session]) -> Engine:
    """The engine behind ``factory``: the sender keeps one connection of it for a run."""
    engine = factory.kw["bind"]
    assert isinstance(engine, Engine)
    return engine


def send_one(factory: sessionmaker[Session], settings: Settings, outbox_id: int,
             transport: Transport, sent_folder: SentFolder | None = None,
             after_accept: Hook | None = None, before_record: Hook | None = None) -> str:
    """Try to deliver one outbox message; returns its status afterwards.

    ``after_accept`` runs once the relay has accepted the message (before the Sent copy),
    ``before_record`` just before the ``sent`` record: seams for crash tests.
    """
    return send_batch(factory, settings, transport, sent_folder, first_id=outbox_id, limit=1,
                      after_accept=after_accept, before_record=before_record)[outbox_id]


def send_batch(factory: sessionmaker[Session], settings: Settings, transport: Transport,
               sent_folder: SentFolder | None = None, *, first_id: int | None = None,
               limit: int = 1, seconds: float | None = None, after_accept: Hook | None = None,
               before_record: Hook | None = None) -> dict[int, str]:
    """Send ``first_id`` (if given and due), then further due rows, oldest first, in groups of
    ``[smtp_out] send_group``, up to ``limit`` rows or ``seconds``; returns the status of each
    row tried (and of ``first_id`` in any case: ``sent``/``sending`` by another sender,
    ``missing`` ...).

    A temporary failure ends the run: the relay is likely in trouble, and the remaining rows
    keep their attempts for their own retries.
    """
    deadline = time.monotonic() + seconds if seconds is not None else None
    group = settings.smtp_out.send_group
    results: dict[int, str] = {}

    def claim_more(conn: Connection, claimed: int = 0) -> list[Claimed]:
        room = min(group - claimed, limit - len(results) - claimed)
        if room <= 0 or (deadline is not None and time.monotonic() >= deadline):
            return []
        return _claim_in(conn, None, room)

    # One connection for the whole run (no pool checkout per transaction), used through one
    # session so the audit chain sees every commit.
    with _engine(factory).connect() as conn, factory(bind=conn) as session:
        with session.begin():
            _hold_undeliverable(session)
            claimed: list[Claimed] = []
            if first_id is not None:
                claimed = _claim_in(session.connection(), first_id)
                if not claimed:
                    status = session.connection().execute(
                        select(Outbox.status).where(Outbox.id == first_id)).scalar()
                    # Its own row was sent by another run: it helps with the backlog, if there
                    # is one (otherwise two senders would not drain it together: the second
                    # would only meet rows the first had already sent).
                    results[first_id] = status or "missing"
            claimed += claim_more(session.connection(), len(claimed))
        while claimed:
            sent, ended, error = _send_group(factory, settings, transport, sent_folder, claimed,
                                             results, after_accept, before_record)
            unsent = [c.id for c in claimed if c.id not in results]
            # One commit records the group as sent and claims the next: a crash before it
            # leaves the group's rows in "sending" (reconciled, never re-sent blindly).
            with session.begin():
                _record_sent_in(session, sent, how="smtp accepted")
                _release_in(session.connection(), unsent)
                claimed = [] if ended else claim_more(session.connection())
            if error is not None:
                raise error
    return results


def _send_group(factory: sessionmaker[Session], settings: Settings, transport: Transport,
                sent_folder: SentFolder | None, claimed: list[Claimed], results: dict[int, str],
                after_accept: Hook | None, before_record: Hook | None,
                ) -> tuple[list[int], bool, Exception | None]:
    """Hand each claimed row to the relay, in order, noting each outcome in ``results``.

    Returns the accepted ids, whether the run must end, and the unexpected error that ended it
    (raised by the caller once what went out is recorded).  A temporary failure ends the run:
    the relay is likely in trouble, and the rows after it keep their attempts for their own
    retries.
    """
    sent: list[int] = []
    for current in claimed:
        try:
            transport.send(current.raw, envelope_sender(settings, current.approved_by),
                           current.to_addr)
        except TemporaryFailure as exc:
            results[current.id] = _record_failure(factory, settings, current.id, str(exc),
                                                   permanent=False)
            return sent, True, None
        except PermanentFailure as exc:
            results[current.id] = _record_failure(factory, settings, current.id, str(exc),
                                                  permanent=True)
            continue
        except Exception as exc:  # noqa: BLE001 - unknown transport error: outcome unknown
            _mark_needs_check(factory, current.id, f"unexpected error while sending: {exc!r}")
            results[current.id] = OUT_NEEDS_CHECK
            return sent, True, exc
        if after_accept is not None:
            after_accept(current)
        if sent_folder is not None and sent_folder.enabled:
            try:
                sent_folder.save(current.raw)
            except Exception as exc:  # noqa: BLE001 - the answer went out; the copy is secondary
                log.warning("could not save a Sent copy of %s: %s", current.message_id, exc)
        if before_record is not None:
            before_record(current)
        results[current.id] = OUT_SENT
        sent.append(current.id)
    return sent, False, None


def _record_sent(factory: sessionmaker[Session], outbox_id: int, how: str) -> None:
    with transaction(factory) as session:
        _record_sent_in(session, [outbox_id], how)


def _record_failure(factory: sessionmaker[Session], settings: Settings, outbox_id: int,
                    error: str, *, permanent: bool) -> str:
    with transaction(factory) as session:
        out = session.get(Outbox, outbox_id, with_for_update=True)
        assert out is not None
        out.last_error = error
        if not permanent and out.attempts < settings.smtp_out.max_attempts:
            out.status = OUT_PENDING
            out.next_attempt_at = utcnow() + backoff(out.attempts)
            return OUT_PENDING
        out.status = OUT_FAILED
        if out.case_id is not None:
            case = session.get(Case, out.case_id)
            assert case is not None
            if out.kind == "answer":
                case.status = FAILED
            case.failure = f"{out.kind} could not be delivered: {error}"
            if out.charges_quota:
                charging.refund_delivery_failure(session, settings.quota, out.id)
        session.add(AuditEvent(case_id=out.case_id, actor="system", action="send_failed",
                               detail={"outbox_id": out.id, "error": error}))
        return OUT_FAILED


def _mark_needs_check(factory: sessionmaker[Session], outbox_id: int, why: str) -> None:
    with transaction(factory) as session:
        out = session.get(Outbox, outbox_id, with_for_update=True)
        assert out is not None
        out.status = OUT_NEEDS_CHECK
        out.last_error = why
        session.add(AuditEvent(case_id=out.case_id, actor="system", action="needs_check",
                               detail={"outbox_id": out.id, "why": why}))


def _owner_is_dead(claim: str | None, started, stale_after: timedelta) -> bool:  # type: ignore[no-untyped-def]
    """A 'sending' row is orphaned if its claimant process on this host is gone, or it is stale."""
    if started is None or utcnow() - started > stale_after:
        return True
    if claim:
        host, _, pid = claim.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
    return False


def reconcile(factory: sessionmaker[Session], settings: Settings,
              transport: Transport | None = None, sent_folder: SentFolder | None = None,
              stale_after: timedelta | None = None) -> dict[str, int]:
    """Settle rows left in ``sending`` by a crashed sender: sent if a copy is found, else needs_check."""
    # `is None`, not `or`: timedelta(0) ("every orphan now") is falsy.
    stale = stale_after if stale_after is not None else timedelta(seconds=3 * settings.smtp_out.timeout + 30)
    counts = {"sent": 0, "needs_check": 0}
    with factory() as session:
        rows = session.execute(select(Outbox.id, Outbox.message_id, Outbox.claimed_by,
                                      Outbox.sending_started_at)
                               .where(Outbox.status == OUT_SENDING)).all()
    for outbox_id, message_id, claim, started in rows:
        if not _owner_is_dead(claim, started, stale):
            continue
        found = False
        try:
            if isinstance(transport, MaildirTransport):
                found = transport.contains(message_id)
            elif sent_folder is not None and sent_folder.enabled:
                found = sent_folder.contains(message_id)
        except Exception as exc:  # noqa: BLE001 - cannot check: a human must
            log.warning("reconcile: could not search for %s: %s", message_id, exc)
        if found:
            _record_sent(factory, outbox_id, how="reconciled: copy found after a crash")
            counts["sent"] += 1
        else:
            _mark_needs_check(factory, outbox_id, "sender stopped after starting to send; no copy "
                              "found in the Sent folder. Check the recipient's mailbox or relay "
                              "log, then `outbox resolve ID --sent|--resend`.")
            counts["needs_check"] += 1
    return counts


def due_ids(factory: sessionmaker[Session]) -> list[int]:
    """Pending rows whose next attempt is due, oldest first."""
    now = utcnow()
    with factory() as session:
        return list(session.execute(select(Outbox.id).where(_due(now)).order_by(Outbox.id))
                    .scalars())


def resolve(factory: sessionmaker[Session], outbox_id: int, *, sent: bool, by: str) -> None:
    """A human settles a ``needs_check`` row: it did go out (``sent``) or must be re-sent."""
    if sent:
        with transaction(factory) as session:
            out = session.get(Outbox, outbox_id, with_for_update=True)
            if out is None or out.status != OUT_NEEDS_CHECK:
                raise ValueError(f"outbox {outbox_id} is not awaiting a check")
        _record_sent(factory, outbox_id, how=f"confirmed by {by}")
        return
    with transaction(factory) as session:
        out = session.get(Outbox, outbox_id, with_for_update=True)
        if out is None or out.status != OUT_NEEDS_CHECK:
            raise ValueError(f"outbox {outbox_id} is not awaiting a check")
        out.status = OUT_PENDING
        out.next_attempt_at = None
        session.add(AuditEvent(case_id=out.case_id, actor=by, action="resend_requested",
                               detail={"outbox_id": out.id}))
