"""Knowledge notes: what a consultant learned about a code or code pair.

A note is internal by default: consultants see it, with its author, on the case page of later
cases about the code.  Only a note marked customer-facing reaches later drafts (and so the
answers made from them), and then as its text and date alone: no consultant's address goes to
a requester.  Note text is kept as plain text (markup removed on saving), because drafts are
mail and the HTML reply template must not carry a consultant's markup.

Public functions take a session and leave committing to the caller (the console and the CLI
each wrap them in a transaction), so a note saved while approving commits with the approval.
"""

from __future__ import annotations

import html
import re
import unicodedata
from itertools import combinations
from typing import Any

import nh3
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from consultant.codes.formats import is_code, normalise_code
from consultant.drafting.models import KnowledgeNote
from consultant.models import utcnow

MAX_NOTE_CHARS = 4000


class NoteError(ValueError):
    """The note cannot be saved or removed; the message says why."""


def subject_key(code_or_pair: str | list[str] | tuple[str, ...]) -> str:
    """"20610", "J1885", "E11.22", or a pair "20610+99214" (codes sorted), from what a person
    typed ("99214 / 20610", "20610,99214", ["99214", "20610"])."""
    items = (list(code_or_pair) if isinstance(code_or_pair, list | tuple)
             else [x for x in re.split(r"[\s,/+&]+|\band\b|\bwith\b", code_or_pair) if x])
    codes = [normalise_code(x) for x in items if x.strip()]
    if not codes or len(codes) > 2:
        raise NoteError(f"a note is on one code or one pair of codes, not {code_or_pair!r}")
    for code in codes:
        if not is_code(code):
            raise NoteError(f"{code!r} is not a CPT, HCPCS or ICD-10-CM code")
    if len(codes) == 2 and codes[0] == codes[1]:
        raise NoteError("a pair needs two different codes")
    return "+".join(sorted(codes))


def plain_text(text: str) -> str:
    """``text`` as plain text: tags and comments removed (a script's or style's content with
    them), entities decoded, control characters other than newline and tab dropped."""
    stripped = html.unescape(nh3.clean(text, tags=set(), strip_comments=True))
    return "".join(ch for ch in stripped
                   if ch in "\n\t" or unicodedata.category(ch)[0] != "C").strip()


def add_note(session: Session, code_or_pair: str | list[str] | tuple[str, ...], text: str,
             author: str, *, case_id: int | None = None,
             customer_facing: bool = False) -> KnowledgeNote:
    """Save a note on a code or pair; returns the new row (flushed, so it has an id).

    ``customer_facing``: later drafts quote it (without the author); else consultants only."""
    body = plain_text(text.replace("\r\n", "\n"))
    if not body:
        raise NoteError("the note is empty")
    if len(body) > MAX_NOTE_CHARS:
        raise NoteError(f"the note is {len(body)} characters; at most {MAX_NOTE_CHARS}")
    if not author.strip():
        raise NoteError("a note needs an author")
    note = KnowledgeNote(subject=subject_key(code_or_pair), text=body, author=author.strip(),
                         case_id=case_id, customer_facing=customer_facing)
    session.add(note)
    session.flush()
    return note


def list_notes(session: Session, code_or_pair: str | None = None, *,
               include_removed: bool = False) -> list[KnowledgeNote]:
    """Notes, newest first; with ``code_or_pair``, those on exactly that code or pair, plus
    (for a single code) the pairs it belongs to."""
    query = select(KnowledgeNote).order_by(KnowledgeNote.created_at.desc(), KnowledgeNote.id.desc())
    if not include_removed:
        query = query.where(KnowledgeNote.removed_at.is_(None))
    rows = list(session.scalars(query))
    if code_or_pair is None:
        return rows
    key = subject_key(code_or_pair)
    if "+" in key:
        return [n for n in rows if n.subject == key]
    return [n for n in rows if key in n.subject.split("+")]


def remove_note(session: Session, note_id: int, by: str) -> KnowledgeNote:
    """Mark a note removed (kept for history); raises NoteError if there is no such note."""
    note = session.get(KnowledgeNote, note_id)
    if note is None or note.removed_at is not None:
        raise NoteError(f"no note {note_id}")
    note.removed_at = utcnow()
    note.removed_by = by
    session.flush()
    return note


def notes_for(session: Session, codes: list[str], *,
              internal: bool = False) -> list[dict[str, Any]]:
    """The live notes that apply to a question about ``codes``: on any of the codes, or on a pair
    of them.  Oldest first, as they read best in a draft.

    By default (for drafts, which become answers) only customer-facing notes, as
    ``customer_dict`` (no author); ``internal=True`` (the console) gives every note, with its
    author (``as_dict``)."""
    keys = set(codes)
    keys |= {"+".join(sorted(p)) for p in combinations(dict.fromkeys(codes), 2)}
    if not keys:
        return []
    rows = session.scalars(_EVERY_NOTE if internal else _CUSTOMER_NOTES,
                           {"subjects": sorted(keys)})
    return [as_dict(n) if internal else customer_dict(n) for n in rows]


# Built once, the subjects bound per call: building an ORM statement and its cache key costs
# more CPU than running it (bench/stages.py), and every draft runs this.
_EVERY_NOTE = (select(KnowledgeNote)
               .where(KnowledgeNote.subject.in_(bindparam("subjects", expanding=True)),
                      KnowledgeNote.removed_at.is_(None))
               .order_by(KnowledgeNote.created_at, KnowledgeNote.id))
_CUSTOMER_NOTES = _EVERY_NOTE.where(KnowledgeNote.customer_facing.is_(True))


def customer_dict(note: KnowledgeNote) -> dict[str, Any]:
    """What a draft (and so a requester) may see of a customer-facing note: no author, no case."""
    return {"id": note.id, "subject": note.subject, "text": plain_text(note.text),
            "date": note.created_at.date().isoformat() if note.created_at else ""}


def as_dict(note: KnowledgeNote) -> dict[str, Any]:
    return {"id": note.id, "subject": note.subject, "text": note.text, "author": note.author,
            "date": note.created_at.date().isoformat() if note.created_at else "",
            "case_id": note.case_id, "customer_facing": bool(note.customer_facing),
            "removed": note.removed_at is not None}
