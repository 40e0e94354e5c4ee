"""Automatic notices (over quota, registration confirmed): rendered, built and queued in one go.

They are replies in the requester's thread marked ``Auto-Submitted: auto-replied`` (RFC 3834),
charge nothing, and are skipped when the requester's address cannot be used as a recipient,
is marked undeliverable, or has had ``[service] auto_mail_per_address_per_day`` automatic
mails in the last 24 hours.  That cap is the backstop against loops: whatever answers our
notices (an autoresponder that sets none of the RFC 3834 headers, a misconfigured forwarder),
it gets at most that many a day from us.  They leave with a null envelope sender (``<>``,
RFC 3834 §3.3), so a notice that bounces causes no mail back to us either.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consultant.drafting.templating import render_pair
from consultant.models import AuditEvent, Case, Outbox, utcnow
from consultant.outbox.bounces import undeliverable
from consultant.outbox.compose import BadAddress, build_message, new_message_id, reply_subject
from consultant.settings import Settings


def automatic_mail_today(session: Session, address: str) -> int:
    """Automatic mails (those no consultant approved) queued to ``address`` in the last 24 h."""
    since = utcnow() - timedelta(hours=24)
    return int(session.execute(
        select(func.count(Outbox.id)).where(Outbox.to_addr == address,
                                            Outbox.approved_by.is_(None),
                                            Outbox.created_at >= since)).scalar_one())


def queue_notice(session: Session, settings: Settings, case: Case, *, template: str,
                 context: dict[str, Any], kind: str, in_reply_to: str | None) -> int | None:
    """Add the notice to the outbox; its id, or None when it must not be sent (see above)."""
    to_addr = case.requester.email
    why_not = ""
    if undeliverable(session, to_addr) is not None:
        why_not = "the address is marked undeliverable"
    elif automatic_mail_today(session, to_addr) >= settings.service.auto_mail_per_address_per_day:
        why_not = (f"{settings.service.auto_mail_per_address_per_day} automatic mails to this "
                   "address in the last 24 hours (auto_mail_per_address_per_day)")
    if why_not:
        session.add(AuditEvent(case_id=case.id, actor="system", action="notice_suppressed",
                               detail={"kind": kind, "address": to_addr, "why": why_not}))
        return None
    text, html = render_pair(template, context, settings.service.template_dir)
    message_id = new_message_id(settings)
    subject = reply_subject(case.subject, case.id)
    try:
        raw = build_message(settings, to_addr=to_addr, subject=subject, text=text, html=html,
                            message_id=message_id, in_reply_to=in_reply_to, references=[],
                            auto_submitted="auto-replied")
    except BadAddress:
        return None
    out = Outbox(case_id=case.id, kind=kind, message_id=message_id, to_addr=to_addr,
                 subject=subject, raw=raw, charges_quota=False)
    session.add(out)
    session.flush()
    return out.id
