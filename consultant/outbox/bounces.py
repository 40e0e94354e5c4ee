"""Our own mail coming back: a hard bounce marks the address undeliverable; nothing more is
sent to it until a human clears it.

Only a bounce that names a Message-ID *we signed* (``mail/msgid``) for a message we really
sent to the failed address counts: anyone can send us a DSN, and a forged one must not be
able to silence a requester.  The mark is shown on the requester (``requesters show``) and,
as a flag and an audit event, on the case whose answer bounced.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.mail.dsn import read_bounce
from consultant.mail.msgid import signer_for
from consultant.mail.parse import MailView
from consultant.models import AuditEvent, Case, InboundMail, Outbox, Requester, utcnow
from consultant.settings import Settings

log = logging.getLogger(__name__)
UNDELIVERABLE_FLAG = "address undeliverable"


def record_bounce(session: Session, settings: Settings, mail: InboundMail, view: MailView) -> list[str]:
    """Tie a bounce to the message of ours it returns; returns the rule hits to add."""
    try:
        bounce = read_bounce(view)
    except Exception as exc:  # noqa: BLE001 - an unreadable bounce stays a plain bounce
        log.warning("mail %s: could not read the bounce: %s", mail.id, exc)
        return []
    ours = signer_for(settings).ours(bounce.original_ids)
    if not ours:
        return []
    outs = session.execute(select(Outbox).where(Outbox.message_id.in_(ours))).scalars().all()
    if not outs:
        return []
    hits = ["is_bounce_of_ours"]
    for out in outs:
        if out.case_id is not None and mail.case_id is None:
            mail.case_id = out.case_id  # shown in the case's thread
        if not bounce.hard:
            continue
        if bounce.recipients and out.to_addr.lower() not in bounce.recipients:
            continue  # the bounce is about another recipient of the same message
        requester = session.execute(select(Requester).where(
            Requester.email == out.to_addr.lower())).scalar_one_or_none()
        if requester is None:
            continue
        reason = f"{bounce.summary} (bounce of {out.kind} {out.message_id}, inbound mail {mail.id})"
        if requester.undeliverable_at is None:
            requester.undeliverable_at = utcnow()
            requester.undeliverable_reason = reason
        if "address_undeliverable" not in hits:
            hits.append("address_undeliverable")
        if out.case_id is not None:
            case = session.get(Case, out.case_id)
            assert case is not None
            if UNDELIVERABLE_FLAG not in case.flags:
                case.flags = [*case.flags, UNDELIVERABLE_FLAG]
        session.add(AuditEvent(case_id=out.case_id, actor="system", action="address_undeliverable",
                               detail={"address": out.to_addr, "outbox_id": out.id,
                                       "mail_id": mail.id, "reason": reason}))
    return hits


def undeliverable(session: Session, address: str) -> Requester | None:
    """The requester at ``address`` if it is marked undeliverable."""
    requester = session.execute(select(Requester).where(
        Requester.email == address.lower())).scalar_one_or_none()
    return requester if requester is not None and requester.undeliverable_at is not None else None


def undeliverable_json(requester: Requester) -> dict[str, str | None] | None:
    """The mark as ``requesters show --json`` prints it (None: mail goes out normally)."""
    if requester.undeliverable_at is None:
        return None
    return {"since": requester.undeliverable_at.isoformat(), "reason": requester.undeliverable_reason}


def clear_undeliverable(factory: sessionmaker[Session], address: str, by: str) -> bool:
    """Allow mail to ``address`` again; False if it was not marked."""
    with transaction(factory) as session:
        requester = undeliverable(session, address)
        if requester is None:
            return False
        session.add(AuditEvent(case_id=None, actor=by, action="undeliverable_cleared",
                               detail={"address": requester.email,
                                       "was": requester.undeliverable_reason}))
        requester.undeliverable_at = None
        requester.undeliverable_reason = None
        for case in session.execute(select(Case).where(Case.requester_id == requester.id)).scalars():
            if UNDELIVERABLE_FLAG in case.flags:
                case.flags = [f for f in case.flags if f != UNDELIVERABLE_FLAG]
    return True
