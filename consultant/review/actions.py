"""What a consultant does to a case: approve (and queue the answer), edit, reject.

Approval writes the final message into the outbox in the same transaction that charges the
requester's quota, so an answer is never queued without its charge or charged without being
queued.  The CLI and the web console both call these functions.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.drafting import approval
from consultant.drafting.suggest import PROMPT_PREFIX, has_prompt
from consultant.drafting.templating import render_html, render_text
from consultant.mail.parse import MailParseError, parse_mail, quick_headers
from consultant.models import (
    APPROVED,
    AWAITING_REPLY,
    AWAITING_REVIEW,
    HELD_QUOTA,
    NEEDS_INFO,
    REJECTED,
    AuditEvent,
    Case,
    Draft,
    Outbox,
)
from consultant.outbox.compose import build_message, case_tag, new_message_id, reply_subject
from consultant.privacy import outgoing
from consultant.privacy.kinds import Kind
from consultant.privacy.mail import redact_mail
from consultant.privacy.redact import Summary
from consultant.processing import Effects
from consultant.quota import charging, ledger
from consultant.quota import notices as quota_notices
from consultant.settings import Settings


class ActionError(Exception):
    """The action is not possible in the case's current state; the message says why."""


class StaleDraft(ActionError):
    """The form was made from an older draft version than the case now has: someone else
    saved or approved in between.  Carries what they wrote, so the page can show a diff and
    keep this consultant's text instead of silently overwriting theirs."""

    def __init__(self, case_id: int, expected: int, current: Draft) -> None:
        self.case_id = case_id
        self.expected = expected
        self.version = current.version
        self.author = current.author
        self.text = current.text
        super().__init__(f"case {case_id} changed while you were editing: {current.author} saved "
                         f"version {current.version} (your page showed version {expected}). "
                         "Nothing of yours was saved; compare and save again.")


class TakeoverNeeded(ActionError):
    """Assigning a case that someone else holds needs an explicit confirmation."""

    def __init__(self, case_id: int, holder: str) -> None:
        self.holder = holder
        super().__init__(f"case {case_id} is assigned to {holder}; confirm to take it over")


APPROVABLE = (AWAITING_REVIEW, NEEDS_INFO)


def load_locked(session: Session, case_id: int) -> Case:
    """The case, its row locked until the transaction ends (ActionError if it does not exist)."""
    case = session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise ActionError(f"case {case_id} does not exist")
    return case


def latest_draft(case: Case) -> Draft | None:
    return case.drafts[-1] if case.drafts else None


def save_edit(session: Session, case: Case, text: str, by: str, kind: str | None = None) -> Draft:
    """Keep the consultant's text as a new draft version (the machine draft stays for audit).

    ``kind`` turns the new version into an answer or a needs_info question; by default the
    version keeps the kind of the one it replaces."""
    current = latest_draft(case)
    if current is not None and current.text == text and kind in (None, current.kind):
        return current
    version = (session.execute(select(func.max(Draft.version)).where(Draft.case_id == case.id))
               .scalar() or 0) + 1
    draft = Draft(case_id=case.id, version=version, text=text, html=None, author=by,
                  template=current.template if current else "manual",
                  kind=kind or (current.kind if current else "answer"))
    session.add(draft)
    session.flush()
    session.refresh(case, ["drafts"])
    session.add(AuditEvent(case_id=case.id, actor=by, action="edited", detail={"version": version}))
    return draft


def _check_version(case: Case, expected_version: int | None) -> None:
    """Optimistic locking: refuse when the draft changed since the consultant's page was made.

    The case row is locked (``load_locked``), so two saves from pages of the same version are
    serialised: the second finds the first's version and is refused, never lost."""
    current = latest_draft(case)
    if expected_version is not None and current is not None and current.version != expected_version:
        raise StaleDraft(case.id, expected_version, current)


