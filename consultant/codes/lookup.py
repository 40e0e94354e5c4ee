"""Everything known about one code, each fact with the release it comes from (``codes show``)."""

from __future__ import annotations

import json
import re
import threading
from datetime import date
from typing import Any

from cachetools import LRUCache
from sqlalchemy.orm import Session

from consultant.codes import extras, icd
from consultant.codes.formats import CPT_RE, HCPCS_RE
from consultant.codes.meanings import AOC_TYPE, HCPCS_COVERAGE, HCPCS_PRICING, MAI, PTP_MODIFIER
from consultant.codes.models import KIND_AOC, KIND_CPT, KIND_HCPCS, KIND_MUE, KIND_PTP
from consultant.codes.sources import Sources, open_sources
from consultant.codes.units import billing_unit

MODIFIER_RE = re.compile(r"^[A-Z0-9]{2}$")
CPT_NOTICE = (
    "CPT® codes and descriptions are copyright American Medical Association. All rights "
    "reserved. CPT is a registered trademark of the American Medical Association."
)
CPT_NO_DESCRIPTOR = (
    "CPT descriptor not shown: CPT text is AMA-copyrighted and no licensed descriptor file is "
    "loaded (caseconsultant codes import cpt-licensed FILE)."
)
PTP_LIST_LIMIT = 50
CACHE_SIZE = 4096
# cachetools' LRU (the least recently used entry goes first); it is not thread-safe by itself.
_cache: LRUCache[tuple[Any, ...], str] = LRUCache(maxsize=CACHE_SIZE)
_cache_lock = threading.Lock()
def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def hcpcs_facts(src: Sources, code: str, modifier: bool = False) -> dict[str, Any] | None:
    rel = src.get(KIND_HCPCS)
    if rel is None:
        return None
    rows = src.rows("SELECT * FROM codes_hcpcs WHERE release_id = :r AND code = :c AND is_modifier = :m",
                    r=rel.id, c=code, m=modifier)
    if not rows:
        return None
    row = rows[0]._mapping
    fields = row["fields"]
    if isinstance(fields, str):
        fields = json.loads(fields)
    facts: dict[str, Any] = {
        "code": code,
        "system": "MODIFIER" if modifier else "HCPCS",
        "description": row["long_description"],
        "short_description": row["short_description"],
        "source": rel.name,
        "coverage": {"code": row["coverage"], "meaning": HCPCS_COVERAGE.get(row["coverage"] or "")},
        "add_date": _iso(row["add_date"]),
        "action_effective_date": _iso(row["action_effective_date"]),
        "term_date": _iso(row["term_date"]),
        "terminated": row["term_date"] is not None,
        "action_code": row["action_code"],
    }
    if not modifier:
        facts["pricing"] = [{"code": p, "meaning": HCPCS_PRICING.get(p)} for p in fields.pop("pricing_indicators", [])]
        unit = billing_unit(row["long_description"])
        facts["billing_unit"] = unit.as_json() if unit else None
    facts["fields"] = fields
    extras.hcpcs(src, facts, modifier)  # processing note, NOC, corrections, annual update
    return facts


def mue_facts(src: Sources, code: str) -> list[dict[str, Any]]:
    out = []
    for rel in src.of_kind(KIND_MUE):
        for row in src.rows("SELECT value, mai, rationale FROM codes_mue WHERE release_id = :r AND code = :c",
                            r=rel.id, c=code):
            out.append({"value": row.value, "mai": row.mai, "mai_meaning": MAI.get(row.mai),
                        "rationale": row.rationale, "variant": rel.variant, "source": rel.name})
    return out


