"""Code knowledge base figures: import times, lookup/search/check latency, worker RSS, search recall.

``python bench/bench_codes.py [--url DB_URL] [--no-ptp]`` prints a table; ``run()`` returns the
figures as ``{"name", "value", "unit", "ceiling", "ratio", "note"}`` dicts for ``make bench``
(ratio oriented so that >= 1 means within the ceiling).  Each figure is printed beside a baseline
measured in the same run (raw simple-icd-10-cm, a bare SQL query, or the interpreter itself).
Nothing is asserted: speed on these shared machines is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("CASECONSULTANT_SHARED") or ROOT / ".." / "shared") / "data" / "cms"
FILES = {
    "icd10cm-xml": SHARED / "icd10cm" / "icd10cm_tabular_FY2026_April-1-2026.xml.gz",
    "hcpcs": SHARED / "hcpcs" / "HCPC2026_JAN_ANWEB_01122026.txt.gz",
    "mue": SHARED / "ncci_mue" / "MCR_MUE_PractitionerServices_Eff_04-01-2026.csv",
    "aoc": SHARED / "ncci_aoc" / "AOC_V2026Q2-MCR.xlsx",
}
COMPANIONS = {
    "hcpcs-notes": SHARED / "hcpcs" / "proc_notes_JAN2026.txt",
    "hcpcs-noc": SHARED / "hcpcs" / "NOC_codes_JAN2026.xlsx",
    "hcpcs-corrections": SHARED / "hcpcs" / "HCPC2026_JAN_ANWEB_Corrections_01122026.xlsx",
    "hcpcs-transactions": SHARED / "hcpcs" / "HCPC2026_JAN_ANWEB_Transaction_Report_12292025.xlsx",
    "ioce-versions": SHARED / "ncci-ptp" / "ioce_version_ranges.csv.gz",
}
PTP = SHARED / "ncci-ptp" / "ptp_practitioner_v302_2024q3.csv.gz"
LOOKUP_CODES = ["J1885", "E11.22", "N18.31", "64484", "77301", "J1100", "S72.001A", "I10"]
SEARCH_QUERIES = ["ketorolac injection", "type 2 diabetes with diabetic chronic kidney disease",
                  "chronic kidney disease stage 3a", "right side", "dexamethasone injection",
                  "fracture of neck of right femur", "essential hypertension", "knee osteoarthritis",
                  "ambulance service per mile", "influenza vaccine"]
MAIL_10 = ("Office visit 99214-25 with 20610 RT, 77301, 77306, 64484, J1885 x 4 units (60 mg), "
           "J1100 x 10 units, dx E11.22, N18.31, M17.11. DOS 04/02/2026, Medicare, office.")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def figure(name: str, value: float, unit: str, ceiling: float | None, note: str = "",
           higher_is_better: bool = False) -> dict[str, Any]:
    ratio = None
    if ceiling and value:
        ratio = round(value / ceiling if higher_is_better else ceiling / value, 3)
    return {"name": name, "value": round(value, 4), "unit": unit, "ceiling": ceiling,
            "ratio": ratio, "note": note}


def rss_mb(code: str) -> float:
    """Peak RSS (MB) of a fresh interpreter running ``code``.

    VmHWM, not ru_maxrss: on Linux a child inherits its parent's ru_maxrss across fork/exec.
    """
    script = code + (
        "\nprint(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip().splitlines()[-1])


def bare_search(session: Any, query: str) -> list[Any]:
    """The database's own full-text query for all the words, unranked: the search baseline."""
    from sqlalchemy import text

    from consultant.codes.search import FTS_TABLE, words

    tokens = words(query)
    if session.get_bind().dialect.name == "sqlite":
        sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q LIMIT 200"
        q = " ".join(f'"{t}"' for t in tokens)
    else:
        sql = "SELECT id FROM codes_search WHERE tsv @@ to_tsquery('english', :q) LIMIT 200"
        q = " & ".join(tokens)
    return list(session.execute(text(sql), {"q": q}))


