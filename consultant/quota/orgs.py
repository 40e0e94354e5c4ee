"""Organisations: practices whose coders share one balance.

Membership is an explicit address list or whole domains.  An address belongs to at most one
organisation: the unique constraints make a domain and a listed address each belong to one, and
:func:`add_member` / :func:`add_domain` refuse an address whose domain another organisation
already holds (and the reverse), so :func:`org_for` never has two answers.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from consultant.models import AuditEvent, Organisation, OrgDomain, OrgMember, Requester, utcnow


class OrgError(ValueError):
    """The organisation change is not possible; the message says why."""


def _domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower()


def org_for(session: Session, email: str) -> Organisation | None:
    """The organisation the address belongs to: as a listed member, else by its domain.

    One query: an address belongs to at most one organisation (see above), so "listed, else by
    domain" and "listed or by domain" are the same answer."""
    email = email.strip().lower()
    return session.execute(_ORG_FOR, {"email": email, "domain": _domain_of(email)}).scalar()


# Built once, the values bound per call: building this ORM statement and its cache key costs
# more CPU than running it (bench/stages.py), and every new case runs it.
_ORG_FOR = select(Organisation).where(or_(
    Organisation.id.in_(select(OrgMember.org_id).where(OrgMember.email == bindparam("email"))),
    Organisation.id.in_(select(OrgDomain.org_id).where(OrgDomain.domain == bindparam("domain")))
)).limit(1)


def get_org(session: Session, name: str) -> Organisation:
    org = session.execute(select(Organisation).where(Organisation.name == name)).scalar_one_or_none()
    if org is None:
        raise OrgError(f"no organisation {name!r}")
    return org


def create(session: Session, name: str, plan: str, *, member_cap: int | None, by: str,
           now: datetime | None = None) -> Organisation:
    name = name.strip()
    if not name:
        raise OrgError("an organisation needs a name")
    if member_cap is not None and member_cap < 0:
        raise OrgError("--member-cap must not be negative")
    if session.execute(select(Organisation.id).where(Organisation.name == name)).first():
        raise OrgError(f"organisation {name!r} exists already")
    now = now or utcnow()
    org = Organisation(name=name, plan=plan, plan_since=now, member_cap=member_cap, created_at=now)
    session.add(org)
    session.flush()
    session.add(AuditEvent(actor=by, action="org_created",
                           detail={"org": name, "plan": plan, "member_cap": member_cap}))
    return org


def add_domain(session: Session, org: Organisation, domain: str, *, by: str) -> None:
    domain = domain.strip().lower().lstrip("@")
    if not domain or "@" in domain or "." not in domain:
        raise OrgError(f"{domain!r} is not a domain")
    holder = session.execute(select(OrgDomain.org_id).where(OrgDomain.domain == domain)).scalar()
    if holder is not None:
        if holder == org.id:
            return
        raise OrgError(f"{domain} belongs to organisation {session.get(Organisation, holder).name!r}")  # type: ignore[union-attr]
    listed = session.execute(select(OrgMember.email).where(
        OrgMember.org_id != org.id, OrgMember.email.like(f"%@{domain}"))).scalars().first()
    if listed is not None:
        raise OrgError(f"{listed} is a listed member of another organisation; an address "
                       "belongs to one organisation only")
    session.add(OrgDomain(org_id=org.id, domain=domain))
    session.add(AuditEvent(actor=by, action="org_domain_added", detail={"org": org.name, "domain": domain}))


def add_member(session: Session, org: Organisation, email: str, *, by: str) -> None:
    email = email.strip().lower()
    if "@" not in email:
        raise OrgError(f"{email!r} is not an email address")
    current = org_for(session, email)
    if current is not None and current.id != org.id:
        raise OrgError(f"{email} belongs to organisation {current.name!r} already; an address "
                       "belongs to one organisation only")
    if session.execute(select(OrgMember.id).where(OrgMember.email == email)).first():
        return
    session.add(OrgMember(org_id=org.id, email=email))
    session.add(AuditEvent(actor=by, action="org_member_added", detail={"org": org.name, "email": email}))


def remove_member(session: Session, org: Organisation, email: str, *, by: str) -> None:
    email = email.strip().lower()
    member = session.execute(select(OrgMember).where(OrgMember.org_id == org.id,
                                                     OrgMember.email == email)).scalar_one_or_none()
    if member is None:
        raise OrgError(f"{email} is not a listed member of {org.name!r}")
    session.delete(member)
    session.add(AuditEvent(actor=by, action="org_member_removed", detail={"org": org.name, "email": email}))


def domains(session: Session, org: Organisation) -> list[str]:
    return list(session.execute(select(OrgDomain.domain).where(OrgDomain.org_id == org.id)
                                .order_by(OrgDomain.domain)).scalars())


def members(session: Session, org: Organisation) -> list[dict[str, object]]:
    """Listed members and every known requester of the organisation's domains."""
    listed = set(session.execute(select(OrgMember.email).where(OrgMember.org_id == org.id)).scalars())
    doms = domains(session, org)
    # add_domain/add_member keep every address of these domains in this organisation.
    by_domain = set(session.execute(select(Requester.email).where(
        or_(*[Requester.email.like(f"%@{d}") for d in doms]))).scalars()) if doms else set()
    return [{"email": e, "listed": e in listed, "by_domain": e in by_domain}
            for e in sorted(listed | by_domain)]


def count(session: Session) -> int:
    return int(session.execute(select(func.count(Organisation.id))).scalar_one())


def orgs_for(session: Session, emails: list[str]) -> dict[str, Organisation]:
    """:func:`org_for` of many addresses in three queries."""
    emails = [e.strip().lower() for e in emails]
    if not emails:
        return {}
    listed = dict(session.execute(select(OrgMember.email, OrgMember.org_id)
                                  .where(OrgMember.email.in_(emails))).all())
    by_domain = dict(session.execute(select(OrgDomain.domain, OrgDomain.org_id).where(
        OrgDomain.domain.in_({_domain_of(e) for e in emails}))).all())
    ids = {listed.get(e) or by_domain.get(_domain_of(e)) for e in emails} - {None}
    found = {o.id: o for o in session.execute(
        select(Organisation).where(Organisation.id.in_(ids))).scalars()} if ids else {}
    out = {}
    for e in emails:
        org_id = listed.get(e) or by_domain.get(_domain_of(e))
        if org_id is not None:
            out[e] = found[org_id]
    return out
