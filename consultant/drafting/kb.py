"""Read-only access to the code knowledge base for drafting, each fact with its release label.

The codes package owns the data (``consultant.codes``: importers, releases, the ``analyse``/
``lookup``/``search`` API).  Drafting needs a few structured facts that the API's free-text
findings do not carry as numbers (an MUE value to divide against, a PTP modifier indicator to
decide the suggested answer), so this module reads the current releases' rows directly and
prefers ``codes.api.lookup`` for descriptors when it exists.  Nothing here writes.

CPT descriptors are AMA-copyrighted: a CPT code's descriptor is only ever returned from an
operator-loaded ``cpt-licensed`` release, and the caller then marks the draft so the AMA
notice goes into the footer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from consultant.codes import api as codes_api

log = logging.getLogger(__name__)

MAI_MEANING = {
    1: "line edit: the limit applies per claim line; units above it on one line are denied, "
       "and separate lines with appropriate modifiers (e.g. anatomic, 76/77, 91) are each checked",
    2: "date of service edit, policy: an absolute limit per patient per day based on policy; "
       "units above it are not payable and appeals do not change that",
    3: "date of service edit, clinical: a per-day limit set on clinical grounds; units above it "
       "are denied but may be paid on appeal with documentation of medical necessity",
}
PTP_MEANING = {
    0: "modifier indicator 0: the two codes are never reported together for the same patient on "
       "the same day by the same provider; no modifier bypasses this edit",
    1: "modifier indicator 1: an NCCI-associated modifier (e.g. 59 or XE/XP/XS/XU; 25 on an "
       "E/M; anatomic modifiers) bypasses the edit when the column 2 service is distinct and "
       "documented as such",
    9: "modifier indicator 9: the edit was deleted on its effective date and does not apply",
}
AOC_TYPE = {
    1: "edit type 1: only the listed primary codes are eligible",
    2: "edit type 2: no primary list; the contractor decides which primaries are eligible",
    3: "edit type 3: some primaries are listed; the contractor may accept others",
}
ICD_BUILTIN_LABEL = "ICD-10-CM FY2026"


@dataclass
class CodeFacts:
    """What the data says about one code."""

    code: str
    system: str
    found: bool = False
    descriptor: str | None = None
    descriptor_is_cpt: bool = False
    billable: bool | None = None
    status: str = ""  # "active", "terminated 2024-03-31", "not in release", ...
    terminated: date | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""


@dataclass
class MueFact:
    code: str
    value: int
    mai: int
    rationale: str | None
    source: str


@dataclass
class PtpFact:
    column_1: str
    column_2: str
    modifier_indicator: int
    rationale: str | None
    deletion_date: date | None
    source: str


@dataclass
class AocFact:
    addon: str
    primaries: list[str]
    edit_type: int
    contractor_defined: bool
    source: str


def _models() -> Any:
    from consultant.codes import models

    return models


_RELEASE_CACHE = "kb.current_release"


def current_release(session: Session, kind: str, variant: str | None = None) -> Any | None:
    """The current release row of ``kind`` (practitioner variant preferred), or None.

    Drafting one mail asks this about five times; the answer is kept for the rest of the
    session's transaction (bench: ~7 ms of ~30 ms per question mail went to these queries).
    """
    cache = session.info.setdefault(_RELEASE_CACHE, {})
    if not session.in_transaction() or cache.get("transaction") is not session.get_transaction():
        cache.clear()
        cache["transaction"] = session.get_transaction()
    if (kind, variant) in cache:
        return cache[(kind, variant)]
    m = _models()
    rows = list(session.scalars(select(m.CodeRelease).where(m.CodeRelease.kind == kind,
                                                             m.CodeRelease.is_current)))
    if variant is not None:
        rows = [r for r in rows if r.variant == variant] or rows
    else:
        rows = sorted(rows, key=lambda r: (r.variant != "practitioner", r.id))
    cache[(kind, variant)] = found = rows[0] if rows else None
    return found


def releases_in_force(session: Session) -> list[str]:
    """Labels of every current release (for the footer when a part cites nothing specific)."""
    m = _models()
    return [r.name for r in session.scalars(select(m.CodeRelease).where(m.CodeRelease.is_current)
                                             .order_by(m.CodeRelease.kind))]


# --- single codes ---------------------------------------------------------------------------
def describe(session: Session, code: str, system: str, on: date | None = None) -> CodeFacts:
    if system == "CPT":
        return _cpt(session, code)
    if system == "HCPCS":
        return _hcpcs(session, code, on)
    return _icd(session, code)


def _cpt(session: Session, code: str) -> CodeFacts:
    facts = CodeFacts(code=code, system="CPT", status="CPT code (AMA)")
    release = current_release(session, "cpt-licensed")
    if release is not None:
        m = _models()
        row = session.scalar(select(m.CptDescriptor).where(m.CptDescriptor.release_id == release.id,
                                                           m.CptDescriptor.code == code))
        if row is not None:
            facts.found, facts.descriptor, facts.descriptor_is_cpt = True, row.descriptor, True
            facts.source = release.name
            return facts
        facts.status = f"not in the licensed CPT file {release.name}"
        facts.source = release.name
        return facts
    # Without a licensed file we may say the number exists in a CMS edit table, never its text.
    mue = mue_for(session, code)
    if mue is not None:
        facts.found, facts.source = True, mue.source
        facts.status = "CPT code listed in the CMS MUE table (descriptor not shown: AMA CPT)"
    else:
        facts.status = "CPT code (descriptor not shown: AMA CPT; no licensed CPT file loaded)"
    return facts


def _hcpcs(session: Session, code: str, on: date | None) -> CodeFacts:
    facts = CodeFacts(code=code, system="HCPCS")
    release = current_release(session, "hcpcs")
    if release is None:
        facts.status = "no HCPCS release loaded"
        return facts
    m = _models()
    row = session.scalar(select(m.HcpcsCode).where(m.HcpcsCode.release_id == release.id,
                                                   m.HcpcsCode.code == code,
                                                   m.HcpcsCode.is_modifier.is_(False)))
    facts.source = release.name
    if row is None:
        facts.status = f"not in {release.name}"
        return facts
    facts.found = True
    facts.descriptor = row.long_description
    facts.terminated = row.term_date
    if row.term_date is not None:
        when = on or date.today()
        facts.billable = when <= row.term_date
        facts.status = (f"terminated {row.term_date.isoformat()}"
                        + ("" if facts.billable else " (not valid for this date of service)"))
    else:
        facts.billable = True
        facts.status = "active"
    return facts


def modifier_descriptor(session: Session, modifier: str) -> tuple[str | None, str]:
    """A HCPCS Level II modifier's CMS descriptor (CPT modifiers like 25/59 are AMA: none)."""
    release = current_release(session, "hcpcs")
    if release is None or modifier.isdigit():
        return None, ""
    m = _models()
    row = session.scalar(select(m.HcpcsCode).where(m.HcpcsCode.release_id == release.id,
                                                   m.HcpcsCode.code == modifier,
                                                   m.HcpcsCode.is_modifier.is_(True)))
    return (row.long_description if row else None), release.name


