"""The facts stage: everything the code knowledge base says about a mail's codes, looked up in
batches (one query per table per mail), each fact with the release it comes from.

Release choice for PTP edits (CODING-RULES §0, §1): a facility (hospital outpatient) claim reads
the hospital table; a professional claim reads the dated practitioner table when the date of
service falls inside the period it answers (its quarter and any earlier date, through the
deletion dates it carries), else the newest in-force snapshot (v32.2: the edits in force on
2026-07-01, without effective dates).  An edit absent from the snapshot but present in the
dated table was deleted between the two releases.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from itertools import combinations
from typing import Any

from sqlalchemy import select

from consultant.analysis.model import Addon, Candidate, Excludes1, IcdFacts, Mue, PtpPair
from consultant.codes import icd
from consultant.codes import search as search_backend
from consultant.codes.importers.icd10cm_xml import with_7th
from consultant.codes.lookup import PTP_SELECT
from consultant.codes.models import KIND_AOC, KIND_MUE, KIND_PTP, Icd10cmCode
from consultant.codes.releases import ReleaseRef
from consultant.codes.sources import Sources

MAX_PAIRS = 45  # 10 procedure codes; more are cut and the draft says so
MAX_CHILDREN = 40
SNAPSHOT = "practitioner-snapshot"
HOSPITAL = "hospital"


def _in(prefix: str, values: list[str]) -> tuple[str, dict[str, str]]:
    names = ", ".join(f":{prefix}{i}" for i in range(len(values)))
    return names, {f"{prefix}{i}": v for i, v in enumerate(values)}


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def quarter_end(day: date) -> date:
    """The last day of the quarter ``day`` falls in."""
    last_month = (day.month - 1) // 3 * 3 + 3
    return date(day.year + (last_month == 12), last_month % 12 + 1, 1) - timedelta(days=1)


def _in_force(effective: date | None, deletion: date | None, dos: date | None) -> bool:
    """CMS deletion dates are the last day an edit applied (a quarter's last day)."""
    if dos is None:
        return deletion is None
    return (effective is None or effective <= dos) and (deletion is None or dos <= deletion)


# --- MUE ----------------------------------------------------------------------------------------
def mue(src: Sources, codes: list[str]) -> tuple[dict[str, Mue], str | None]:
    """Practitioner MUEs (the only MUE table loaded is practitioner; the source says which)."""
    rel = src.get(KIND_MUE, "practitioner") or next(iter(src.of_kind(KIND_MUE)), None)
    if rel is None or not codes:
        return {}, rel.name if rel else None
    names, params = _in("c", sorted(set(codes)))
    rows = src.rows(f"SELECT code, value, mai, rationale FROM codes_mue WHERE release_id = :r AND code IN ({names})",
                    r=rel.id, **params)
    return {r.code: Mue(r.code, r.value, r.mai, r.rationale, rel.name) for r in rows}, rel.name


# --- PTP ----------------------------------------------------------------------------------------
def ptp_release(src: Sources, dos: date | None, facility: bool) -> tuple[ReleaseRef | None, ReleaseRef | None]:
    """(table to answer from, older dated practitioner table to tell deletions from)."""
    if facility and src.get(KIND_PTP, HOSPITAL) is not None:
        return src.get(KIND_PTP, HOSPITAL), None
    dated = src.get(KIND_PTP, "practitioner")
    snap = src.get(KIND_PTP, SNAPSHOT)
    if dated is not None and (snap is None or (dos is not None and dated.effective_date is not None
                                               and dos <= quarter_end(dated.effective_date))):
        return dated, None
    if snap is not None:
        return snap, dated
    return dated or next(iter(src.of_kind(KIND_PTP)), None), None


def ptp(src: Sources, codes: list[str], dos: date | None, facility: bool) -> dict[tuple[str, str], PtpPair]:
    """What the PTP table in use says of every unordered pair of the procedure codes."""
    distinct = sorted(set(codes))
    pairs = list(combinations(distinct, 2))[:MAX_PAIRS]
    rel, older = ptp_release(src, dos, facility)
    out = {(a, b): PtpPair(a, b, rel.name if rel else None) for a, b in pairs}
    if rel is None or not pairs:
        return out
    names, params = _in("c", distinct)
    where = f"p.column_1 IN ({names}) AND p.column_2 IN ({names}) AND p.column_1 <> p.column_2"
    rows = src.rows(f"{PTP_SELECT} WHERE p.release_id = :r AND {where} ORDER BY p.column_1, p.column_2, p.id",
                    r=rel.id, **params)
    old_rows = src.rows(f"{PTP_SELECT} WHERE p.release_id = :r AND {where} ORDER BY p.column_1, p.column_2, p.id",
                        r=older.id, **params) if older else []
    snapshot = rel.variant == SNAPSHOT
    for (a, b), pair in out.items():
        pair.snapshot = snapshot
        pair.effective = rel.effective_date
        pair.through = quarter_end(rel.effective_date) if rel.effective_date else None
        for c1, c2 in ((a, b), (b, a)):
            mine = [r for r in rows if (r.column_1, r.column_2) == (c1, c2) and r.modifier_indicator != 9]
            live = [r for r in mine if snapshot or _in_force(_as_date(r.effective_date), _as_date(r.deletion_date), dos)]
            if live:
                if pair.modifier_indicator is None:
                    r = live[-1]
                    pair.column_1, pair.column_2 = c1, c2
                    pair.modifier_indicator, pair.rationale = r.modifier_indicator, r.rationale
                continue
            gone = [r for r in old_rows if (r.column_1, r.column_2) == (c1, c2) and r.modifier_indicator != 9]
            if not mine and not gone:
                continue
            # Rows for this order exist, none in force on the date: deleted, or not yet begun.
            pair.not_in_force.append((c1, c2))
            if pair.deleted_source is not None:
                continue
            if mine:
                begun = [r for r in mine if _as_date(r.effective_date) is None or dos is None
                         or _as_date(r.effective_date) <= dos]  # type: ignore[operator]
                if begun:
                    last = max(begun, key=lambda r: _as_date(r.deletion_date) or date.max)
                    pair.deleted_on = _as_date(last.deletion_date)
                else:
                    pair.begins_on = min(_as_date(r.effective_date) for r in mine)  # type: ignore[type-var]
                pair.deleted_source = rel.name
            elif older is not None and older.effective_date and rel.effective_date:
                last = max(gone, key=lambda r: _as_date(r.deletion_date) or date.max)
                deleted = _as_date(last.deletion_date)
                if deleted is not None:
                    pair.deleted_on = deleted
                else:
                    pair.deleted_between = (quarter_end(older.effective_date), rel.effective_date)
                pair.deleted_source = older.name
        if pair.modifier_indicator is None and pair.not_in_force:
            pair.column_1, pair.column_2 = pair.not_in_force[0]
    return out


# --- add-on codes -------------------------------------------------------------------------------
def addons(src: Sources, codes: list[str], dos: date | None) -> dict[str, Addon]:
    rel = src.get(KIND_AOC)
    distinct = sorted(set(codes))
    if rel is None or not distinct:
        return {}
    names, params = _in("c", distinct)
    rows = src.rows(f"SELECT addon_code, primary_code, edit_type, effective_date, deletion_date FROM codes_aoc "
                    f"WHERE release_id = :r AND addon_code IN ({names})", r=rel.id, **params)
    out = {}
    for code in distinct:
        mine = [r for r in rows if r.addon_code == code
                and _in_force(_as_date(r.effective_date), _as_date(r.deletion_date), dos)]
        if not mine:
            continue
        primaries = sorted({r.primary_code for r in mine if r.primary_code != "CCCCC"})
        present = [c for c in distinct if c in primaries and c != code]
        out[code] = Addon(code, sorted({r.edit_type for r in mine}), primaries, present, rel.name)
    return out


# --- ICD-10-CM ----------------------------------------------------------------------------------
def icd_facts(src: Sources, codes: list[str]) -> tuple[dict[str, IcdFacts], dict[str, icd.IcdEntry]]:
    entries = icd.with_ancestors(src, codes)
    out: dict[str, IcdFacts] = {}
    for code in codes:
        e = entries.get(code)
        if e is None:
            continue
        facts = IcdFacts(code, e.description, e.billable, e.needs_7th, e.header, source=src.icd.name)
        if e.needs_7th:
            facts.seventh = sorted(icd.seven_chr_def(code, entries).items())
        elif e.header:
            kids = billable_descendants(src, code)
            facts.children_total = len(kids)
            facts.children = kids[:MAX_CHILDREN]
        for note in icd.inherited(code, entries, kinds=("code_first", "use_additional")):
            target = facts.code_first if note["kind"] == "code_first" else facts.use_additional
            # Only the items that name codes ("diabetic chronic kidney disease (E11.22)"): the
            # lead-ins ("code first any associated:") say nothing alone.
            target.extend(str(n) for n in note["notes"] if icd.references(str(n)))
        out[code] = facts
    return out, entries


def billable_descendants(src: Sources, code: str) -> list[tuple[str, str]]:
    prefix = code if "." in code else code + "."
    if src.icd_session.get_bind().dialect.name == "sqlite":
        # A range, not LIKE: SQLite's LIKE ignores case and so cannot use the (release, code)
        # index (a scan of ~98,000 rows per header, 10 ms each); SQLite compares text bytewise,
        # so the range holds exactly the codes that start with the prefix.
        match: Any = (Icd10cmCode.code >= prefix) & (Icd10cmCode.code < prefix + "\uffff")
    else:
        match = Icd10cmCode.code.like(prefix + "%")  # PostgreSQL: LIKE is exact; collations vary
    rows = src.icd_session.execute(
        select(Icd10cmCode.code, Icd10cmCode.description, Icd10cmCode.billable, Icd10cmCode.needs_7th)
        .where(Icd10cmCode.release_id == src.icd.id, match)
        .order_by(Icd10cmCode.code)
    )
    return [(r.code, r.description) for r in rows if r.billable and r.code != code]


# An Excludes1 note that names a combination ("osteoporosis with current pathological fracture
# (M80.-)", "cervicalgia due to intervertebral cervical disc disorder (M50.-)").
_COMBINATION_RE = re.compile(r"\b(with|due to|in)\b", re.I)


def excludes1(src: Sources, codes: list[str], entries: dict[str, icd.IcdEntry]) -> list[Excludes1]:
    """Excludes1 pairs among the codes, once per unordered pair, with the combination code when
    the note itself names one: the excluded code then already says both conditions."""
    out = []
    for a, b in combinations(sorted(set(codes)), 2):
        for first, second in ((a, b), (b, a)):
            hit = _excludes1_note(first, second, entries)
            if hit is None:
                continue
            level, note = hit
            combo = []
            if _COMBINATION_RE.search(note.split("(")[0]):
                entry = entries.get(second)
                combo = [(second, entry.description if entry else "")]
            out.append(Excludes1(first, second, level, note, combo, src.icd.name))
            break
    return out


def _excludes1_note(code: str, other: str, entries: dict[str, icd.IcdEntry]) -> tuple[str, str] | None:
    for note in icd.inherited(code, entries, kinds=("excludes1",)):
        for item in note["notes"]:
            if any(icd.covers(ref, other) for ref in icd.references(item)):
                return note["from"], item
    return None


def seventh_options(code: str, seventh: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(with_7th(code, ch), meaning) for ch, meaning in seventh]


# --- code search --------------------------------------------------------------------------------
_SIDES = {"left": "left", "right": "right", "bilateral": "bilateral", "both": "bilateral"}
_SIDE_WORDS = re.compile(r"\b(left|right|bilateral|both)\b(\s+(side|eye|ear|knee|shoulder))?", re.I)
# The encounter a 7th character names (chapter 19's A/D/S convention).
_ENCOUNTER = (("A", re.compile(r"\b(initial|first|new)\b", re.I)),
              ("D", re.compile(r"\b(subsequent|follow[- ]?up|f/u|routine healing)\b", re.I)),
              ("S", re.compile(r"\b(sequela|late effect)\b", re.I)))
# Clinical abbreviations coders write, spelled out for the search (the tabular spells them out).
ABBREVIATIONS = {
    "fx": "fracture", "dm": "diabetes mellitus", "dm2": "type 2 diabetes mellitus", "t2dm": "type 2 diabetes mellitus",
    "dm1": "type 1 diabetes mellitus", "htn": "hypertension", "ckd": "chronic kidney disease",
    "copd": "chronic obstructive pulmonary disease", "chf": "congestive heart failure", "cad": "coronary artery disease",
    "luts": "lower urinary tract symptoms", "bph": "benign prostatic hyperplasia", "oa": "osteoarthritis",
    "ra": "rheumatoid arthritis", "uti": "urinary tract infection", "afib": "atrial fibrillation",
    "mi": "myocardial infarction", "gerd": "gastro-esophageal reflux disease", "hfpef": "heart failure with preserved ejection fraction",
    "hfref": "heart failure with reduced ejection fraction", "lbp": "low back pain", "sob": "shortness of breath",
}


# Anatomical words coders write and the tabular's own words for them.
TERMS = {"distal": "lower end", "proximal": "upper end", "decompensated": "exacerbation"}


def _expand(query: str) -> str:
    return re.sub(r"\b[a-z0-9]+\b", lambda m: ABBREVIATIONS.get(m.group(0).lower(), m.group(0)), query, flags=re.I)


def _concepts(query: str) -> list[set[str]]:
    """Each word the question uses, with the words that also say it (an abbreviation's
    spelling out, the tabular's term): a concept is covered when any of its forms is."""
    out = []
    for w in search_backend.words(_SIDE_WORDS.sub(" ", query)):
        if w in ("side", "visit", "first", "initial", "subsequent", "new"):
            continue
        forms = {w}
        for table in (ABBREVIATIONS, TERMS):
            if w in table:
                forms.add(" ".join(search_backend.words(table[w])))
        out.append(forms)
    return out


def _covers(forms: set[str], have: set[str]) -> float:
    best = 0.0
    for form in forms:
        parts = form.split()
        if all(p in have for p in parts):
            return 1.0
        if len(parts) == 1 and any(h.startswith(parts[0][:5]) for h in have if len(parts[0]) >= 5):
            best = 0.5
    return best


def candidates(session: Any, query: str, system: str | None, limit: int = 5, context: str = "") -> list[Candidate]:
    """Ranked codes for a description, with specificity applied: a header is replaced by its
    billable codes, a side named (left/right/bilateral) keeps that side's codes, the encounter
    named ("first visit") picks the 7th character, and codes whose words the question does not
    use rank below those that cover it exactly.  ``context``: the rest of the question, whose
    words break ties ("Kimmelstiel-Wilson disease" in "a type 2 diabetic")."""
    from consultant.codes.api import search
    from consultant.codes.sources import open_sources

    side = next((_SIDES[m.group(1).lower()] for m in _SIDE_WORDS.finditer(query)), None)
    concepts = _concepts(query)
    extra_words = set(search_backend.words(context)) - {w for forms in concepts for f in forms for w in f.split()}
    plain = _expand(_SIDE_WORDS.sub(" ", query))
    encounter = next((ch for ch, rx in _ENCOUNTER if rx.search(query)), None)
    hits = search(session, plain, system=system, limit=25)
    if plain.lower() != query.lower():
        hits += search(session, _SIDE_WORDS.sub(" ", query), system=system, limit=15)
    pool: dict[str, tuple[str, str, Any, str | None, str]] = {}
    with open_sources(session) as src:
        for h in hits:
            code, sys_name = str(h["code"]), str(h["system"])
            matched = str(h.get("matched") or h.get("description") or "")
            if sys_name == "ICD-10-CM" and h.get("billable") is False:
                for child, desc in billable_descendants(src, code)[:80]:
                    pool.setdefault(child, (sys_name, desc, True, h.get("source"), f"{matched} {desc}"))
            if code in pool:  # matched again by another term (an inclusion term): keep both
                sysn, desc, billable, source, before = pool[code]
                pool[code] = (sysn, desc, billable, source, f"{before} {matched}" if matched not in before else before)
            else:
                pool[code] = (sys_name, str(h.get("description") or ""), h.get("billable"), h.get("source"), matched)
        icd_codes = [c for c, (sysn, *_r) in pool.items() if sysn == "ICD-10-CM"]
        entries = icd.with_ancestors(src, icd_codes) if icd_codes else {}
    ranked = []
    for i, (code, (sys_name, desc, billable, source, matched)) in enumerate(pool.items()):
        base = code[:-1] if len(code) == 8 and code[-1].isalpha() and code[:-1] in entries else None
        if base is not None and encounter is not None and code[-1] != encounter:
            continue  # a 7th character for another encounter than the one described
        named = {v for k, v in _SIDES.items() if re.search(rf"\b{k}\b", desc, re.I)}
        if side is not None and named and side not in named:
            continue
        have = set(search_backend.words(f"{desc} {matched}"))
        covered = sum(_covers(forms, have) for forms in concepts)
        said = set(search_backend.words(matched)) | set(search_backend.words(desc))
        wanted = {w for forms in concepts for f in forms for w in f.split()}
        extra = len(set(search_backend.words(matched)) - wanted - set(_SIDES) - {"unspecified", "nos", "site"})
        score = covered - 0.15 * extra + 0.2 * len(extra_words & said)
        if billable is False:
            score -= 1.0
        if re.search(r"\bunspecified\b", matched, re.I) and not re.search(r"\bunspecified\b", query, re.I):
            score -= 0.4
        if side is not None and side in named:
            score += 0.5
        entry = entries.get(code)
        if base is None and entry is not None and entry.needs_7th:
            seven = icd.seven_chr_def(code, entries)
            if encounter in seven:
                code, desc, billable = with_7th(code, encounter), f"{desc}, {seven[encounter]}", True  # type: ignore[index]
            else:
                score -= 0.3  # the 7th character is the consultant's to choose
        elif base is not None and encounter is None:
            score -= 0.3
        ranked.append((-score, i, Candidate(sys_name, code, desc or None, source, billable)))
    ranked.sort(key=lambda t: (t[0], t[1]))
    out: list[Candidate] = []
    for _, _, c in ranked:
        if all(c.code != o.code for o in out):
            out.append(c)
        if len(out) >= limit:
            break
    return out
