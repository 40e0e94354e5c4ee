"""``caseconsultant requesters ...`` and ``caseconsultant orgs ...``: plans, balances, grants."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.cli import CliError, _dispatch, _print_json
from consultant.settings import Settings


def _run(action: Any, settings: Settings) -> Any:
    """Run an admin action; its errors become CLI errors, its effects are dispatched."""
    from consultant.quota.admin import QuotaAdminError

    try:
        result = action()
    except QuotaAdminError as exc:
        raise CliError(str(exc)) from exc
    if result.effects.draft_case_ids or result.effects.outbox_ids:
        _dispatch(result.effects, settings)
    return result


def _balance_line(d: dict[str, Any]) -> str:
    whose = f"org {d['org']}, " if d.get("org") else ""
    renew = f", renews {d['renews_on']}" if d.get("renews_on") else ""
    cap = (f", member {d['member_used']}/{d['member_cap']} this month"
           if d.get("member_cap") is not None else "")
    return (f"{whose}plan {d['plan']} ({d['kind']}): {d['answers_remaining']} remaining, "
            f"{d['answers_used']} used of {d['answers_allowed']}{renew}{cap}")


def _held_note(result: Any) -> str:
    held = len(result.effects.draft_case_ids)
    return f"; {held} held case(s) sent back to drafting" if held else ""


def cmd_list(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.models import Requester
    from consultant.quota import ledger

    with factory() as session:
        query = select(Requester).order_by(Requester.email)
        if args.plan:
            query = query.where(Requester.plan == args.plan)
        found = list(session.execute(query).scalars())
        balances = ledger.statuses(session, settings.quota, found)
        rows = [{**balances[r.id].as_json(), "name": r.name} for r in found]
    if args.org:
        rows = [r for r in rows if r["org"] == args.org]
    if args.json:
        _print_json(rows)
    elif not rows:
        print("no requesters")
    for r in rows if not args.json else []:
        print(f"{r['email']:<36} {_balance_line(r)}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.outbox.bounces import undeliverable_json
    from consultant.quota.admin import QuotaAdminError, find_requester, requester_json

    with factory() as session:
        try:
            requester = find_requester(session, args.email)
            data = requester_json(session, settings, requester, entries=args.entries)
        except QuotaAdminError as exc:
            raise CliError(str(exc)) from exc
        data["undeliverable"] = undeliverable_json(requester)
    if args.json:
        _print_json(data)
        return 0
    print(f"{data['email']}: {_balance_line(data)}")
    if data["undeliverable"]:
        print(f"  UNDELIVERABLE since {data['undeliverable']['since'][:19]}: "
              f"{data['undeliverable']['reason']}; nothing is sent to this address until "
              f"`requesters clear-undeliverable {data['email']}`")
    for e in data["ledger"]:
        link = f" case {e['case_id']}" if e["case_id"] else ""
        link += f" outbox {e['outbox_id']}" if e["outbox_id"] else ""
        print(f"  {e['at'][:19]}  {e['kind']:<7} {e['delta']:+4d} {e['bucket']:<8} "
              f"by {e['who']}: {e['why']}{link}")
    return 0


def cmd_clear_undeliverable(args: argparse.Namespace, settings: Settings,
                            factory: sessionmaker[Session]) -> int:
    from consultant.outbox.bounces import clear_undeliverable

    if not clear_undeliverable(factory, args.email, by=args.by):
        raise CliError(f"{args.email!r} is not marked undeliverable")
    print(f"{args.email.lower()}: mail allowed again (answers held meanwhile: `outbox list "
          "--status needs_check`, then `outbox resolve ID --resend`)")
    return 0


def cmd_grant(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.quota import admin

    result = _run(lambda: admin.grant(factory, settings, args.email, answers=args.answers,
                                      pack=args.pack, why=args.why or "", by=args.by), settings)
    if args.json:
        _print_json(result.data)
    else:
        g = result.data["granted"]
        print(f"{result.data['email']}: granted {g['delta']} ({g['why']}); "
              f"{_balance_line(result.data)}{_held_note(result)}")
    return 0


def cmd_refund(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.quota import admin

    result = _run(lambda: admin.refund(factory, settings, args.email, case_id=args.case,
                                       outbox_id=args.outbox, why=args.why, by=args.by), settings)
    if args.json:
        _print_json(result.data)
    else:
        print(f"{result.data['email']}: refunded 1; {_balance_line(result.data)}{_held_note(result)}")
    return 0


def cmd_set_plan(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.quota import admin

    result = _run(lambda: admin.set_plan(factory, settings, args.email, args.plan, by=args.by),
                  settings)
    if args.json:
        _print_json(result.data)
    else:
        print(f"{result.data['email']}: {_balance_line(result.data)}{_held_note(result)}")
        if "note" in result.data:
            print(f"note: {result.data['note']}")
    return 0


def _org_lines(data: dict[str, Any]) -> None:
    cap = f", each member at most {data['member_cap']}/month" if data["member_cap"] is not None else ""
    print(f"{data['name']}: plan {data['plan']} ({data['kind']}): {data['answers_remaining']} "
          f"remaining, {data['answers_used']} used{cap}")
    print(f"  domains: {', '.join(data['domains']) or '-'}")
    for m in data["members"]:
        how = "listed" if m["listed"] else "by domain"
        print(f"  member {m['email']} ({how})")


def cmd_orgs_add(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.quota import admin

    result = _run(lambda: admin.add_org(factory, settings, args.name, args.plan,
                                        domains=args.domain, members=args.member,
                                        member_cap=args.member_cap, by=args.by), settings)
    if args.json:
        _print_json(result.data)
    else:
        _org_lines(result.data)
    return 0


def cmd_orgs_show(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> int:
    from consultant.quota import admin, orgs

    with factory() as session:
        try:
            data = admin.org_json(session, settings, orgs.get_org(session, args.name))
        except orgs.OrgError as exc:
            raise CliError(str(exc)) from exc
    if args.json:
        _print_json(data)
    else:
        _org_lines(data)
    return 0


def cmd_orgs_members(args: argparse.Namespace, settings: Settings,
                     factory: sessionmaker[Session]) -> int:
    from consultant.quota import admin

    result = _run(lambda: admin.change_members(factory, settings, args.name, add=args.add,
                                               remove=args.remove, by=args.by), settings)
    if args.json:
        _print_json(result.data["members"])
    else:
        for m in result.data["members"]:
            print(f"{m['email']} ({'listed' if m['listed'] else 'by domain'})")
    return 0


def register(sub: Any) -> None:
    def add(parent: Any, name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    req = sub.add_parser("requesters", help="requesters, their plans and balances").add_subparsers(
        dest="requesters_command", required=True, metavar="ACTION")
    p = add(req, "list", cmd_list, "list requesters with their balance")
    p.add_argument("--plan")
    p.add_argument("--org", help="only members of this organisation")
    p.add_argument("--json", action="store_true")
    p = add(req, "show", cmd_show, "show a requester's balance and ledger")
    p.add_argument("email")
    p.add_argument("--entries", type=int, default=50, help="ledger entries to show (newest first)")
    p.add_argument("--json", action="store_true")
    p = add(req, "clear-undeliverable", cmd_clear_undeliverable,
            "allow mail again to an address that a hard bounce marked undeliverable")
    p.add_argument("email")
    p.add_argument("--by", default="cli")
    p = add(req, "grant", cmd_grant, "grant answers (or a top-up pack) to the balance an address "
                                     "spends (its organisation's, if it has one)")
    p.add_argument("email")
    p.add_argument("answers", type=int, nargs="?")
    p.add_argument("--pack", help="a top-up plan from [quota.plans]")
    p.add_argument("--why", help="recorded in the ledger (required without --pack)")
    p.add_argument("--by", default="cli")
    p.add_argument("--json", action="store_true")
    p = add(req, "refund", cmd_refund, "give back the answer charged for a case or outbox message")
    p.add_argument("email")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--case", type=int)
    which.add_argument("--outbox", type=int)
    p.add_argument("--why", required=True)
    p.add_argument("--by", default="cli")
    p.add_argument("--json", action="store_true")
    p = add(req, "set-plan", cmd_set_plan, "put a requester on a plan (held cases go back to "
                                           "drafting when it gives answers)")
    p.add_argument("email")
    p.add_argument("plan", help="guest, registered, or a lifetime/monthly plan from [quota.plans]")
    p.add_argument("--by", default="cli")
    p.add_argument("--json", action="store_true")

    org = sub.add_parser("orgs", help="organisations sharing one balance").add_subparsers(
        dest="orgs_command", required=True, metavar="ACTION")
    p = add(org, "add", cmd_orgs_add, "add an organisation with its plan, domains and members")
    p.add_argument("name")
    p.add_argument("--plan", required=True)
    p.add_argument("--domain", action="append", default=[], help="every address @DOMAIN is a member")
    p.add_argument("--member", action="append", default=[], help="a member address")
    p.add_argument("--member-cap", type=int, help="answers each member may use per month")
    p.add_argument("--by", default="cli")
    p.add_argument("--json", action="store_true")
    p = add(org, "show", cmd_orgs_show, "show an organisation's balance, domains and members")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p = add(org, "members", cmd_orgs_members, "list (and --add/--remove) listed members")
    p.add_argument("name")
    p.add_argument("--add", action="append", default=[])
    p.add_argument("--remove", action="append", default=[])
    p.add_argument("--by", default="cli")
    p.add_argument("--json", action="store_true")
