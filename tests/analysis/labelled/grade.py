#!/usr/bin/env python3
"""Expected values for the labelled mails, computed from the CMS files only.

Standalone on purpose: this script never imports ``consultant`` (the product must not grade
itself) and shares no code with it; it is written from the file layouts in
``shared/data/cms/SOURCES.md`` and the rules in ``shared/CODING-RULES.md``.  The label of a case
is what a coder reading the mail knows (codes, questions, doses, DOS); everything the data
decides (units, MUE, PTP indicator, add-on primaries, header children, 7th characters, findings)
is computed here (cmsdata.py reads the files).  README.md states the release choices.

    python tests/analysis/labelled/grade.py [--shared DIR] [--out FILE]

Importable: ``expected_all(shared_dir) -> {case id: expected}``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import itertools
import json
import os
import re
import sys
import time
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__:
    from . import cmsdata
else:  # run as a script: python tests/analysis/labelled/grade.py
    sys.path.insert(0, str(HERE))
    import cmsdata  # type: ignore[no-redef]

LabelError = cmsdata.LabelError
CASES = HERE / "cases"
REPO = HERE.parents[2]

CATEGORIES = {
    "bu": "bundling", "mo": "modifier", "um": "units_mue", "du": "drug_units", "ad": "addon",
    "ih": "icd_header", "sc": "seventh_character", "ex": "excludes1", "cs": "code_search",
    "cd": "code_definition", "lk": "lookalikes", "so": "subject_only", "mq": "multi_question",
    "nc": "no_codes_and_malformed",
}
QUESTIONS = {"bundling", "modifier", "units_mue", "drug_units", "addon", "diagnosis",
             "code_search", "code_definition", "other"}
# CPT (Level I) modifiers are AMA content and in no CMS file: only their numbers are listed, so
# a label like MODIFIER:25 can be checked.  Level II modifiers come from the HCPCS file.
CPT_MODIFIERS = {"22", "23", "24", "25", "26", "27", "32", "33", "47", "50", "51", "52", "53",
                 "54", "55", "56", "57", "58", "59", "62", "63", "66", "76", "77", "78", "79",
                 "80", "81", "82", "90", "91", "92", "93", "95", "96", "97", "99"}
FORMS = {"CPT": re.compile(r"\d{4}[0-9TFMU]"), "HCPCS": re.compile(r"[A-V]\d{4}"),
         "ICD": re.compile(r"[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?"),
         "MODIFIER": re.compile(r"[0-9A-Z]{2}")}
LABEL_KEYS = {"codes", "questions", "dos", "setting", "payer", "doses", "units", "search",
              "unknown"}


def find_shared(arg: str | None = None) -> Path:
    env = os.environ.get("CASECONSULTANT_SHARED")
    path = Path(arg) if arg else Path(env) if env else REPO.parent / "shared"
    if not (path / "data/cms").is_dir():
        raise FileNotFoundError(f"no CMS data under {path}/data/cms (use --shared or "
                                "$CASECONSULTANT_SHARED)")
    return path


def load_cases(folder: Path = CASES) -> dict[str, dict[str, Any]]:
    cases = {}
    for path in sorted(folder.glob("*.toml")):
        with path.open("rb") as f:
            case = tomllib.load(f)
        check_format(path, case)
        cases[case["id"]] = case
    return cases


def check_format(path: Path, case: dict[str, Any]) -> None:
    def fail(why: str) -> None:
        raise LabelError(f"{path.name}: {why}")

    prefix = case.get("id", "").split("-")[0]
    if case.get("id") != path.stem or CATEGORIES.get(prefix) != case.get("category"):
        fail("id must equal the file name and its prefix match the category")
    if not isinstance(case.get("subject"), str) or not isinstance(case.get("body"), str):
        fail("subject and body are required strings")
    label = case.get("label", {})
    if set(label) - LABEL_KEYS:
        fail(f"unknown label keys {sorted(set(label) - LABEL_KEYS)}")
    for code in label.get("codes", []):
        system, _, value = code.partition(":")
        if system not in FORMS or not FORMS[system].fullmatch(value):
            fail(f"code {code!r} is not normalised (CPT:99214, HCPCS:J1885, ICD:E11.22, MODIFIER:25)")
    if len(set(label.get("codes", []))) != len(label.get("codes", [])):
        fail("duplicate code in label.codes")
    if not label.get("questions") or set(label["questions"]) - QUESTIONS:
        fail(f"questions must be a non-empty list from {sorted(QUESTIONS)}")
    if "dos" in label:
        dt.date.fromisoformat(label["dos"])
    if label.get("setting", "office") not in ("office", "facility"):
        fail("setting is office or facility")
    text = (case["subject"] + "\n" + case["body"]).lower()
    for item in label.get("search", []):
        if item.get("text", "").lower() not in text or not item.get("accept"):
            fail(f"search text {item.get('text')!r} must be quoted from the mail, with an accept list")
    procs = {c.partition(":")[2] for c in label.get("codes", []) if c[:3] in ("CPT", "HCP")}
    for line in label.get("doses", []) + label.get("units", []):
        if line.get("code") not in procs:
            fail(f"dose/units line for {line.get('code')!r}, which is not in label.codes")


def icd_codes(case: dict[str, Any]) -> list[str]:
    return [c[4:] for c in case["label"].get("codes", []) if c.startswith("ICD:")]


def proc_codes(case: dict[str, Any]) -> list[str]:
    return [c.partition(":")[2] for c in case["label"].get("codes", [])
            if c.startswith(("CPT:", "HCPCS:"))]


def check_codes(case: dict[str, Any], data: cmsdata.Data) -> None:
    """Every label code must exist in the data; every 'unknown' token must not."""
    label = case["label"]
    for code in label.get("codes", []):
        system, _, value = code.partition(":")
        ok = {"CPT": lambda v: v in data.mue or v in data.aoc or v in data.ptp_seen,
              "HCPCS": lambda v: v in data.hcpcs.desc and v not in data.hcpcs.modifiers,
              "ICD": data.icd.exists,
              "MODIFIER": lambda v: v in CPT_MODIFIERS or v in data.hcpcs.modifiers}[system](value)
        if not ok:
            raise LabelError(f"{case['id']}: label code {code} is in no data file")
    for raw in label.get("unknown", []):
        token = raw.upper()
        if data.icd.exists(token) or token in data.hcpcs.desc or token in data.mue:
            raise LabelError(f"{case['id']}: 'unknown' token {raw} is a real code")
    for item in label.get("search", []):
        for code in item["accept"]:
            if not data.icd.billable(code):
                raise LabelError(f"{case['id']}: search answer {code} is not a billable ICD-10-CM code")


def drug_numbers(case: dict[str, Any], data: cmsdata.Data) -> dict[str, int]:
    numbers: dict[str, int] = collections.Counter()
    for line in case["label"].get("doses", []):
        code = line["code"]
        if code not in data.hcpcs.desc:
            raise LabelError(f"{case['id']}: dose line for {code}, which has no HCPCS descriptor")
        if re.search(r"unclassified|not otherwise classified", data.hcpcs.desc[code].lower()):
            continue                        # NOC: no billing amount; name, NDC and dose go in NTE
        per = cmsdata.billing_unit(data.hcpcs.desc[code])
        if per is None:                     # per dose / each: one unit per administration
            numbers[f"units:{code}"] += 1
            continue
        amount, unit = per
        if line["unit"].lower() != unit:
            raise LabelError(f"{case['id']}: {code} dose in {line['unit']}, descriptor counts {unit}")
        given = Fraction(str(line["given"]))
        wasted = Fraction(str(line.get("wasted", 0)))
        units = cmsdata.ceil_units(given, amount)
        numbers[f"units:{code}"] += units
        if wasted > 0:
            waste = cmsdata.ceil_units(given + wasted, amount) - units
            if waste > 0:
                numbers[f"waste_units:{code}"] += waste
    return dict(numbers)


def expected(case: dict[str, Any], data: cmsdata.Data) -> dict[str, Any]:
    check_codes(case, data)
    label = case["label"]
    dos, setting = label.get("dos"), label.get("setting", "office")
    procs, icds = proc_codes(case), icd_codes(case)
    findings: set[str] = set()
    numbers: dict[str, Any] = drug_numbers(case, data)

    # units billed per code: stated in the mail, else computed from the dose (given + JW lines)
    billed: dict[str, int] = collections.Counter()
    for line in label.get("units", []):
        billed[line["code"]] += int(line["units"])
    for code in procs:
        if code not in billed and f"units:{code}" in numbers:
            billed[code] = numbers[f"units:{code}"] + numbers.get(f"waste_units:{code}", 0)
    for code in procs:
        if code in data.mue:
            numbers[f"mue:{code}"] = list(data.mue[code])
            if billed.get(code, 0) > data.mue[code][0]:
                findings.add(f"mue_exceeded:{code}")

    release = cmsdata.ptp_release(setting, dos)
    asks_ptp = bool({"bundling", "modifier"} & set(label["questions"]))
    for a, b in itertools.combinations(sorted(set(procs)), 2):
        in_force = {(c1, c2): cmsdata.ptp_in_force(data, release, f"{c1}|{c2}", dos)
                    for c1, c2 in ((a, b), (b, a))}
        for (c1, c2), mis in in_force.items():
            if mis:
                findings.add(f"ptp_edit:{c1},{c2}")
                if asks_ptp:
                    numbers[f"ptp:{c1}|{c2}"] = mis
        if any(in_force.values()):
            continue
        # no edit in force either way: say so, and name any edit that existed but is deleted
        for c1, c2 in in_force:
            if cmsdata.ptp_existed(data, release, f"{c1}|{c2}"):
                findings.add(f"ptp_edit_not_in_force:{c1},{c2}")
        if asks_ptp:
            numbers[f"ptp:{a}|{b}"] = "none"

    for code in procs:
        rows = cmsdata.aoc_in_force(data, code, dos)
        if not rows:
            continue
        primaries = sorted({r["Primary_Code"] for r in rows} - {"CCCCC"})
        numbers[f"addon_primaries:{code}"] = primaries
        types = {r["AOC_Edit_Type"] for r in rows}
        others = set(procs) - {code}
        if types == {"2"}:
            lacking = not others
        else:
            lacking = not (set(primaries) & others)
        if lacking:
            findings.add(f"addon_without_primary:{code}")

    for code in procs:
        term = data.hcpcs.term.get(code, "") if code in data.hcpcs.desc else ""
        if term and term < cmsdata.ymd(dos):
            findings.add(f"terminated_code:{code}")

    icd = data.icd
    for code in icds:
        if icd.children.get(code):
            findings.add(f"not_billable:{code}")
            numbers[f"children:{code}"] = sorted(icd.billable_descendants(code))
        elif not icd.seven_base(code) and icd.seventh_chars(code):
            findings.add(f"missing_7th_character:{code}")
            numbers[f"seventh:{code}"] = sorted(icd.seventh_chars(code) or [])
    for a, b in itertools.combinations(sorted(set(icds)), 2):
        ab, ba = cmsdata.covers(cmsdata.excludes1_of(icd, a), b), cmsdata.covers(
            cmsdata.excludes1_of(icd, b), a)
        if ab or ba:
            first, second = (a, b) if ab else (b, a)
            findings.add(f"excludes1_conflict:{first},{second}")
    for raw in label.get("unknown", []):
        findings.add(f"unknown_code:{raw}")
    for item in label.get("search", []):
        numbers[f"search:{item['text']}"] = sorted(item["accept"])

    return {"id": case["id"], "category": case["category"],
            "codes": sorted(label.get("codes", [])), "questions": list(label["questions"]),
            "findings": sorted(findings), "numbers": dict(sorted(numbers.items()))}


def wanted_codes(cases: dict[str, dict[str, Any]]) -> set[str]:
    return {code for case in cases.values() for code in proc_codes(case)}


def expected_all(shared_dir: Path, cases: dict[str, dict[str, Any]] | None = None
                 ) -> dict[str, dict[str, Any]]:
    cases = load_cases() if cases is None else cases
    data = cmsdata.load_data(shared_dir, wanted_codes(cases))
    return {cid: expected(case, data) for cid, case in cases.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", help="the shared dir (default $CASECONSULTANT_SHARED, "
                                         "else <repo>/../shared)")
    parser.add_argument("--out", help="write the expected JSON here (default stdout)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    result = expected_all(find_shared(args.shared))
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    counts = collections.Counter(e["category"] for e in result.values())
    for category in sorted(counts):
        print(f"{category:24} {counts[category]:4}", file=sys.stderr)
    print(f"{'total':24} {len(result):4}  ({time.monotonic() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
