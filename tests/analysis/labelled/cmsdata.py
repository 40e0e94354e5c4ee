"""CMS file readers and rule helpers for the labelled-set grader (see grade.py).

Written from the file layouts in shared/data/cms/SOURCES.md and shared/CODING-RULES.md; it must
never import ``consultant`` nor copy product code, so the product is never graded by itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import json
import math
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

CACHE_VERSION = "1"
PTP_FILES = {"v30.1": "ptp_practitioner_v301_2024q2.csv.gz",
             "v30.2": "ptp_practitioner_v302_2024q3.csv.gz",
             "v32.2": "ptp_practitioner_v322_2026q3.csv.gz",
             "ioce": "ioce_ncci_hospital_2019q3_2026q2.csv.gz"}
# Quarters the dated practitioner tables answer for (SOURCES.md); other DOS -> v32.2 snapshot.
DATED = {"v30.1": ("20240401", "20240630"), "v30.2": ("20240701", "20240930")}
OLDER = {"v30.1": [], "v30.2": ["v30.1"], "v32.2": ["v30.1", "v30.2"]}


class LabelError(ValueError):
    """A case file that breaks the format or names a code that is in no data file."""


# --- data ----------------------------------------------------------------------------------
@dataclass
class Icd:
    parent: dict[str, str | None] = field(default_factory=dict)   # code -> parent code
    children: dict[str, list[str]] = field(default_factory=dict)
    container: dict[str, str] = field(default_factory=dict)        # code -> "section:..." id
    excl1: dict[str, list[str]] = field(default_factory=dict)       # code/section/chapter -> notes
    seven: dict[str, list[str]] = field(default_factory=dict)       # code -> its own 7th chars

    def ancestors(self, code: str) -> list[str]:
        """The code, its parent codes, then its section and chapter keys."""
        chain: list[str] = []
        cur: str | None = code
        while cur is not None:
            chain.append(cur)
            cur = self.parent.get(cur)
        section = self.container[chain[-1]]
        return chain + [section, self.container[section]]

    def seventh_chars(self, code: str) -> list[str] | None:
        for key in self.ancestors(code):
            if key in self.seven:
                return self.seven[key]
        return None

    def leaves(self, code: str) -> list[str]:
        kids = self.children.get(code, [])
        return [code] if not kids else [leaf for k in kids for leaf in self.leaves(k)]

    def billable_descendants(self, code: str) -> list[str]:
        """Leaf descendants; a leaf that needs a 7th character is expanded with each character
        of its nearest sevenChrDef, padded with X to six characters (T78.40 -> T78.40XA)."""
        out = []
        for leaf in self.leaves(code):
            chars = self.seventh_chars(leaf)
            if not chars:
                out.append(leaf)
                continue
            flat = leaf.replace(".", "").ljust(6, "X")
            out.extend(f"{flat[:3]}.{flat[3:]}{c}" for c in chars)
        return out

    def exists(self, code: str) -> bool:
        return code in self.parent or self.seven_base(code) is not None

    def seven_base(self, code: str) -> str | None:
        """For a full 7-character code (S52.521A, T78.40XA) its leaf diag, else None."""
        flat = code.replace(".", "")
        if len(flat) != 7:
            return None
        base = flat[:6].rstrip("X")
        base = base[:3] + ("." + base[3:] if len(base) > 3 else "")
        chars = self.seventh_chars(base) if base in self.parent else None
        if chars and flat[6] in chars and not self.children.get(base):
            return base
        return None

    def billable(self, code: str) -> bool:
        if self.seven_base(code):
            return True
        return code in self.parent and not self.children.get(code) and not self.seventh_chars(code)


def load_icd(path: Path) -> Icd:
    icd = Icd()
    with gzip.open(path) as f:
        root = ET.parse(f).getroot()

    def notes(elem: ET.Element, key: str) -> None:
        icd.excl1[key] = [n.text or "" for ex in elem.findall("excludes1") for n in ex.findall("note")]
        sev = elem.find("sevenChrDef")
        if sev is not None:
            icd.seven[key] = [e.get("char", "") for e in sev.findall("extension")]

    def walk(diag: ET.Element, parent: str | None, container: str) -> None:
        code = (diag.findtext("name") or "").strip()
        icd.parent[code] = parent
        icd.children[code] = []
        if parent is None:
            icd.container[code] = container
        else:
            icd.children[parent].append(code)
        notes(diag, code)
        for sub in diag.findall("diag"):
            walk(sub, code, container)

    for chapter in root.findall("chapter"):
        ckey = "chapter:" + (chapter.findtext("name") or "").strip()
        notes(chapter, ckey)
        for section in chapter.findall("section"):
            skey = "section:" + section.get("id", "")
            icd.container[skey] = ckey
            notes(section, skey)
            for diag in section.findall("diag"):
                walk(diag, None, skey)
    return icd


@dataclass
class Hcpcs:
    desc: dict[str, str]        # code -> long description
    term: dict[str, str]        # code -> TERM DT YYYYMMDD ('' = active)
    modifiers: set[str]


def load_hcpcs(path: Path) -> Hcpcs:
    """Fixed-width file (HCPC2026_recordlayout.txt): HCPC 1-5, RECID 11, LONG DESC 12-91,
    TERM DT 285-292; RECID 4/8 lines continue the long description of the record before."""
    desc: dict[str, str] = {}
    term: dict[str, str] = {}
    modifiers: set[str] = set()
    last = ""
    with gzip.open(path, "rt", encoding="latin-1", newline="") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if len(line) < 11:
                continue
            recid, text = line[10], line[11:91].rstrip()
            if recid in "37":
                last = line[0:5].strip()
                desc[last], term[last] = text, line[284:292].strip()
                if recid == "7":
                    modifiers.add(last)
            elif recid in "48":
                desc[last] += ("" if desc[last].endswith("-") else " ") + text.strip()
    return Hcpcs(desc, term, modifiers)


def load_mue(path: Path) -> dict[str, tuple[int, int]]:
    """Record 1 = AMA notice, record 2 = header; value and MAI (first digit of its text)."""
    with path.open(encoding="latin-1", newline="") as f:
        rows = list(csv.reader(f))[2:]
    return {r[0].strip(): (int(r[1]), int(r[2].strip()[0])) for r in rows if r and r[0].strip()}


def load_aoc(path: Path) -> dict[str, list[dict[str, str]]]:
    import openpyxl  # only the AOC file is xlsx-only

    wb = openpyxl.load_workbook(path, read_only=True)
    rows = list(wb.active.iter_rows(values_only=True))  # type: ignore[union-attr]
    header = [str(h) for h in rows[1]]
    out: dict[str, list[dict[str, str]]] = {}
    for raw in rows[2:]:
        row = {h: ("" if v is None else str(v).strip()) for h, v in zip(header, raw, strict=False)}
        if row.get("Add-On_Code"):
            out.setdefault(row["Add-On_Code"], []).append(row)
    return out


def julian(value: str) -> str:
    """AOC dates are YYYYDDD; return YYYYMMDD ('' stays '')."""
    if not value:
        return ""
    day = dt.date(int(value[:4]), 1, 1) + dt.timedelta(days=int(value[4:]) - 1)
    return day.strftime("%Y%m%d")


def load_ptp(shared: Path, wanted: set[str]) -> tuple[dict[str, dict[str, list[list[str]]]], set[str]]:
    """Stream each PTP CSV.gz keeping rows whose two codes are both wanted; also return which
    wanted codes appear in any PTP row (CPT numbers exist only where CMS lists them).
    Rows kept as [deletion_date, modifier_indicator] (dated tables) or
    [in_force_from, in_force_through, modifier_indicator] (I/OCE)."""
    key_src = [CACHE_VERSION, ",".join(sorted(wanted))]
    for name in PTP_FILES.values():
        st = (shared / "data/cms/ncci-ptp" / name).stat()
        key_src.append(f"{name}:{st.st_size}:{int(st.st_mtime)}")
    key = hashlib.sha256("|".join(key_src).encode()).hexdigest()[:24]
    cache = Path(tempfile.gettempdir()) / "caseconsultant-labelled-grader" / f"ptp-{key}.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        return data["tables"], set(data["seen"])
    tables: dict[str, dict[str, list[list[str]]]] = {}
    seen: set[str] = set()
    for release, name in PTP_FILES.items():
        table: dict[str, list[list[str]]] = {}
        with gzip.open(shared / "data/cms/ncci-ptp" / name, "rt", encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split(",")
            idx = {h: i for i, h in enumerate(header)}
            cols = (["in_force_from", "in_force_through", "modifier_indicator"] if release == "ioce"
                    else ["deletion_date", "modifier_indicator"])
            for line in f:
                c1, c2, _ = line.split(",", 2)
                in1, in2 = c1 in wanted, c2 in wanted
                if in1:
                    seen.add(c1)
                if in2:
                    seen.add(c2)
                if in1 and in2:
                    parts = line.rstrip("\n").split(",")
                    table.setdefault(f"{c1}|{c2}", []).append([parts[idx[c]] for c in cols])
        tables[release] = table
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tables": tables, "seen": sorted(seen)}))
    tmp.replace(cache)
    return tables, seen


@dataclass
class Data:
    icd: Icd
    hcpcs: Hcpcs
    mue: dict[str, tuple[int, int]]
    aoc: dict[str, list[dict[str, str]]]
    ptp: dict[str, dict[str, list[list[str]]]]
    ptp_seen: set[str]


def load_data(shared: Path, wanted: set[str]) -> Data:
    cms = shared / "data/cms"
    ptp, seen = load_ptp(shared, wanted)
    return Data(icd=load_icd(cms / "icd10cm/icd10cm_tabular_FY2026_April-1-2026.xml.gz"),
                hcpcs=load_hcpcs(cms / "hcpcs/HCPC2026_JAN_ANWEB_01122026.txt.gz"),
                mue=load_mue(cms / "ncci_mue/MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"),
                aoc=load_aoc(cms / "ncci_aoc/AOC_V2026Q2-MCR.xlsx"), ptp=ptp, ptp_seen=seen)


# --- rules ---------------------------------------------------------------------------------
UNIT_NAMES = {"mg": "mg", "mcg": "mcg", "microgram": "mcg", "micrograms": "mcg", "g": "g",
              "gm": "g", "gram": "g", "grams": "g", "ml": "ml", "cc": "ml", "unit": "units",
              "units": "units", "iu": "units", "usp unit": "units", "usp units": "units", "meq": "meq", "mci": "mci"}
AMOUNT = re.compile(r"^(?:per |up to )?(\d[\d,]*(?:\.\d+)?)\s*(" + "|".join(
    sorted(UNIT_NAMES, key=len, reverse=True)) + r")$")


def billing_unit(desc: str) -> tuple[Fraction, str] | None:
    """The amount one unit of a drug code stands for, read from its long description.
    Returns (amount, unit), or None for per-dose/each codes.  Raises on a form it can't read."""
    text = desc.lower()
    m = re.search(r"\((\d[\d,]*)\s*(ml|cc)\s*=\s*1 unit\)", text)     # J7042: "(500 ml = 1 unit)"
    if m:
        return Fraction(m.group(1).replace(",", "")), "ml"
    text = re.sub(r"\([^)]*\)", "", text)                               # "(non-esrd use)" etc.
    for segment in reversed([s.strip() for s in text.split(",")]):
        if segment in ("per dose", "each") or segment.endswith(" per dose"):
            return None
        m = AMOUNT.match(segment)
        if m:
            return Fraction(m.group(1).replace(",", "")), UNIT_NAMES[m.group(2)]
    raise LabelError(f"no billing amount in descriptor {desc!r}")


