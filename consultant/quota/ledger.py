"""The quota ledger: balances derived from entries, and the entries a plan makes due.

An *account* is a requester's own (``r:<id>``) or an organisation's (``o:<id>``, shared by its
members).  Its balance is the sum of its ledger entries — grant (+), charge (-1), refund (+1),
expire (-) — never a stored counter, so every answer left can be traced to who granted it and
every answer used to the outbox row it paid for.

Entries live in two buckets.  ``monthly`` holds a monthly plan's allowance: granted at each
reset, and what is left of it expires at the next reset unless the plan has ``carry_over``.
``lasting`` holds everything that never expires (lifetime plans, top-up packs, operator
grants).  A charge takes from ``monthly`` first, since that is the part that would be lost.

Monthly grants and expiries are *due* entries: computed from the plan, its start and the clock
(:func:`due_entries`), shown in balances at once, and written by the next change to the account
(:mod:`consultant.quota.charging`), under its lock.  Every function takes ``now`` so tests (and
reports about the past) can run on any clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from consultant.models import Organisation, QuotaEntry, Requester, utcnow
from consultant.quota import orgs
from consultant.quota.plans import (
    UnknownPlan,
    allowance,
    get_plan,
    next_reset,
    period_start,
    plan_names,
    resets_between,
    zone,
)
from consultant.settings import QuotaSettings

__all__ = ["UnknownPlan", "allowance", "plan_names", "Account", "Due", "QuotaStatus",
           "account_for", "due_entries", "status", "get_or_create_requester", "entries"]

MONTHLY = "monthly"
LASTING = "lasting"


@dataclass(frozen=True)
class Account:
    """Whose balance an address spends: its own, or its organisation's."""

    key: str
    plan: str
    plan_since: datetime
    requester: Requester | None
    org: Organisation | None

    @property
    def owner(self) -> str:
        return self.org.name if self.org is not None else (self.requester.email if self.requester else "")


def requester_account(requester: Requester) -> Account:
    return Account(f"r:{requester.id}", requester.plan, requester.plan_since, requester, None)


def org_account(org: Organisation, member: Requester | None = None) -> Account:
    return Account(f"o:{org.id}", org.plan, org.plan_since, member, org)


def account_for(session: Session, requester: Requester) -> Account:
    """A member of an organisation spends the organisation's balance, everyone else their own."""
    org = orgs.org_for(session, requester.email)
    return org_account(org, requester) if org is not None else requester_account(requester)


@dataclass(frozen=True)
class Row:
    """The fields of a ledger entry that balances are computed from."""

    at: datetime
    kind: str
    bucket: str
    delta: int
    key: str | None
    requester_id: int | None


@dataclass(frozen=True)
class Due:
    """An entry the plan makes due by ``now`` that is not written yet."""

    kind: str
    bucket: str
    delta: int
    key: str
    at: datetime
    reason: str


# Built once, the values bound per call: building an ORM statement and its cache key costs more
# CPU than running it (bench/stages.py), and every new case runs these.
_ROWS = (select(QuotaEntry.at, QuotaEntry.kind, QuotaEntry.bucket, QuotaEntry.delta,
                QuotaEntry.key, QuotaEntry.requester_id)
         .where(QuotaEntry.account == bindparam("account")).order_by(QuotaEntry.at, QuotaEntry.id))
_REQUESTER = select(Requester).where(Requester.email == bindparam("email"))
_NEW_REQUESTER = insert(Requester).returning(Requester)


def rows(session: Session, account: Account) -> list[Row]:
    """The account's entries: as stored, and those added in this session but not flushed yet
    (a new requester's grant, read while the new case is pending: see processing)."""
    stored = [Row(*r) for r in session.execute(_ROWS, {"account": account.key}).all()]
    return stored + [Row(e.at, e.kind, e.bucket, e.delta, e.key, e.requester_id)
                     for e in session.new if isinstance(e, QuotaEntry) and e.account == account.key]


