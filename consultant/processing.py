"""From a stored raw mail to a disposition: classify, thread, open a case, draft or hold.

Every function here is safe to run twice for the same id (Celery redelivers with
``acks_late``): the first transaction that records a disposition wins, later runs see it and do
nothing.  Work that must happen *after* commit (enqueueing a send, re-drafting) is returned as
:class:`Effects` for the caller to dispatch, so nothing is enqueued for a rolled-back change.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, bindparam, case, exists, func, inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased, defer, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.base import NO_VALUE

from consultant.db import reading, transaction
from consultant.drafting.draft import DRAFT_FLAGS, DraftResult, make_draft
from consultant.drafting.suggest import PROMPT_PREFIX
from consultant.mail.parse import MailParseError, MailView, parse_mail
from consultant.mail.rules import RuleContext, classify_machine_mail
from consultant.models import (
    AWAITING_REPLY,
    AWAITING_REVIEW,
    HELD_QUOTA,
    NEEDS_INFO,
    RECEIVED,
    SENT,
    UNVERIFIED,
    AuditEvent,
    Case,
    Draft,
    InboundMail,
    Outbox,
    utcnow,
)
from consultant.outbox import bounces
from consultant.privacy.mail import RedactedMail, redact_mail
from consultant.privacy.redact import Summary, redact_text
from consultant.quota import ledger, registration
from consultant.quota import notices as quota_notices
from consultant.senders import authenticity
from consultant.senders import hold as sender_rules
from consultant.settings import Settings

log = logging.getLogger(__name__)
_CASE_TAG = re.compile(r"\[CC-(\d+)\]")
OPEN_STATUSES = (RECEIVED, AWAITING_REVIEW, NEEDS_INFO, AWAITING_REPLY)
# A follow-up to a case in one of these states is drafted again.
REDRAFT_STATUSES = (RECEIVED, AWAITING_REVIEW, NEEDS_INFO, AWAITING_REPLY, HELD_QUOTA, SENT)


@dataclass
class Effects:
    """What the caller must do once the transaction has committed."""

    outbox_ids: list[int] = field(default_factory=list)
    draft_case_ids: list[int] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.outbox_ids += other.outbox_ids
        self.draft_case_ids += other.draft_case_ids


def process_mail(factory: sessionmaker[Session], settings: Settings, mail_id: int) -> Effects:
    """Give the stored mail ``mail_id`` its disposition (and a case or draft where due)."""
    with reading(factory) as session:
        # The raw bytes only when there is work to do: a redelivered task for a decided mail
        # costs this one SELECT.
        row = session.execute(_READ, {"mail_id": mail_id}).first()
    if row is None:
        raise LookupError(f"inbound mail {mail_id} does not exist")
    disposition, size, source, raw = row
    if disposition is not None:
        return Effects()
    if raw is None:
        raise LookupError(f"inbound mail {mail_id} was purged before it was processed")

    # Parse outside the write transaction: a pathological mail may take seconds, and SQLite
    # would hold every other writer for that long.
    view: MailView | None = None
    reason = ""
    if size > settings.service.max_message_bytes:
        reason = f"message too large ({size} bytes > {settings.service.max_message_bytes})"
    else:
        try:
            view = parse_mail(raw)
        except MailParseError as exc:
            reason = str(exc)
    # Also outside the transaction: a DKIM key lookup can take seconds.
    verdict = authenticity.check(settings.authenticity, raw, view, source) if view else None

    effects = Effects()
    with transaction(factory) as session:
        mail, copy_of_earlier = _lock(session, mail_id)
        if mail.disposition is not None:
            return Effects()  # another worker finished it meanwhile
        # Given to the row as loaded (not as a change): redaction reads it without a SELECT.
        set_committed_value(mail, "raw", raw)
        mail.attempts += 1
        mail.processed_at = utcnow()
        if view is None:
            _dispose(mail, "quarantined", ["unparseable"], reason)
            _audit_classified(session, mail)
            return effects
        # Known from the lock's statement for the Message-ID stored at intake; the parsed one
        # is asked about only when it differs (intake found none, or read it otherwise).
        known = {mail.message_id: copy_of_earlier} if mail.message_id else {}
        if view.message_id and not mail.message_id:
            mail.message_id = view.message_id
        mail.from_addr = view.from_addr
        # Stored for humans (queue, console, logs): redacted.  Only the encrypted raw mail keeps
        # the original.
        mail.subject = redact_text(view.subject).text
        _classify_person_mail(session, settings, mail, view, effects, verdict, known)
        _note_shortened(session, mail, view)
        _audit_classified(session, mail)
    return effects


def _lock(session: Session, mail_id: int) -> tuple[InboundMail, bool]:
    """The mail's row, locked for this transaction, and whether an earlier mail (lower id) has
    the Message-ID stored with it; on PostgreSQL the transaction is also told not to wait for
    the disk at commit (:func:`_commit_without_waiting_for_disk`).

    One statement for the three: each round trip here is paid by every mail.  The raw bytes
    are already in memory (and may be megabytes): not fetched again.
    """
    statement = _LOCK_POSTGRESQL if session.get_bind().dialect.name == "postgresql" else _LOCK
    row = session.execute(statement, {"mail_id": mail_id}).first()
    if row is None:
        raise LookupError(f"inbound mail {mail_id} does not exist")
    return row[0], bool(row[1])


def _commit_without_waiting_for_disk() -> ColumnElement[str]:
    """PostgreSQL: this transaction's commit returns before its WAL record is on disk.

    Waiting for that flush was most of what kept 50 mails/s over a 1 s p99 (2.0 s; 0.87 s
    without it, the CPU per mail unchanged): the audit chain's lock is held across the commit,
    so the two workers' flushes queued behind each other.  It is safe for this transaction
    alone, because losing it (only a PostgreSQL crash can, in the ~0.2-0.6 s before the WAL
    writer flushes) loses nothing: its input, the raw mail, was committed durably by intake
    before the mail was flagged, and the undecided mail is processed again by the sweeper.
    Nothing outside the database acts on it before it is durable either: a notice or answer
    it queued is sent only after the sender's own claim commits, and that commit is a normal
    one, whose flush covers every WAL record before it, this one included.  Every other
    transaction (intake, approval, sending) keeps the default.

    A column of the lock's SELECT: ``set_config(..., is_local => true)`` is ``SET LOCAL`` as a
    function, so it costs no round trip of its own, and it ends with the transaction.
    """
    return func.set_config("synchronous_commit", "off", True)


_EARLIER = aliased(InboundMail)
# Built once, the values bound per call: building an ORM statement (and its cache key, which a
# prebuilt statement keeps) costs more CPU than running it, and every mail runs these.
_LOCK = (select(InboundMail, exists().where(_EARLIER.message_id == InboundMail.message_id,
                                            _EARLIER.id < InboundMail.id))
         .where(InboundMail.id == bindparam("mail_id"))
         .with_for_update(of=InboundMail).options(defer(InboundMail.raw)))
_LOCK_POSTGRESQL = _LOCK.add_columns(_commit_without_waiting_for_disk())
_READ = select(InboundMail.disposition, InboundMail.size, InboundMail.source,
               case((InboundMail.disposition.is_(None), InboundMail.raw))
               ).where(InboundMail.id == bindparam("mail_id"))


def _note_shortened(session: Session, mail: InboundMail, view: MailView) -> None:
    """Say on the mail, and on its case, that only part of a long body is read (the raw mail
    is kept whole), so the consultant knows the draft saw a shortened question."""
    if not view.shortened:
        return
    mail.rule_hits = [*mail.rule_hits, "text_shortened"]
    case = mail.case  # a new case is in memory only (not inserted yet); a follow-up's is loaded
    if case is None:
        return
    for content_type, before, kept in view.shortened:
        note = f"text shortened from {before:,} to {kept:,} characters"
        if note not in case.flags:
            case.flags = [*case.flags, note]
        session.add(AuditEvent(case=case, actor="system", action="text_shortened",
                               detail={"mail_id": mail.id, "content_type": content_type,
                                       "characters": before, "kept": kept, "note": note}))


def _audit_classified(session: Session, mail: InboundMail) -> None:
    # By the object, not its id: a new case is not inserted yet (see AuditEvent.case).  A
    # follow-up's case is in the session already, a mail without one has no key: no query.
    session.add(AuditEvent(case=mail.case, actor="system", action="classified",
                           detail={"mail_id": mail.id, "disposition": mail.disposition,
                                   "rules": list(mail.rule_hits or [])}))


def _our_addresses(settings: Settings) -> tuple[str, ...]:
    return (settings.service.address.lower(), *(a.lower() for a in settings.service.aliases))


def _dispose(mail: InboundMail, disposition: str, hits: list[str], reason: str | None = None) -> None:
    mail.disposition = disposition
    mail.rule_hits = hits
    mail.disposition_reason = reason


def _classify_person_mail(session: Session, settings: Settings, mail: InboundMail,
                          view: MailView, effects: Effects,
                          verdict: authenticity.Verdict | None = None,
                          known_copies: dict[str, bool] | None = None) -> None:
    disposition, hits = classify_machine_mail(view, RuleContext.from_settings(settings))
    if disposition is not None:
        _dispose(mail, disposition, hits, f"rule {hits[0]}")
        if disposition == "bounce":
            mail.rule_hits = [*hits, *bounces.record_bounce(session, settings, mail, view)]
        return
    # These look-ups need none of this mail's pending changes: without autoflush the mail's
    # row is written once, with its disposition, instead of once more before each query.
    with session.no_autoflush:
        duplicate = bool(view.message_id) and _is_duplicate(session, mail, view.message_id or "",
                                                            known_copies or {})
        case, how = (None, "") if duplicate else _thread_case(session, view)
    if duplicate:
        _dispose(mail, "duplicate", ["is_duplicate"], f"Message-ID {view.message_id} already received")
        return
    if case is not None:
        _dispose(mail, "followup", [how])
        mail.case_id = case.id
        session.add(AuditEvent(case_id=case.id, actor="system", action="followup",
                               detail={"mail_id": mail.id, "rule": how}))
        if registration.is_registration_request(view.subject, case):
            mail.rule_hits = [how, "is_registration"]
            held, notice_id = registration.register(session, settings, case, mail)
            effects.draft_case_ids.extend(held)
            if notice_id is not None:
                effects.outbox_ids.append(notice_id)
        if sender_rules.confirms(session, case, view):
            sender_rules.confirm(session, case, mail)
            case.status = RECEIVED
        # A REGISTER reply answers our over-quota notice, which proves the address just as a
        # confirmation does, so it is not screened again.
        elif "is_registration" not in mail.rule_hits and \
                sender_rules.screen(settings, mail, case, verdict) and \
                case.status in (*REDRAFT_STATUSES, UNVERIFIED):
            _hold_unverified(session, settings, case, mail, verdict, effects)
            return
        if case.status in REDRAFT_STATUSES:
            case.status = RECEIVED
            session.flush()
            draft_or_hold(session, settings, case, effects, {mail.id: view})
        return
    # The display name and subject are stored redacted: "Billing re pt Ann Lee" is a display
    # name we have seen.
    redacted = redact_mail(view, ours=_our_addresses(settings))
    requester = ledger.get_or_create_requester(session, settings.quota, view.from_addr or "",
                                               redacted.from_name)
    # A new case's requester, mails and drafts are known (this mail; none): given here,
    # drafting reads them from memory instead of querying for them.
    case = Case(requester=requester, requester_id=requester.id, subject=redacted.subject,
                first_mail_id=mail.id, status=RECEIVED, rule_hits=[], codes=[], findings=[],
                facts={}, question_types=[], flags=[], mails=[mail], drafts=[])
    _dispose(mail, "case", ["new_case"])
    session.add(case)
    # Not flushed here: the case is inserted complete, with its draft, by the commit's flush
    # (one flush and one INSERT; inserting it now for its id cost a flush, and an UPDATE of
    # the row at commit, per new case).  Its audit events refer to the object until then, and
    # the paths that need its id (holds, notices) flush first.
    session.add(AuditEvent(case=case, actor="system", action="received",
                           detail={"mail_id": mail.id}))
    if sender_rules.screen(settings, mail, case, verdict):
        session.flush()  # the hold's notice is tagged with the case's number
        _hold_unverified(session, settings, case, mail, verdict, effects)
        return
    draft_or_hold(session, settings, case, effects, {mail.id: view}, {mail.id: redacted})
    if case.status == HELD_QUOTA:
        _dispose(mail, "held_quota", ["new_case", "over_quota"])


def _hold_unverified(session: Session, settings: Settings, case: Case, mail: InboundMail,
                     verdict: authenticity.Verdict | None, effects: Effects) -> None:
    assert verdict is not None
    notice_id = sender_rules.hold(session, settings, case, mail, verdict)
    if notice_id is not None:
        effects.outbox_ids.append(notice_id)


def _is_duplicate(session: Session, mail: InboundMail, message_id: str,
                  known: dict[str, bool]) -> bool:
    """Another delivery of the same Message-ID arrived first (lower id): this one is a copy.
    ``known``: the answer for Message-IDs already asked about in this transaction."""
    if message_id in known:
        return known[message_id]
    earlier = session.execute(
        select(InboundMail.id).where(InboundMail.message_id == message_id,
                                     InboundMail.id < mail.id).limit(1)
    ).first()
    return earlier is not None


def _thread_case(session: Session, view: MailView) -> tuple[Case | None, str]:
    """The case this mail continues: by In-Reply-To/References, else by the subject tag."""
    # Newest references first, and a bounded number of them (References can be huge).
    ids = [*view.in_reply_to, *reversed(view.references)][:50]
    if ids:
        case_id = session.execute(
            select(InboundMail.case_id).where(InboundMail.message_id.in_(ids),
                                              InboundMail.case_id.is_not(None)).limit(1)
        ).scalar()
        if case_id is None:
            case_id = session.execute(
                select(Outbox.case_id).where(Outbox.message_id.in_(ids),
                                             Outbox.case_id.is_not(None)).limit(1)
            ).scalar()
        if case_id is not None:
            return session.get(Case, case_id), "is_followup_by_references"
    match = _CASE_TAG.search(view.subject)
    if match:
        case = session.get(Case, int(match.group(1)))
        # The tag alone is guessable, so it only threads mail from the case's own requester.
        if case is not None and case.requester.email == view.from_addr:
            return case, "is_followup_by_subject_tag"
    return None, ""


@dataclass
class Question:
    """The requester's own words across the thread, identifiers already replaced, and what was
    replaced (kinds and counts; never the values)."""

    text: str
    redaction: Summary


def case_question(session: Session, settings: Settings, case: Case,
                  parsed: dict[int, MailView] | None = None,
                  redacted: dict[int, RedactedMail] | None = None) -> Question:
    """The requester's own words across the thread, oldest first, quotes removed, redacted.

    Redaction happens here, before drafting: the drafting pipeline, the stored draft and the
    console only ever see placeholders.  ``parsed``: views already made of some of the case's
    mails (the one being processed), so they are not parsed a second time; ``redacted``: the
    same for their redaction.
    """
    parsed, redacted = parsed or {}, redacted or {}
    pieces = []
    summary = Summary()
    for mail in case.mails:
        if mail.disposition not in {"case", "followup", "held_quota", "held_unverified"} or \
                {"is_registration", sender_rules.CONFIRMS_RULE} & set(mail.rule_hits or []):
            continue
        if mail.raw is None:
            continue  # purged after the retention period; its redacted case text remains
        try:
            view = parsed.get(mail.id) or parse_mail(mail.raw)
        except MailParseError:
            continue
        red = redacted.get(mail.id) or redact_mail(view, ours=_our_addresses(settings))
        summary.add_summary(red.summary)
        pieces.append(red.new_text)
    return Question("\n\n".join(p for p in pieces if p), summary)


def open_cases_ahead(session: Session, case: Case) -> int:
    """Cases of the same requester that will use quota before this one."""
    if ledger.is_new(session, case.requester):
        return 0  # their first mail: this case is the only one they have
    ahead = [Case.requester_id == case.requester_id, Case.status.in_(OPEN_STATUSES)]
    if case.id is not None:
        ahead.append(Case.id < case.id)  # a case not inserted yet comes after every other
    return int(session.execute(select(func.count(Case.id)).where(*ahead)).scalar_one())


def draft_or_hold(session: Session, settings: Settings, case: Case, effects: Effects,
                  parsed: dict[int, MailView] | None = None,
                  redacted: dict[int, RedactedMail] | None = None) -> None:
    """Draft the case, or hold it (and notify, at most daily) when the requester has no quota.

    Its reads (quota, code data, notes) need none of the session's pending changes, and a new
    case is pending until the commit: no autoflush, so it is written once, at commit.
    """
    with session.no_autoflush:
        _draft_or_hold(session, settings, case, effects, parsed, redacted)


def _draft_or_hold(session: Session, settings: Settings, case: Case, effects: Effects,
                   parsed: dict[int, MailView] | None,
                   redacted: dict[int, RedactedMail] | None) -> None:
    quota = ledger.status(session, settings.quota, case.requester)
    if quota.answers_remaining - open_cases_ahead(session, case) <= 0:
        case.status = HELD_QUOTA
        if "held_quota" not in case.flags:
            case.flags = [*case.flags, "held_quota"]
        session.add(AuditEvent(case=case, actor="system", action="held_quota",
                               detail=quota.as_json()))
        session.flush()  # the notice reads the case's state and is tagged with its number
        _maybe_notify_over_quota(session, settings, case, quota, effects)
        return
    question = case_question(session, settings, case, parsed, redacted)
    if question.redaction.found and question.redaction.as_json() != case.redaction:
        session.add(AuditEvent(case=case, actor="system", action="redacted",
                               detail=question.redaction.as_json()))
    try:
        # Drafting only reads, so a bug in it must not lose the case: the consultant gets a
        # manual draft.  No savepoint (two more round trips per mail) is needed for that; a
        # database error is different, as it leaves the transaction unusable on PostgreSQL:
        # it propagates, nothing is committed, and the task retries the mail (workers.tasks),
        # quarantining it with the error once its retries are spent.
        result = make_draft(session, settings, question=question.text, subject=case.subject,
                            requester_name=case.requester.name, redaction=question.redaction)
    except DBAPIError:
        raise
    except Exception as exc:  # noqa: BLE001 - the consultant writes this one by hand
        log.exception("automatic drafting failed for the case of mail %s", case.first_mail_id)
        result = _fallback_draft(exc)
    case.redaction = question.redaction.as_json()
    version = _next_version(session, case)
    session.add(Draft(case=case, version=version, template=result.template,
                      text=result.text, html=result.html, author="machine", kind=result.kind))
    case.codes = result.codes
    case.findings = result.findings
    case.facts = result.facts
    case.question_types = result.question_types
    case.rule_hits = sorted(set(case.rule_hits) | set(result.rule_hits))
    # Drafting's own flags (PHI suspected, ...) are recomputed from the whole thread each time.
    case.flags = [f for f in case.flags if f != "held_quota" and f not in DRAFT_FLAGS] + [
        f for f in getattr(result, "flags", []) if f not in case.flags]
    case.status = NEEDS_INFO if result.kind == "needs_info" else AWAITING_REVIEW
    case.drafted_at = utcnow()
    session.add(AuditEvent(case=case, actor="system", action="drafted",
                           detail={"version": version, "template": result.template,
                                   "releases": list(result.facts.get("releases") or [])}))


def _next_version(session: Session, case: Case) -> int:
    """The case's next draft number; from memory when its drafts are loaded (a new case)."""
    loaded = inspect(case).attrs.drafts.loaded_value
    if loaded is not NO_VALUE:
        return max((d.version for d in loaded), default=0) + 1
    return (session.execute(select(func.max(Draft.version)).where(Draft.case_id == case.id))
            .scalar() or 0) + 1


def _fallback_draft(exc: Exception) -> DraftResult:
    text = (f"{PROMPT_PREFIX} automatic drafting failed for this case "
            f"({type(exc).__name__}: {exc}); write the answer by hand.]\n")
    return DraftResult(template="manual", kind="answer", text=text, html="",
                       rule_hits=["draft_failed"])


def _maybe_notify_over_quota(session: Session, settings: Settings, case: Case,
                             quota: ledger.QuotaStatus, effects: Effects) -> None:
    outbox_id = quota_notices.notify_over_quota(session, settings, case, quota)
    if outbox_id is not None:
        effects.outbox_ids.append(outbox_id)


def draft_case(factory: sessionmaker[Session], settings: Settings, case_id: int) -> Effects:
    """Draft (again) a case that is waiting for it: after a plan upgrade or a follow-up."""
    effects = Effects()
    with transaction(factory) as session:
        case = session.get(Case, case_id, with_for_update=True)
        if case is None:
            raise LookupError(f"case {case_id} does not exist")
        if case.status not in (RECEIVED, HELD_QUOTA):
            return effects
        draft_or_hold(session, settings, case, effects)
    return effects
