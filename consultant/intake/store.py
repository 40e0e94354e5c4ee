"""The one function every intake path uses to keep a raw mail before anything else happens.

Storing (and committing) comes first so that a crash at any later step — enqueueing, flagging
the IMAP message, answering the SMTP client — can only lead to the mail being offered again,
never to it being lost.  Offered again, the same bytes are recognised by their sha256 and not
stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from consultant.mail.parse import quick_headers, raw_sha256
from consultant.models import InboundMail
from consultant.privacy.redact import redact_text


@dataclass(frozen=True)
class Stored:
    mail_id: int
    created: bool  # False: these exact bytes were already stored (a redelivery)
    needs_processing: bool  # True while the mail has no disposition yet


@dataclass(frozen=True)
class Location:
    source: str  # "imap" | "smtp" | "cli"
    mailbox: str | None = None
    folder: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None


def store_raw(factory: sessionmaker[Session], raw: bytes, where: Location) -> Stored:
    """Store ``raw`` once and commit; return its id and whether it still needs processing."""
    digest = raw_sha256(raw)
    try:
        with factory() as session, session.begin():
            existing = _by_digest(session, digest)
            if existing is not None:
                _relocate(existing, where)
                return Stored(existing.id, False, existing.disposition is None)
            headers = quick_headers(raw)
            mail = InboundMail(
                raw=raw, raw_sha256=digest, size=len(raw), message_id=headers.message_id,
                # The subject is shown in the queue before the mail is processed: redacted.
                from_addr=headers.from_addr, subject=redact_text(headers.subject).text if headers.subject else None,
                source=where.source,
                mailbox=where.mailbox, folder=where.folder, uidvalidity=where.uidvalidity,
                uid=where.uid, rule_hits=[],
            )
            session.add(mail)
            session.flush()
            return Stored(mail.id, True, True)
    except IntegrityError:
        # Another intake stored the same bytes between our check and insert.
        with factory() as session:
            existing = _by_digest(session, digest)
            assert existing is not None
            return Stored(existing.id, False, existing.disposition is None)


def _by_digest(session: Session, digest: str) -> InboundMail | None:
    return session.execute(
        select(InboundMail).where(InboundMail.raw_sha256 == digest)
    ).scalar_one_or_none()


def _relocate(mail: InboundMail, where: Location) -> None:
    """After a UIDVALIDITY change the same message has a new UID: remember where it is now."""
    if where.source == "imap" and mail.source == "imap":
        mail.mailbox, mail.folder = where.mailbox, where.folder
        mail.uidvalidity, mail.uid = where.uidvalidity, where.uid

