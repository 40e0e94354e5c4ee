"""The service's tables: inbound mail, cases, drafts, requesters, quota ledger, outbox, audit.

State lives here, never in IMAP flags: a mail's place in the pipeline is its ``disposition``;
an answer's is its outbox ``status``.  Code data tables live in ``consultant.codes.models``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from consultant.db import Base
from consultant.privacy.crypto import EncryptedBytes


def utcnow() -> datetime:
    return datetime.now(UTC)


class TZDateTime(TypeDecorator[datetime]):
    """Timezone-aware timestamps on every backend (SQLite drops the zone; we put UTC back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# Case statuses (the public names used by `cases show --json`).
RECEIVED = "received"
AWAITING_REVIEW = "awaiting_review"
NEEDS_INFO = "needs_info"
# A clarifying question went to the requester: nothing to approve until they reply (their reply
# drafts the case again).  Distinct from NEEDS_INFO, where the machine's question still awaits
# a consultant, so a case whose question was sent cannot be approved a second time.
AWAITING_REPLY = "awaiting_reply"
HELD_QUOTA = "held_quota"
# The sender could not be verified (consultant.senders): held until the address confirms.
UNVERIFIED = "unverified"
APPROVED = "approved"
SENT = "sent"
REJECTED = "rejected"
FAILED = "failed"
CASE_STATUSES = (RECEIVED, AWAITING_REVIEW, NEEDS_INFO, AWAITING_REPLY, HELD_QUOTA, UNVERIFIED,
                 APPROVED, SENT, REJECTED, FAILED)

# Dispositions of inbound mail.
# "discarded": a quarantined mail a person closed without processing (review/quarantine.py).
DISPOSITIONS = ("case", "followup", "auto_reply", "bounce", "duplicate", "quarantined", "held_quota",
                "held_unverified", "discarded")


class InboundMail(Base):
    """One delivery of one raw message, stored before anything else happens to it."""

    __tablename__ = "inbound_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Encrypted at rest (consultant.privacy.crypto); None once purged after the retention period.
    raw: Mapped[bytes | None] = mapped_column(EncryptedBytes(), nullable=True)
    raw_purged_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    raw_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    size: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    from_addr: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # imap | smtp | cli
    mailbox: Mapped[str | None] = mapped_column(String(320))
    folder: Mapped[str | None] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(Integer)
    uid: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    disposition: Mapped[str | None] = mapped_column(String(32), index=True)
    disposition_reason: Mapped[str | None] = mapped_column(Text)
    rule_hits: Mapped[list[str]] = mapped_column(JSON, default=list)
    processed_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)

    case: Mapped[Case | None] = relationship(back_populates="mails", foreign_keys=[case_id])


class ImapState(Base):
    """Per mailbox and folder: the UIDVALIDITY seen and the last UID stored."""

    __tablename__ = "imap_state"
    __table_args__ = (UniqueConstraint("mailbox", "folder"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(320))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(Integer)
    last_uid: Mapped[int] = mapped_column(Integer, default=0)
    last_fetch_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    # The mailbox's own trouble, kept apart from every other mailbox's: the last error, since
    # when it has been failing, and how many attempts in a row failed (0 after a good fetch).
    last_error: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(TZDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)


class Requester(Base):
    __tablename__ = "requesters"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str] = mapped_column(String(32), default="guest")
    # When the current plan started: a monthly plan's periods count from here.
    plan_since: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_notice_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    # Set when our mail to this address bounced hard; nothing is sent to it until a human
    # clears it (`requesters clear-undeliverable`).
    undeliverable_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    undeliverable_reason: Mapped[str | None] = mapped_column(Text)


