"""``caseconsultant audit verify`` and ``caseconsultant audit export --since DATE``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from consultant.settings import Settings


def _since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO timestamp: {value!r} "
                                         "(e.g. 2026-01-31 or 2026-01-31T08:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def cmd_verify(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.audit.verify import verify

    result = verify(factory)
    for problem in result.problems:
        print(f"TAMPERED: {problem}")
    state = "intact" if result.ok else f"NOT intact ({len(result.problems)} problem(s))"
    print(f"audit chain {state}: {result.events} event(s); head {result.head_seq} {result.head_hash}")
    return 0 if result.ok else 1


def cmd_export(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.audit.verify import export

    if args.output in (None, "-"):
        count = export(factory, sys.stdout, args.since)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            count = export(factory, out, args.since)
    print(f"{count} audit event(s) exported", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the hash-chained audit trail").add_subparsers(
        dest="audit_command", required=True)
    p = audit.add_parser("verify", help="check the chain: any edit, deletion or reordering is reported")
    p.set_defaults(handler=cmd_verify)
    p = audit.add_parser("export", help="write audit events as JSON lines (chain order)")
    p.add_argument("--since", type=_since, help="only events at or after this date/time (UTC)")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
    p.set_defaults(handler=cmd_export)