def _icd(session: Session, code: str) -> CodeFacts:
    facts = CodeFacts(code=code, system="ICD-10-CM")
    from_api = _icd_from_api(session, code)
    if from_api is _UNKNOWN:
        # The knowledge base answered "no such code": the fallbacks below would only repeat it
        # (and the last one loads simple-icd-10-cm, ~3 s and ~150 MB, into the worker).
        found = None
    else:
        found = from_api or _icd_from_table(session, code) or _icd_builtin(code)
    if found is None:
        facts.status = "not an ICD-10-CM code"
        facts.source = ICD_BUILTIN_LABEL
        return facts
    facts.found = True
    facts.descriptor, facts.billable, facts.notes, facts.source = found
    facts.status = "billable" if facts.billable else "not billable (a header: more characters needed)"
    return facts


_UNKNOWN: Any = object()  # the knowledge base was asked and knows no such ICD-10-CM code


def _icd_from_api(session: Session, code: str) -> Any:
    """(descriptor, billable, notes, source); ``_UNKNOWN`` when lookup knows no such code;
    None when lookup is unavailable or failed (then the other sources are tried)."""
    lookup = getattr(codes_api, "lookup", None)
    if lookup is None:
        return None
    try:
        found = lookup(session, code)
    except Exception:  # noqa: BLE001 - the codes API is optional here; fall back to the data
        log.debug("codes.api.lookup(%s) failed", code, exc_info=True)
        return None
    if found is None or (isinstance(found, dict) and found.get("system") == "ICD-10-CM"
                         and not found.get("description")):
        return _UNKNOWN
    if not isinstance(found, dict) or not found.get("description"):
        return None
    return (str(found["description"]), bool(found.get("billable", True)),
            _notes_by_kind(found.get("notes")), str(found.get("source") or ICD_BUILTIN_LABEL))


