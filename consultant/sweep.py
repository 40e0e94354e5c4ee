"""The safety net: work that was committed but never enqueued (broker down, crash) is found
here and handed out again.  Run by ``send-pending`` and periodically by ``run``/``demo``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from consultant.models import InboundMail, utcnow
from consultant.outbox import send as outbox_send
from consultant.runtime import Runtime


@dataclass
class SweepResult:
    mails_requeued: int = 0
    outbox_due: int = 0
    reconciled_sent: int = 0
    needs_check: int = 0


def unprocessed_mail_ids(rt: Runtime, older_than: timedelta) -> list[int]:
    cutoff = utcnow() - older_than
    with rt.factory() as session:
        return list(session.execute(
            select(InboundMail.id).where(InboundMail.disposition.is_(None),
                                         InboundMail.received_at <= cutoff)
            .order_by(InboundMail.id)).scalars())


def sweep(rt: Runtime, enqueue_mail: Callable[[int], None], send: Callable[[int], None],
          mail_grace: timedelta = timedelta(seconds=60)) -> SweepResult:
    result = SweepResult()
    transport = rt.transport()
    try:
        counts = outbox_send.reconcile(rt.factory, rt.settings, transport, rt.sent_folder)
    finally:
        transport.close()
    result.reconciled_sent, result.needs_check = counts["sent"], counts["needs_check"]
    for outbox_id in outbox_send.due_ids(rt.factory):
        send(outbox_id)
        result.outbox_due += 1
    for mail_id in unprocessed_mail_ids(rt, mail_grace):
        enqueue_mail(mail_id)
        result.mails_requeued += 1
    return result