def edit_draft(factory: sessionmaker[Session], case_id: int, text: str, by: str, *,
               expected_version: int | None = None) -> int:
    """Save an edit; returns the new draft version.

    ``expected_version``: the draft version the editor was loaded with (None: don't check)."""
    with transaction(factory) as session:
        case = load_locked(session, case_id)
        if case.status not in APPROVABLE:
            raise ActionError(f"case {case_id} is {case.status.replace('_', ' ')}; only drafts "
                              "awaiting review can be edited")
        _check_version(case, expected_version)
        return save_edit(session, case, text, by).version


def _thread_ids(case: Case) -> tuple[str | None, list[str]]:
    """In-Reply-To (the newest inbound mail) and References (the thread so far)."""
    if not case.mails:
        return None, []
    newest = case.mails[-1]  # the relationship is ordered by id
    # A purged mail (past retention) has no raw bytes left: its Message-ID still threads.
    refs = list(quick_headers(newest.raw).references) if newest.raw is not None else []
    if newest.message_id:
        refs.append(newest.message_id)
    return newest.message_id, refs


def approve(factory: sessionmaker[Session], settings: Settings, case_id: int, *,
            text: str | None, by: str, kind: str | None = None,
            expected_version: int | None = None, confirm_phi: bool = False) -> Effects:
    """Approve the latest draft (optionally replaced by ``text``) and queue it for sending.

    ``kind="needs_info"`` sends the text as a clarifying question instead (see request_info).
    ``expected_version``: the draft version the consultant's page showed; a newer one (another
    consultant's save) refuses the approval with StaleDraft.
    A case whose mail had patient identifiers removed needs ``confirm_phi=True``: the
    consultant says, once, that they read the answer knowing that."""
    effects = Effects()
    with transaction(factory) as session:
        case = load_locked(session, case_id)
        if case.status not in APPROVABLE:
            raise ActionError(f"case {case_id} is {case.status.replace('_', ' ')}; only cases "
                              "awaiting review or needing info can be approved")
        if (settings.console.only_assignee_approves and case.assigned_to
                and case.assigned_to != by):
            raise ActionError(f"case {case_id} is assigned to {case.assigned_to}; only they may "
                              "approve it ([console] only_assignee_approves)")
        _check_version(case, expected_version)
        current = latest_draft(case)
        if kind is not None and text is None and current is not None:
            text = current.text
        draft = save_edit(session, case, text, by, kind) if text is not None else current
        if draft is None:
            raise ActionError(f"case {case_id} has no draft to approve")
        removed = Summary.from_json(case.redaction)
        if removed.found and not confirm_phi:
            session.commit()  # keep the consultant's edit; refuse only the sending
            raise ActionError(
                f"case {case_id}: patient identifiers were removed from this mail "
                f"({removed.counted()}); confirm that the answer holds none of them "
                "(console: tick the confirmation box; API: \"confirm_phi\": true; "
                "CLI: --confirm-phi)")
        requester = case.requester
        charges = draft.kind == "answer"
        # The suggested-answer marker lines are for the consultant, not the requester.
        body = approval.final_text(draft.text)
        if has_prompt(body):
            # A "[Consultant: …]" prompt is a question to the consultant, never to the requester.
            session.commit()  # keep the consultant's edit; refuse only the sending
            raise ActionError(f"case {case_id}: the answer still contains a '{PROMPT_PREFIX} …]' "
                              "prompt; replace it with the answer before approving")
        signer, credential = approval.signature(session, settings, by)
        subject = reply_subject(case.subject, case.id)
        ours = [requester.email, by, signer, settings.service.address, *settings.service.aliases]
        # A consultant may have typed a name or a number back in, and the reply's warning says
        # we left them out: refuse before anything is charged, keeping their edit.
        removed_values = _removed_values(settings, case)
        findings = outgoing.check(subject=subject, text=body, html=None, allowed_emails=ours,
                                  removed=removed_values,
                                  our_names=[signer, credential, settings.service.name])
        if findings:
            session.commit()
            raise ActionError(_identifiers_refusal(case_id, findings))
        charge: charging.Charge | None = None
        if charges:
            try:
                charge = charging.charge_answer(session, settings.quota, requester,
                                                case_id=case.id, by=by)
            except charging.OverQuota as over:
                _hold_for_quota(session, settings, case, by, over.status)
                # Commit the hold, its notice (sent by the sweeper) and the consultant's edit
                # rather than roll them back with the raise.
                session.commit()
                raise ActionError(f"{over}; case {case_id} is held. Give more with `requesters "
                                  "grant EMAIL N --why ...` or `requesters set-plan`.") from None
        balance = charge.after if charge else ledger.status(session, settings.quota, requester)
        footer_ctx = {
            "consultant_name": signer, "consultant_credential": credential,
            "service_name": settings.service.name, "as_of": date.today().isoformat(),
            **quota_notices.balance_context(balance, charged=charges),
            "releases": list(case.facts.get("releases", [])) if case.facts else [],
            "cpt_notice": bool(case.facts.get("cpt_descriptors")) if case.facts else False,
            "tag": case_tag(case.id),
        }
        footer = render_text("footer", footer_ctx, settings.service.template_dir)
        text_part = body + footer
        html_part = render_html("final", {"body": body, "footer": footer.strip()},
                                settings.service.template_dir)
        # The last look at exactly what will be sent, footer and HTML included, right before
        # the outbox.  Raising here rolls the charge back with everything else.
        findings = outgoing.check(subject=subject, text=text_part, html=html_part,
                                  allowed_emails=ours, removed=removed_values,
                                  our_names=[signer, credential, settings.service.name])
        if findings:
            raise ActionError(_identifiers_refusal(case_id, findings))
        in_reply_to, references = _thread_ids(case)
        message_id = new_message_id(settings)
        raw = build_message(settings, to_addr=requester.email, subject=subject, text=text_part,
                            html=html_part, message_id=message_id, in_reply_to=in_reply_to,
                            references=references)
        out = Outbox(case_id=case.id, kind=draft.kind, message_id=message_id,
                     to_addr=requester.email, subject=subject, raw=raw, charges_quota=charges,
                     approved_by=by)
        session.add(out)
        session.flush()
        detail = {"version": draft.version, "outbox_id": out.id, "message_id": message_id,
                  "kind": draft.kind, "machine_diff": approval.machine_diff(case, body)}
        if charge is not None:
            charge.paid_for(out)
            case.status = APPROVED
            session.add(AuditEvent(case_id=case.id, actor=by, action="approved", detail=detail))
        else:
            # A clarifying question: no charge, and nothing left to approve until the
            # requester replies (their reply drafts the case again).
            case.status = AWAITING_REPLY
            session.add(AuditEvent(case_id=case.id, actor=by, action="info_requested",
                                   detail=detail))
        effects.outbox_ids.append(out.id)
    return effects


