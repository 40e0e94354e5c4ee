"""Importers on the real CMS/CDC files, on SQLite and (with $DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from consultant.codes.api import lookup
from consultant.codes.files import ImportFormatError
from consultant.codes.models import CodeRelease, HcpcsCode, Icd10cmBlock, Icd10cmCode, PtpEdit
from consultant.codes.releases import current_releases, import_release, list_releases
from tests.codes.conftest import (
    AOC_XLSX,
    HCPCS_TXT,
    HCPCS_XLSX,
    ICD_XML,
    MUE_CSV,
    PTP_DIR,
    PTP_V302,
    Db,
    backends,
    make_db,
    need,
)


def _count(db: Db, model, release_id: int) -> int:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.release_id == release_id))


def test_icd10cm_xml_import_takes_precedence_over_builtin(empty_db: Db) -> None:
    with empty_db.session() as s:
        assert lookup(s, "E11.22")["source"].startswith("ICD-10-CM FY2026 (simple-icd-10-cm ")
    outcome = import_release(empty_db.factory, "icd10cm-xml", need(ICD_XML))
    assert outcome.name == "ICD-10-CM FY2026 (April 1, 2026 update)"
    with empty_db.session() as s:
        release = s.get(CodeRelease, outcome.release_id)
        assert release.details["billable_codes"] == 74_719  # as simple-icd-10-cm counts them
        assert release.effective_date.isoformat() == "2026-04-01"
        facts = lookup(s, "S72.001A")
        assert facts["source"] == outcome.name and facts["billable"]
        assert facts["description"].endswith("initial encounter for closed fracture")
        # The S06 rule only stated in prose: 7th characters D and S do not exist for 6th char 7.
        assert lookup(s, "S06.5X7A") is not None and lookup(s, "S06.5X7D") is None
        blocks = s.execute(select(Icd10cmBlock.level, func.count()).where(
            Icd10cmBlock.release_id == outcome.release_id).group_by(Icd10cmBlock.level)).all()
        assert dict(blocks) == {"chapter": 22, "section": 297}  # as the XML has them
        assert lookup(s, "S72.001A")["chapter"]["range"] == "S00-T88"


def test_hcpcs_text_and_xlsx_hold_the_same_codes(empty_db: Db) -> None:
    first = import_release(empty_db.factory, "hcpcs", need(HCPCS_TXT))
    with empty_db.session() as s:
        from_txt = {(r.code, r.is_modifier): (r.long_description, r.term_date) for r in
                    s.scalars(select(HcpcsCode).where(HcpcsCode.release_id == first.release_id))}
    assert first.name == "HCPCS 2026-01"
    assert len([k for k in from_txt if not k[1]]) == 8_623
    assert len([k for k in from_txt if k[1]]) == 383
    second = import_release(empty_db.factory, "hcpcs", need(HCPCS_XLSX))
    with empty_db.session() as s:
        from_xlsx = {(r.code, r.is_modifier): (r.long_description, r.term_date) for r in
                     s.scalars(select(HcpcsCode).where(HcpcsCode.release_id == second.release_id))}
        assert not s.get(CodeRelease, first.release_id).is_current
    assert from_xlsx == from_txt
    # The replaced release's rows are gone with it.
    assert _count(empty_db, HcpcsCode, first.release_id) == 0


def test_same_file_twice_is_a_no_op(empty_db: Db) -> None:
    first = import_release(empty_db.factory, "mue", need(MUE_CSV))
    again = import_release(empty_db.factory, "mue", MUE_CSV)
    assert not first.skipped and again.skipped
    assert again.release_id == first.release_id and "nothing to do" in again.message
    with empty_db.session() as s:
        assert len(list_releases(s)) == 1


def test_mue_and_aoc_values(empty_db: Db) -> None:
    mue = import_release(empty_db.factory, "mue", need(MUE_CSV))
    aoc = import_release(empty_db.factory, "aoc", need(AOC_XLSX))
    assert (mue.name, mue.row_count) == ("NCCI MUE practitioner 2026-04-01", 15_095)
    assert (aoc.name, aoc.row_count) == ("NCCI AOC 2026 Q2", 9_000)
    with empty_db.session() as s:
        m77301 = lookup(s, "77301")["mue"][0]
        assert (m77301["value"], m77301["mai"]) == (1, 3)
        assert m77301["source"] == mue.name
        j1100 = lookup(s, "J1100")  # no HCPCS release: HCPCS by format, with its MUE
        assert (j1100["system"], j1100["description"], j1100["mue"][0]["value"]) == ("HCPCS", None, 120)
        assert "J11.00 is an ICD-10-CM code" in j1100["note"]
        assert lookup(s, "64484")["addon"]["primaries"] == ["64483"]


def test_full_ptp_release_streams_in_batches(empty_db: Db) -> None:
    seen: list[int] = []
    outcome = import_release(empty_db.factory, "ptp", need(PTP_V302),
                             progress=lambda rows, permille: seen.append(rows))
    assert outcome.name == "NCCI PTP practitioner v30.2 2024-07-01"
    assert outcome.row_count == 2_546_017
    assert len(seen) > 10 and seen == sorted(seen)  # progress reported batch by batch
    with empty_db.session() as s:
        rows = s.scalars(select(PtpEdit).where(PtpEdit.release_id == outcome.release_id,
                                               PtpEdit.column_1 == "20610",
                                               PtpEdit.column_2 == "99214")).all()
        assert {(r.modifier_indicator, r.deletion_date is None) for r in rows} == {(1, True), (1, False)}


@pytest.mark.parametrize("name, expected", [
    ("ptp_practitioner_v301_2024q2.csv.gz", ("NCCI PTP practitioner v30.1 2024-04-01", "practitioner")),
    ("ptp_hospital_v302_2024q3.csv.gz", ("NCCI PTP hospital v30.2 2024-07-01", "hospital")),
    ("ioce_ncci_hospital_2019q3_2026q2.csv.gz", ("NCCI PTP hospital (I/OCE) 2019Q3–2026Q2", "hospital")),
])
def test_other_ptp_layouts(empty_db: Db, tmp_path: Path, name: str, expected: tuple[str, str]) -> None:
    # The first 20,000 lines of each real file (the full files are imported by the slow test).
    head = tmp_path / name
    pairs, starred = set(), 0
    with gzip.open(need(PTP_DIR / name), "rt") as src, gzip.open(head, "wt") as dst:
        for i, line in enumerate(src):
            if i > 20_000:
                break
            dst.write(line)
            if i:
                cells = line.split(",")
                pairs.add((cells[0], cells[1]))
                starred += "v301" in name and cells[2] == "*"
    outcome = import_release(empty_db.factory, "ptp", head)
    assert (outcome.name, outcome.variant) == expected
    assert outcome.row_count == 20_000
    with empty_db.session() as s:
        rows = s.scalars(select(PtpEdit).where(PtpEdit.release_id == outcome.release_id)).all()
        assert {(r.column_1, r.column_2) for r in rows} == pairs
        row = rows[0]
        if "v301" in name:
            assert sum(1 for r in rows if r.prior_1996) == starred > 0
            assert sum(1 for r in rows if r.prior_1996 is False) == 20_000 - starred
        if "ioce" in name:
            assert row.effective_date is not None and row.rationale_id is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ptp_practitioner_v301_2024q2.csv.gz", "ptp_hospital_v302_2024q3.csv.gz",
                                  "ioce_ncci_hospital_2019q3_2026q2.csv.gz"])
def test_other_ptp_files_in_full(empty_db: Db, name: str) -> None:
    expected = {"ptp_practitioner_v301_2024q2.csv.gz": 2_545_089,
                "ptp_hospital_v302_2024q3.csv.gz": 1_775_818,
                "ioce_ncci_hospital_2019q3_2026q2.csv.gz": 1_594_456}[name]
    assert import_release(empty_db.factory, "ptp", need(PTP_DIR / name)).row_count == expected


# TEST DATA, written by hand in CMS's tab-separated PTP layout (ccipra-vNNNrN-fN.txt): notice and
# header lines, then column 1, column 2, prior-1996 "*", effective, deletion ("*" = none),
# modifier indicator, rationale.  The code pairs and dates are invented for the test.
CMS_PTP_TEST_PART1 = (
    "CPT codes, descriptions and other data only are copyright American Medical Association.\n"
    "Column 1\tColumn 2\t*=in existence prior to 1996\tEffective Date\tDeletion Date *=no data\t"
    "Modifier 0=not allowed 1=allowed 9=not applicable\tPTP Edit Rationale\n"
    "10060\t10061\t*\t19960101\t*\t1\tMutually exclusive procedures\n"
    "10060\t11401\t \t20100101\t20191231\t0\tStandards of medical/surgical practice\n"
)
CMS_PTP_TEST_PART2 = (
    "Column 1\tColumn 2\t*=in existence prior to 1996\tEffective Date\tDeletion Date\tModifier\tRationale\n"
    "G0463\t99213\t \t20240101\t*\t9\tMisuse of column two code with column one code\n"
)


def test_cms_tab_separated_ptp_parts_and_zip(empty_db: Db, tmp_path: Path) -> None:
    part1 = tmp_path / "ccipra-v302r0-f1.txt"
    part2 = tmp_path / "ccipra-v302r0-f2.txt"
    part1.write_text(CMS_PTP_TEST_PART1, encoding="latin-1")
    part2.write_text(CMS_PTP_TEST_PART2, encoding="latin-1")
    outcome = import_release(empty_db.factory, "ptp", [part1, part2])
    assert (outcome.name, outcome.row_count) == ("NCCI PTP practitioner v30.2 2024-07-01", 3)
    with empty_db.session() as s:
        rows = {(r.column_1, r.column_2): r for r in s.scalars(select(PtpEdit))}
        first = rows[("10060", "10061")]
        assert first.prior_1996 and first.effective_date.isoformat() == "1996-01-01"
        assert first.deletion_date is None and first.modifier_indicator == 1
        assert rows[("10060", "11401")].deletion_date.isoformat() == "2019-12-31"
    archive = tmp_path / "ccioph-v303r0-f1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ccioph-v303r0-f1.txt", CMS_PTP_TEST_PART1)
    zipped = import_release(empty_db.factory, "ptp", archive)
    assert (zipped.name, zipped.variant, zipped.row_count) == ("NCCI PTP hospital v30.3 2024-10-01", "hospital", 2)
    with empty_db.session() as s:
        assert set(current_releases(s)) == {("ptp", "practitioner"), ("ptp", "hospital")}


def _previous_release_intact(db: Db, release_id: int, rows: int) -> None:
    with db.session() as s:
        current = [r for r in list_releases(s) if r["current"]]
        assert [r["id"] for r in current] == [release_id]
        assert current[0]["row_count"] == rows


@pytest.mark.parametrize("damage, line, field", [
    ("bad_date", 3, "Deletion Date"),
    ("few_fields", 3, "Modifier Indicator"),
    ("bad_modifier", 4, "Modifier Indicator"),
])
def test_malformed_ptp_fails_with_line_and_field(empty_db: Db, tmp_path: Path, damage: str, line: int, field: str) -> None:
    good = tmp_path / "ccipra-v302r0-f1.txt"
    good.write_text(CMS_PTP_TEST_PART1, encoding="latin-1")
    first = import_release(empty_db.factory, "ptp", good)
    lines = CMS_PTP_TEST_PART1.splitlines(keepends=True)
    if damage == "bad_date":
        lines[2] = lines[2].replace("\t*\t1\t", "\t2019-13-01\t1\t")
    elif damage == "few_fields":
        lines[2] = "\t".join(lines[2].split("\t")[:5]) + "\n"
    else:
        lines[3] = lines[3].replace("\t0\t", "\t7\t")
    bad = tmp_path / "ccipra-v303r0-f1.txt"
    bad.write_text("".join(lines), encoding="latin-1")
    with pytest.raises(ImportFormatError) as err:
        import_release(empty_db.factory, "ptp", bad)
    assert f"line {line}" in str(err.value) and f"field {field}" in str(err.value)
    _previous_release_intact(empty_db, first.release_id, 2)


def test_truncated_cms_files_fail_and_keep_the_previous_release(empty_db: Db, tmp_path: Path) -> None:
    first = import_release(empty_db.factory, "hcpcs", need(HCPCS_TXT))
    raw = gzip.decompress(HCPCS_TXT.read_bytes())
    # Cut 100 bytes into the J1885 record: the short description (bytes 92-119) is incomplete.
    start = raw.index(b"\nJ1885") + 1
    truncated = tmp_path / "HCPC2026_APR_ANWEB_test.txt"
    truncated.write_bytes(raw[: start + 100])
    with pytest.raises(ImportFormatError) as err:
        import_release(empty_db.factory, "hcpcs", truncated)
    line = raw[:start].count(b"\n") + 1
    assert f"line {line}, field SHORT DESCRIPTION" in str(err.value)
    # A truncated gzip stream names the line where reading stopped.
    broken_gz = tmp_path / "HCPC2026_APR_ANWEB_test.txt.gz"
    broken_gz.write_bytes(HCPCS_TXT.read_bytes()[:200_000])
    with pytest.raises(ImportFormatError, match=r"line \d+, field file: truncated"):
        import_release(empty_db.factory, "hcpcs", broken_gz)
    # A CSV cut mid-row: the last record lacks its MAI.
    mue_cut = tmp_path / "MCR_MUE_PractitionerServices_Eff_07-01-2026.csv"
    text = MUE_CSV.read_bytes()
    mue_cut.write_bytes(text[: text.rindex(b"\n", 0, len(text) - 2) + 8])
    with pytest.raises(ImportFormatError, match="MUE"):
        import_release(empty_db.factory, "mue", mue_cut)
    _previous_release_intact(empty_db, first.release_id, 9_006)
    with empty_db.session() as s:
        assert s.scalar(select(func.count()).select_from(Icd10cmCode)) == 0


def test_licensed_cpt_descriptors_and_notice(empty_db: Db, tmp_path: Path) -> None:
    with empty_db.session() as s:
        bare = lookup(s, "99214")
    assert bare["description"] is None and "AMA" in bare["note"]
    licensed = tmp_path / "licensed.csv"
    # TEST DATA: obviously fake descriptors; real CPT text is never written anywhere here.
    licensed.write_text("code,descriptor\n99214,TEST DESCRIPTOR 1\n0001F,TEST DESCRIPTOR 2\n", encoding="utf-8")
    outcome = import_release(empty_db.factory, "cpt-licensed", licensed)
    assert outcome.row_count == 2
    with empty_db.session() as s:
        facts = lookup(s, "99214")
        assert facts["description"] == "TEST DESCRIPTOR 1"
        assert "American Medical Association" in facts["copyright"]
        assert facts["source"] == outcome.name
        assert lookup(s, "99213")["description"] is None
    bad = tmp_path / "licensed2.csv"
    bad.write_text("99214,TEST DESCRIPTOR 1\n9921,TEST DESCRIPTOR 3\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match="line 2, field code"):
        import_release(empty_db.factory, "cpt-licensed", bad)


@pytest.fixture
def pg_db() -> Iterator[Db]:
    """PostgreSQL only (SQLite indexes search with FTS5 and needs no VACUUM)."""
    if "postgresql" not in backends():
        pytest.skip("needs PostgreSQL: set $DATABASE_URL")
    yield from make_db("postgresql")


def test_postgresql_import_leaves_the_release_indexed_and_vacuumed(pg_db: Db) -> None:
    outcome = import_release(pg_db.factory, "hcpcs", need(HCPCS_TXT))
    with pg_db.session() as s:
        # Every search row has its tsvector (search reads the column, not the text) ...
        missing = s.execute(text("SELECT count(*) FROM codes_search WHERE release_id = :r AND tsv IS NULL"),
                            {"r": outcome.release_id}).scalar()
        indexed = s.execute(text("SELECT count(*) FROM codes_search WHERE release_id = :r AND "
                                 "tsv @@ to_tsquery('english', 'ketorolac')"), {"r": outcome.release_id}).scalar()
        # ... and the import ended with VACUUM (ANALYZE): statistics and visibility map are set.
        vacuumed = dict(s.execute(text(
            "SELECT relname, last_vacuum IS NOT NULL AND last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname IN ('codes_hcpcs', 'codes_search', 'codes_ptp')")).all())
    assert missing == 0 and indexed >= 1
    assert vacuumed == {"codes_hcpcs": True, "codes_search": True, "codes_ptp": True}
