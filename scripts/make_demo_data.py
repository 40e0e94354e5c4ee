"""Make the demo's code-data excerpt from the CMS files in shared/data/cms.

    python scripts/make_demo_data.py [CMS_DIR] [--out DIR]   # CMS_DIR: $CASECONSULTANT_SHARED/data/cms

Writes ``consultant/demo_data/``: the rows of the HCPCS Level II, MUE, add-on-code and
practitioner PTP files that concern the codes of the demo's sample question and the README's
examples (``CODES`` below), in each file's own layout and under its published file name, so
``caseconsultant demo`` imports them with the product's own importers and every fact cites the
real release.  Nothing is rewritten: rows are copied as published (the HCPCS records byte for
byte), only filtered.  ``MANIFEST.json`` records each source file's sha256 and what was kept.

The excerpt answers questions about these codes only: a PTP pair is complete when its column 1
code is listed (every edit with a listed column 1 code is kept, so a pair of two listed codes is
complete in either order); ``codes show`` of any other code says it is not in a loaded release.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "consultant" / "demo_data"

# The demo's sample question (J1885 units; 20610 with 99214 and its administration 96372) and
# the README's examples (77301/77338, 64483/64484, J1100), with the neighbours a coder asks
# next (the E/M family, the other joint-injection sizes, steroid drugs given with 20610).
CODES = sorted({
    "J1885", "J1100", "J3301", "J1030", "J1040", "J7325",
    "20600", "20605", "20610", "20611", "96372",
    "99202", "99203", "99204", "99205", "99211", "99212", "99213", "99214", "99215",
    "77301", "77338", "64483", "64484",
})
# HCPCS records whose long description holds one of these words are kept as well, so the
# README's `codes search "ketorolac injection"` finds what the full file would rank first.
HCPCS_WORDS = ("ketorolac",)

HCPCS = "hcpcs/HCPC2026_JAN_ANWEB_01122026.txt.gz"
MUE = "ncci_mue/MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"
AOC = "ncci_aoc/AOC_V2026Q2-MCR.xlsx"
PTP = ("ncci-ptp/ptp_practitioner_v302_2024q3.csv.gz", "ncci-ptp/ptp_practitioner_v322_2026q3.csv.gz")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gzip_bytes(data: bytes) -> bytes:
    # mtime=0: the same input gives the same bytes (and the same sha256 release id).
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def hcpcs(src: Path) -> tuple[bytes, dict[str, int]]:
    """Records (first line and continuations, CRLF and Latin-1 as published) of the listed codes,
    of codes whose description has one of HCPCS_WORDS, and of every modifier."""
    lines = gzip.decompress(src.read_bytes()).split(b"\r\n")
    wanted = {c.encode() for c in CODES}
    words = tuple(w.encode() for w in HCPCS_WORDS)
    # A code's long description is spread over its record 3 and the record-4 lines after it.
    groups: list[list[bytes]] = []
    for line in lines:
        if not line.strip():
            continue
        if line[10:11] in (b"3", b"7") or not groups:
            groups.append([line])
        else:
            groups[-1].append(line)
    kept: list[bytes] = []
    codes = modifiers = 0
    for group in groups:
        first = group[0]
        text = b" ".join(g[11:91] for g in group).lower()
        if first[10:11] == b"7":
            modifiers += 1
        elif first[:5] in wanted or any(w in text for w in words):
            codes += 1
        else:
            continue
        kept.extend(group)
    return b"\r\n".join(kept) + b"\r\n", {"codes": codes, "modifiers": modifiers}


def mue(src: Path) -> tuple[bytes, dict[str, int]]:
    """The AMA notice record and the header as published, then the listed codes' rows."""
    text = src.read_bytes().decode("latin-1")
    records = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(records[0])
    writer.writerow(records[1])
    rows = [r for r in records[2:] if r and r[0].strip() in CODES]
    writer.writerows(rows)
    return out.getvalue().encode("latin-1"), {"rows": len(rows)}


def aoc(src: Path) -> tuple[bytes, dict[str, int]]:
    """The notice row, the header and the edits whose add-on or primary code is listed, in one
    sheet of the published name."""
    import openpyxl  # type: ignore[import-untyped]

    wb = openpyxl.load_workbook(src, read_only=True)
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    header = [str(h) for h in rows[1]]
    addon, primary = header.index("Add-On_Code"), header.index("Primary_Code")
    kept = [r for r in rows[2:] if str(r[addon]) in CODES or str(r[primary]) in CODES]
    out_wb = openpyxl.Workbook()
    out_ws = out_wb.active
    out_ws.title = ws.title
    for row in (rows[0], rows[1], *kept):
        out_ws.append(list(row))
    # Fixed document dates and zip entry times: the same input gives the same bytes.
    out_wb.properties.created = datetime(2026, 3, 25)
    buf = io.BytesIO()
    out_wb.save(buf)
    return _fixed_zip_times(buf.getvalue()), {"rows": len(kept)}


def _fixed_zip_times(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = src.read(info)
            if info.filename == "docProps/core.xml":  # openpyxl stamps the time of saving
                member = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2026-03-25T00:00:00Z", member)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                         member, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def ptp(src: Path) -> tuple[bytes, dict[str, int]]:
    """The header and every edit whose column 1 code is listed (rows as published, in order)."""
    lines = gzip.decompress(src.read_bytes()).decode("utf-8").splitlines(keepends=True)
    kept = [lines[0]]
    for line in lines[1:]:
        if line.split(",", 1)[0] in CODES:
            kept.append(line)
    return "".join(kept).encode("utf-8"), {"rows": len(kept) - 1}


def main(argv: list[str]) -> int:
    shared = Path(os.environ.get("CASECONSULTANT_SHARED", REPO.parent / "shared"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cms", nargs="?", type=Path, default=shared / "data" / "cms",
                        help="the directory of the CMS files (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    cms, out = args.cms, args.out
    if not (cms / HCPCS).is_file():
        print(f"make_demo_data: no CMS files in {cms} (give the directory as the argument)",
              file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, object] = {
        "made_by": "scripts/make_demo_data.py",
        "codes": CODES,
        "hcpcs_words": list(HCPCS_WORDS),
        "files": [],
    }
    jobs = [(HCPCS, hcpcs, True), (MUE, mue, True), (AOC, aoc, False)] + [(p, ptp, True) for p in PTP]
    for rel, make, compress in jobs:
        src = cms / rel
        data, counts = make(src)
        # The published name, gzipped where the importer reads .gz (it hashes what it is given).
        name = src.name + (".gz" if compress and not src.name.endswith(".gz") else "")
        payload = gzip_bytes(data) if compress else data
        (out / name).write_bytes(payload)
        manifest["files"].append({  # type: ignore[attr-defined]
            "file": name, "source": rel, "source_sha256": sha256(src), "bytes": len(payload),
            "kept": counts,
        })
        print(f"{name}: {counts} ({len(payload):,} bytes)")
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
