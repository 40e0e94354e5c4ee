"""The ``caseconsultant`` command line.

Every command prints human-readable text, or JSON on stdout with ``--json``; errors go to
stderr with a non-zero exit status.  Library code raises; only this module turns exceptions
into exit codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant import __version__
from consultant.logs import setup_logging
from consultant.settings import ConfigError, Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings, sessionmaker[Session]], int]


class CliError(Exception):
    """A user-facing error: printed to stderr, exit status 1."""


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# --- setup and services ---------------------------------------------------------------------
def cmd_init(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.db import upgrade

    upgrade(settings.database.url)
    print(f"database ready: {settings.database.url}")
    return 0


def cmd_service(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant import services

    if args.command == "demo":
        from consultant.demo import run_demo

        return run_demo(settings, once=args.once)
    if args.command == "worker":
        return services.run_worker(settings, args.queue or ())
    return services.run_command(args.command, settings)


def cmd_send_pending(args: argparse.Namespace, settings: Settings,
                     factory: sessionmaker[Session]) -> int:
    from consultant.outbox.send import send_one
    from consultant.runtime import Runtime
    from consultant.sweep import sweep
    from workers.app import configure

    configure(settings)
    rt = Runtime(settings)
    statuses: dict[str, int] = {}
    requeued: list[int] = []
    transport = rt.transport()
    try:
        def send(outbox_id: int) -> None:
            status = send_one(rt.factory, settings, outbox_id, transport, rt.sent_folder)
            statuses[status] = statuses.get(status, 0) + 1

        def enqueue_mail(mail_id: int) -> None:
            from workers.tasks import process_mail

            process_mail.delay(mail_id)
            requeued.append(mail_id)

        result = sweep(rt, enqueue_mail, send)
    finally:
        transport.close()
    summary = {"reconciled_sent": result.reconciled_sent, "needs_check": result.needs_check,
               "attempted": result.outbox_due, "results": statuses,
               "mails_requeued": len(requeued)}
    if args.json:
        _print_json(summary)
    else:
        print(f"sent/attempted {result.outbox_due} ({statuses or 'none'}); reconciled as sent "
              f"{result.reconciled_sent}; needs a human check {result.needs_check}; "
              f"unprocessed mails re-queued {len(requeued)}")
    return 0


# --- cases ----------------------------------------------------------------------------------
def cmd_cases_list(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.models import CASE_STATUSES, Case

    if args.status and args.status not in CASE_STATUSES:
        raise CliError(f"unknown status {args.status!r} (one of: {', '.join(CASE_STATUSES)})")
    with factory() as session:
        query = select(Case).order_by(Case.id)
        if args.status:
            query = query.where(Case.status == args.status)
        cases = session.execute(query).scalars().all()
        rows: list[dict[str, Any]] = [{"id": c.id, "status": c.status, "requester": c.requester.email,
                 "subject": c.subject, "created_at": c.created_at.isoformat()} for c in cases]
    if args.json:
        _print_json(rows)
    elif not rows:
        print("no cases")
    else:
        for r in rows:
            print(f"{r['id']:>6}  {r['status']:<16} {r['requester']:<32} {r['subject'][:60]}")
    return 0


def _get_case(session: Session, case_id: int):  # type: ignore[no-untyped-def]
    from consultant.models import Case

    case = session.get(Case, case_id)
    if case is None:
        raise CliError(f"case {case_id} does not exist")
    return case


def cmd_cases_show(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.views import case_json

    with factory() as session:
        data = case_json(session, settings, _get_case(session, args.id))
    if args.json:
        _print_json(data)
        return 0
    print(f"Case {data['id']}  [{data['status']}]  {data['subject']}")
    print(f"Requester: {data['requester']} ({data['plan']}, {data['answers_remaining']} answers left)")
    print(f"Messages: {', '.join(data['message_ids']) or '-'}")
    print(f"Rule hits: {', '.join(data['rule_hits']) or '-'}")
    for c in data["codes"]:
        print(f"  code  {c['system']:<10} {c['code']:<10} {c['description'] or ''}")
    for f in data["findings"]:
        print(f"  fact  {f.get('kind')}: {f.get('detail')} [{f.get('source')}]")
    if data["draft"]:
        d = data["draft"]
        print(f"\n--- draft v{d['version']} ({d['template']}, by {d['author']}) ---\n{d['text']}")
    for a in data["answers"]:
        print(f"answer {a['message_id']} {a['status']} {a['sent_at'] or ''}")
    return 0


def _dispatch(effects: Any, settings: Settings) -> None:
    """Enqueue follow-up work on the broker named by *these* settings (--config may differ
    from the environment the Celery app was first configured from)."""
    from workers.app import configure
    from workers.tasks import dispatch

    configure(settings)
    dispatch(effects)


def cmd_cases_approve(args: argparse.Namespace, settings: Settings,
                      factory: sessionmaker[Session]) -> int:
    from consultant.review.actions import approve

    text = None
    if args.text_file:
        path = Path(args.text_file)
        try:
            text = sys.stdin.read() if args.text_file == "-" else path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {args.text_file}: {exc}") from exc
        if not text.strip():
            raise CliError(f"{args.text_file} is empty; refusing to approve an empty answer")
    effects = approve(factory, settings, args.id, text=text, by=args.by, confirm_phi=args.confirm_phi)
    _dispatch(effects, settings)
    print(f"case {args.id} approved; answer queued (outbox {', '.join(map(str, effects.outbox_ids))})")
    return 0


def cmd_cases_reject(args: argparse.Namespace, settings: Settings,
                     factory: sessionmaker[Session]) -> int:
    from consultant.review.actions import reject

    reject(factory, args.id, reason=args.reason, by=args.by)
    print(f"case {args.id} rejected")
    return 0


# --- mail, outbox ---------------------------------------------------------------
def _list_rows(factory: sessionmaker[Session], model: Any, column: Any, value: str | None,
               to_json: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """All rows of ``model`` in id order, filtered on ``column == value`` when a value is given."""
    with factory() as session:
        query = select(model).order_by(model.id)
        if value:
            query = query.where(column == value)
        return [to_json(row) for row in session.execute(query).scalars()]


def _print_rows(args: argparse.Namespace, rows: list[dict[str, Any]],
                line: Callable[[dict[str, Any]], str]) -> int:
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print(line(row))
    return 0


def cmd_mail_list(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.models import InboundMail
    from consultant.views import mail_json

    rows = _list_rows(factory, InboundMail, InboundMail.disposition, args.disposition, mail_json)
    return _print_rows(args, rows, lambda r: (
        f"{r['id']:>6}  {r['disposition'] or 'pending':<12} case={r['case_id'] or '-':<5} "
        f"{(r['from'] or '-')[:30]:<30} {(r['subject'] or '')[:50]}"))


def cmd_outbox_list(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.models import Outbox
    from consultant.views import outbox_json

    rows = _list_rows(factory, Outbox, Outbox.status, args.status, outbox_json)
    return _print_rows(args, rows, lambda r: (
        f"{r['id']:>6}  {r['status']:<12} {r['kind']:<13} case={r['case_id'] or '-':<5} "
        f"{r['to']:<30} {r['last_error'] or ''}"))


def cmd_outbox_resolve(args: argparse.Namespace, settings: Settings,
                       factory: sessionmaker[Session]) -> int:
    from consultant.outbox.send import resolve

    try:
        resolve(factory, args.id, sent=args.sent, by=args.by)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"outbox {args.id}: " + ("recorded as sent" if args.sent else "queued to send again"))
    return 0


# --- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caseconsultant",
                                     description="Email-driven medical-coding consultations.")
    parser.add_argument("--config", help="TOML config file (default: $CASECONSULTANT_CONFIG "
                                         "or the bundled config/default.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str, parent: Any = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("init", cmd_init, "create or upgrade the database schema")
    p = add("demo", cmd_service, "run everything in one process with a sample question (no servers needed)")
    p.add_argument("--once", action="store_true",
                   help="short mode: exit once the sample answer is delivered")
    add("run", cmd_service, "run all components in one process (poller, SMTP listener, worker, sender)")
    add("poll", cmd_service, "run the IMAP poller")
    add("smtpd", cmd_service, "run the inbound SMTP listener")
    p = add("worker", cmd_service, "run a Celery worker for one queue (--queue), or all three")
    p.add_argument("--queue", action="append", choices=("intake", "drafting", "sending"),
                   help="the queue to serve (repeatable); default: all three, one pool each")
    add("console", cmd_service, "run the consultant web console")
    p = add("send-pending", cmd_send_pending, "send due answers now, reconcile interrupted sends")
    p.add_argument("--json", action="store_true")

    cases = sub.add_parser("cases", help="list, show, approve and reject cases").add_subparsers(
        dest="cases_command", required=True, metavar="ACTION")
    p = add("list", cmd_cases_list, "list cases", cases)
    p.add_argument("--status")
    p.add_argument("--json", action="store_true")
    p = add("show", cmd_cases_show, "show one case with its draft", cases)
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = add("approve", cmd_cases_approve, "approve the draft (or --text-file) and queue the answer", cases)
    p.add_argument("id", type=int)
    p.add_argument("--text-file", help="final answer text (- for stdin); default: the latest draft")
    p.add_argument("--by", default="cli", help="approving consultant's email")
    p.add_argument("--confirm-phi", action="store_true",
                   help="confirm the answer holds none of the patient identifiers removed from the mail "
                        "(required for such cases)")
    p = add("reject", cmd_cases_reject, "reject a case (no answer is sent, no quota charged)", cases)
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--by", default="cli")

    mail = sub.add_parser("mail", help="inbound mail and its dispositions").add_subparsers(
        dest="mail_command", required=True, metavar="ACTION")
    p = add("list", cmd_mail_list, "list inbound mail with dispositions", mail)
    p.add_argument("--disposition")
    p.add_argument("--json", action="store_true")
    from consultant.review.cli import register_mail

    register_mail(mail)  # show, retry, discard: the quarantine decisions

    outbox = sub.add_parser("outbox", help="outbound mail").add_subparsers(
        dest="outbox_command", required=True, metavar="ACTION")
    p = add("list", cmd_outbox_list, "list outbound mail", outbox)
    p.add_argument("--status")
    p.add_argument("--json", action="store_true")
    p = add("resolve", cmd_outbox_resolve, "settle a needs_check message after checking by hand", outbox)
    p.add_argument("id", type=int)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--sent", action="store_true", help="it did reach the requester")
    group.add_argument("--resend", action="store_true", help="it did not; send it again")
    p.add_argument("--by", default="cli")

    # Every command family is part of the package: a missing module is an error, not a skip.
    from consultant.audit import cli as audit_cli
    from consultant.codes import cli as codes_cli
    from consultant.drafting import cli as drafting_cli
    from consultant.privacy import cli as privacy_cli
    from consultant.quota import cli as quota_cli
    from consultant.review import cli as review_cli

    for mod in (codes_cli, review_cli, drafting_cli, quota_cli, privacy_cli, audit_cli):
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    long_running = args.command in ("run", "poll", "smtpd", "worker", "console")
    level = logging.DEBUG if args.verbose else (logging.INFO if long_running else logging.WARNING)
    # Text until the settings say otherwise (their own errors are printed, not logged).
    setup_logging("text", level)
    log_format = "text"
    try:
        settings = load_settings(args.config)
        log_format = settings.logging.format
        setup_logging(log_format, level)
        from consultant.db import make_engine, make_session_factory
        from consultant.privacy.crypto import load_keys

        # The demo keeps its own database and key file under var/demo/: loading keys here would
        # create a stray key file in the working directory.
        keys = None if args.command == "demo" else load_keys(settings.privacy)
        engine = make_engine(settings.database.url, keys=keys)
        factory = make_session_factory(engine)
        if args.command not in ("init", "demo") and not _schema_ready(engine):
            raise CliError(f"the database at {settings.database.url} has no schema yet; "
                           "run `caseconsultant init` first")
        status = int(args.handler(args, settings, factory))
        # Flush here, not at interpreter exit, so a closed pipe is handled below.
        sys.stdout.flush()
        return status
    except (CliError, ConfigError) as exc:
        _error(str(exc), log_format)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as exc:  # noqa: BLE001 - last resort: a clear message, not a traceback
        from consultant.review.actions import ActionError

        if isinstance(exc, ActionError):
            _error(str(exc), log_format)
            return 1
        logging.getLogger("caseconsultant").debug("unexpected error", exc_info=True)
        _error(f"{type(exc).__name__}: {exc} (run with -v for details)", log_format)
        return 2


def _error(message: str, log_format: str) -> None:
    """The one error line on stderr: a JSON record when logs are JSON (one record a line)."""
    if log_format == "json":
        logging.getLogger("caseconsultant").error(message)
    else:
        print(f"caseconsultant: error: {message}", file=sys.stderr)


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``caseconsultant codes show J1885 | head``).

    Nothing is wrong and nothing is left to say: point stdout at /dev/null so the interpreter's
    final flush does not raise again, and exit as a program killed by SIGPIPE would (128 + 13),
    without a message.  See the note on SIGPIPE in Python's ``signal`` documentation.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def _schema_ready(engine: Any) -> bool:
    from sqlalchemy import inspect

    try:
        return inspect(engine).has_table("cases")
    except Exception:  # noqa: BLE001
        return False


if __name__ == "__main__":
    sys.exit(main())
