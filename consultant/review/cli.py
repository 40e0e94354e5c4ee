"""``caseconsultant users ...``: console accounts and API tokens."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.cli import CliError
from consultant.review.models import ROLES
from consultant.settings import Settings


def _read_password(args: argparse.Namespace) -> str:
    # Never from the command line itself: argv is visible to every user in `ps`.
    if args.password_file:
        try:
            text = sys.stdin.read() if args.password_file == "-" else Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {args.password_file}: {exc}") from exc
        password = text.splitlines()[0] if text.splitlines() else ""
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("the passwords do not match")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CliError("empty password")
    return password


def cmd_users_add(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.review.auth import AuthError, add_user

    password = _read_password(args)
    try:
        user = add_user(factory, args.email, password, role=args.role, name=args.name,
                        credential=args.credential, team=args.team)
    except AuthError as exc:
        raise CliError(str(exc)) from exc
    print(f"{user.email}: {user.role} account ready" + (f", team {user.team}" if user.team else ""))
    return 0


def cmd_users_token(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.review.auth import AuthError, list_tokens, mint_token, revoke_tokens

    try:
        if args.list:
            for t in list_tokens(factory, args.email):
                state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
                used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                print(f"{t.prefix}…  {t.name or '(unnamed)':<24} created {t.created_at:%Y-%m-%d %H:%M}"
                      f"  last used {used:<16}  {state}")
            return 0
        if args.revoke:
            count = revoke_tokens(factory, args.email)
            print(f"{args.email}: {count} {'token' if count == 1 else 'tokens'} revoked")
            return 0
        token = mint_token(factory, args.email, args.name or "")
    except AuthError as exc:
        raise CliError(str(exc)) from exc
    # The token alone on stdout, so `TOKEN=$(caseconsultant users token ...)` works.
    print(token)
    print("(shown once; only its hash is stored)", file=sys.stderr)
    return 0


def cmd_users_list(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.review.models import ConsultantUser

    with factory() as session:
        users = session.execute(select(ConsultantUser).order_by(ConsultantUser.email)).scalars().all()
        for u in users:
            print(f"{u.email:<36} {u.role:<10} {'active' if u.active else 'disabled':<8} "
                  f"{u.team or '-':<16} {u.name or ''}")
    return 0


def register(subparsers: Any) -> None:
    users = subparsers.add_parser("users", help="console accounts and API tokens").add_subparsers(
        dest="users_command", required=True, metavar="ACTION")

    p = users.add_parser("add", help="add a console user (or reset their password and role)",
                         description="Add a console user. The password is read from "
                                     "--password-file, else prompted for, else read from stdin.")
    p.set_defaults(handler=cmd_users_add)
    p.add_argument("email")
    p.add_argument("--role", choices=ROLES, default="consultant")
    p.add_argument("--name")
    p.add_argument("--credential", help="e.g. CPC, CCS (shown in answers' footer)")
    p.add_argument("--team", help="the team whose macros the user shares (default: the default team)")
    p.add_argument("--password-file", help="file whose first line is the password (- for stdin)")

    p = users.add_parser("token", help="mint an API token for a user (printed once)")
    p.set_defaults(handler=cmd_users_token)
    p.add_argument("email")
    p.add_argument("--name", help="what the token is for")
    p.add_argument("--revoke", action="store_true", help="revoke all of the user's tokens instead")
    p.add_argument("--list", action="store_true",
                   help="list the user's tokens (prefix, name, dates, state) instead")

    p = users.add_parser("list", help="list console users")
    p.set_defaults(handler=cmd_users_list)


# --- quarantined mail: `mail show|retry|discard` (registered under `mail` by consultant.cli) ---
def cmd_mail_show(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.review import quarantine
    from consultant.review.web.mailview import inbound_item

    with factory() as session:
        try:
            mail = quarantine.get_mail(session, args.id)
        except quarantine.QuarantineError as exc:
            raise CliError(str(exc)) from exc
        print(f"Mail {mail.id}  [{mail.disposition or 'not processed'}]  {mail.size} bytes, "
              f"received {mail.received_at:%Y-%m-%d %H:%M} via {mail.source}")
        print(f"Reason: {mail.disposition_reason or '-'}  rule hits: {', '.join(mail.rule_hits or []) or '-'}")
        if mail.case_id:
            print(f"Case: {mail.case_id}")
        print("\n--- headers ---\n" + quarantine.header_text(mail))
        if mail.size > settings.service.max_message_bytes:
            print("\n(too large to parse here; headers only)")
        else:
            item = inbound_item(mail)
            print("\n--- body (plain text) ---\n" + (item.note or item.text or "(no plain-text part)"))
            for a in item.attachments:
                print(f"attachment: {a.get('filename') or '(unnamed)'} {a.get('content_type')} "
                      f"{a.get('size')} bytes")
        for event in quarantine.history(session, mail.id):
            print(f"{event.at:%Y-%m-%d %H:%M} {event.action} by {event.actor}: {event.detail}")
    return 0


def cmd_mail_retry(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.cli import _dispatch
    from consultant.review import quarantine

    if args.all == (args.id is not None):
        raise CliError("give one mail id, or --all for every quarantined mail")
    if args.all:
        with factory() as session:
            ids = [m.id for m in quarantine.quarantined(session, limit=100_000)]
    else:
        ids = [args.id]
    again = 0
    for mail_id in ids:
        try:
            result = quarantine.release(factory, settings, mail_id, by=args.by)
        except quarantine.QuarantineError as exc:
            raise CliError(str(exc)) from exc
        _dispatch(result.effects, settings)
        again += result.disposition == quarantine.QUARANTINED
        where = f" (case {result.case_id})" if result.case_id else ""
        print(f"mail {mail_id}: {result.disposition}{where}"
              + (f": {result.reason}" if result.disposition == quarantine.QUARANTINED else ""))
    if args.all:
        print(f"{len(ids)} released, {again} quarantined again")
    return 0


def cmd_mail_discard(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.review import quarantine

    try:
        quarantine.discard(factory, args.id, reason=args.reason, by=args.by)
    except quarantine.QuarantineError as exc:
        raise CliError(str(exc)) from exc
    print(f"mail {args.id} discarded")
    return 0


def register_mail(mail: Any) -> None:
    """Add the quarantine commands to ``caseconsultant mail``."""
    p = mail.add_parser("show", help="show one inbound mail: headers, reason, body")
    p.set_defaults(handler=cmd_mail_show)
    p.add_argument("id", type=int)
    p = mail.add_parser("retry", help="release quarantined mail into processing again (audited)")
    p.set_defaults(handler=cmd_mail_retry)
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--all", action="store_true", help="every quarantined mail")
    p.add_argument("--by", default="cli", help="who decides (recorded in the audit trail)")
    p = mail.add_parser("discard", help="close a quarantined mail without processing (audited)")
    p.set_defaults(handler=cmd_mail_discard)
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--by", default="cli", help="who decides (recorded in the audit trail)")