def due_entries(quota: QuotaSettings, account: Account, existing: list[Row],
                now: datetime) -> list[Due]:
    """Monthly grants (and expiries of what is left) at each reset since the plan started."""
    plan = get_plan(quota, account.plan)
    if plan.kind != "monthly":
        return []
    tz = zone(quota)
    keys = {r.key for r in existing if r.key}
    monthly = [(r.at, r.delta) for r in existing if r.bucket == MONTHLY]
    due: list[Due] = []
    for reset in resets_between(account.plan_since, now, plan.reset_day, tz):
        label = reset.astimezone(tz).date().isoformat()
        left = sum(d for at, d in monthly if at < reset)
        if not plan.carry_over and left > 0 and f"expire:{label}" not in keys:
            due.append(Due("expire", MONTHLY, -left, f"expire:{label}", reset,
                           f"unused {plan.name} answers expire at the {label} reset"))
            monthly.append((reset, -left))
        if f"grant:{label}" not in keys:
            due.append(Due("grant", MONTHLY, plan.answers, f"grant:{label}", reset,
                           f"{plan.name} plan: {plan.answers} answers for the month from {label}"))
            monthly.append((reset, plan.answers))
    return due


@dataclass(frozen=True)
class QuotaStatus:
    """A balance as the requester (and the consultant) sees it at ``now``."""

    email: str
    plan: str
    kind: str
    answers_used: int  # this period for a monthly plan, in all otherwise
    answers_remaining: int
    monthly_remaining: int
    lasting_remaining: int
    org: str | None
    member_used: int | None  # this member's answers this month, when the org caps members
    member_cap: int | None
    renews_at: datetime | None
    renews_on: str | None  # the local date of the next reset

    @property
    def answers_allowed(self) -> int:
        return self.answers_used + self.answers_remaining

    def as_json(self) -> dict[str, object]:
        return {"email": self.email, "plan": self.plan, "kind": self.kind, "org": self.org,
                "answers_used": self.answers_used, "answers_remaining": self.answers_remaining,
                "answers_allowed": self.answers_allowed,
                "monthly_remaining": self.monthly_remaining,
                "lasting_remaining": self.lasting_remaining,
                "member_used": self.member_used, "member_cap": self.member_cap,
                "renews_on": self.renews_on}


def cap_period_start(quota: QuotaSettings, account: Account, now: datetime) -> datetime:
    """A member cap counts per period of the organisation's monthly plan, else per calendar month."""
    plan = get_plan(quota, account.plan)
    reset_day = plan.reset_day if plan.kind == "monthly" else 1
    return period_start(now, reset_day, zone(quota))


def status_of(quota: QuotaSettings, account: Account, existing: list[Row], now: datetime,
              email: str = "") -> QuotaStatus:
    """The balance of ``account`` from its rows and the entries due by ``now``."""
    plan = get_plan(quota, account.plan)
    # Every written entry counts, even one dated after ``now``: a transaction that waited for
    # the account's lock may have read its clock before the one it waited for wrote a charge.
    every = list(existing) + [
        Row(d.at, d.kind, d.bucket, d.delta, d.key, None)
        for d in due_entries(quota, account, existing, now)]
    monthly = sum(r.delta for r in every if r.bucket == MONTHLY)
    lasting = sum(r.delta for r in every if r.bucket == LASTING)
    renews_at: datetime | None = None
    since: datetime | None = None
    if plan.kind == "monthly":
        since = max(period_start(now, plan.reset_day, zone(quota)), account.plan_since)
        renews_at = next_reset(now, plan.reset_day, zone(quota))
    used = -sum(r.delta for r in every if r.kind in ("charge", "refund")
                and (since is None or r.at >= since))
    remaining = max(0, monthly + lasting)
    member_used = cap = None
    if account.org is not None and account.org.member_cap is not None and account.requester:
        cap = account.org.member_cap
        start = cap_period_start(quota, account, now)
        member_used = -sum(r.delta for r in every if r.kind in ("charge", "refund")
                           and r.requester_id == account.requester.id and r.at >= start)
        remaining = min(remaining, max(0, cap - member_used))
    return QuotaStatus(email=email or (account.requester.email if account.requester else ""),
                       plan=plan.name, kind=plan.kind, answers_used=used,
                       answers_remaining=remaining, monthly_remaining=monthly,
                       lasting_remaining=lasting,
                       org=account.org.name if account.org is not None else None,
                       member_used=member_used, member_cap=cap, renews_at=renews_at,
                       renews_on=(renews_at.astimezone(zone(quota)).date().isoformat()
                                  if renews_at else None))


