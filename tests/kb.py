"""A code knowledge base built from the real CMS/CDC files in ../shared, for tests and benchmarks.

Importing the full PTP tables takes about a minute and a half, so only the rows whose two codes
are both in ``codes`` are kept, written to files with the original names so the release labels
are the real ones.  For any pair of those codes the filtered tables hold exactly the rows of the
full tables.
"""

from __future__ import annotations

import csv
import gzip
import sqlite3
from pathlib import Path

from consultant.codes.releases import import_release
from consultant.db import make_engine, make_session_factory, upgrade

FULL = (("hcpcs", "hcpcs/HCPC2026_JAN_ANWEB_01122026.txt.gz"),
        ("mue", "ncci_mue/MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"),
        ("aoc", "ncci_aoc/AOC_V2026Q2-MCR.xlsx"),
        ("icd10cm-xml", "icd10cm/icd10cm_tabular_FY2026_April-1-2026.xml.gz"))
# The dated practitioner table (2024 Q3, with deletion dates), the in-force snapshot of 2026 Q3,
# and the hospital (I/OCE) table with its version ranges.
PTP_FILES = ("ncci-ptp/ptp_practitioner_v302_2024q3.csv.gz",
             "ncci-ptp/ptp_practitioner_v322_2026q3.csv.gz",
             "ncci-ptp/ioce_ncci_hospital_2019q3_2026q2.csv.gz")


def filtered_ptp(source: Path, target_dir: Path, codes: set[str]) -> Path:
    target = target_dir / source.name
    with gzip.open(source, "rt", newline="") as src, gzip.open(target, "wt", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(next(reader))
        for row in reader:
            if row[0] in codes and row[1] in codes:
                writer.writerow(row)
    return target


def build(path: Path, cms: Path, codes: set[str], ptp_files: tuple[str, ...] = PTP_FILES) -> Path:
    """A migrated SQLite file at ``path`` holding HCPCS, MUE, AOC, ICD-10-CM and the filtered PTP
    releases; its WAL folded in, so a plain file copy is the whole database."""
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    for kind, rel in FULL:
        import_release(factory, kind, cms / rel)
    ptp_dir = path.parent / "ptp"
    ptp_dir.mkdir(exist_ok=True)
    for rel in ptp_files:
        import_release(factory, "ptp", filtered_ptp(cms / rel, ptp_dir, codes))
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path