def ceil_units(amount: Fraction, per: Fraction) -> int:
    return max(1, math.ceil(amount / per))


def ymd(iso: str | None) -> str:
    return (iso or dt.date.today().isoformat()).replace("-", "")


def ptp_release(setting: str, dos: str | None) -> str:
    if setting == "facility":
        return "ioce"
    if dos:
        for release, (start, end) in DATED.items():
            if start <= ymd(dos) <= end:
                return release
    return "v32.2"


def ptp_in_force(data: Data, release: str, pair: str, dos: str | None) -> list[int]:
    """Modifier indicators of the rows for col1|col2 in force on the DOS (sorted, unique)."""
    out = set()
    for row in data.ptp[release].get(pair, []):
        if release == "ioce":
            start, through, mi = row
            day = ymd(dos) if dos else None
            ok = through == "*" if day is None else (start <= day and (through == "*" or day <= through))
        else:
            deletion, mi = row
            ok = deletion == "*" or (dos is not None and ymd(dos) <= deletion)
        if ok and mi != "9":
            out.add(int(mi))
    return sorted(out)


def ptp_existed(data: Data, release: str, pair: str) -> bool:
    """Any applicable (non-9) row for the pair in the chosen table or an older dated one."""
    return any(row[-1] != "9" for r in [release, *OLDER.get(release, [])]
               for row in data.ptp[r].get(pair, []))