def _removed_values(settings: Settings, case: Case) -> list[tuple[Kind, str]]:
    """The identifiers redaction took out of the case's mails, read again from the encrypted
    raw mail (never stored elsewhere); nothing once the raw copies are purged."""
    ours = (settings.service.address, *settings.service.aliases)
    values: list[tuple[Kind, str]] = []
    for mail in case.mails:
        if mail.raw is None:
            continue
        try:
            values += redact_mail(parse_mail(mail.raw), ours=ours).values
        except MailParseError:
            continue
    return values


def _identifiers_refusal(case_id: int, findings: list[outgoing.Finding]) -> str:
    return (f"case {case_id}: the answer contains patient identifiers; remove them before "
            "approving: " + "; ".join(map(str, findings)))


def request_info(factory: sessionmaker[Session], settings: Settings, case_id: int, *,
                 text: str | None, by: str, expected_version: int | None = None,
                 confirm_phi: bool = False) -> Effects:
    """Send ``text`` (default: the latest draft) as a clarifying question: a needs_info
    message that charges no quota; the case is awaiting_reply until the requester replies."""
    if text is not None and not text.strip():
        raise ActionError("the question to the requester is empty")
    return approve(factory, settings, case_id, text=text, by=by, kind="needs_info",
                   expected_version=expected_version, confirm_phi=confirm_phi)


