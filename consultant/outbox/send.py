"""Deliver queued outbox messages exactly once: claim, send, record; reconcile after crashes.

The row moves ``pending → sending`` (committed) before the SMTP conversation starts, and
``sending → sent`` after it.  A row found in ``sending`` whose sender is gone therefore means
"outcome unknown": it is never blindly re-sent; it is reconciled against the Sent copy (or the
Maildir) and otherwise handed to a human as ``needs_check``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

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
    utcnow,
)
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
def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def _claim(factory: sessionmaker[Session], outbox_id: int) -> Outbox | None:
    with transaction(factory) as session:
        out = session.get(Outbox, outbox_id, with_for_update=True)
        if out is None or out.status != OUT_PENDING:
            return None
        if out.next_attempt_at is not None and out.next_attempt_at > utcnow():
            return None
        out.status = OUT_SENDING
        out.attempts += 1
        out.sending_started_at = utcnow()
        out.claimed_by = _owner()
        session.flush()
        session.expunge(out)
        return out


def send_one(factory: sessionmaker[Session], settings: Settings, outbox_id: int,
             transport: Transport, sent_folder: SentFolder | None = None,
             after_accept: Callable[[Outbox], None] | None = None) -> str:
    """Try to deliver one outbox message; returns its status afterwards."""
    out = _claim(factory, outbox_id)
    if out is None:
        with factory() as session:
            row = session.get(Outbox, outbox_id)
            return row.status if row else "missing"
    try:
        transport.send(out.raw, settings.service.address, out.to_addr)
    except TemporaryFailure as exc:
        return _record_failure(factory, settings, outbox_id, str(exc), permanent=False)
    except PermanentFailure as exc:
        return _record_failure(factory, settings, outbox_id, str(exc), permanent=True)
    except Exception as exc:  # noqa: BLE001 - unknown transport error: outcome unknown
        _mark_needs_check(factory, outbox_id, f"unexpected error while sending: {exc!r}")
        raise
    if after_accept is not None:
        after_accept(out)
    if sent_folder is not None and sent_folder.enabled:
        try:
            sent_folder.save(out.raw)
        except Exception as exc:  # noqa: BLE001 - the answer went out; the copy is secondary
            log.warning("could not save a Sent copy of %s: %s", out.message_id, exc)
    _record_sent(factory, outbox_id, how="smtp accepted")
    return OUT_SENT


def _record_sent(factory: sessionmaker[Session], outbox_id: int, how: str) -> None:
    with transaction(factory) as session:
        out = session.get(Outbox, outbox_id, with_for_update=True)
        assert out is not None
        out.status = OUT_SENT
        out.sent_at = utcnow()
        out.last_error = None
        if out.case_id is not None and out.kind == "answer":
            case = session.get(Case, out.case_id)
            assert case is not None
            case.status = SENT
        session.add(AuditEvent(case_id=out.case_id, actor="system", action="sent",
                               detail={"outbox_id": out.id, "message_id": out.message_id,
                                       "kind": out.kind, "how": how}))


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
    stale = stale_after or timedelta(seconds=3 * settings.smtp_out.timeout + 30)
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
        return list(session.execute(
            select(Outbox.id).where(Outbox.status == OUT_PENDING,
                                    or_(Outbox.next_attempt_at.is_(None),
                                        Outbox.next_attempt_at <= now))
            .order_by(Outbox.id)).scalars())


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