def recall(session: Any, search: Callable[..., list[dict[str, Any]]], sample: int = 300) -> tuple[dict[int, float], int]:
    """Recall@k of ICD-10-CM codes searched by an inclusion term not contained in the descriptor."""
    from sqlalchemy import select

    from consultant.codes.models import Icd10cmCode
    from consultant.codes.search import words
    from consultant.codes.sources import open_sources

    with open_sources(session) as src:
        rows = src.icd_session.execute(select(Icd10cmCode.code, Icd10cmCode.description, Icd10cmCode.notes).where(
            Icd10cmCode.release_id == src.icd.id, Icd10cmCode.notes.is_not(None))).all()
    pairs = []
    for code, desc, notes in rows:
        notes = json.loads(notes) if isinstance(notes, str) else notes
        for term in (notes or {}).get("inclusion", []):
            if not set(words(term)) <= set(words(desc)) and len(words(term)) >= 2:
                pairs.append((term, code))
    random.Random(2026).shuffle(pairs)
    pairs = pairs[:sample]
    hits = {1: 0, 5: 0, 10: 0}
    for term, code in pairs:
        found = [h["code"] for h in search(session, term, system="ICD-10-CM", limit=10)]
        for k in hits:
            hits[k] += code in found[:k]
    return {k: v / len(pairs) for k, v in hits.items()}, len(pairs)