def status(session: Session, quota: QuotaSettings, requester: Requester,
           now: datetime | None = None) -> QuotaStatus:
    """The requester's balance (their organisation's, if they belong to one) at ``now``."""
    account = account_for(session, requester)
    return status_of(quota, account, rows(session, account), now or utcnow(), requester.email)


_NEW = "caseconsultant.new_requesters"


def is_new(session: Session, requester: Requester) -> bool:
    """Whether ``requester`` was created in the session's current transaction (so no other
    transaction can have given them cases or entries yet)."""
    made = session.info.get(_NEW)
    # Keyed on the transaction object: the mark ends with the transaction that made it.
    return made is not None and made[0] is session.get_transaction() and requester.id in made[1]


def get_or_create_requester(session: Session, quota: QuotaSettings, email: str,
                            name: str | None = None, now: datetime | None = None) -> Requester:
    """The requester with this address; a new one is a guest and gets the guest grant."""
    from consultant.quota import charging

    email = email.strip().lower()
    # Neither the look-up nor the insert flushes the session: both need none of its pending
    # changes (requesters are created only here, so none is pending), and a flush here would
    # write the caller's changes so far (the mail being processed) once now and again with the
    # rest of them.  The insert is a statement, not session.add + flush, for the same reason;
    # it returns the requester as a persistent object of the session.
    with session.no_autoflush:
        found = session.execute(_REQUESTER, {"email": email}).scalar_one_or_none()
        if found is not None:
            return found
        now = now or utcnow()
        requester = session.scalars(_NEW_REQUESTER, [dict(
            email=email, name=name or None, plan="guest", plan_since=now, created_at=now)]).one()
    made = session.info.get(_NEW)
    if made is None or made[0] is not session.get_transaction():
        made = session.info[_NEW] = (session.get_transaction(), set[int]())
    made[1].add(requester.id)
    charging.grant_plan(session, quota, requester_account(requester), actor="system", now=now,
                        new_account=True)
    return requester


def entries(session: Session, account: Account, limit: int = 200) -> list[QuotaEntry]:
    """The newest entries of an account, newest first (for `requesters show` and the console)."""
    return list(session.execute(
        select(QuotaEntry).where(QuotaEntry.account == account.key)
        .order_by(QuotaEntry.at.desc(), QuotaEntry.id.desc()).limit(limit)).scalars())


def statuses(session: Session, quota: QuotaSettings, requesters: list[Requester],
             now: datetime | None = None) -> dict[int, QuotaStatus]:
    """:func:`status` of many requesters with a fixed number of queries (for list pages)."""
    now = now or utcnow()
    found = orgs.orgs_for(session, [r.email for r in requesters])
    accounts = {r.id: (org_account(found[r.email], r) if r.email in found else requester_account(r))
                for r in requesters}
    by_key: dict[str, list[Row]] = {a.key: [] for a in accounts.values()}
    if by_key:
        for r in session.execute(
                select(QuotaEntry.account, QuotaEntry.at, QuotaEntry.kind, QuotaEntry.bucket,
                       QuotaEntry.delta, QuotaEntry.key, QuotaEntry.requester_id)
                .where(QuotaEntry.account.in_(list(by_key)))
                .order_by(QuotaEntry.at, QuotaEntry.id)).all():
            by_key[r[0]].append(Row(*r[1:]))
    return {rid: status_of(quota, a, by_key[a.key], now, a.requester.email if a.requester else "")
            for rid, a in accounts.items()}