def _notes_by_kind(notes: Any) -> dict[str, list[str]]:
    """lookup() gives notes as a list of {kind, from, notes} (own and inherited); group by kind."""
    if isinstance(notes, dict):
        return {k: list(v) for k, v in notes.items() if isinstance(v, list)}
    grouped: dict[str, list[str]] = {}
    for entry in notes or []:
        if isinstance(entry, dict) and isinstance(entry.get("notes"), list):
            bucket = grouped.setdefault(str(entry.get("kind")), [])
            bucket.extend(n for n in entry["notes"] if n not in bucket)
    return grouped


def _icd_from_table(session: Session, code: str) -> tuple[str, bool, dict[str, list[str]], str] | None:
    release = current_release(session, "icd10cm-xml")
    if release is None:
        return None
    m = _models()
    row = session.scalar(select(m.Icd10cmCode).where(m.Icd10cmCode.release_id == release.id,
                                                     m.Icd10cmCode.code == code))
    if row is None:
        return None
    notes = _inherited_notes(session, release.id, code, row.notes or {})
    return row.description, bool(row.billable), notes, release.name


def _inherited_notes(session: Session, release_id: int, code: str,
                     own: dict[str, Any]) -> dict[str, list[str]]:
    m = _models()
    notes = {k: list(v) for k, v in own.items() if isinstance(v, list)}
    for ancestor in _ancestors(code):
        row = session.scalar(select(m.Icd10cmCode).where(m.Icd10cmCode.release_id == release_id,
                                                         m.Icd10cmCode.code == ancestor))
        if row is not None and row.notes:
            for k, v in row.notes.items():
                if isinstance(v, list):
                    notes.setdefault(k, []).extend(x for x in v if x not in notes.get(k, []))
    return notes


def _ancestors(code: str) -> list[str]:
    bare = code.replace(".", "")
    out = []
    for n in range(len(bare) - 1, 2, -1):
        out.append(bare[:3] + "." + bare[3:n] if n > 3 else bare[:3])
    out.append(bare[:3])
    return [a for a in dict.fromkeys(out) if a != code]


def _icd_builtin(code: str) -> tuple[str, bool, dict[str, list[str]], str] | None:
    """The ICD-10-CM tabular bundled with simple-icd-10-cm (FY2026, April 1, 2026 update)."""
    try:
        import simple_icd_10_cm as icd
    except ImportError:
        return None
    if not icd.is_valid_item(code):
        return None
    notes: dict[str, list[str]] = {}
    for ancestor in [code, *_ancestors(code)]:
        if not icd.is_valid_item(ancestor):
            continue
        for key, getter in (("excludes1", icd.get_excludes1), ("excludes2", icd.get_excludes2),
                            ("code_first", icd.get_code_first),
                            ("use_additional", icd.get_use_additional_code),
                            ("code_also", icd.get_code_also)):
            found = getter(ancestor)
            # simple-icd-10-cm returns lists for excludes and one string for the others.
            items = [found] if isinstance(found, str) else list(found or [])
            for item in (i for i in items if i):
                bucket = notes.setdefault(key, [])
                if item not in bucket:
                    bucket.append(item)
    return icd.get_description(code), bool(icd.is_leaf(code)), notes, ICD_BUILTIN_LABEL


