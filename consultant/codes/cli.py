"""``caseconsultant codes ...``: import, list releases, show, search, analyse, update.

``register(subparsers)`` is called by ``consultant.cli``; each handler receives
``(args, settings, session_factory)`` and returns an exit status.  JSON goes to stdout with
``--json``; progress and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from consultant.codes.models import KINDS
from consultant.settings import Settings

Factory = sessionmaker[Session]


def _json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


def _error(message: str) -> int:
    print(f"caseconsultant codes: error: {message}", file=sys.stderr)
    return 1


def cmd_import(args: argparse.Namespace, settings: Settings, factory: Factory) -> int:
    from consultant.codes.files import ImportFormatError, Progress
    from consultant.codes.importers import no_progress
    from consultant.codes.releases import import_release

    progress = None if args.quiet else Progress(f"import {args.kind}")
    try:
        outcome = import_release(
            factory, args.kind, args.path if len(args.path) > 1 else args.path[0],
            progress=progress or no_progress, name=args.name,
            effective_date=date.fromisoformat(args.effective) if args.effective else None,
        )
    except ImportFormatError as exc:
        return _error(f"import failed, previous release left in force: {exc}")
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc))
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        _json({"kind": outcome.kind, "name": outcome.name, "variant": outcome.variant,
               "row_count": outcome.row_count, "sha256": outcome.sha256,
               "skipped": outcome.skipped, "release_id": outcome.release_id,
               "seconds": round(outcome.seconds, 2)})
    else:
        print(outcome.message)
    return 0


def cmd_releases(args: argparse.Namespace, settings: Settings, factory: Factory) -> int:
    from consultant.codes.builtin import builtin_icd
    from consultant.codes.releases import list_releases

    with factory() as session:
        rows = list_releases(session)
    if not any(r["kind"] == "icd10cm-xml" and r["current"] for r in rows):
        _, ref = builtin_icd()
        rows.append({"id": None, "kind": "icd10cm-xml", "variant": "", "name": ref.name,
                     "effective_date": ref.effective_date.isoformat() if ref.effective_date else None,
                     "row_count": None, "sha256": None, "source_file": "(built in)",
                     "imported_at": None, "current": True, "superseded_at": None})
    if args.json:
        _json(rows)
        return 0
    for r in rows:
        state = "current" if r["current"] else f"superseded {str(r['superseded_at'])[:10]}"
        rows_text = f"{r['row_count']:,} rows" if r["row_count"] is not None else "built in"
        print(f"{r['kind']:<18} {r['name']:<48} eff {r['effective_date'] or '-':<10} "
              f"{rows_text:<16} {state}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings, factory: Factory) -> int:
    from consultant.codes.api import lookup

    with factory() as session:
        facts = lookup(session, args.code, ptp_limit=None if args.all else 50)
    if facts is None:
        return _error(f"{args.code}: not a code in any loaded release")
    if args.json:
        _json(facts)
    else:
        from consultant.codes.render import render_facts

        print(render_facts(facts))
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings, factory: Factory) -> int:
    from consultant.codes.api import search

    with factory() as session:
        hits = search(session, args.text, system=args.system, limit=args.limit)
    if args.json:
        _json(hits)
        return 0
    for h in hits:
        desc = h.get("description") or "(descriptor not licensed)"
        via = f"  [matched: {h['matched']}]" if h["field"] != "descriptor" else ""
        print(f"{h['system']:<10} {h['code']:<9} {desc}{via}")
    if not hits:
        print("no match", file=sys.stderr)
    return 0


def cmd_analyse(args: argparse.Namespace, settings: Settings, factory: Factory) -> int:
    # The same pipeline the draft uses (consultant.analysis), so the two never disagree.
    from consultant.analysis import analyse
    from consultant.drafting.draft import finding_details, jsonable

    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    dos = date.fromisoformat(args.dos) if args.dos else None
    with factory() as session:
        result = analyse(session, text, subject=args.subject or "", date_of_service=dos)
    findings = finding_details(result.findings, settings.service.template_dir)
    if args.json:
        _json({**jsonable(result), "findings": findings})
        return 0
    for c in result.codes:
        print(f"{c.system:<10} {c.code:<9} {c.description or '-'}")
    for part in result.parts:
        q = part.question
        print(f"question {q.number} [{q.qtype}, rule {q.rule}]: codes {', '.join(q.codes) or '-'}")
    for f in findings:
        print(f"[{f['kind']}] {' '.join(f['codes'])}: {f['detail']} ({f['source'] or 'no release'})")
    return 0


def cmd_update(args: argparse.Namespace, settings: Settings, factory: Factory) -> int:
    from consultant.codes.files import Progress
    from consultant.codes.update import configured, update

    if not configured(settings.codes):
        return _error("no source URLs configured: set [codes] hcpcs_url, mue_url, aoc_url, "
                      "ptp_url, icd10cm_url and/or ioce_versions_url")
    bars: list[Progress] = []

    def progress_for(kind: str) -> Progress:
        # One bar per file imported, the previous one finished first (imports run one by one).
        for bar in bars:
            bar.close()
        bars[:] = [Progress(f"import {kind}")]
        return bars[0]

    try:
        results = update(settings.codes, factory, progress_for=None if args.quiet else progress_for)
    finally:
        for bar in bars:
            bar.close()
    failed = [r for r in results if r.error]
    if args.json:
        _json([{"source": r.key, "urls": r.urls, "error": r.error,
                "name": r.outcome.name if r.outcome else None,
                "skipped": r.outcome.skipped if r.outcome else None,
                "row_count": r.outcome.row_count if r.outcome else None} for r in results])
    else:
        for r in results:
            print(f"{r.key}: {r.outcome.message}" if r.outcome else f"{r.key}: failed: {r.error}")
    for r in failed:
        print(f"caseconsultant codes: error: {r.key}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    """Add ``codes`` and its sub-commands to the top-level parser."""
    codes = subparsers.add_parser("codes", help="code data: import, releases, show, search")
    sub = codes.add_subparsers(dest="codes_command", required=True, metavar="ACTION")

    p = sub.add_parser("import", help="import a CMS/CDC data file as a release")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("path", nargs="+", help="the file (.gz accepted); PTP: all parts of a release")
    p.add_argument("--name", help="release label (default: derived from the file)")
    p.add_argument("--effective", help="effective date YYYY-MM-DD (default: derived)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("releases", help="list imported data releases")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_releases)

    p = sub.add_parser("show", help="everything known about a code, with sources")
    p.add_argument("code")
    p.add_argument("--all", action="store_true", help="list every PTP edit (default: first 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("search", help="ranked search over descriptors and inclusion terms")
    p.add_argument("text")
    p.add_argument("--system", choices=("ICD-10-CM", "HCPCS", "MODIFIER", "CPT"))
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("analyse", help="find codes in a text and run the edit checks")
    p.add_argument("file", help="text file, or - for stdin")
    p.add_argument("--dos", help="date of service YYYY-MM-DD (default: from the text)")
    p.add_argument("--subject", help="the mail's subject (read for codes too)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_analyse)

    p = sub.add_parser("update", help="download and import the CMS files named in [codes]")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_update)
