"""``caseconsultant purge`` and ``caseconsultant keys generate|rotate``."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from consultant.settings import Settings


def cmd_purge(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.privacy.retention import purge

    result = purge(factory, settings.privacy, dry_run=args.dry_run)
    verb = "would purge" if args.dry_run else "purged"
    print(f"{verb} the raw copy of {result.mails} mail(s) received more than "
          f"{settings.privacy.retention_days} days ago; {verb} {result.audit_events} audit "
          f"event(s) older than {settings.privacy.audit_retention_days} days")
    return 0


def cmd_keys_generate(args: argparse.Namespace, settings: Settings,
                      factory: sessionmaker[Session]) -> int:
    from consultant.privacy.crypto import generate_key

    print(generate_key())
    return 0


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings,
                    factory: sessionmaker[Session]) -> int:
    from consultant.privacy.keys import rotate

    done = rotate(factory, progress=lambda n: print(f"  {n} mail(s) re-encrypted", flush=True))
    print(f"{done} raw mail(s) now encrypted with the first configured key; the other keys "
          "can be removed from [privacy] raw_mail_keys")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("purge", help="purge raw mail past its retention period (and old audit events)",
                       description="Remove the raw (encrypted) copy of every processed mail older "
                                   "than [privacy] retention_days, and audit events older than "
                                   "audit_retention_days; redacted cases stay.")
    p.add_argument("--dry-run", action="store_true", help="only count what would be purged")
    p.set_defaults(handler=cmd_purge)
    keys = sub.add_parser("keys", help="raw-mail encryption keys").add_subparsers(
        dest="keys_command", required=True)
    p = keys.add_parser("generate", help="print a new key (put it first in [privacy] raw_mail_keys)")
    p.set_defaults(handler=cmd_keys_generate)
    p = keys.add_parser("rotate", help="re-encrypt every stored raw mail with the first key")
    p.set_defaults(handler=cmd_keys_rotate)
