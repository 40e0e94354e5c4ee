"""Quarantined mail: list it, show it, release it back into processing, or discard it.

A mail is quarantined when it cannot be handled safely or sensibly (unparseable, too large,
sent from our own address, no usable sender, or processing failed every retry).  A person
decides what happens next, and the decision is audited: *release* clears the disposition and
runs the same processing a worker would (so a mail that is still bad is quarantined again,
with its new reason); *discard* closes it with a reason, keeping the raw bytes.  The console's
quarantine page and the ``mail show/retry/discard`` commands both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.models import AuditEvent, InboundMail
from consultant.processing import Effects, process_mail
from consultant.settings import Settings

QUARANTINED = "quarantined"
DISCARDED = "discarded"
MAX_HEADER_SHOWN = 16_000


class QuarantineError(Exception):
    """The mail is not in quarantine (or does not exist); the message says which."""


@dataclass
class Released:
    mail_id: int
    disposition: str | None  # what processing decided this time
    reason: str | None
    case_id: int | None
    effects: Effects = field(default_factory=Effects)


def quarantined(session: Session, limit: int = 500) -> list[InboundMail]:
    """Mail waiting in quarantine, oldest first."""
    return list(session.execute(select(InboundMail).where(InboundMail.disposition == QUARANTINED)
                                .order_by(InboundMail.id).limit(limit)).scalars())


def get_mail(session: Session, mail_id: int) -> InboundMail:
    mail = session.get(InboundMail, mail_id)
    if mail is None:
        raise QuarantineError(f"no inbound mail {mail_id}")
    return mail


def header_text(mail: InboundMail) -> str:
    """The mail's header block as stored, for display only (undecodable bytes replaced)."""
    if mail.raw is None:
        return "(the raw mail was purged after the retention period)"
    raw = mail.raw[:MAX_HEADER_SHOWN]
    ends = [pos for pos in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if pos != -1]
    return raw[:min(ends, default=len(raw))].decode("utf-8", errors="replace")


def _take_from_quarantine(session: Session, mail_id: int) -> InboundMail:
    mail = session.get(InboundMail, mail_id, with_for_update=True)
    if mail is None:
        raise QuarantineError(f"no inbound mail {mail_id}")
    if mail.disposition != QUARANTINED:
        raise QuarantineError(f"mail {mail_id} is not quarantined (it is "
                              f"{mail.disposition or 'not processed yet'})")
    return mail


def release(factory: sessionmaker[Session], settings: Settings, mail_id: int, *,
            by: str) -> Released:
    """Put a quarantined mail through processing again; returns what it became.

    The caller dispatches ``effects`` (drafting, sending) after this returns: everything here
    has committed by then."""
    with transaction(factory) as session:
        mail = _take_from_quarantine(session, mail_id)
        session.add(AuditEvent(case_id=mail.case_id, actor=by, action="mail_released",
                               detail={"mail_id": mail.id, "was": mail.disposition_reason or ""}))
        had_case = mail.case_id is not None
        mail.disposition = None
        mail.disposition_reason = None
        mail.rule_hits = []
    effects = process_mail(factory, settings, mail_id)
    with transaction(factory) as session:
        mail = get_mail(session, mail_id)
        if mail.case_id is not None and not had_case:
            # The release made (or joined) a case: its own audit trail says who released the
            # mail (a new event; audit events are never rewritten).
            session.add(AuditEvent(case_id=mail.case_id, actor=by, action="mail_released",
                                   detail={"mail_id": mail.id, "became": mail.disposition}))
        return Released(mail.id, mail.disposition, mail.disposition_reason, mail.case_id, effects)


def discard(factory: sessionmaker[Session], mail_id: int, *, reason: str, by: str) -> None:
    """Close a quarantined mail without processing it; the raw bytes stay for the record."""
    reason = reason.strip()
    if not reason:
        raise QuarantineError("a reason is required to discard a mail")
    with transaction(factory) as session:
        mail = _take_from_quarantine(session, mail_id)
        was = mail.disposition_reason or ""
        mail.disposition = DISCARDED
        mail.disposition_reason = f"discarded by {by}: {reason[:2000]}"
        session.add(AuditEvent(case_id=mail.case_id, actor=by, action="mail_discarded",
                               detail={"mail_id": mail.id, "reason": reason[:2000], "was": was}))


def history(session: Session, mail_id: int) -> list[AuditEvent]:
    """The release/discard decisions taken on this mail, oldest first."""
    events = session.execute(select(AuditEvent).where(
        AuditEvent.action.in_(("mail_released", "mail_discarded"))).order_by(AuditEvent.id)).scalars()
    return [e for e in events if (e.detail or {}).get("mail_id") == mail_id]