# --- edits ----------------------------------------------------------------------------------
def mue_for(session: Session, code: str) -> MueFact | None:
    release = current_release(session, "mue", "practitioner")
    if release is None:
        return None
    m = _models()
    row = session.scalar(select(m.MueEdit).where(m.MueEdit.release_id == release.id,
                                                 m.MueEdit.code == code))
    if row is None:
        return None
    return MueFact(code, row.value, row.mai, row.rationale, release.name)


def ptp_between(session: Session, a: str, b: str, on: date | None = None) -> tuple[list[PtpFact], str]:
    """PTP edits in force between ``a`` and ``b`` (either order), and the release label."""
    release = current_release(session, "ptp", "practitioner")
    if release is None:
        return [], ""
    m = _models()
    rows = session.execute(
        select(m.PtpEdit, m.PtpRationale.text)
        .outerjoin(m.PtpRationale, m.PtpRationale.id == m.PtpEdit.rationale_id)
        .where(m.PtpEdit.release_id == release.id,
               or_((m.PtpEdit.column_1 == a) & (m.PtpEdit.column_2 == b),
                   (m.PtpEdit.column_1 == b) & (m.PtpEdit.column_2 == a)))
    ).all()
    when = on or date.today()
    edits = []
    for edit, rationale in rows:
        if edit.modifier_indicator == 9:
            continue
        if edit.deletion_date is not None and edit.deletion_date < when:
            continue
        if edit.effective_date is not None and edit.effective_date > when:
            continue
        edits.append(PtpFact(edit.column_1, edit.column_2, edit.modifier_indicator, rationale,
                             edit.deletion_date, release.name))
    return edits, release.name


def aoc_for(session: Session, addon: str, on: date | None = None) -> AocFact | None:
    release = current_release(session, "aoc")
    if release is None:
        return None
    m = _models()
    rows = session.scalars(select(m.AocEdit).where(m.AocEdit.release_id == release.id,
                                                   m.AocEdit.addon_code == addon)).all()
    when = on or date.today()
    active = [r for r in rows if r.deletion_date is None or r.deletion_date >= when]
    if not active:
        return None
    primaries = sorted({r.primary_code for r in active if r.primary_code != "CCCCC"})
    return AocFact(addon, primaries, active[0].edit_type,
                   any(r.primary_code == "CCCCC" for r in active), release.name)


def search(session: Session, text: str, system: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
    """Candidate codes for a description: the codes API's search, else the codes package's
    ranked full-text search over the current releases.  CPT hits carry no text (AMA)."""
    fn = getattr(codes_api, "search", None)
    try:
        hits = fn(session, text, system=system, limit=limit) if fn else _search_releases(
            session, text, system, limit)
    except Exception:  # noqa: BLE001 - a failed search leaves the question for the consultant
        log.warning("code search for %r failed", text, exc_info=True)
        return []
    out = []
    for hit in hits or []:
        h = dict(hit)
        if h.get("system") == "CPT":
            h.pop("description", None)
            h.pop("matched", None)
        out.append(h)
    return out


_SEARCH_KINDS = {"ICD-10-CM": "icd10cm-xml", "HCPCS": "hcpcs"}


def _search_releases(session: Session, text: str, system: str | None, limit: int) -> list[dict[str, Any]]:
    from consultant.codes import search as fts

    releases = {name: current_release(session, kind) for name, kind in _SEARCH_KINDS.items()
                if system in (None, name)}
    ids = {r.id: name for name, r in releases.items() if r is not None}
    if not ids:
        return []
    ranked = fts.rank(text, fts.candidates(session, text, ids, system), limit)
    labels = {name: r.name for name, r in releases.items() if r is not None}
    hcpcs = releases.get("HCPCS")
    for hit in ranked:
        hit["source"] = labels.get(str(hit["system"]), "")
        if hit["system"] == "HCPCS" and hcpcs is not None:
            described = _hcpcs(session, str(hit["code"]), None)
            hit["description"] = described.descriptor
        elif hit["system"] == "ICD-10-CM":
            found = _icd_from_table(session, str(hit["code"]))
            if found:
                hit["description"] = found[0]
    return ranked
