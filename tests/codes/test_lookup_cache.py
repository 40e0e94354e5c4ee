"""The per-process lookup cache never outlives the releases it was filled from."""

from __future__ import annotations

import gzip
from importlib.resources import files
from pathlib import Path

from consultant.codes.api import lookup
from consultant.codes.releases import import_release
from tests.codes.conftest import Db

DEMO = files("consultant.demo_data")


def demo(name: str) -> Path:
    return Path(str(DEMO / name))


def test_a_new_import_is_seen_by_the_next_lookup(empty_db: Db, tmp_path) -> None:
    with empty_db.session() as s:
        before = lookup(s, "J1885")
        assert before is not None and before["source"] is None  # no HCPCS release yet
    import_release(empty_db.factory, "hcpcs", demo("HCPC2026_JAN_ANWEB_01122026.txt.gz"))
    import_release(empty_db.factory, "mue", demo("MCR_MUE_PractitionerServices_Eff_04-01-2026.csv.gz"))
    with empty_db.session() as s:
        first = lookup(s, "J1885")
        assert first is not None and first["source"] == "HCPCS 2026-01"
        assert [(m["value"], m["source"]) for m in first["mue"]] == [
            (8, "NCCI MUE practitioner 2026-04-01")]
        assert lookup(s, "J1885") == first  # from the cache: the same facts
    # The next quarter's file (the same rows, J1885's limit changed) supersedes the release.
    text = gzip.open(demo("MCR_MUE_PractitionerServices_Eff_04-01-2026.csv.gz"), "rt",
                     encoding="latin-1").read()
    assert "\nJ1885,8," in text
    later = tmp_path / "MCR_MUE_PractitionerServices_Eff_07-01-2026.csv"
    later.write_text(text.replace("\nJ1885,8,", "\nJ1885,12,"), encoding="latin-1")
    import_release(empty_db.factory, "mue", later)
    with empty_db.session() as s:
        again = lookup(s, "J1885")
    assert again is not None
    assert [(m["value"], m["source"]) for m in again["mue"]] == [(12, "NCCI MUE practitioner 2026-07-01")]
