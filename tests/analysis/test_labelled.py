"""The analysis pipeline graded on the labelled mails (tests/analysis/labelled) against the values a
separate script computes from the CMS files directly (``labelled/grade.py``, which never imports
``consultant``).

Per category it reports code-set exactness, findings recall and precision, question types, and
the share of stated numbers (units, MUE, PTP indicator, add-on primaries, header children, 7th
characters, search answers) that the draft states and gets right.  ``CC_LABELLED_REPORT=FILE``
writes the table and every miss as JSON.  The test fails when a figure falls below the floor
recorded in FLOORS (what the pipeline reached when the floor was last raised): the set is meant
to be hard, and every miss is printed with its case id and why.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from consultant.analysis import Analysis, analyse
from tests.analysis.labelled import grade

SYSTEM_LABEL = {"CPT": "CPT", "HCPCS": "HCPCS", "ICD-10-CM": "ICD", "MODIFIER": "MODIFIER"}
# The share reached per measure over the whole set; a regression below it fails the test.
# Reached on 2026-12-01 over 206 mails: codes 100%, findings recall 100% and precision 100% (no
# false finding), numbers 100% (551), question types 67%.  The floors leave room for a few new,
# harder mails; a bigger drop is a regression.
FLOORS = {"codes_exact": 0.98, "findings_recall": 0.98, "findings_precision": 0.98, "numbers_right": 0.98,
          "questions_exact": 0.60}


def product_codes(result: Analysis) -> set[str]:
    return {f"{SYSTEM_LABEL[str(c.system)]}:{c.code}" for c in result.codes}


def product_findings(result: Analysis) -> set[str]:
    return {f"{f['kind']}:{','.join(str(c) for c in f['codes'])}" for f in result.findings
            if f["kind"] != "release_missing"}


def _state_ptp(out: dict[str, Any], decisions: list[Any]) -> None:
    """A pair's indicator under col1|col2, or "none" under the sorted pair."""
    for d in decisions:
        p = d.pair
        if p.modifier_indicator is not None:
            out.setdefault(f"ptp:{p.column_1}|{p.column_2}", [p.modifier_indicator])
        else:
            a, b = sorted((p.a, p.b))
            out.setdefault(f"ptp:{a}|{b}", "none")


def stated_numbers(result: Analysis) -> dict[str, Any]:
    """The numbers the draft states, keyed as the grader keys them (first statement wins)."""
    out: dict[str, Any] = {}
    _state_ptp(out, result.other_pairs)
    for d in result.other_mue:
        if d.mue is not None:
            out.setdefault(f"mue:{d.code}", [d.mue.value, d.mue.mai])
    for a in result.other_addons:
        out.setdefault(f"addon_primaries:{a.code}", sorted(a.primaries))
    for part in result.parts:
        for u in part.units:
            if u.calc is not None:
                out.setdefault(f"units:{u.code}", u.calc.units)
                if u.calc.wasted_units:
                    out.setdefault(f"waste_units:{u.code}", u.calc.wasted_units)
            if u.mue is not None:
                out.setdefault(f"mue:{u.code}", [u.mue.value, u.mue.mai])
        for d in part.mue:
            if d.mue is not None:
                out.setdefault(f"mue:{d.code}", [d.mue.value, d.mue.mai])
        _state_ptp(out, part.ptp)
        for a in part.addons:
            out.setdefault(f"addon_primaries:{a.code}", sorted(a.primaries))
        for f in part.icd:
            if f.header:
                out.setdefault(f"children:{f.code}", (f.children_total, [c for c, _ in f.children]))
            if f.needs_7th:
                out.setdefault(f"seventh:{f.code}", sorted({code[-1] for code, _ in f.seventh}))
        if part.candidates:
            out.setdefault(f"search:{part.question.search_query}", part.candidates[0].code)
    return out


def number_right(key: str, expected: Any, stated: dict[str, Any], result: Analysis) -> tuple[bool, str]:
    if key.startswith("search:"):
        text = key.split(":", 1)[1].lower()
        for part in result.parts:
            if part.candidates and (text in part.question.text.lower() or part.question.search_query.lower() in text):
                top = part.candidates[0].code
                return top in expected, f"top candidate {top}"
        return False, "no code-search part answered it"
    if key not in stated:
        return False, "not stated"
    got = stated[key]
    if key.startswith("children:"):
        total, listed = got
        return total == len(expected) and listed == expected[:len(listed)], f"{total} children, first {listed[:5]}"
    return got == expected, f"stated {got}"


