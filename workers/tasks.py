"""Thin Celery tasks: load by id, call the plain function, dispatch its effects after commit."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from consultant import processing
from consultant.db import transaction
from consultant.models import InboundMail, utcnow
from consultant.outbox import send as outbox_send
from consultant.outbox.transport import Transport
from consultant.processing import Effects
from consultant.runtime import Runtime
from workers.app import app, runtime

log = logging.getLogger(__name__)

# After this many failed runs a mail is quarantined instead of retried: no crash loops.
MAX_PROCESS_RETRIES = 3


_local = threading.local()


def _transport(rt: Runtime) -> Transport:
    """One outbound transport per worker thread, kept between tasks: a new SMTP connection
    (and TLS handshake and login) per answer was most of the cost of sending.  SmtpTransport
    reconnects by itself when the server has dropped an idle connection."""
    cached = getattr(_local, "transport", None)
    if cached is None or cached[0] is not rt:
        if cached is not None:
            cached[1].close()
        cached = (rt, rt.transport())
        _local.transport = cached
    return cached[1]


def dispatch(effects: Effects) -> None:
    """Enqueue the follow-up work of a committed transaction.

    If the broker is unreachable the work is not lost: pending outbox rows and unprocessed
    mails are picked up again by the sweeper (``send-pending`` / ``run``).
    """
    for outbox_id in effects.outbox_ids:
        try:
            send_outbox.delay(outbox_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not enqueue send of outbox %s (the sweeper will): %s", outbox_id, exc)
    for case_id in effects.draft_case_ids:
        try:
            draft_case.delay(case_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not enqueue drafting of case %s: %s", case_id, exc)


def quarantine(mail_id: int, reason: str) -> None:
    with transaction(runtime().factory) as session:
        mail = session.get(InboundMail, mail_id, with_for_update=True)
        if mail is not None and mail.disposition is None:
            mail.disposition = "quarantined"
            mail.rule_hits = ["processing_error"]
            mail.disposition_reason = reason[:2000]
            mail.processed_at = utcnow()


# Worth retrying: a race with another worker (unique keys) or a database that went away or was
# locked.  Anything else (bad data included) is retried a few times, then quarantined.
TRANSIENT_DB_ERRORS = (IntegrityError, OperationalError, InterfaceError)
MAX_TRANSIENT_RETRIES = 10


@app.task(bind=True, name="caseconsultant.process_mail", max_retries=MAX_TRANSIENT_RETRIES)
def process_mail(self, mail_id: int) -> str:  # type: ignore[no-untyped-def]
    rt = runtime()
    try:
        effects = processing.process_mail(rt.factory, rt.settings, mail_id)
    except LookupError:
        log.error("process_mail: mail %s does not exist", mail_id)
        return "missing"
    except Exception as exc:  # noqa: BLE001
        transient = isinstance(exc, TRANSIENT_DB_ERRORS)
        limit = MAX_TRANSIENT_RETRIES if transient else MAX_PROCESS_RETRIES
        if self.request.retries >= limit:
            # Never leave it undecided: the sweeper would hand it out again forever.
            log.exception("process_mail: giving up on mail %s", mail_id)
            quarantine(mail_id, f"processing failed {limit + 1} times: {exc!r}")
            return "quarantined"
        countdown = 1 + self.request.retries if transient else 2 ** self.request.retries
        raise self.retry(exc=exc, countdown=countdown, max_retries=limit) from exc
    dispatch(effects)
    return "ok"


@app.task(bind=True, name="caseconsultant.draft_case", max_retries=10)
def draft_case(self, case_id: int) -> str:  # type: ignore[no-untyped-def]
    rt = runtime()
    try:
        effects = processing.draft_case(rt.factory, rt.settings, case_id)
    except TRANSIENT_DB_ERRORS as exc:
        raise self.retry(exc=exc, countdown=1 + self.request.retries) from exc
    dispatch(effects)
    return "ok"


# A send task goes on with other due answers after its own, up to this many or this long: a
# backlog then costs one commit per answer and no task per answer (the tasks queued for rows
# already sent find them sent and return), while other tasks wait at most about this long.
SEND_BATCH_LIMIT = 200
SEND_BATCH_SECONDS = 1.0


@app.task(bind=True, name="caseconsultant.send_outbox", max_retries=None)
def send_outbox(self, outbox_id: int) -> str:  # type: ignore[no-untyped-def]
    rt = runtime()
    transport = _transport(rt)
    try:
        statuses = outbox_send.send_batch(rt.factory, rt.settings, transport, rt.sent_folder,
                                          first_id=outbox_id, limit=SEND_BATCH_LIMIT,
                                          seconds=SEND_BATCH_SECONDS)
    except Exception:
        transport.close()  # a connection in an unknown state is not reused
        raise
    retry_ids = [i for i, status in statuses.items() if status == "pending"]
    if retry_ids:
        # Temporary failures: each row carries its next attempt time; come back then.
        from consultant.models import Outbox

        with rt.factory() as session:
            rows = session.execute(select(Outbox.id, Outbox.next_attempt_at)
                                   .where(Outbox.id.in_(retry_ids))).all()
        for row_id, at in rows:
            delay = (at - utcnow()).total_seconds() if at else 30
            send_outbox.apply_async((row_id,), countdown=max(1, int(delay)))
    return statuses[outbox_id]