def aoc_facts(src: Sources, code: str) -> dict[str, Any] | None:
    rel = src.get(KIND_AOC)
    if rel is None:
        return None
    # Sorted here, not by ORDER BY: SQLite would pick the primary_code index and scan it all.
    rows = sorted(src.rows("SELECT primary_code, edit_type, deletion_date, primary_deletion_date, note "
                           "FROM codes_aoc WHERE release_id = :r AND addon_code = :c", r=rel.id, c=code),
                  key=lambda r: r.primary_code)
    as_primary = src.rows("SELECT count(*) AS n FROM codes_aoc WHERE release_id = :r AND primary_code = :c "
                          "AND deletion_date IS NULL", r=rel.id, c=code)[0].n
    if not rows and not as_primary:
        return None
    active = [r for r in rows if r.deletion_date is None]
    types = sorted({r.edit_type for r in active or rows})
    return {
        "is_addon": bool(rows),
        "edit_types": [{"type": t, "meaning": AOC_TYPE[t]} for t in types],
        "primaries": [r.primary_code for r in active if r.primary_code != "CCCCC"],
        "contractor_defined": any(r.primary_code == "CCCCC" for r in active),
        "notes": sorted({r.note for r in active if r.note}),
        "primary_of_addons": as_primary,
        "source": rel.name,
    }


# The rationale text is joined in (a dozen texts stored once), saving a query per lookup.
PTP_SELECT = ("SELECT p.*, r.text AS rationale FROM codes_ptp p "
              "LEFT JOIN codes_ptp_rationale r ON r.id = p.rationale_id")


def ptp_row(row: Any, rel_name: str) -> dict[str, Any]:
    return {
        "column_1": row.column_1,
        "column_2": row.column_2,
        "modifier_indicator": row.modifier_indicator,
        "modifier_meaning": PTP_MODIFIER.get(row.modifier_indicator),
        "effective_date": _iso(row.effective_date),
        "deletion_date": _iso(row.deletion_date),
        "prior_1996": row.prior_1996,
        "rationale": row.rationale,
        "source": rel_name,
    }


def ptp_facts(src: Sources, code: str, limit: int | None = PTP_LIST_LIMIT) -> list[dict[str, Any]]:
    """Edits in force today (no deletion date) with the code as column 1 and as column 2."""
    out = []
    for rel in src.of_kind(KIND_PTP):
        entry: dict[str, Any] = {"variant": rel.variant, "source": rel.name}
        # Ordered by the other column so each query reads its index in order (an ORDER BY the
        # index cannot serve made SQLite scan the whole release: ~400 ms per lookup).
        for side, col, other in (("as_column_1", "column_1", "column_2"),
                                 ("as_column_2", "column_2", "column_1")):
            total = src.rows(f"SELECT count(*) AS n FROM codes_ptp WHERE release_id = :r AND {col} = :c "
                             "AND deletion_date IS NULL AND modifier_indicator <> 9", r=rel.id, c=code)[0].n
            rows = src.rows(f"{PTP_SELECT} WHERE p.release_id = :r AND p.{col} = :c "
                            "AND p.deletion_date IS NULL AND p.modifier_indicator <> 9 "
                            f"ORDER BY p.{other} LIMIT :n", r=rel.id, c=code,
                            n=limit if limit is not None else total)
            entry[side] = {"in_force": total, "shown": len(rows),
                           "edits": [ptp_row(r, rel.name) for r in rows]}
        out.append(entry)
    return out


def icd_facts(src: Sources, code: str) -> dict[str, Any] | None:
    entries = icd.with_ancestors(src, [code])
    entry = entries.get(code)
    if entry is None:
        return None
    facts: dict[str, Any] = {
        "code": code, "system": "ICD-10-CM", "description": entry.description,
        "billable": entry.billable, "header": entry.header, "needs_7th_character": entry.needs_7th,
        "source": src.icd.name,
        "notes": icd.inherited(code, entries),
        "parents": [{"code": p, "description": entries[p].description} for p in icd.prefixes(code) if p in entries],
    }
    for key, block in entries.items():
        if block.first is not None and block.covers(code):
            level, _, name = key.partition(" ")
            facts[level] = {"name": name, "range": f"{block.first}-{block.last}", "description": block.description}
    seven = icd.seven_chr_def(code, entries)
    if entry.needs_7th or seven:
        facts["seven_chr_def"] = seven
    if entry.header or entry.needs_7th:
        facts["children"] = [{"code": c.code, "description": c.description, "billable": c.billable}
                             for c in icd.children(src, code)]
    return facts


NO_HCPCS_RELEASE = "No HCPCS release is loaded (caseconsultant codes import hcpcs FILE)."


