"""`caseconsultant notes list|add|remove`: consultants' knowledge notes on codes and code pairs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.drafting import notes
from consultant.settings import Settings


def _cli_error(message: str) -> Exception:
    from consultant.cli import CliError

    return CliError(message)


def cmd_notes_list(args: argparse.Namespace, settings: Settings,
                   factory: sessionmaker[Session]) -> int:
    with factory() as session:
        try:
            rows = notes.list_notes(session, args.code, include_removed=args.all)
        except notes.NoteError as exc:
            raise _cli_error(str(exc)) from exc
        items = [notes.as_dict(n) for n in rows]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no notes" + (f" on {args.code}" if args.code else ""))
        return 0
    for n in items:
        removed = " (removed)" if n["removed"] else ""
        print(f"#{n['id']}  {n['subject'].replace('+', ' / ')}  {n['author']}, {n['date']}{removed}")
        print(f"    {n['text']}")
    return 0


def cmd_notes_add(args: argparse.Namespace, settings: Settings,
                  factory: sessionmaker[Session]) -> int:
    text = " ".join(args.text)
    try:
        with transaction(factory) as session:
            note = notes.add_note(session, args.code, text, args.by, case_id=args.case)
            out: dict[str, Any] = notes.as_dict(note)
    except notes.NoteError as exc:
        raise _cli_error(str(exc)) from exc
    print(f"note #{out['id']} saved on {out['subject'].replace('+', ' / ')}")
    return 0


def cmd_notes_remove(args: argparse.Namespace, settings: Settings,
                     factory: sessionmaker[Session]) -> int:
    try:
        with transaction(factory) as session:
            notes.remove_note(session, args.id, args.by)
    except notes.NoteError as exc:
        raise _cli_error(str(exc)) from exc
    print(f"note #{args.id} removed")
    return 0


def register(sub: Any) -> None:
    """Add the ``notes`` command group to the main parser's subcommands."""
    group = sub.add_parser("notes", help="consultants' notes on codes and code pairs").add_subparsers(
        dest="notes_command", required=True, metavar="ACTION")

    p = group.add_parser("list", help="list notes (on one code or pair)",
                         description="list notes, newest first")
    p.add_argument("code", nargs="?", help='a code ("J1885") or pair ("20610/99214")')
    p.add_argument("--all", action="store_true", help="include removed notes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_notes_list)

    p = group.add_parser("add", help="add a note on a code or pair",
                         description="add a note; later drafts involving the code(s) show it")
    p.add_argument("code", help='a code ("J1885") or pair ("20610/99214")')
    p.add_argument("text", nargs="+", help="the note")
    p.add_argument("--by", required=True, help="author (consultant's email or name)")
    p.add_argument("--case", type=int, help="the case that prompted the note")
    p.set_defaults(handler=cmd_notes_add)

    p = group.add_parser("remove", help="remove a note (kept in history)",
                         description="remove a note; it no longer appears in drafts")
    p.add_argument("id", type=int)
    p.add_argument("--by", required=True)
    p.set_defaults(handler=cmd_notes_remove)
