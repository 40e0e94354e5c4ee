"""Every write to the ledger — charge, refund, grant, plan change — under the account's lock.

Race-free charging uses a **row lock**: ``SELECT … FOR UPDATE`` on the row that owns the
balance (the requester, or the organisation), taken before the ledger is read.  An atomic
conditional update is not possible here because no row holds the balance — it is the sum of
the ledger, by design — and an ``INSERT … SELECT … WHERE (SELECT sum(delta)) > 0`` is not safe
under READ COMMITTED: two transactions each see the other's charge missing and both insert.
With the lock, the second approval of a requester with one answer left waits for the first to
commit, then (READ COMMITTED reads the newest committed rows per statement) sees the balance at
0 and is refused.  Only charges on the *same* account wait for each other.  On SQLite every
write transaction starts with ``BEGIN IMMEDIATE`` (consultant.db), which serialises writers
anyway; the lock statement is then a no-op.

Each function first writes the entries the plan has made due (monthly grants and expiries,
:func:`consultant.quota.ledger.due_entries`), so those are written once, by whoever changes the
account next, in the same locked transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consultant.models import AuditEvent, Organisation, Outbox, QuotaEntry, Requester, utcnow
from consultant.quota import ledger
from consultant.quota.ledger import LASTING, MONTHLY, Account, QuotaStatus, Row
from consultant.quota.plans import get_plan, period_start, zone
from consultant.settings import QuotaSettings


class OverQuota(Exception):
    """No answer left to charge (or the member's monthly cap is reached)."""

    def __init__(self, status: QuotaStatus) -> None:
        self.status = status
        self.reason = ("member_cap" if status.member_cap is not None and status.member_used is not None
                       and status.member_used >= status.member_cap else "no_answers")
        super().__init__(describe_refusal(status))


class LedgerError(ValueError):
    """The grant or refund is not possible; the message says why."""


def describe_refusal(status: QuotaStatus) -> str:
    if status.member_cap is not None and status.member_used is not None and \
            status.member_used >= status.member_cap:
        return (f"{status.email} has used the {status.member_cap} answers a member of "
                f"{status.org} may use this month")
    owner = f"organisation {status.org}" if status.org else status.email
    return f"{owner} has no answers left on the {status.plan} plan ({status.answers_used} used)"


def lock(session: Session, account: Account) -> Account:
    """Take the account's row lock (see the module docstring for why a lock); return the
    account as it is now.

    The rows are re-read under the lock (``populate_existing``): objects loaded earlier in the
    session may be stale — a plan changed, a notice sent — by the transaction we waited for.
    The requester is locked before the organisation, always in that order."""
    fresh = {"populate_existing": True}
    if account.requester is not None:
        session.execute(select(Requester).where(Requester.id == account.requester.id)
                        .with_for_update().execution_options(**fresh)).scalar_one()
    if account.org is not None:
        session.execute(select(Organisation).where(Organisation.id == account.org.id)
                        .with_for_update().execution_options(**fresh)).scalar_one()
        return ledger.org_account(account.org, account.requester)
    assert account.requester is not None
    return ledger.requester_account(account.requester)


def _row(entry: QuotaEntry) -> Row:
    return Row(entry.at, entry.kind, entry.bucket, entry.delta, entry.key, entry.requester_id)


def settle(session: Session, quota: QuotaSettings, account: Account,
           now: datetime) -> tuple[Account, list[Row]]:
    """Lock the account and write the entries due by ``now``; return it and all its rows."""
    account = lock(session, account)
    existing = ledger.rows(session, account)
    written = []
    for due in ledger.due_entries(quota, account, existing, now):
        entry = QuotaEntry(account=account.key, kind=due.kind, bucket=due.bucket, delta=due.delta,
                           actor="system", reason=due.reason, key=due.key, at=due.at)
        session.add(entry)
        written.append(entry)
    if written:
        session.flush()
    return account, existing + [_row(e) for e in written]


@dataclass
class Charge:
    """A charge written for an answer, with the balance before and after it."""

    entry: QuotaEntry
    before: QuotaStatus
    after: QuotaStatus

    def paid_for(self, outbox: Outbox) -> None:
        """Record the outbox row this charge paid for (the row is created after the charge)."""
        self.entry.outbox_id = outbox.id


def charge_answer(session: Session, quota: QuotaSettings, requester: Requester, *,
                  case_id: int, by: str, now: datetime | None = None) -> Charge:
    """Charge one answer to the balance ``requester`` spends, or raise :class:`OverQuota`.

    The caller commits the charge in the same transaction as the answer's outbox row."""
    account = lock(session, ledger.account_for(session, requester))
    # The clock is read once the lock is held, so charges are dated in the order they happen.
    now = now or utcnow()
    account, existing = settle(session, quota, account, now)
    before = ledger.status_of(quota, account, existing, now, requester.email)
    if before.answers_remaining <= 0:
        raise OverQuota(before)
    # The monthly allowance goes first: it is the part that would expire.
    bucket = MONTHLY if before.monthly_remaining > 0 else LASTING
    entry = QuotaEntry(account=account.key, kind="charge", bucket=bucket, delta=-1,
                       requester_id=requester.id, actor=by, reason=f"answer to case {case_id}",
                       case_id=case_id, at=now)
    session.add(entry)
    session.add(AuditEvent(case_id=case_id, actor=by, action="charged",
                           detail={"account": account.key, "bucket": bucket}))
    session.flush()
    after = ledger.status_of(quota, account, [*existing, _row(entry)], now, requester.email)
    return Charge(entry, before, after)


def _account_of_key(session: Session, key: str) -> Account:
    kind, _, ident = key.partition(":")
    if kind == "o":
        org = session.get(Organisation, int(ident))
        assert org is not None
        return ledger.org_account(org)
    requester = session.get(Requester, int(ident))
    assert requester is not None
    return ledger.requester_account(requester)


def refund(session: Session, quota: QuotaSettings, charge: QuotaEntry, *, by: str, why: str,
           now: datetime | None = None) -> QuotaEntry | None:
    """Give back the answer ``charge`` took (once: a second refund of it returns None)."""
    if charge.kind != "charge":
        raise LedgerError(f"ledger entry {charge.id} is a {charge.kind}, not a charge")
    now = now or utcnow()
    settle(session, quota, _account_of_key(session, charge.account), now)
    key = f"refund:{charge.id}"
    if session.execute(select(QuotaEntry.id).where(QuotaEntry.account == charge.account,
                                                   QuotaEntry.key == key)).first():
        return None
    entry = QuotaEntry(account=charge.account, kind="refund", bucket=charge.bucket, delta=+1,
                       requester_id=charge.requester_id, actor=by, reason=why,
                       case_id=charge.case_id, outbox_id=charge.outbox_id, key=key, at=now)
    session.add(entry)
    session.add(AuditEvent(case_id=charge.case_id, actor=by, action="refunded",
                           detail={"account": charge.account, "charge_id": charge.id, "why": why}))
    session.flush()
    return entry


def charge_for(session: Session, *, outbox_id: int | None = None,
               case_id: int | None = None) -> QuotaEntry | None:
    """The charge that paid for an outbox row (or the newest charge of a case)."""
    query = select(QuotaEntry).where(QuotaEntry.kind == "charge")
    if outbox_id is not None:
        query = query.where(QuotaEntry.outbox_id == outbox_id)
    elif case_id is not None:
        query = query.where(QuotaEntry.case_id == case_id)
    else:
        raise LedgerError("name the answer to refund: its outbox id or its case id")
    return session.execute(query.order_by(QuotaEntry.id.desc()).limit(1)).scalar_one_or_none()


def refund_delivery_failure(session: Session, quota: QuotaSettings, outbox_id: int) -> None:
    """The answer could not be delivered: give its answer back."""
    charge = charge_for(session, outbox_id=outbox_id)
    if charge is not None:
        refund(session, quota, charge, by="system", why="delivery_failed")


def grant(session: Session, quota: QuotaSettings, account: Account, answers: int, *, by: str,
          why: str, now: datetime | None = None) -> QuotaEntry:
    """An operator's grant of ``answers`` that never expire (a top-up, goodwill, a correction)."""
    if answers <= 0:
        raise LedgerError("a grant must be of at least one answer (refund a charge to undo one)")
    if not why.strip():
        raise LedgerError("say why the answers are granted (--why)")
    now = now or utcnow()
    account, _ = settle(session, quota, account, now)
    entry = QuotaEntry(account=account.key, kind="grant", bucket=LASTING, delta=answers,
                       requester_id=account.requester.id if account.requester else None,
                       actor=by, reason=why.strip(), at=now)
    session.add(entry)
    session.flush()
    return entry


def grant_pack(session: Session, quota: QuotaSettings, account: Account, pack: str, *, by: str,
               why: str = "", now: datetime | None = None) -> QuotaEntry:
    plan = get_plan(quota, pack)
    if plan.kind != "topup":
        raise LedgerError(f"{pack} is a {plan.kind} plan, not a top-up pack; use set-plan")
    return grant(session, quota, account, plan.answers, by=by,
                 why=f"top-up {pack}" + (f": {why.strip()}" if why.strip() else ""), now=now)


def grant_plan(session: Session, quota: QuotaSettings, account: Account, *, actor: str,
               now: datetime, new_account: bool = False) -> QuotaEntry | None:
    """The grant that starting the account's plan gives, unless it was given already.

    A lifetime plan brings the account's lifetime grants up to the plan's total (guest 1 →
    registered 6 grants 5), so going back and forth between plans never grants twice.  A monthly
    plan grants the month's allowance at once, once per plan and period.  ``new_account``: the
    account was created a moment ago in this transaction, so it has no entries to look up."""
    plan = get_plan(quota, account.plan)
    if plan.kind == "lifetime":
        key = f"plan:{plan.name}"
        given = 0 if new_account else session.execute(
            select(func.coalesce(func.sum(QuotaEntry.delta), 0)).where(
                QuotaEntry.account == account.key, QuotaEntry.kind == "grant",
                QuotaEntry.key.like("plan:%"))).scalar_one()
        answers, bucket = plan.answers - int(given), LASTING
        why = f"{plan.name} plan: {plan.answers} answers in all"
    elif plan.kind == "monthly":
        label = period_start(now, plan.reset_day, zone(quota)).astimezone(zone(quota)).date()
        key = f"grant:{plan.name}:{label.isoformat()}"
        answers, bucket = plan.answers, MONTHLY
        why = f"{plan.name} plan: {plan.answers} answers for the month from {label.isoformat()}"
    else:
        raise LedgerError(f"{plan.name} is a top-up pack; grant it, nobody is on it")
    if answers <= 0 or not new_account and session.execute(select(QuotaEntry.id).where(
            QuotaEntry.account == account.key, QuotaEntry.key == key)).first():
        return None
    entry = QuotaEntry(account=account.key, kind="grant", bucket=bucket, delta=answers,
                       requester_id=account.requester.id if account.requester else None,
                       actor=actor, reason=why, key=key, at=now)
    session.add(entry)
    if not new_account:
        session.flush()
    # A new account's grant is written by the session's next flush (with the caller's other
    # changes); until then ledger.rows counts it from the session.
    return entry


def change_plan(session: Session, quota: QuotaSettings, account: Account, plan: str, *, by: str,
                now: datetime | None = None) -> Account:
    """Put a requester's own account or an organisation on ``plan``; returns the new account.

    Entries due under the old plan are written first.  Leaving a monthly plan for a lifetime
    one expires what is left of the month (it belonged to that month); between monthly plans
    the rest of the month stays until the next reset."""
    new_plan = get_plan(quota, plan)
    if new_plan.kind == "topup":
        raise LedgerError(f"{plan} is a top-up pack: grant it (`requesters grant EMAIL --pack "
                          f"{plan}`), nobody is on it")
    now = now or utcnow()
    account, existing = settle(session, quota, account, now)
    old = get_plan(quota, account.plan)
    monthly_left = sum(r.delta for r in existing if r.bucket == MONTHLY and r.at <= now)
    if old.kind == "monthly" and new_plan.kind != "monthly" and monthly_left > 0:
        session.add(QuotaEntry(account=account.key, kind="expire", bucket=MONTHLY,
                               delta=-monthly_left, actor=by, at=now,
                               reason=f"left {old.name} for {plan}: the month's answers expire",
                               key=f"expire:switch:{now.isoformat()}"))
    owner: Requester | Organisation | None = account.org if account.org is not None else account.requester
    assert owner is not None
    owner.plan, owner.plan_since = plan, now
    session.add(AuditEvent(case_id=None, actor=by, action="plan_changed",
                           detail={"account": account.key, "owner": account.owner,
                                   "from": old.name, "to": plan}))
    session.flush()
    changed = (ledger.org_account(account.org, account.requester) if account.org is not None
               else ledger.requester_account(account.requester))  # type: ignore[arg-type]
    grant_plan(session, quota, changed, actor=by, now=now)
    return changed
