"""What the requester is told about their quota: the balance line of every answer, and the
over-quota notice (at most one per ``notice_interval_hours``) saying how to get more."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from consultant.models import Case, InboundMail, utcnow
from consultant.outbox.notices import queue_notice
from consultant.quota.ledger import QuotaStatus
from consultant.settings import Settings


def _long_date(iso: str | None) -> str | None:
    if not iso:
        return None
    day = date.fromisoformat(iso)
    return f"{day.day} {day.strftime('%B')} {day.year}"


def balance_context(status: QuotaStatus, *, charged: bool) -> dict[str, Any]:
    """The variables of templates/replies/_balance.txt.j2, from the ledger at approval.

    ``status`` is the balance *after* this answer's charge when ``charged``."""
    return {"balance": {
        "charged": charged, "plan": status.plan, "org": status.org,
        "remaining": status.answers_remaining, "allowed": status.answers_allowed,
        "renews_on": _long_date(status.renews_on),
        "member_cap": status.member_cap, "member_used": status.member_used,
    }}


def over_quota_context(settings: Settings, case: Case, status: QuotaStatus) -> dict[str, Any]:
    quota = settings.quota
    capped = status.member_cap is not None and status.member_used is not None and \
        status.member_used >= status.member_cap
    return {"subject": case.subject, "plan": status.plan, "used": status.answers_used,
            "allowed": status.answers_allowed, "registered_extra": quota.registered,
            "org": status.org, "member_cap": status.member_cap if capped else None,
            "renews_on": _long_date(status.renews_on),
            "upgrade_address": quota.upgrade_address, "upgrade_url": quota.upgrade_url,
            "service_address": settings.service.address, "service_name": settings.service.name}


def notify_over_quota(session: Session, settings: Settings, case: Case,
                      status: QuotaStatus) -> int | None:
    """Queue the over-quota notice unless one went to this requester recently; its outbox id."""
    requester = case.requester
    now = utcnow()
    interval = timedelta(hours=settings.service.notice_interval_hours)
    if requester.last_notice_at is not None and now - requester.last_notice_at < interval:
        return None
    first = case.mails[0] if case.mails else session.get(InboundMail, case.first_mail_id)
    outbox_id = queue_notice(session, settings, case, template="over_quota",
                             context=over_quota_context(settings, case, status),
                             kind="quota_notice",
                             in_reply_to=first.message_id if first else None)
    if outbox_id is not None:
        requester.last_notice_at = now
    return outbox_id
