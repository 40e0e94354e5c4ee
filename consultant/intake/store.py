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
from sqlalchemy.orm import Session, defer, sessionmaker

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
    return store_many(factory, [(raw, where)])[0]


def store_many(factory: sessionmaker[Session], items: list[tuple[bytes, Location]]) -> list[Stored]:
    """Store each raw mail once, all in one transaction, and commit; one result per item.

    The poller stores a whole fetched batch this way: one commit (one fsync) per batch instead
    of one per mail, and still before anything is enqueued or flagged.  The same bytes twice in
    the batch are stored once.
    """
    try:
        return _store_all(factory, items)
    except IntegrityError:
        # Another intake stored some of the same bytes between our check and insert: store
        # them one by one, each recognising what is already there.
        if len(items) > 1:
            return [store_many(factory, [item])[0] for item in items]
        with factory() as session:
            existing = _by_digest(session, raw_sha256(items[0][0]))
            assert existing is not None
            return [Stored(existing.id, False, existing.disposition is None)]


def _store_all(factory: sessionmaker[Session], items: list[tuple[bytes, Location]]) -> list[Stored]:
    digests = [raw_sha256(raw) for raw, _ in items]
    with factory() as session, session.begin():
        known = {m.raw_sha256: m for m in session.execute(
            select(InboundMail).options(defer(InboundMail.raw))
            .where(InboundMail.raw_sha256.in_(set(digests)))).scalars()}
        created: dict[str, InboundMail] = {}
        for (raw, where), digest in zip(items, digests, strict=True):
            if digest in known:
                _relocate(known[digest], where)
            elif digest not in created:
                headers = quick_headers(raw)
                created[digest] = InboundMail(
                    raw=raw, raw_sha256=digest, size=len(raw), message_id=headers.message_id,
                    # The subject is shown in the queue before the mail is processed: redacted.
                    from_addr=headers.from_addr,
                    subject=redact_text(headers.subject).text if headers.subject else None,
                    source=where.source,
                    mailbox=where.mailbox, folder=where.folder, uidvalidity=where.uidvalidity,
                    uid=where.uid, rule_hits=[],
                )
        session.add_all(created.values())
        session.flush()
        results, first = [], set()
        for digest in digests:
            if digest in created and digest not in first:
                first.add(digest)
                results.append(Stored(created[digest].id, True, True))
            elif digest in created:
                results.append(Stored(created[digest].id, False, True))
            else:
                mail = known[digest]
                results.append(Stored(mail.id, False, mail.disposition is None))
        return results


def _by_digest(session: Session, digest: str) -> InboundMail | None:
    return session.execute(
        select(InboundMail).where(InboundMail.raw_sha256 == digest)
    ).scalar_one_or_none()


def _relocate(mail: InboundMail, where: Location) -> None:
    """After a UIDVALIDITY change the same message has a new UID: remember where it is now."""
    if where.source == "imap" and mail.source == "imap":
        mail.mailbox, mail.folder = where.mailbox, where.folder
        mail.uidvalidity, mail.uid = where.uidvalidity, where.uid