def run(url: str | None = None, with_ptp: bool = True) -> list[dict[str, Any]]:
    """Measure and return the figures (a temp SQLite database unless ``url`` is given)."""
    os.environ.setdefault("CASECONSULTANT_CODES_CACHE", tempfile.mkdtemp(prefix="cc-bench-cache-"))
    import consultant.models

    consultant.models.import_all_models()
    from consultant.analysis import analyse
    from consultant.analysis import facts as kb
    from consultant.codes.api import lookup, search
    from consultant.codes.builtin import builtin_icd
    from consultant.codes.extract import extract
    from consultant.codes.lookup import PTP_LIST_LIMIT
    from consultant.codes.releases import import_release
    from consultant.codes.sources import open_sources
    from consultant.db import Base, make_engine, make_session_factory

    figures: list[dict[str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="cc-bench-")
    engine = make_engine(url or f"sqlite:///{tmp}/codes.sqlite")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)

    from consultant.codes import builtin

    if builtin._cached is None:  # a second run in one process (the PostgreSQL pass) finds it built
        t0 = time.perf_counter()
        builtin_icd()
        figures.append(figure("codes: build built-in ICD-10-CM cache (once per machine)",
                              time.perf_counter() - t0, "s", None))
    # The baseline: the package loading its own data, in a fresh interpreter every run.
    package_load = float(subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); import simple_icd_10_cm; "
                               "print(time.perf_counter() - t)"],
        capture_output=True, text=True, check=True).stdout)
    import simple_icd_10_cm as cm  # for the raw lookup baseline below
    total = 0.0
    for kind, path in FILES.items():
        t0 = time.perf_counter()
        outcome = import_release(factory, kind, path)
        total += time.perf_counter() - t0
        print(f"  {outcome.message}", file=sys.stderr)
    figures.append(figure("codes: import ICD-10-CM + HCPCS + MUE + AOC", total, "s", 60.0,
                          f"baseline: simple-icd-10-cm loads its XML in {package_load:.2f} s"))
    t0 = time.perf_counter()
    for kind, path in COMPANIONS.items():
        print(f"  {import_release(factory, kind, path).message}", file=sys.stderr)
    figures.append(figure("codes: import HCPCS notes, NOC, corrections, transactions + I/OCE versions",
                          time.perf_counter() - t0, "s", None, "the companion files (no target given)"))
    if with_ptp:
        t0 = time.perf_counter()
        outcome = import_release(factory, "ptp", PTP)
        seconds = time.perf_counter() - t0
        figures.append(figure("codes: import NCCI PTP practitioner (2.5M rows)", seconds, "s", None,
                              f"{outcome.row_count / seconds:,.0f} rows/s"))

    with factory() as session:
        for code in LOOKUP_CODES:  # warm caches once
            lookup(session, code)
        samples = [t for code in LOOKUP_CODES for t in timed(lambda c=code: lookup(session, c), 200)]
        base = timed(lambda: (cm.get_description("E11.22"), cm.get_excludes1("E11.22"),
                              cm.get_use_additional_code("E11.22"), cm.is_leaf("E11.22")), 2000)
        figures.append(figure("codes: show lookup p99 (in-process, cached)", p99(samples), "ms", 1.0,
                              f"p50 {statistics.median(samples):.3f} ms; PTP list limit {PTP_LIST_LIMIT}; "
                              f"baseline raw simple-icd-10-cm p99 {p99(base):.4f} ms"))
        from consultant.codes import lookup as lookup_module

        def cold(code: str) -> None:
            lookup_module._cache.clear()  # the first lookup of a code in a process
            lookup(session, code)

        samples = [t for code in LOOKUP_CODES for t in timed(lambda c=code: cold(c), 50)]
        from consultant.codes.releases import current_releases

        mue_id = next(r.id for (kind, _), r in current_releases(session).items() if kind == "mue")
        one = timed(lambda: session.execute(__import__("sqlalchemy").text(
            "SELECT value FROM codes_mue WHERE release_id = :r AND code = 'J1885'"), {"r": mue_id}).all(), 400)
        figures.append(figure("codes: show lookup p99 (in-process, first time)", p99(samples), "ms",
                              1.0, f"p50 {statistics.median(samples):.3f} ms; the per-process "
                              "cache (keyed by database and releases) cleared before each lookup; "
                              f"baseline: one indexed row fetch p99 {p99(one):.3f} ms (a HCPCS "
                              "lookup makes 8)"))
        for q in SEARCH_QUERIES:
            search(session, q)
        samples = [t for q in SEARCH_QUERIES for t in timed(lambda q=q: search(session, q), 30)]
        bare = [t for q in SEARCH_QUERIES for t in timed(lambda q=q: bare_search(session, q), 30)]
        figures.append(figure("codes: search p99", p99(samples), "ms", 20.0,
                              f"p50 {statistics.median(samples):.2f} ms over {len(SEARCH_QUERIES)} queries; "
                              f"baseline: the engine's bare all-words query p99 {p99(bare):.2f} ms"))
        ext = extract(MAIL_10)
        procedures = [m.code for m in ext.mentions if m.kind != "icd"]
        diagnoses = [m.code for m in ext.mentions if m.kind == "icd"]

        def all_facts() -> None:
            with open_sources(session) as src:
                kb.ptp(src, procedures, None, False)
                kb.mue(src, procedures)
                kb.addons(src, procedures, None)
                icd_facts, entries = kb.icd_facts(src, diagnoses)
                kb.excludes1(src, diagnoses, entries)

        all_facts()
        samples = timed(all_facts, 200)
        base = timed(lambda: session.execute(__import__("sqlalchemy").text("SELECT 1")).all(), 200)
        figures.append(figure(f"codes: facts stage, all pairs of {len(procedures) + len(diagnoses)} codes p99",
                              p99(samples), "ms", 5.0, f"baseline: one SELECT 1 p99 {p99(base):.3f} ms"))
        samples = timed(lambda: analyse(session, MAIL_10), 100)
        figures.append(figure("codes: analyse() of a 10-code mail p99", p99(samples), "ms", 50.0,
                              f"p50 {statistics.median(samples):.2f} ms"))
        rec, n = recall(session, search)
        for k, v in rec.items():
            figures.append(figure(f"codes: search recall@{k}, inclusion-term queries", v, "share", None,
                                  f"{n} ICD-10-CM inclusion terms not contained in the descriptor"))

    db_url = str(engine.url.render_as_string(hide_password=False))
    worker = rss_mb(
        "import consultant.models; consultant.models.import_all_models()\n"
        "from consultant.db import make_engine, make_session_factory\n"
        "from consultant.analysis import analyse\n"
        "from consultant.codes.api import lookup, search\n"
        f"f = make_session_factory(make_engine({db_url!r}))\n"
        f"s = f(); analyse(s, {MAIL_10!r}); search(s, 'ketorolac injection'); lookup(s, '77301')\n"
    )
    bare = rss_mb("import sqlalchemy, consultant.models")
    package = rss_mb("import simple_icd_10_cm as c; c.get_description('E11.22')")
    figures.append(figure("codes: worker RSS with data loaded", worker, "MB", 300.0,
                          f"baseline: interpreter + SQLAlchemy {bare:.0f} MB; simple-icd-10-cm loaded {package:.0f} MB"))
    engine.dispose()
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    p.add_argument("--no-ptp", action="store_true", help="skip the 2.5M-row PTP import")
    args = p.parse_args()
    rows = run(args.url, with_ptp=not args.no_ptp)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        ceiling = "-" if r["ceiling"] is None else r["ceiling"]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['name']:<{width}}  {r['value']:>10.4g} {r['unit']:<5} ceiling {ceiling!s:<6} ratio {ratio:<6} {r['note']}")


if __name__ == "__main__":
    main()
