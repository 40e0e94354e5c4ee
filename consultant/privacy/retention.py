"""Retention: raw mail (with its attachments) purged after ``[privacy] retention_days``; audit
events pruned after ``audit_retention_days`` (6 years by default).

What stays after a purge is the redacted case — its subject, question, drafts and the answer
we sent — and the mail's metadata (sender, Message-ID for threading, size, sha256 to recognise
a redelivery).  A mail still waiting for processing is never purged.  Run by ``caseconsultant
purge`` and hourly by ``caseconsultant run``; ``now`` is a parameter so tests can move the clock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from consultant.audit.verify import prune
from consultant.db import transaction
from consultant.models import AuditEvent, InboundMail, utcnow
from consultant.settings import PrivacySettings

BATCH = 500


@dataclass
class PurgeResult:
    mails: int = 0
    audit_events: int = 0


def purge(factory: sessionmaker[Session], privacy: PrivacySettings, *,
          now: datetime | None = None, dry_run: bool = False) -> PurgeResult:
    now = now or utcnow()
    cutoff = now - timedelta(days=privacy.retention_days)
    result = PurgeResult()
    while True:
        with transaction(factory) as session:
            rows = session.execute(
                select(InboundMail.id, InboundMail.case_id)
                .where(InboundMail.raw.is_not(None), InboundMail.disposition.is_not(None),
                       InboundMail.received_at < cutoff)
                .order_by(InboundMail.id).limit(BATCH)).all()
            if not rows:
                break
            result.mails += len(rows)
            if dry_run:
                break
            session.execute(update(InboundMail).where(InboundMail.id.in_([r.id for r in rows]))
                            .values(raw=None, raw_purged_at=now))
            by_case: dict[int | None, list[int]] = defaultdict(list)
            for row in rows:
                by_case[row.case_id].append(row.id)
            for case_id, ids in by_case.items():
                session.add(AuditEvent(case_id=case_id, actor="system", action="purged",
                                       detail={"mail_ids": ids, "received_before": cutoff.isoformat(),
                                               "retention_days": privacy.retention_days}))
    result.audit_events = prune(factory, now - timedelta(days=privacy.audit_retention_days),
                                dry_run=dry_run)
    return result