def procedure_facts(src: Sources, code: str, system: str, hcpcs: dict[str, Any] | None = None,
                    ptp_limit: int | None = PTP_LIST_LIMIT) -> dict[str, Any]:
    """CPT/HCPCS: descriptor (HCPCS or licensed CPT), MUE, add-on, PTP."""
    facts: dict[str, Any]
    if system == "HCPCS":
        facts = hcpcs or {"code": code, "system": "HCPCS", "description": None, "source": None,
                          "note": NO_HCPCS_RELEASE}
    else:
        facts = {"code": code, "system": "CPT", "description": None, "source": None}
        rel = src.get(KIND_CPT)
        if rel is not None:
            rows = src.rows("SELECT descriptor FROM codes_cpt WHERE release_id = :r AND code = :c", r=rel.id, c=code)
            if rows:
                facts.update(description=rows[0].descriptor, source=rel.name, copyright=CPT_NOTICE)
        if facts["description"] is None:
            facts["note"] = CPT_NO_DESCRIPTOR
    facts["mue"] = mue_facts(src, code)
    facts["addon"] = aoc_facts(src, code)
    facts["ptp"] = ptp_facts(src, code, ptp_limit)
    extras.ioce(src, facts["ptp"])  # the I/OCE version each hospital edit took effect in
    return facts


def facts_for(src: Sources, raw: str, ptp_limit: int | None = PTP_LIST_LIMIT) -> dict[str, Any] | None:
    """The facts for ``raw`` in whichever system knows it; None if no system does.

    A letter + 4 digits is HCPCS when the HCPCS release has it; with no HCPCS release loaded it
    is HCPCS by format (noting an ICD-10-CM reading); otherwise ICD-10-CM without its dot (E1122).
    """
    code = raw.strip().upper().lstrip("-")
    if CPT_RE.match(code):
        return procedure_facts(src, code, "CPT", ptp_limit=ptp_limit)
    if HCPCS_RE.match(code):
        found = hcpcs_facts(src, code)
        if found is not None:
            return procedure_facts(src, code, "HCPCS", found, ptp_limit)
        if src.get(KIND_HCPCS) is None:
            facts = procedure_facts(src, code, "HCPCS", ptp_limit=ptp_limit)
            dotted = icd.normalise(code)
            if dotted and icd.fetch(src, [dotted]):
                facts["note"] += f" Read with a dot, {dotted} is an ICD-10-CM code."
            return facts
    dotted = icd.normalise(code)
    if dotted:
        found_icd = icd_facts(src, dotted)
        if found_icd is not None:
            return found_icd
    if MODIFIER_RE.match(code):
        found_mod = hcpcs_facts(src, code, modifier=True)
        if found_mod is not None or not code.isdigit():
            return found_mod
        return {"code": code, "system": "MODIFIER", "description": None, "source": None,
                "note": "CPT (numeric) modifiers are AMA content; no descriptor is shown."}
    return None


def lookup(session: Session, code: str, *, ptp_limit: int | None = PTP_LIST_LIMIT) -> dict[str, Any] | None:
    """The facts ``codes show --json`` prints for ``code``, or None when no release knows it.

    PTP edits in force are listed up to ``ptp_limit`` per direction (None: all; the counts are
    always complete) -- 99214 alone is column 2 of thousands of edits.
    """
    with open_sources(session) as src:
        # Releases are immutable once imported (a re-import makes a new release id), so the
        # facts for a code are cached per process under the ids of the releases in force.
        # The database is part of the key: one process may serve several (the tests, the bench),
        # and release ids restart at 1 in each.
        key = (code.strip().upper(), ptp_limit, str(src.connection.engine.url), src.icd.name,
               tuple(sorted((k, r.id, r.sha256) for k, r in src.releases.items())))
        # Kept as JSON text and decoded per hit: callers may change what they get, and decoding
        # is several times faster than copy.deepcopy (the facts are JSON data: `codes show --json`).
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return json.loads(hit)  # type: ignore[no-any-return]
        facts = facts_for(src, code, ptp_limit)
        with _cache_lock:
            _cache[key] = json.dumps(facts)
        return facts
