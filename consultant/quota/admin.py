"""Operator actions on quota, shared by the CLI, the REST API and the console: each opens its
own transaction, writes through :mod:`consultant.quota.charging`, and returns what the caller
must dispatch after commit (held cases to draft again) with a JSON-ready result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.models import HELD_QUOTA, Case, QuotaEntry, Requester, utcnow
from consultant.processing import Effects
from consultant.quota import charging, ledger, orgs
from consultant.quota.charging import LedgerError
from consultant.quota.orgs import OrgError
from consultant.quota.plans import UnknownPlan, get_plan
from consultant.settings import Settings

__all__ = ["QuotaAdminError", "Result", "requester_json", "org_json", "entry_json", "find_requester",
           "grant", "refund", "set_plan", "add_org", "change_members"]

# One error type for callers: each of these already says what is wrong and what to do.
QuotaAdminError = (LedgerError, OrgError, UnknownPlan)


@dataclass
class Result:
    data: dict[str, Any]
    effects: Effects = field(default_factory=Effects)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def entry_json(e: QuotaEntry) -> dict[str, Any]:
    return {"id": e.id, "at": _iso(e.at), "kind": e.kind, "delta": e.delta, "bucket": e.bucket,
            "who": e.actor, "why": e.reason, "case_id": e.case_id, "outbox_id": e.outbox_id,
            "requester_id": e.requester_id}


def find_requester(session: Session, email: str) -> Requester:
    requester = session.execute(select(Requester).where(
        Requester.email == email.strip().lower())).scalar_one_or_none()
    if requester is None:
        raise LedgerError(f"no requester {email.strip().lower()!r}")
    return requester


def requester_json(session: Session, settings: Settings, requester: Requester, *,
                   entries: int = 0) -> dict[str, Any]:
    account = ledger.account_for(session, requester)
    data = ledger.status(session, settings.quota, requester).as_json()
    data.update({"name": requester.name, "own_plan": requester.plan, "account": account.key,
                 "created_at": _iso(requester.created_at)})
    if entries:
        data["ledger"] = [entry_json(e) for e in ledger.entries(session, account, entries)]
    return data


def _held_for(session: Session, account: ledger.Account) -> list[int]:
    """Held cases of everyone who spends this account (to draft again after more quota)."""
    if account.org is None:
        assert account.requester is not None
        ids = [account.requester.id]
    else:
        emails = [m["email"] for m in orgs.members(session, account.org)]
        ids = list(session.execute(select(Requester.id).where(Requester.email.in_(emails))).scalars())
    return list(session.execute(select(Case.id).where(Case.requester_id.in_(ids),
                                                      Case.status == HELD_QUOTA)
                                .order_by(Case.id)).scalars())


def grant(factory: sessionmaker[Session], settings: Settings, email: str, *, answers: int | None,
          pack: str | None, why: str, by: str) -> Result:
    """Grant answers (or a top-up pack) to the balance ``email`` spends."""
    with transaction(factory) as session:
        requester = ledger.get_or_create_requester(session, settings.quota, email)
        account = ledger.account_for(session, requester)
        if pack:
            entry = charging.grant_pack(session, settings.quota, account, pack, by=by, why=why)
        elif answers is not None:
            entry = charging.grant(session, settings.quota, account, answers, by=by, why=why)
        else:
            raise LedgerError("say how many answers to grant, or --pack NAME")
        data = requester_json(session, settings, requester)
        data["granted"] = entry_json(entry)
        return Result(data, Effects(draft_case_ids=_held_for(session, account)))


def refund(factory: sessionmaker[Session], settings: Settings, email: str, *,
           case_id: int | None, outbox_id: int | None, why: str, by: str) -> Result:
    """Give back the answer charged for a case (or an outbox row) of ``email``."""
    if not why.strip():
        raise LedgerError("say why the answer is refunded (--why)")
    with transaction(factory) as session:
        requester = find_requester(session, email)
        charge = charging.charge_for(session, outbox_id=outbox_id, case_id=case_id)
        what = f"outbox {outbox_id}" if outbox_id is not None else f"case {case_id}"
        if charge is None or charge.requester_id != requester.id:
            raise LedgerError(f"no charge to {requester.email} for {what}")
        entry = charging.refund(session, settings.quota, charge, by=by, why=why.strip())
        if entry is None:
            raise LedgerError(f"the charge for {what} was refunded already")
        data = requester_json(session, settings, requester)
        data["refunded"] = entry_json(entry)
        return Result(data, Effects(draft_case_ids=_held_for(session, ledger.account_for(
            session, requester))))


def set_plan(factory: sessionmaker[Session], settings: Settings, email: str, plan: str, *,
             by: str) -> Result:
    """Put a requester's own account on ``plan`` (creating the requester if need be)."""
    get_plan(settings.quota, plan)
    with transaction(factory) as session:
        requester = ledger.get_or_create_requester(session, settings.quota, email)
        account = charging.change_plan(session, settings.quota, ledger.requester_account(requester),
                                       plan, by=by)
        data = requester_json(session, settings, requester)
        if orgs.org_for(session, requester.email) is not None:
            data["note"] = (f"{requester.email} spends the balance of organisation {data['org']}; "
                            "their own plan applies only if they leave it")
        return Result(data, Effects(draft_case_ids=_held_for(session, account)))


def org_json(session: Session, settings: Settings, org: Any) -> dict[str, Any]:
    account = ledger.org_account(org)
    status = ledger.status_of(settings.quota, account, ledger.rows(session, account),
                              utcnow())
    data = status.as_json()
    data.pop("email", None)
    data.pop("member_used", None)
    data.update({"name": org.name, "plan": org.plan, "member_cap": org.member_cap,
                 "account": account.key, "domains": orgs.domains(session, org),
                 "members": orgs.members(session, org),
                 "ledger": [entry_json(e) for e in ledger.entries(session, account, 50)]})
    return data


def add_org(factory: sessionmaker[Session], settings: Settings, name: str, plan: str, *,
            domains: list[str], members: list[str], member_cap: int | None, by: str) -> Result:
    if get_plan(settings.quota, plan).kind == "topup":
        raise LedgerError(f"{plan} is a top-up pack: an organisation needs a plan to be on")
    with transaction(factory) as session:
        org = orgs.create(session, name, plan, member_cap=member_cap, by=by)
        for domain in domains:
            orgs.add_domain(session, org, domain, by=by)
        for email in members:
            orgs.add_member(session, org, email, by=by)
        session.flush()
        account = ledger.org_account(org)
        charging.grant_plan(session, settings.quota, account, actor=by, now=org.plan_since)
        return Result(org_json(session, settings, org), Effects(draft_case_ids=_held_for(session, account)))


def change_members(factory: sessionmaker[Session], settings: Settings, name: str, *,
                   add: list[str], remove: list[str], by: str) -> Result:
    with transaction(factory) as session:
        org = orgs.get_org(session, name)
        for email in add:
            orgs.add_member(session, org, email, by=by)
        for email in remove:
            orgs.remove_member(session, org, email, by=by)
        session.flush()
        return Result(org_json(session, settings, org),
                      Effects(draft_case_ids=_held_for(session, ledger.org_account(org))))

