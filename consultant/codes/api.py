"""The code knowledge base's public surface: resolving a mail's code mentions, lookup, search.

    resolve(src, ext) -> Resolved        (used once per mail by ``consultant.analysis``)
    lookup(session, code) -> dict | None (what ``codes show --json`` prints)
    search(session, text, system=None, limit=10) -> list[dict]

A resolved code is {"system", "code", "description", "source", ...}; system is one of "CPT",
"HCPCS", "ICD-10-CM", "MODIFIER"; extras: ICD-10-CM "billable", "header",
"needs_7th_character"; HCPCS "billing_unit", "terminated", "term_date", "cross_references";
CPT/HCPCS "modifiers"; licensed CPT "copyright".  Nothing found in a mail raises: unknown codes
become ``unknown_code`` findings.  CPT codes carry no descriptor unless the operator imported a
licensed file (AMA copyright).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from consultant.codes import icd
from consultant.codes import search as search_backend
from consultant.codes.extract import Extraction, Mention
from consultant.codes.formats import HCPCS_RE
from consultant.codes.lookup import CPT_NOTICE, NO_HCPCS_RELEASE, hcpcs_facts
from consultant.codes.lookup import lookup as _lookup
from consultant.codes.models import KIND_AOC, KIND_CPT, KIND_HCPCS, KIND_ICD10CM, KIND_MUE, KIND_PTP
from consultant.codes.sources import Sources, open_sources

lookup = _lookup
# What a mistyped code still looks like: an ICD-10-CM code (letter, digit, digit or A/B, then
# digits or letters) or a HCPCS code (letter and four digits).
_CODE_SHAPED = re.compile(r"[A-TV-Z]\d[0-9AB][0-9A-Z]*\d[0-9A-Z]*|[A-TV-Z]\d[0-9AB]\d*|[A-V]\d{4}")


def finding(kind: str, codes: list[str], detail: str, source: str | None, **numbers: Any) -> dict[str, Any]:
    """A finding as stored on a case: kind, codes, its wording, its release, and its numbers."""
    return {"kind": kind, "codes": codes, "detail": detail, "source": source, **numbers}


@dataclass
class Resolved:
    codes: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    hcpcs: list[dict[str, Any]] = field(default_factory=list)  # full facts of the HCPCS codes found
    # mention raw text (upper-case) -> the resolved code it stands for ("E1122" -> "E11.22")
    by_raw: dict[str, str] = field(default_factory=dict)


def resolve(src: Sources, ext: Extraction) -> Resolved:
    """Turn the mentions into code entries checked against the data."""
    result = Resolved()
    result.hcpcs = _resolve(src, ext, result)
    _modifier_entries(src, ext, result)
    return result


def _merge(mentions: list[Mention]) -> dict[str, Mention]:
    """One mention per code (first position), modifiers merged from every mention."""
    merged: dict[str, Mention] = {}
    for m in mentions:
        key = m.code
        if key in merged:
            merged[key].modifiers += [x for x in m.modifiers if x not in merged[key].modifiers]
            merged[key].hint = merged[key].hint or m.hint
        else:
            merged[key] = Mention(m.raw, m.kind, m.start, m.end, list(m.modifiers), hint=m.hint)
    return merged


def _resolve(src: Sources, ext: Extraction, result: Resolved) -> list[dict[str, Any]]:
    """Turn mentions into code entries (or unknown_code / release_missing findings)."""
    merged = _merge(ext.mentions)
    hcpcs_rel = src.get(KIND_HCPCS)
    icd_wanted: dict[str, Mention] = {}
    hcpcs_found: list[dict[str, Any]] = []
    by_format: list[str] = []
    for m in merged.values():
        if m.kind == "malformed":
            result.findings.append(finding("unknown_code", [m.raw], f"{m.raw} has no code's length.", None))
    cpts = [m for m in merged.values() if m.kind == "cpt"]
    cpt_text = _cpt_descriptors(src, [m.code for m in cpts])
    known = _cpt_known(src, [m.code for m in cpts])
    for m in cpts:
        if known is not None and m.code not in known and m.code not in cpt_text:
            # No CMS table names it (MUE, add-on, PTP): CPT numbers are checked there, as no CPT
            # file is shipped.
            tables = ", ".join(r.name for r in known_sources(src))
            result.findings.append(finding("unknown_code", [m.raw], f"{m.raw} is in none of {tables}.", tables))
            continue
        entry: dict[str, Any] = {"system": "CPT", "code": m.code, "description": None, "source": None,
                                 "modifiers": m.modifiers}
        if m.code in cpt_text:
            entry.update(description=cpt_text[m.code], source=src.get(KIND_CPT).name,  # type: ignore[union-attr]
                         copyright=CPT_NOTICE)
        result.codes.append(entry)
        result.by_raw[m.code] = m.code
    for m in merged.values():
        if m.kind == "cpt":
            continue
        if m.kind == "alnum" and HCPCS_RE.match(m.code):
            facts = hcpcs_facts(src, m.code) if hcpcs_rel else None
            if facts is not None:
                hcpcs_found.append(facts)
                result.codes.append({
                    "system": "HCPCS", "code": m.code, "description": facts["description"],
                    "source": facts["source"], "billing_unit": facts["billing_unit"],
                    "terminated": facts["terminated"], "term_date": facts["term_date"],
                    "cross_references": [x for x in facts["fields"].get("cross_references") or [] if x],
                    "modifiers": m.modifiers,
                })
                result.by_raw[m.code] = m.code
                continue
            if hcpcs_rel is None:
                # No HCPCS data to tell J1100 (HCPCS) from J11.00 (ICD-10-CM): HCPCS by format.
                by_format.append(m.code)
                result.codes.append({"system": "HCPCS", "code": m.code, "description": None,
                                     "source": None, "modifiers": m.modifiers, "note": NO_HCPCS_RELEASE})
                result.by_raw[m.code] = m.code
                continue
        dotted = icd.normalise(m.code)
        if m.hint == "hcpcs" and not HCPCS_RE.match(m.code):
            # "how many units of J188?": meant as a HCPCS code, however ICD-10-CM-like it looks.
            result.findings.append(finding("unknown_code", [m.raw], f"{m.raw} is not a HCPCS Level II code.",
                                           hcpcs_rel.name if hcpcs_rel else None))
        elif dotted:
            icd_wanted.setdefault(dotted, m)
        elif m.kind == "icd":
            result.findings.append(finding("unknown_code", [m.raw], f"{m.raw} is not a code in {src.icd.name}.",
                                           src.icd.name))
    entries = icd.fetch(src, icd_wanted)
    for dotted, m in icd_wanted.items():
        entry_icd = entries.get(dotted)
        if entry_icd is not None:
            result.codes.append({
                "system": "ICD-10-CM", "code": dotted, "description": entry_icd.description,
                "source": src.icd.name, "billable": entry_icd.billable, "header": entry_icd.header,
                "needs_7th_character": entry_icd.needs_7th,
            })
            result.by_raw[m.code] = dotted
            result.by_raw[dotted] = dotted
        elif m.kind == "icd" or (len(m.code) >= 4 and m.raw.isupper() and _CODE_SHAPED.fullmatch(m.code)):
            # "J188", "E1199999": meant as codes, and none.  "D5NS", "T2DM" are abbreviations.
            looked = ([hcpcs_rel.name] if hcpcs_rel and HCPCS_RE.match(m.code) else []) + [src.icd.name]
            result.findings.append(finding(
                "unknown_code", [m.raw], f"{m.raw} is not a code in {' or '.join(looked)}.", looked[0]))
    if by_format:
        result.findings.append(finding(
            "release_missing", by_format,
            f"{', '.join(by_format)} look like HCPCS Level II codes, but no HCPCS release is loaded, "
            "so they cannot be verified or described.", None))
    return hcpcs_found


def known_sources(src: Sources) -> list[Any]:
    return [r for (kind, _), r in sorted(src.releases.items()) if kind in (KIND_MUE, KIND_AOC, KIND_PTP)]


def _cpt_known(src: Sources, codes: list[str]) -> set[str] | None:
    """The CPT numbers among ``codes`` that a loaded CMS table lists (None: none is loaded)."""
    rels = known_sources(src)
    if not rels:
        return None
    if not codes:
        return set()
    names = ", ".join(f":c{i}" for i in range(len(codes)))
    params = {f"c{i}": c for i, c in enumerate(codes)}
    ids = ", ".join(str(r.id) for r in rels)
    found = {r.code for r in src.rows(
        f"SELECT code FROM codes_mue WHERE release_id IN ({ids}) AND code IN ({names}) "
        f"UNION SELECT addon_code FROM codes_aoc WHERE release_id IN ({ids}) AND addon_code IN ({names}) "
        f"UNION SELECT primary_code FROM codes_aoc WHERE release_id IN ({ids}) AND primary_code IN ({names})", **params)}
    for code in set(codes) - found:
        if src.rows(f"SELECT 1 FROM codes_ptp WHERE release_id IN ({ids}) AND column_1 = :c LIMIT 1", c=code) or \
                src.rows(f"SELECT 1 FROM codes_ptp WHERE release_id IN ({ids}) AND column_2 = :c LIMIT 1", c=code):
            found.add(code)
    return found


def _cpt_descriptors(src: Sources, codes: list[str]) -> dict[str, str]:
    rel = src.get(KIND_CPT)
    if rel is None or not codes:
        return {}
    names = ", ".join(f":c{i}" for i in range(len(codes)))
    rows = src.session.execute(
        sql(f"SELECT code, descriptor FROM codes_cpt WHERE release_id = :r AND code IN ({names})"),
        {"r": rel.id, **{f"c{i}": c for i, c in enumerate(codes)}},
    )
    return {r.code: r.descriptor for r in rows}


def _modifier_entries(src: Sources, ext: Extraction, result: Resolved) -> None:
    seen: set[str] = set()
    for item in ext.modifiers:
        mod = str(item["modifier"])
        if mod in seen:
            continue
        seen.add(mod)
        facts = None if mod.isdigit() else hcpcs_facts(src, mod, modifier=True)
        entry: dict[str, Any] = {"system": "MODIFIER", "code": mod,
                                 "description": facts["description"] if facts else None,
                                 "source": facts["source"] if facts else None}
        if mod.isdigit():
            entry["note"] = "CPT modifier (AMA content; no descriptor shown)."
        result.codes.append(entry)


def search(session: Session, text: str, system: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
    """Ranked codes for free text, each with its descriptor and source release."""
    with open_sources(session) as src:
        kinds = {"ICD-10-CM": KIND_ICD10CM, "HCPCS": KIND_HCPCS, "MODIFIER": KIND_HCPCS, "CPT": KIND_CPT}
        main_ids = [r.id for (k, _), r in src.releases.items()
                    if k in (KIND_HCPCS, KIND_CPT, KIND_ICD10CM) and (system is None or kinds.get(system) == k)]
        hits = search_backend.candidates(src.session, text, main_ids, system)
        if src.icd_session is not src.session and system in (None, "ICD-10-CM"):
            hits += search_backend.candidates(src.icd_session, text, [src.icd.id], system)
        ranked = search_backend.rank(text, hits, limit)
        icd_entries = icd.fetch(src, [str(r["code"]) for r in ranked if r["system"] == "ICD-10-CM"])
        labels = {r.kind: r.name for r in src.releases.values()}
        cpt_text = _cpt_descriptors(src, [str(r["code"]) for r in ranked if r["system"] == "CPT"])
        for r in ranked:
            code = str(r["code"])
            if r["system"] == "ICD-10-CM":
                e = icd_entries.get(code)
                r.update(description=e.description if e else None, billable=e.billable if e else None,
                         needs_7th_character=e.needs_7th if e else None, source=src.icd.name)
            elif r["system"] == "CPT":
                r.update(description=cpt_text.get(code), source=labels.get(KIND_CPT), copyright=CPT_NOTICE)
            else:
                r.update(description=r["matched"] if r["field"] == "descriptor" else None,
                         source=labels.get(KIND_HCPCS))
        return ranked
