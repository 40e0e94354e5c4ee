"""Facts from the companion releases: HCPCS processing notes, NOC list, corrections and annual
transaction report, and the I/OCE version table.  Each adds to the facts ``lookup`` builds and
cites its own release; with a companion release absent its query is not run at all.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from consultant.codes.meanings import NOC_CLAIM
from consultant.codes.memo import per_release
from consultant.codes.models import (
    KIND_HCPCS,
    KIND_HCPCS_CORRECTIONS,
    KIND_HCPCS_NOC,
    KIND_HCPCS_NOTES,
    KIND_HCPCS_TRANSACTIONS,
    KIND_IOCE_VERSIONS,
)
from consultant.codes.releases import ReleaseRef
from consultant.codes.sources import Sources


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date) else (str(value) if value else None)


def _day(value: Any) -> date | None:
    # SQLite hands dates back as ISO text through a Core text() query.
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _by_code(src: Sources, rel: ReleaseRef, sql: str) -> dict[str, list[Any]]:
    """A small companion table (NOC: 166 rows, corrections: a handful) by code, read once per
    process and release (``memo``) instead of one query per code looked up."""
    def load() -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for row in src.rows(sql, r=rel.id):
            out.setdefault(row.code, []).append(row)
        return out

    return per_release(src.session, rel, sql, load)


def hcpcs(src: Sources, facts: dict[str, Any], modifier: bool) -> None:
    """Add processing note, NOC status, corrections and annual-update action to HCPCS ``facts``."""
    code = facts["code"]
    if not modifier:
        _processing_note(src, facts)
        _noc(src, facts, code)
    _corrections(src, facts, code)
    _transactions(src, facts, code, modifier)


def _processing_note(src: Sources, facts: dict[str, Any]) -> None:
    rel = src.get(KIND_HCPCS_NOTES)
    number = (facts.get("fields") or {}).get("processing_note")
    if rel is None or not number:
        return
    rows = src.rows("SELECT text FROM codes_hcpcs_notes WHERE release_id = :r AND number = :n",
                    r=rel.id, n=number)
    facts["processing_note"] = {"number": number, "text": rows[0].text if rows else None,
                                "source": rel.name}


def _noc(src: Sources, facts: dict[str, Any], code: str) -> None:
    rel = src.get(KIND_HCPCS_NOC)
    if rel is None:
        return
    rows = _by_code(src, rel, "SELECT code, long_description, add_date, term_date FROM codes_hcpcs_noc "
                              "WHERE release_id = :r").get(code, [])
    if rows:
        facts["noc"] = {"claim_requirement": NOC_CLAIM, "add_date": _iso(rows[0].add_date),
                        "term_date": _iso(rows[0].term_date), "source": rel.name}


def _corrections(src: Sources, facts: dict[str, Any], code: str) -> None:
    rel = src.get(KIND_HCPCS_CORRECTIONS)
    if rel is None:
        return
    rows = _by_code(src, rel, "SELECT * FROM codes_hcpcs_corrections WHERE release_id = :r").get(code, [])
    if not rows:
        return
    hcpcs_rel = src.get(KIND_HCPCS)
    # Corrections are to one quarter's file: applied only to that quarter's release.
    applies = hcpcs_rel is not None and hcpcs_rel.effective_date == rel.effective_date
    out = []
    for row in sorted(rows, key=lambda r: r.row):
        fields = row.fields if isinstance(row.fields, dict) else json.loads(row.fields or "{}")
        out.append({"action": row.action, "short_description": row.short_description,
                    "long_description": row.long_description,
                    "effective_date": _iso(row.effective_date), "fields": fields,
                    "applies_to_hcpcs_release": applies, "source": rel.name})
        for key, column in (("description", "long_description"), ("short_description", "short_description")):
            if applies and getattr(row, column):
                facts.setdefault(f"{key}_as_published", facts.get(key))
                facts[key] = getattr(row, column)
                facts[f"{key}_corrected_by"] = rel.name
    if facts.get("description_corrected_by") and "billing_unit" in facts:
        from consultant.codes.units import billing_unit

        unit = billing_unit(facts["description"])  # the unit the correction states
        facts["billing_unit"] = unit.as_json() if unit else None
    facts["corrections"] = out


def _transactions(src: Sources, facts: dict[str, Any], code: str, modifier: bool) -> None:
    rel = src.get(KIND_HCPCS_TRANSACTIONS)
    if rel is None:
        return
    key: dict[str, str] = per_release(src.session, rel, "hcpcs action codes", lambda: {
        r.code: r.meaning
        for r in src.rows("SELECT code, meaning FROM codes_hcpcs_action_codes WHERE release_id = :r", r=rel.id)})
    if facts.get("action_code"):
        facts["action_meaning"] = {"meaning": key.get(facts["action_code"]), "source": rel.name}
    rows = src.rows("SELECT action, action_code FROM codes_hcpcs_transactions "
                    "WHERE release_id = :r AND code = :c AND is_modifier = :m",
                    r=rel.id, c=code, m=modifier)
    if rows:
        row = rows[0]
        facts["annual_update"] = {"action": row.action, "action_code": row.action_code,
                                  "meaning": key.get(row.action_code or ""),
                                  "effective_date": _iso(rel.effective_date), "source": rel.name}


def ioce(src: Sources, ptp_blocks: list[dict[str, Any]]) -> None:
    """Name the I/OCE version each listed hospital PTP edit took effect in.

    The I/OCE-derived hospital table dates an edit by the first day of its first I/OCE version,
    and its earliest date means "already in force when the table begins".  An edit effective
    before the first version gets nothing (the version table cannot say).
    """
    rel = src.get(KIND_IOCE_VERSIONS)
    hospital = [b for b in ptp_blocks if b.get("variant") == "hospital"]
    if rel is None or not hospital:
        return
    versions = [(_day(r.date_started), _day(r.date_ended), r.version) for r in src.rows(
        "SELECT version, date_started, date_ended FROM codes_ioce_versions "
        "WHERE release_id = :r ORDER BY seq", r=rel.id)]
    if not versions:
        return
    first_day = versions[0][0]
    for block in hospital:
        for side in ("as_column_1", "as_column_2"):
            for edit in block.get(side, {}).get("edits", []):
                day = _day(edit.get("effective_date"))
                if day is None:
                    continue
                for start, end, version in versions:
                    if start is not None and end is not None and start <= day <= end:
                        edit["ioce"] = {"version": version, "version_started": start.isoformat(),
                                        "earliest_in_table": start == first_day, "source": rel.name}
                        break