def test_labelled_set(labelled_factory: sessionmaker[Session], graded: dict[str, dict[str, Any]]) -> None:
    cases = grade.load_cases()
    assert len(cases) >= int(os.environ.get("CC_LABELLED_MIN", "150")), f"the labelled set has {len(cases)} mails; the issue asks for at least 150"
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    misses: list[dict[str, Any]] = []
    with labelled_factory() as session:
        for cid, case in sorted(cases.items()):
            exp = graded[cid]
            result = analyse(session, case["body"], subject=case["subject"])
            cat = exp["category"]
            row = per[cat]
            row["mails"] += 1
            got_codes, want_codes = product_codes(result), set(exp["codes"])
            row["codes_exact"] += got_codes == want_codes
            if got_codes != want_codes:
                misses.append({"id": cid, "what": "codes", "missing": sorted(want_codes - got_codes),
                               "extra": sorted(got_codes - want_codes)})
            got_f, want_f = product_findings(result), set(exp["findings"])
            row["findings_expected"] += len(want_f)
            row["findings_found"] += len(got_f & want_f)
            row["findings_reported"] += len(got_f)
            row["false_findings"] += len(got_f - want_f)
            if got_f != want_f:
                misses.append({"id": cid, "what": "findings", "missing": sorted(want_f - got_f),
                               "extra": sorted(got_f - want_f)})
            qtypes = [str(p.question.qtype) for p in result.parts]
            row["questions_exact"] += qtypes == exp["questions"]
            if qtypes != exp["questions"]:
                misses.append({"id": cid, "what": "questions", "want": exp["questions"], "got": qtypes})
            stated = stated_numbers(result)
            for key, value in exp["numbers"].items():
                ok, why = number_right(key, value, stated, result)
                row["numbers"] += 1
                row["numbers_right"] += ok
                if not ok:
                    misses.append({"id": cid, "what": "number", "key": key, "want": value, "why": why})
    table = _table(per)
    print("\n" + _format(table))
    for m in misses:
        print("MISS", json.dumps(m))
    if os.environ.get("CC_LABELLED_REPORT"):
        Path(os.environ["CC_LABELLED_REPORT"]).write_text(json.dumps({"table": table, "misses": misses}, indent=1))
    total = table["all"]
    for measure, floor in FLOORS.items():
        assert total[measure] >= floor, f"{measure} {total[measure]:.3f} fell below {floor}"


def _table(per: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    rows = dict(per)
    rows["all"] = defaultdict(float)
    for row in per.values():
        for k, v in row.items():
            rows["all"][k] += v
    out = {}
    for cat, r in rows.items():
        out[cat] = {
            "mails": r["mails"],
            "codes_exact": r["codes_exact"] / r["mails"],
            "questions_exact": r["questions_exact"] / r["mails"],
            "findings_recall": r["findings_found"] / r["findings_expected"] if r["findings_expected"] else 1.0,
            "findings_precision": (r["findings_found"] / r["findings_reported"]) if r["findings_reported"] else 1.0,
            "false_findings": r["false_findings"],
            "numbers": r["numbers"],
            "numbers_right": r["numbers_right"] / r["numbers"] if r["numbers"] else 1.0,
        }
    return out


def _format(table: dict[str, dict[str, float]]) -> str:
    head = f"{'category':<24}{'mails':>6}{'codes':>8}{'types':>8}{'recall':>8}{'prec.':>8}{'false':>7}{'nums':>6}{'right':>8}"
    lines = [head, "-" * len(head)]
    for cat in sorted(table, key=lambda c: (c == "all", c)):
        r = table[cat]
        lines.append(f"{cat:<24}{r['mails']:>6.0f}{r['codes_exact']:>8.0%}{r['questions_exact']:>8.0%}"
                     f"{r['findings_recall']:>8.0%}{r['findings_precision']:>8.0%}{r['false_findings']:>7.0f}"
                     f"{r['numbers']:>6.0f}{r['numbers_right']:>8.0%}")
    return "\n".join(lines)
