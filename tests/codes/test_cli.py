"""The ``codes`` CLI handlers and ``codes update`` against a local HTTP server."""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from consultant.codes.cli import register
from consultant.settings import Settings
from tests.codes.conftest import AOC_XLSX, CMS, HCPCS_TXT, MUE_CSV, Db, need


def run(db: Db, argv: list[str], settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["codes", *argv])
    return args.handler(args, settings or Settings(), db.factory)


def test_import_releases_show_search(empty_db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(empty_db, ["import", "hcpcs", str(need(HCPCS_TXT))]) == 0
    out = capsys.readouterr()
    assert "HCPCS 2026-01: imported 9,006 rows" in out.out and "rows" in out.err  # progress on stderr
    assert run(empty_db, ["import", "hcpcs", str(HCPCS_TXT), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] is True
    assert run(empty_db, ["releases", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert names[0] == "HCPCS 2026-01" and names[1].startswith("ICD-10-CM FY2026 (simple-icd-10-cm")
    assert run(empty_db, ["show", "J1885"]) == 0
    assert "[HCPCS 2026-01]" in capsys.readouterr().out
    assert run(empty_db, ["show", "E11.22", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["billable"] is True
    assert run(empty_db, ["search", "ketorolac injection", "--limit", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["code"] == "J1885"
    assert run(empty_db, ["show", "ZZ999"]) == 1
    assert "not a code" in capsys.readouterr().err


def test_bad_file_is_an_error_message(empty_db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "MCR_MUE_PractitionerServices_Eff_07-01-2026.csv"
    bad.write_text("notice\nHCPCS/CPT Code,MUE Values,MAI,Rationale\n99213,two,3 Date of Service Edit: Clinical,x\n")
    assert run(empty_db, ["import", "mue", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "previous release left in force" in err and "line 3, field MUE Values" in err


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_update_downloads_and_imports(empty_db: Db, http_root: tuple[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    base, root = http_root
    shutil.copy(need(HCPCS_TXT), root)
    shutil.copy(need(MUE_CSV), root)
    # CMS ships AOC inside a zip; the updater picks the member out.
    with zipfile.ZipFile(root / "aoc-2026q2.zip", "w") as zf:
        zf.write(need(AOC_XLSX), AOC_XLSX.name)
    settings = Settings(codes={
        "hcpcs_url": f"{base}/{HCPCS_TXT.name}", "mue_url": f"{base}/{MUE_CSV.name}",
        "aoc_url": f"{base}/aoc-2026q2.zip", "ptp_url": f"{base}/missing.zip",
        "download_dir": str(tmp_path / "dl"),
    })
    assert run(empty_db, ["update", "--quiet", "--json"], settings) == 1  # the PTP URL is a 404
    results = {r["source"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["hcpcs"]["name"] == "HCPCS 2026-01" and results["aoc"]["name"] == "NCCI AOC 2026 Q2"
    assert results["mue"]["row_count"] == 15_095 and "404" in results["ptp"]["error"]
    del settings.codes["ptp_url"]
    assert run(empty_db, ["update", "--quiet", "--json"], settings) == 0
    assert all(r["skipped"] for r in json.loads(capsys.readouterr().out))
    assert CMS.exists()