class Organisation(Base):
    """A practice whose members (listed addresses, or every address of its domains) share one
    balance; ``member_cap`` optionally limits each member's answers per month."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    plan: Mapped[str] = mapped_column(String(32))
    plan_since: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    member_cap: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class OrgDomain(Base):
    """A domain whose every address belongs to the organisation (unique: one org per domain)."""

    __tablename__ = "org_domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)


class OrgMember(Base):
    """An address listed as a member (unique: an address belongs to one organisation)."""

    __tablename__ = "org_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)


class QuotaEntry(Base):
    """The quota ledger.  The balance of an account is the sum of its ``delta``s, never stored.

    ``account`` is ``r:<requester id>`` or ``o:<organisation id>``; ``kind`` is grant, charge,
    refund or expire; ``bucket`` is ``monthly`` (a monthly allowance, which can expire) or
    ``lasting`` (lifetime plans, top-ups, operator grants).  ``at`` is when the entry takes
    effect (a monthly grant at its reset), ``created_at`` when it was written.  ``key`` makes
    entries that must exist once (a period's grant, a charge's refund) unique per account.
    """

    __tablename__ = "quota_ledger"
    __table_args__ = (UniqueConstraint("account", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    bucket: Mapped[str] = mapped_column(String(16))
    delta: Mapped[int] = mapped_column(Integer)
    # The member concerned (for an organisation's charges: who asked).
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("requesters.id"), index=True)
    actor: Mapped[str] = mapped_column(String(320))  # who: a consultant, "system", the requester
    reason: Mapped[str] = mapped_column(Text)  # why
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    key: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(32), index=True, default=RECEIVED)
    requester_id: Mapped[int] = mapped_column(ForeignKey("requesters.id"), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    # The mail that opened the case; unique so a task run twice cannot open two cases.  No
    # foreign key: inbound_mail already points here, and a cycle of keys blocks table ordering.
    first_mail_id: Mapped[int] = mapped_column(Integer, unique=True)
    codes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rule_hits: Mapped[list[str]] = mapped_column(JSON, default=list)
    question_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What redaction removed from the thread: {"counts": {kind: n}, "rules": [...]}; never values.
    redaction: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    assigned_to: Mapped[str | None] = mapped_column(String(320))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, onupdate=utcnow)
    drafted_at: Mapped[datetime | None] = mapped_column(TZDateTime())

    requester: Mapped[Requester] = relationship()
    mails: Mapped[list[InboundMail]] = relationship(
        back_populates="case", foreign_keys=[InboundMail.case_id], order_by=InboundMail.id
    )
    drafts: Mapped[list[Draft]] = relationship(back_populates="case", order_by="Draft.version")
    outbox: Mapped[list[Outbox]] = relationship(back_populates="case", order_by="Outbox.id")


class Draft(Base):
    """A version of the reply: version 1 is the machine's, later ones are consultants' edits."""

    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("case_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    template: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(320), default="machine")
    kind: Mapped[str] = mapped_column(String(32), default="answer")  # answer | needs_info
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)

    case: Mapped[Case] = relationship(back_populates="drafts")


# Outbox statuses: pending -> sending -> sent; or failed (permanent) / needs_check (unknown).
OUT_PENDING = "pending"
OUT_SENDING = "sending"
OUT_SENT = "sent"
OUT_FAILED = "failed"
OUT_NEEDS_CHECK = "needs_check"


class Outbox(Base):
    """A message we will send, stored whole (raw bytes) before the first attempt.

    Storing the exact bytes and Message-ID first is what makes a retry send the same message
    and lets reconciliation recognise a copy that did go out before a crash.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # answer | needs_info | quota_notice | notice
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), index=True, default=OUT_PENDING)
    charges_quota: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    sending_started_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    # host:pid of the process that moved the row to "sending" (to detect a dead sender).
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    approved_by: Mapped[str | None] = mapped_column(String(320))

    case: Mapped[Case | None] = relationship(back_populates="outbox")


class AuditEvent(Base):
    """One state change.  ``seq``, ``prev_hash`` and ``hash`` are set at commit by
    consultant.audit.chain; callers never set them."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    seq: Mapped[int | None] = mapped_column(Integer, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    # Set instead of case_id for a case that is not inserted yet (a new case is inserted with
    # its draft at commit, in one flush): the seal reads the case's id then.
    case: Mapped[Case | None] = relationship()


def import_all_models() -> None:
    """Import every module that defines tables so metadata is complete (Alembic, create_all)."""
    import importlib

    for name in ("consultant.codes.models", "consultant.review.models", "consultant.drafting.models",
                 "consultant.audit.models"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
