"""Macros: a team's canned answer snippets, with variables filled in for the case at hand.

Macro text is written by consultants, so it is rendered in Jinja2's SandboxedEnvironment
(attribute access to internals, calls of unsafe methods raise SecurityError) with only the
variables below in scope, never evaluated as Python.  Output is plain text for the draft
editor; the console's own templates escape it when they put it into a page.  A variable that
does not exist is refused when the macro is saved, not discovered when it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.models import AuditEvent, Case, utcnow
from consultant.review.models import ConsultantUser, Macro

MAX_NAME = 80
MAX_TEXT = 10_000
# What a macro may use, with what each means (shown on the macros page).
VARIABLES = {
    "requester_name": "the requester's name, else their address",
    "requester_email": "the requester's address",
    "case_ref": "the case reference, e.g. CC-42",
    "subject": "the subject of the case",
    "codes": "the codes found, comma-separated",
    "plan": "the requester's plan",
    "answers_left": "answers left on the requester's balance",
    "consultant_name": "your name as the console shows it",
}
SAMPLE = {"requester_name": "Pat Coder", "requester_email": "pat@clinic.example",
          "case_ref": "CC-42", "subject": "Modifier 25?", "codes": "99214, 20610",
          "plan": "guest", "answers_left": 1, "consultant_name": "Jane Coder"}



class _Sandbox(SandboxedEnvironment):
    """The sandbox also bounds ``*`` and ``**``: ``{{ 'x' * 10**9 }}`` would otherwise build a
    gigabyte in the console process (the stock sandbox bounds only range())."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise MacroError("exponent too large")
        if operator == "*":
            sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
            counts = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
            if sizes and counts and max(sizes) * max(abs(c) for c in counts) > MAX_TEXT:
                raise MacroError(f"the result would be longer than {MAX_TEXT} characters")
        return super().call_binop(context, operator, left, right)


_env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class MacroError(Exception):
    """A macro that cannot be saved or used; the message says why."""


def render(text: str, variables: dict[str, object]) -> str:
    try:
        out = _env.from_string(text).render(**{k: variables[k] for k in VARIABLES})
    except MacroError as exc:
        raise MacroError(f"the macro cannot be rendered: {exc}") from exc
    except TemplateError as exc:  # syntax, undefined variable, sandbox SecurityError
        raise MacroError(f"the macro cannot be rendered: {exc.message or type(exc).__name__}") from exc
    except Exception as exc:  # noqa: BLE001 - consultant-written text: 1/0, range(10**9), ...
        raise MacroError(f"the macro cannot be rendered: {type(exc).__name__}: {exc}") from exc
    if len(out) > MAX_TEXT * 2:
        raise MacroError(f"the macro renders to {len(out)} characters; at most {MAX_TEXT * 2}")
    return out


def check(name: str, text: str) -> tuple[str, str]:
    """The macro's name and text, cleaned, after a trial render with sample values."""
    name = " ".join(name.split())
    text = text.replace("\r\n", "\n").strip("\n")
    if not name or len(name) > MAX_NAME:
        raise MacroError(f"a macro needs a name of 1-{MAX_NAME} characters")
    if not text.strip():
        raise MacroError("the macro's text is empty")
    if len(text) > MAX_TEXT:
        raise MacroError(f"the macro's text is {len(text)} characters; at most {MAX_TEXT}")
    render(text, SAMPLE)
    return name, text


def variables_for(case: Case, user: ConsultantUser, *, plan: str, answers_left: int,
                  codes: list[str]) -> dict[str, object]:
    requester = case.requester
    return {"requester_name": requester.name or requester.email, "requester_email": requester.email,
            "case_ref": f"CC-{case.id}", "subject": case.subject or "", "codes": ", ".join(codes),
            "plan": plan, "answers_left": answers_left,
            "consultant_name": user.name or user.email}


def of_team(session: Session, team: str) -> list[Macro]:
    return list(session.execute(select(Macro).where(Macro.team == team)
                                .order_by(Macro.name)).scalars())


def all_macros(session: Session) -> list[Macro]:
    return list(session.execute(select(Macro).order_by(Macro.team, Macro.name)).scalars())


def may_manage(user: ConsultantUser, team: str) -> bool:
    """Admins manage every team's macros; a consultant their own team's."""
    return user.is_admin or user.team == team


@dataclass(frozen=True)
class Saved:
    id: int
    name: str
    team: str


def _audit(session: Session, by: str, action: str, macro: Macro) -> None:
    session.add(AuditEvent(case_id=None, actor=by, action=action,
                           detail={"macro_id": macro.id, "name": macro.name, "team": macro.team}))


def _clash(session: Session, team: str, name: str, other_than: int | None = None) -> None:
    found = session.execute(select(Macro.id).where(Macro.team == team, Macro.name == name)).scalar()
    if found is not None and found != other_than:
        raise MacroError(f"team {team or '(default)'} already has a macro named {name!r}")


def create(factory: sessionmaker[Session], user: ConsultantUser, team: str, name: str,
           text: str) -> Saved:
    team = team.strip()[:64]
    if not may_manage(user, team):
        raise MacroError(f"only members of team {team or '(default)'} or an admin may add its macros")
    name, text = check(name, text)
    with transaction(factory) as session:
        _clash(session, team, name)
        macro = Macro(team=team, name=name, text=text, created_by=user.email, updated_by=user.email)
        session.add(macro)
        session.flush()
        _audit(session, user.email, "macro_created", macro)
        return Saved(macro.id, macro.name, macro.team)


def _load(session: Session, user: ConsultantUser, macro_id: int) -> Macro:
    macro = session.get(Macro, macro_id, with_for_update=True)
    if macro is None:
        raise MacroError(f"macro {macro_id} does not exist")
    if not may_manage(user, macro.team):
        raise MacroError(f"only members of team {macro.team or '(default)'} or an admin may "
                         "change its macros")
    return macro


def update(factory: sessionmaker[Session], user: ConsultantUser, macro_id: int, name: str,
           text: str) -> Saved:
    name, text = check(name, text)
    with transaction(factory) as session:
        macro = _load(session, user, macro_id)
        _clash(session, macro.team, name, other_than=macro.id)
        macro.name, macro.text, macro.updated_by = name, text, user.email
        macro.updated_at = utcnow()
        _audit(session, user.email, "macro_updated", macro)
        return Saved(macro.id, macro.name, macro.team)


def delete(factory: sessionmaker[Session], user: ConsultantUser, macro_id: int) -> Saved:
    with transaction(factory) as session:
        macro = _load(session, user, macro_id)
        saved = Saved(macro.id, macro.name, macro.team)
        _audit(session, user.email, "macro_deleted", macro)
        session.delete(macro)
        return saved