def assign(factory: sessionmaker[Session], case_id: int, *, to: str | None, by: str,
           takeover: bool = False) -> None:
    """Assign the case to a consultant (``to=None`` releases it).

    Taking a case that another consultant holds (or releasing theirs) raises TakeoverNeeded
    unless ``takeover`` confirms it; a confirmed takeover is audited as ``taken_over``."""
    with transaction(factory) as session:
        case = load_locked(session, case_id)
        if case.assigned_to != to and case.assigned_to not in (None, by) and not takeover:
            raise TakeoverNeeded(case_id, case.assigned_to or "")
        assign_loaded(session, case, to, by)


def assign_loaded(session: Session, case: Case, to: str | None, by: str, **detail: object) -> None:
    """Assign a case already locked by the caller (the takeover decision is theirs)."""
    previous = case.assigned_to
    if previous == to:
        return
    case.assigned_to = to
    foreign = previous is not None and previous != by
    session.add(AuditEvent(case_id=case.id, actor=by, action="taken_over" if foreign else "assigned",
                           detail={"from": previous, "to": to, **detail}))


def add_note(factory: sessionmaker[Session], case_id: int, code_or_pair: str, text: str, *,
             by: str, customer_facing: bool = False) -> int:
    """Save a knowledge note (consultant.drafting.notes) learned on this case; returns its id.

    Internal unless ``customer_facing`` (then later answers quote it, without the author)."""
    from consultant.drafting import notes

    with transaction(factory) as session:
        case = load_locked(session, case_id)
        try:
            note = notes.add_note(session, code_or_pair, text, by, case_id=case.id,
                                  customer_facing=customer_facing)
        except notes.NoteError as exc:
            raise ActionError(str(exc)) from exc
        session.add(AuditEvent(case_id=case.id, actor=by, action="note_added",
                               detail={"note_id": note.id, "subject": note.subject,
                                       "customer_facing": customer_facing}))
        return note.id


def _hold_for_quota(session: Session, settings: Settings, case: Case, by: str,
                    quota: ledger.QuotaStatus) -> None:
    case.status = HELD_QUOTA
    if "held_quota" not in case.flags:
        case.flags = [*case.flags, "held_quota"]
    session.add(AuditEvent(case_id=case.id, actor=by, action="held_quota", detail=quota.as_json()))
    quota_notices.notify_over_quota(session, settings, case, quota)


REJECTABLE_NOT = (APPROVED, "sent", REJECTED)


def reject(factory: sessionmaker[Session], case_id: int, *, reason: str, by: str) -> None:
    with transaction(factory) as session:
        reject_loaded(session, load_locked(session, case_id), reason, by)


def reject_loaded(session: Session, case: Case, reason: str, by: str, **detail: object) -> None:
    """Reject a case already locked by the caller: nothing will be sent for it."""
    if not reason.strip():
        raise ActionError("a reason is required to reject a case")
    if case.status in REJECTABLE_NOT:
        raise ActionError(f"case {case.id} is {case.status}; it can no longer be rejected")
    case.status = REJECTED
    case.reject_reason = reason.strip()
    session.add(AuditEvent(case_id=case.id, actor=by, action="rejected",
                           detail={"reason": reason.strip(), **detail}))


def outbox_for(session: Session, case_id: int) -> list[Outbox]:
    return list(session.execute(select(Outbox).where(Outbox.case_id == case_id)
                                .order_by(Outbox.id)).scalars())


MAX_CASE_NOTE = 10_000


def add_case_note(factory: sessionmaker[Session], case_id: int, text: str, *, by: str) -> int:
    """Keep an internal note on the case for colleagues; it is never part of a mail (approval
    composes only the draft text and the footer).  Returns the note's id."""
    from consultant.review.models import CaseNote

    body = text.strip()
    if not body:
        raise ActionError("the internal note is empty")
    if len(body) > MAX_CASE_NOTE:
        raise ActionError(f"the internal note is {len(body)} characters; at most {MAX_CASE_NOTE}")
    with transaction(factory) as session:
        case = load_locked(session, case_id)
        note = CaseNote(case_id=case.id, author=by, text=body)
        session.add(note)
        session.flush()
        session.add(AuditEvent(case_id=case.id, actor=by, action="case_note_added",
                               detail={"note_id": note.id}))
        return note.id
