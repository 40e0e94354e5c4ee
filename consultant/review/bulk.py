"""Bulk assign and reject from the queue, under the same optimistic-locking rules as one case.

Each selected case carries what the consultant's page showed of it: its draft version and its
assignee.  A case that changed since (a colleague saved a draft, took it or released it) is
skipped and reported, never overwritten; a case assigned to someone else is skipped too,
since taking it over needs the confirmation on its own page.  Every case is its own
transaction and its own audit event (marked ``bulk``): one refusal does not undo the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.models import Case
from consultant.review import actions

MAX_PICKS = 200


@dataclass(frozen=True)
class Pick:
    """One selected case as the queue page showed it."""

    case_id: int
    version: int
    holder: str | None

    @classmethod
    def parse(cls, value: str) -> Pick | None:
        """From a checkbox value ``id:version:assignee``; None for anything else."""
        case_id, _, rest = value.partition(":")
        version, _, holder = rest.partition(":")
        if not (case_id.isdigit() and version.isdigit()) or int(case_id) >= 2**31:
            return None
        return cls(int(case_id), int(version), holder.strip() or None)

    @property
    def value(self) -> str:
        return f"{self.case_id}:{self.version}:{self.holder or ''}"


@dataclass(frozen=True)
class Outcome:
    case_id: int
    done: bool
    message: str


def picks_of(values: Iterable[str]) -> list[Pick]:
    seen: dict[int, Pick] = {}
    for value in values:
        pick = Pick.parse(str(value))
        if pick is not None and pick.case_id not in seen:
            seen[pick.case_id] = pick
    return list(seen.values())[:MAX_PICKS]


def _changed(case: Case, pick: Pick) -> str | None:
    """Why the case is not what the page showed, or None."""
    current = actions.latest_draft(case)
    version = current.version if current is not None else 0
    if version != pick.version and current is not None:
        return f"{current.author} saved draft version {version} since your page was made"
    if case.assigned_to != pick.holder:
        now = case.assigned_to or "nobody"
        return f"now assigned to {now} (your page showed {pick.holder or 'nobody'})"
    return None


Act = Callable[[Session, Case], Outcome]


def _each(factory: sessionmaker[Session], picks: list[Pick], act: Act) -> list[Outcome]:
    out = []
    for pick in picks:
        try:
            with transaction(factory) as session:
                case = actions.load_locked(session, pick.case_id)
                why = _changed(case, pick)
                out.append(Outcome(case.id, False, f"skipped: {why}") if why else act(session, case))
        except actions.ActionError as exc:
            out.append(Outcome(pick.case_id, False, f"skipped: {exc}"))
    return out


def assign(factory: sessionmaker[Session], picks: list[Pick], by: str) -> list[Outcome]:
    """Assign each picked case to ``by``; never a takeover."""
    def act(session: Session, case: Case) -> Outcome:
        if case.assigned_to == by:
            return Outcome(case.id, False, "skipped: already yours")
        if case.assigned_to is not None:
            return Outcome(case.id, False, f"skipped: assigned to {case.assigned_to}; take it "
                           "over from its page (that asks for a confirmation)")
        actions.assign_loaded(session, case, by, by, bulk=True)
        return Outcome(case.id, True, "assigned to you")
    return _each(factory, picks, act)


def reject(factory: sessionmaker[Session], picks: list[Pick], reason: str, by: str) -> list[Outcome]:
    """Reject each picked case with ``reason``; a colleague's case is left to them."""
    if not reason.strip():
        raise actions.ActionError("a reason is required to reject cases")

    def act(session: Session, case: Case) -> Outcome:
        if case.assigned_to not in (None, by):
            return Outcome(case.id, False,
                           f"skipped: assigned to {case.assigned_to}, who may be answering it")
        actions.reject_loaded(session, case, reason, by, bulk=True)
        return Outcome(case.id, True, "rejected; nothing will be sent")
    return _each(factory, picks, act)
