"""Importers for the HCPCS companion files (processing notes, NOC list, corrections, transaction
report) and the I/OCE version table, on the real CMS files, on SQLite and (with $DATABASE_URL)
PostgreSQL; and ``codes show`` citing each of them."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import zipfile
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from consultant.codes.api import lookup
from consultant.codes.files import ImportFormatError
from consultant.codes.models import (
    HcpcsActionCode,
    HcpcsCorrection,
    HcpcsNocCode,
    HcpcsProcessingNote,
    HcpcsTransaction,
    IoceVersion,
)
from consultant.codes.releases import ImportOutcome, import_release, list_releases
from consultant.codes.render import render_facts
from consultant.settings import Settings
from tests.codes.conftest import CMS, HCPCS_TXT, PTP_DIR, Db, need
from tests.codes.test_cli import http_root, run  # noqa: F401 (http_root: the fixture)

HCPCS_DIR = CMS / "hcpcs"
NOTES = HCPCS_DIR / "proc_notes_JAN2026.txt"
NOC = HCPCS_DIR / "NOC_codes_JAN2026.xlsx"
CORRECTIONS = HCPCS_DIR / "HCPC2026_JAN_ANWEB_Corrections_01122026.xlsx"
TRANSACTIONS = HCPCS_DIR / "HCPC2026_JAN_ANWEB_Transaction_Report_12292025.xlsx"
IOCE_VERSIONS = PTP_DIR / "ioce_version_ranges.csv.gz"
IOCE_PTP = PTP_DIR / "ioce_ncci_hospital_2019q3_2026q2.csv.gz"


def _count(db: Db, model, release_id: int) -> int:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.release_id == release_id))


def _import_twice(db: Db, kind: str, path: Path) -> ImportOutcome:
    """Import ``path``; importing it again must be a no-op that names the same release."""
    first = import_release(db.factory, kind, need(path))
    again = import_release(db.factory, kind, path)
    assert not first.skipped and again.skipped and again.release_id == first.release_id
    return first


def _current_ids(db: Db) -> list[int]:
    with db.session() as s:
        return sorted(r["id"] for r in list_releases(s) if r["current"])


def _show(db: Db, code: str, ptp_limit: int | None = 50) -> tuple[dict, str]:  # type: ignore[type-arg]
    with db.session() as s:
        facts = lookup(s, code, ptp_limit=ptp_limit)
    assert facts is not None
    return facts, render_facts(facts)


def _xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def _sheets(path: Path) -> dict[str, list[list[object]]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    return {ws.title: [list(r) for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}


# --- processing notes -------------------------------------------------------------------------
def test_processing_notes_import_and_show(empty_db: Db) -> None:
    hcpcs = import_release(empty_db.factory, "hcpcs", need(HCPCS_TXT))
    notes = _import_twice(empty_db, "hcpcs-notes", NOTES)
    # 234 notes, numbered 0001-0234 in the 645-line file (SOURCES.md gives the line count only).
    assert (notes.name, notes.row_count) == ("HCPCS processing notes 2026-01", 234)
    with empty_db.session() as s:
        texts = {n.number: n.text for n in s.scalars(select(HcpcsProcessingNote))}
    assert sorted(texts) == [f"{i:04d}" for i in range(1, 235)]
    # Continuation lines are joined, the right-hand "*" margin and tab padding are dropped.
    assert texts["0003"] == ("THIS PROCEDURE (85029, 85030) IS USUALLY PART OF THE AUTOMATED PROFILES "
                             "FOR CBC AND CONSIDERATION SHOULD BE GIVEN TO NOT PAYING SEPARATELY "
                             "FOR THESE INDICES.")
    assert not any("*" in t or "\t" in t for t in texts.values())
    # S0189's record says PROCNOTE 0088; the shown note is that note, citing the notes release.
    facts, text = _show(empty_db, "S0189")
    assert facts["source"] == hcpcs.name
    assert facts["processing_note"] == {"number": "0088", "text": texts["0088"], "source": notes.name}
    assert f"processing note 0088: {texts['0088']} [{notes.name}]" in text


def test_truncated_or_reordered_notes_fail_with_line_and_field(empty_db: Db, tmp_path: Path) -> None:
    first = import_release(empty_db.factory, "hcpcs-notes", need(NOTES))
    raw = NOTES.read_bytes()
    lines = raw.split(b"\r\n")
    # Cut the file inside a note number: "0117--..." becomes "01".
    at = next(i for i, line in enumerate(lines) if b"0117--" in line)
    cut = tmp_path / "proc_notes_APR2026.txt"
    cut.write_bytes(b"\r\n".join(lines[:at]) + b"\r\n" + lines[at][: lines[at].index(b"0117") + 2])
    with pytest.raises(ImportFormatError) as err:
        import_release(empty_db.factory, "hcpcs-notes", cut)
    assert f"line {at + 1}, field note text: the file ends inside a line" in str(err.value)
    # A note numbered out of order would attach text to the wrong number.
    swapped = tmp_path / "proc_notes_JUL2026.txt"
    swapped.write_bytes(raw.replace(b"0005--", b"0002--", 1))
    five = next(i for i, line in enumerate(lines) if b"0005--" in line) + 1
    with pytest.raises(ImportFormatError, match=rf"line {five}, field note number: 0002 does not follow note 0004"):
        import_release(empty_db.factory, "hcpcs-notes", swapped)
    assert _current_ids(empty_db) == [first.release_id]
    assert _count(empty_db, HcpcsProcessingNote, first.release_id) == 234


# --- NOC list -----------------------------------------------------------------------------------
def test_noc_import_and_show(empty_db: Db) -> None:
    import_release(empty_db.factory, "hcpcs", need(HCPCS_TXT))
    noc = _import_twice(empty_db, "hcpcs-noc", NOC)
    # SOURCES.md counts 169 rows below the header: one blank row, and J7192 and J7195 wrap their
    # descriptor onto a second row -> 166 codes.
    assert (noc.name, noc.row_count) == ("HCPCS NOC codes 2026-01", 166)
    with empty_db.session() as s:
        rows = {r.code: r for r in s.scalars(select(HcpcsNocCode))}
    assert rows["J7192"].long_description.endswith("per i.u., not otherwise specified")
    assert rows["A9599"].term_date.isoformat() == "2017-12-31"
    facts, text = _show(empty_db, "J3490")
    assert facts["noc"]["source"] == noc.name and "NDC" in facts["noc"]["claim_requirement"]
    assert "NOC: Not otherwise classified (NOC) code" in text and f"[{noc.name}]" in text
    assert "noc" not in _show(empty_db, "J1885")[0]


def test_malformed_noc_fails_with_row_and_field(empty_db: Db, tmp_path: Path) -> None:
    first = import_release(empty_db.factory, "hcpcs-noc", need(NOC))
    sheet = _sheets(NOC)["NOC_codes_JAN2026"]
    row = next(i for i, r in enumerate(sheet) if r[0] == "J3490")
    sheet[row][2] = "2026-13-45"
    bad = _xlsx(tmp_path / "NOC_codes_APR2026.xlsx", {"NOC": sheet})
    with pytest.raises(ImportFormatError, match=rf"line {row + 1}, field ADD DATE"):
        import_release(empty_db.factory, "hcpcs-noc", bad)
    sheet[row][2] = 19860101
    sheet[row + 1][0] = sheet[row][0]  # the next code listed again, with its own dates
    with pytest.raises(ImportFormatError, match=rf"line {row + 2}, field HCPCS: J3490 is listed twice"):
        import_release(empty_db.factory, "hcpcs-noc", _xlsx(tmp_path / "NOC_codes_JUL2026.xlsx", {"NOC": sheet}))
    assert _current_ids(empty_db) == [first.release_id]


# --- corrections --------------------------------------------------------------------------------
def test_corrections_import_and_show(empty_db: Db) -> None:
    hcpcs = import_release(empty_db.factory, "hcpcs", need(HCPCS_TXT))
    corr = _import_twice(empty_db, "hcpcs-corrections", CORRECTIONS)
    # SOURCES.md: 126 rows below the header, of which 5 are filled (the rest are empty).
    assert (corr.name, corr.row_count) == ("HCPCS 2026-01 corrections issued 2026-01-12", 5)
    with empty_db.session() as s:
        rows = {r.code: r for r in s.scalars(select(HcpcsCorrection))}
    assert sorted(rows) == ["G2076", "J1572", "J2516", "J3365", "S0189"]
    assert rows["J2516"].fields == {"TOS": "1,P"} and rows["G2076"].effective_date is None
    facts, text = _show(empty_db, "J2516")
    assert facts["corrections"][0]["action"] == "Revise TOS"
    assert f"CMS correction: Revise TOS (TOS: 1,P), effective 2026-01-01 [{corr.name}]" in text
    # No descriptor is corrected in CMS's file: the shown descriptor stays the published one.
    assert facts["description"] == _published(empty_db, "J2516", hcpcs.release_id)


def _published(db: Db, code: str, release_id: int) -> str:
    from consultant.codes.models import HcpcsCode

    with db.session() as s:
        return s.scalar(select(HcpcsCode.long_description).where(
            HcpcsCode.release_id == release_id, HcpcsCode.code == code))


def test_corrected_descriptor_replaces_the_shown_one(empty_db: Db, tmp_path: Path) -> None:
    hcpcs = import_release(empty_db.factory, "hcpcs", need(HCPCS_TXT))
    sheet = _sheets(need(CORRECTIONS))["Sheet1"]
    # TEST DATA: a descriptor correction CMS did not issue, added to CMS's own rows.
    sheet.insert(1, ["J1885", "Revise long description", None, "TEST CORRECTED DESCRIPTOR, per 30 mg",
                     "01/01/2026", None, None, None, None])
    path = _xlsx(tmp_path / "HCPC2026_JAN_ANWEB_Corrections_02022026.xlsx", {"Sheet1": sheet})
    corr = import_release(empty_db.factory, "hcpcs-corrections", path)
    assert corr.row_count == 6
    facts, text = _show(empty_db, "J1885")
    original = _published(empty_db, "J1885", hcpcs.release_id)
    assert facts["description"] == "TEST CORRECTED DESCRIPTOR, per 30 mg"
    assert facts["description_as_published"] == original
    assert facts["description_corrected_by"] == corr.name
    assert facts["billing_unit"]["amount"] == 30  # from the corrected descriptor
    assert text.splitlines()[1] == "  TEST CORRECTED DESCRIPTOR, per 30 mg"
    assert f"(descriptor as corrected by [{corr.name}]; as published in [{hcpcs.name}]: {original!r})" in text
    # A correction to another quarter's file is shown but not applied to the release in force.
    sheet[1][4] = "04/01/2026"
    later = _xlsx(tmp_path / "HCPC2026_APR_ANWEB_Corrections_04022026.xlsx", {"Sheet1": sheet})
    assert not import_release(empty_db.factory, "hcpcs-corrections", later).skipped
    facts, text = _show(empty_db, "J1885")
    assert facts["description"] == original and "description_corrected_by" not in facts
    assert "(to another HCPCS release than the one shown)" in text


def test_malformed_corrections_fail_with_row_and_field(empty_db: Db, tmp_path: Path) -> None:
    first = import_release(empty_db.factory, "hcpcs-corrections", need(CORRECTIONS))
    sheet = _sheets(CORRECTIONS)["Sheet1"]
    sheet[3][1] = None  # J1572 without its action
    bad = _xlsx(tmp_path / "HCPC2026_JAN_ANWEB_Corrections_02022026.xlsx", {"Sheet1": sheet})
    with pytest.raises(ImportFormatError, match="line 4, field Action: missing for J1572"):
        import_release(empty_db.factory, "hcpcs-corrections", bad)
    sheet[3][1], sheet[2][0] = "Do not terminate", "J25"
    bad = _xlsx(tmp_path / "HCPC2026_JAN_ANWEB_Corrections_03022026.xlsx", {"Sheet1": sheet})
    with pytest.raises(ImportFormatError, match="line 3, field HCPCS/MOD Code"):
        import_release(empty_db.factory, "hcpcs-corrections", bad)
    assert _current_ids(empty_db) == [first.release_id]


# --- transaction report -------------------------------------------------------------------------
def test_transactions_import_and_show(empty_db: Db) -> None:
    import_release(empty_db.factory, "hcpcs", need(HCPCS_TXT))
    tr = _import_twice(empty_db, "hcpcs-transactions", TRANSACTIONS)
    # SOURCES.md: 9,012 / 9,011 rows in the two lists (G9871 is only in "by Action Code").
    assert (tr.name, tr.row_count) == ("HCPCS 2026-01 transaction report of 2025-12-29", 9_012)
    with empty_db.session() as s:
        key = {r.code: r.meaning for r in s.scalars(select(HcpcsActionCode))}
        rows = {(r.code, r.is_modifier): r for r in s.scalars(select(HcpcsTransaction))}
    assert len(key) == 10 and key["D"] == "Discontinued" and key["N"] == "No Change"
    assert rows[("G9871", False)].action == "ADD" and rows[("G9871", False)].action_code == "A"
    assert rows[("LT", True)].action == "No Change"
    # Every action worded in the report is a meaning in the key.
    assert all(r.action_code for r in rows.values())
    facts, text = _show(empty_db, "S0189")
    assert facts["annual_update"] == {"action": "Discontinued", "action_code": "D", "meaning": "Discontinued",
                                      "effective_date": "2026-01-01", "source": tr.name}
    assert f"annual update 2026-01-01: Discontinued (action code D) [{tr.name}]" in text
    # The HCPCS record's own ACTION CD is explained by the key too.
    assert f"last action D (Discontinued [{tr.name}]) 2026-01-01" in text
    facts, text = _show(empty_db, "LT")
    assert facts["system"] == "MODIFIER" and facts["annual_update"]["action"] == "No Change"


def test_transaction_lists_that_disagree_fail(empty_db: Db, tmp_path: Path) -> None:
    first = import_release(empty_db.factory, "hcpcs-transactions", need(TRANSACTIONS))
    sheets = _sheets(TRANSACTIONS)
    by_hcpc = sheets["Changes by HCPC"]
    row = next(i for i, r in enumerate(by_hcpc) if r[0] == "J1885")
    by_hcpc[row][1] = "Discontinued"
    bad = _xlsx(tmp_path / "HCPC2027_JAN_ANWEB_Transaction_Report_12292026.xlsx", sheets)
    with pytest.raises(ImportFormatError,
                       match=rf"line {row + 1}, field Changes by HCPC: ACTION CD: J1885 is 'Discontinued' here"):
        import_release(empty_db.factory, "hcpcs-transactions", bad)
    del sheets["Action Code Key"]
    with pytest.raises(ImportFormatError, match="field workbook: no sheet named 'Action Code Key'"):
        import_release(empty_db.factory, "hcpcs-transactions", _xlsx(tmp_path / "t2.xlsx", sheets))
    assert _current_ids(empty_db) == [first.release_id]


# --- I/OCE versions -----------------------------------------------------------------------------
def test_ioce_versions_import(empty_db: Db) -> None:
    out = _import_twice(empty_db, "ioce-versions", IOCE_VERSIONS)
    assert (out.name, out.row_count) == ("I/OCE versions 20.2.27–27.1.0", 28)  # SOURCES.md: 28
    with empty_db.session() as s:
        versions = {v.version: v for v in s.scalars(select(IoceVersion))}
        assert versions["26.2.3"].date_started.isoformat() == "2025-07-01"
        assert [r["effective_date"] for r in list_releases(s)] == ["2026-04-01"]


def test_ioce_versions_with_a_gap_fail(empty_db: Db, tmp_path: Path) -> None:
    first = import_release(empty_db.factory, "ioce-versions", need(IOCE_VERSIONS))
    with gzip.open(IOCE_VERSIONS, "rt", newline="") as fh:
        good = fh.read()
    truncated = tmp_path / "ioce_version_ranges_cut.csv"
    truncated.write_text(good[:-6])  # the last row loses most of its date_ended
    with pytest.raises(ImportFormatError, match="line 29, field date_ended: not a YYYYMMDD date"):
        import_release(empty_db.factory, "ioce-versions", truncated)
    rows = list(csv.reader(io.StringIO(good)))
    del rows[10]  # one quarter missing: the next version does not start the day after
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    bad = tmp_path / "ioce_version_ranges_gap.csv"
    bad.write_text(buf.getvalue())
    with pytest.raises(ImportFormatError, match="line 11, field date_started"):
        import_release(empty_db.factory, "ioce-versions", bad)
    assert _current_ids(empty_db) == [first.release_id]


def test_hospital_ptp_edits_name_their_ioce_version(empty_db: Db, tmp_path: Path) -> None:
    # The real I/OCE hospital rows with 20610 in column 1 (the full file is a slow import).
    subset = tmp_path / "ioce_ncci_hospital_2019q3_2026q2.csv"
    with gzip.open(need(IOCE_PTP), "rt", newline="") as src:
        lines = [line for i, line in enumerate(src) if i == 0 or line.startswith("20610,")]
    subset.write_text("".join(lines))
    ptp = import_release(empty_db.factory, "ptp", subset)
    facts, text = _show(empty_db, "20610")
    assert not any("ioce" in e for e in facts["ptp"][0]["as_column_1"]["edits"])
    versions = import_release(empty_db.factory, "ioce-versions", need(IOCE_VERSIONS))
    facts, text = _show(empty_db, "20610", ptp_limit=None)
    edits = {e["column_2"]: e for e in facts["ptp"][0]["as_column_1"]["edits"]}
    # SOURCES.md: hospital has 20610 / G0463, indicator 1, in force from 2025-07-01 (I/OCE 26.2.3).
    g0463 = edits["G0463"]
    assert g0463["effective_date"] == "2025-07-01"
    assert g0463["ioce"] == {"version": "26.2.3", "version_started": "2025-07-01",
                             "earliest_in_table": False, "source": versions.name}
    assert "20610 / G0463  modifier indicator 1    in force since I/OCE 26.2.3 (2025-07-01)" in text
    assert f"PTP as column 1: 166 edits in force ({ptp.name}); I/OCE versions from [{versions.name}]" in text
    early = [e for e in edits.values() if e["effective_date"] == "2019-07-01"]
    assert early and all(e["ioce"]["earliest_in_table"] for e in early)
    assert "in force since I/OCE 20.2.27 (2019-07-01) or earlier" in text


# --- codes update and the CLI -------------------------------------------------------------------
def test_update_imports_the_companions_in_the_hcpcs_zip(
        empty_db: Db, http_root: tuple[str, Path], tmp_path: Path,  # noqa: F811 (the imported fixture)
        capsys: pytest.CaptureFixture[str]) -> None:
    base, root = http_root
    # As CMS ships it: the code file and its companions in one zip (the .txt stored unzipped).
    with zipfile.ZipFile(root / "january-2026-alpha-numeric-hcpcs-file.zip", "w") as zf:
        zf.writestr("HCPC2026_JAN_ANWEB_01122026.txt", gzip.decompress(need(HCPCS_TXT).read_bytes()))
        for path in (NOTES, NOC, CORRECTIONS, TRANSACTIONS, HCPCS_DIR / "HCPC2026_recordlayout.txt"):
            zf.write(need(path), path.name)
    shutil.copy(need(IOCE_VERSIONS), root)
    settings = Settings(codes={"hcpcs_url": f"{base}/january-2026-alpha-numeric-hcpcs-file.zip",
                               "ioce_versions_url": f"{base}/{IOCE_VERSIONS.name}",
                               "download_dir": str(tmp_path / "dl")})
    assert run(empty_db, ["update", "--quiet", "--json"], settings) == 0
    results = {r["source"]: (r["name"], r["row_count"]) for r in json.loads(capsys.readouterr().out)}
    assert results == {
        "hcpcs": ("HCPCS 2026-01", 9_006),
        "hcpcs:hcpcs-notes": ("HCPCS processing notes 2026-01", 234),
        "hcpcs:hcpcs-noc": ("HCPCS NOC codes 2026-01", 166),
        "hcpcs:hcpcs-corrections": ("HCPCS 2026-01 corrections issued 2026-01-12", 5),
        "hcpcs:hcpcs-transactions": ("HCPCS 2026-01 transaction report of 2025-12-29", 9_012),
        "ioce_versions": ("I/OCE versions 20.2.27–27.1.0", 28),
    }
    assert run(empty_db, ["releases"], settings) == 0
    listing = capsys.readouterr().out
    assert "hcpcs-transactions HCPCS 2026-01 transaction report of 2025-12-29" in listing
    # A zip without the companions (an older quarter's) imports the code file alone.
    with zipfile.ZipFile(root / "april.zip", "w") as zf:
        zf.write(need(HCPCS_DIR / "HCPC2026_JAN_ANWEB_01122026.xlsx"), "HCPC2026_APR_ANWEB_v2.xlsx")
        zf.write(TRANSACTIONS, "HCPC2026_APR_ANWEB_Transaction_Report_03012026.xlsx")
    settings.codes = {"hcpcs_url": f"{base}/april.zip", "download_dir": str(tmp_path / "dl")}
    assert run(empty_db, ["update", "--quiet", "--json"], settings) == 0
    results = {r["source"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(results) == {"hcpcs", "hcpcs:hcpcs-transactions"}
    assert results["hcpcs"]["name"] == "HCPCS 2026-04"  # the code file, not the report beside it
    assert results["hcpcs:hcpcs-transactions"]["skipped"]  # same content as January's


def test_cli_show_prints_the_companion_facts(empty_db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    for kind, path in (("hcpcs", HCPCS_TXT), ("hcpcs-notes", NOTES), ("hcpcs-noc", NOC),
                       ("hcpcs-corrections", CORRECTIONS), ("hcpcs-transactions", TRANSACTIONS)):
        assert run(empty_db, ["import", kind, str(need(path)), "--quiet"]) == 0
    capsys.readouterr()
    assert run(empty_db, ["show", "S0189"]) == 0
    out = capsys.readouterr().out
    assert "processing note 0088:" in out and "[HCPCS processing notes 2026-01]" in out
    assert "CMS correction: Terminate, effective 2026-01-01 [HCPCS 2026-01 corrections issued 2026-01-12]" in out
    assert "annual update 2026-01-01: Discontinued (action code D)" in out
    assert run(empty_db, ["show", "J3490", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["noc"]["source"] == "HCPCS NOC codes 2026-01"