def aoc_in_force(data: Data, code: str, dos: str | None) -> list[dict[str, str]]:
    rows = []
    for row in data.aoc.get(code, []):
        eff, dele = julian(row["AOC_Edit_EffDT"]), julian(row["AOC_Edit_DelDT"])
        pdel = julian(row["Primary_Code_DelDT"])
        if dos is None:
            ok = not dele and not pdel
        else:
            day = ymd(dos)
            ok = eff <= day and (not dele or day <= dele) and (not pdel or day <= pdel)
        if ok:
            rows.append(row)
    return rows


def excl1_refs(notes: list[str]) -> list[tuple[str, str]]:
    """Code references in Excludes1 notes as (lo, hi) prefixes without dots: "(E10.-)" ->
    (E10, E10); "(E08-E13)" -> (E08, E13); "(K85-K86.-)" -> (K85, K86)."""
    code = r"[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]*)?-?"
    refs = []
    for note in notes:
        for group in re.findall(r"\(([^)]*)\)", note):
            for m in re.finditer(rf"({code})(?:\s*-\s*({code}))?", group):
                lo = m.group(1).replace(".", "").rstrip("-")
                hi = (m.group(2) or m.group(1)).replace(".", "").rstrip("-")
                refs.append((lo, hi))
    return refs


def covers(refs: list[tuple[str, str]], code: str) -> bool:
    flat = code.replace(".", "")
    return any(flat[:len(lo)] >= lo and flat[:len(hi)] <= hi for lo, hi in refs)


def excludes1_of(icd: Icd, code: str) -> list[tuple[str, str]]:
    base = icd.seven_base(code) or code
    return excl1_refs([n for key in icd.ancestors(base) for n in icd.excl1.get(key, [])])
