"""``caseconsultant demo``: the whole pipeline in one process with no servers installed.

SQLite for data, a SQLite-backed Celery broker with a worker thread, the inbound SMTP listener
on 127.0.0.1:2525 (another free port when that one is taken), and outbound mail written to a
local Maildir.  Code data: the built-in ICD-10-CM plus the excerpt of the CMS files shipped in
``consultant/demo_data`` (made by ``scripts/make_demo_data.py``), imported by the product's own
importers, so the sample's facts cite real releases.  The demo keeps its state under
``var/demo/`` of the working directory and starts it afresh each run, so the sample requester
always has quota.  ``--once`` (short mode) exits when the answer is delivered.
"""

from __future__ import annotations

import json
import mailbox
import re
import shutil
import smtplib
import socket
import sys
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from email.utils import make_msgid
from importlib.resources import files
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import upgrade
from consultant.drafting.suggest import PROMPT_PREFIX
from consultant.models import AWAITING_REVIEW, NEEDS_INFO, SENT, Case
from consultant.runtime import Runtime
from consultant.settings import Settings

SAMPLE_FROM = "coder@example.org"
SAMPLE_SUBJECT = "Toradol 60 mg IM - how many units of J1885? Also 20610 with 99214"
SAMPLE_BODY = """Hi,

Medicare patient, office visit on 03/12/2026. The physician gave ketorolac (Toradol) 60 mg IM
and did a large-joint injection (20610) at the same visit as a level 4 E/M (99214).
Diagnosis M17.11.

How many units of J1885 do we bill, and can 20610 be billed with 99214 (modifier 25?)

Thanks,
Pat
"""
# The shipped excerpt, in import order (PTP: the older dated table first, so the newest
# practitioner release ends up in force).
DEMO_DATA = (
    ("hcpcs", "HCPC2026_JAN_ANWEB_01122026.txt.gz"),
    ("mue", "MCR_MUE_PractitionerServices_Eff_04-01-2026.csv.gz"),
    ("aoc", "AOC_V2026Q2-MCR.xlsx"),
    ("ptp", "ptp_practitioner_v302_2024q3.csv.gz"),
    ("ptp", "ptp_practitioner_v322_2026q3.csv.gz"),
)


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _wait(rt: Runtime, predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with rt.factory() as session:
            value = predicate(session)
            if value:
                return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def import_demo_data(factory: sessionmaker[Session]) -> list[str]:
    """Import the shipped CMS excerpt; returns the names of the releases now in force."""
    from consultant.codes.releases import current_releases, import_release

    root = files("consultant.demo_data")
    for kind, name in DEMO_DATA:
        import_release(factory, kind, Path(str(root / name)))
    with factory() as session:
        return sorted(ref.name for ref in current_releases(session).values())


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def command_prefix() -> str:
    """How to run this same ``caseconsultant`` again: the bare name only when it is what PATH
    finds (after ``make demo`` it is ``.venv/bin/caseconsultant``, not on PATH)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "caseconsultant" and argv0.exists():
        on_path = shutil.which("caseconsultant")
        if on_path and Path(on_path).resolve() == argv0.resolve():
            return "caseconsultant"
        return str(argv0.absolute())
    return f"{sys.executable} -m consultant.cli"


def write_config(settings: Settings, path: Path) -> None:
    """The demo's settings as a TOML file, so later commands reach the same database."""
    values: dict[str, dict[str, object]] = {
        "database": {"url": settings.database.url},
        "broker": {"url": settings.broker.url},
        "service": {"address": settings.service.address},
        "smtp_in": {"host": settings.smtp_in.host, "port": settings.smtp_in.port},
        "smtp_out": {"maildir": settings.smtp_out.maildir},
        "privacy": {"key_file": settings.privacy.key_file},
    }
    lines = ["# Written by `caseconsultant demo`: the demo's database, broker and ports."]
    for section, keys in values.items():
        lines.append(f"\n[{section}]")
        # JSON strings are valid TOML basic strings (same escapes).
        lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def send_sample(settings: Settings) -> None:
    msg = EmailMessage(policy=default_policy)
    msg["From"] = f"Pat Coder <{SAMPLE_FROM}>"
    msg["To"] = settings.service.address
    msg["Subject"] = SAMPLE_SUBJECT
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(SAMPLE_BODY)
    with smtplib.SMTP(settings.smtp_in.host, settings.smtp_in.port, timeout=30) as smtp:
        smtp.send_message(msg)


def print_case(rt: Runtime, case_id: int) -> str:
    """Print the case and its machine draft; returns the draft's text."""
    from consultant.views import case_json

    with rt.factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        data = case_json(session, rt.settings, case)
    print(f"\n[demo] case {case_id}: status {data['status']}, requester {data['requester']} "
          f"({data['plan']}, {data['answers_remaining']} answer(s) left)")
    for code in data["codes"]:
        print(f"  {code['system']:<10} {code['code']:<8} {code['description'] or '(no descriptor)'}")
    print(f"\n----- machine draft (v{data['draft']['version']}, template {data['draft']['template']}) -----")
    print(data["draft"]["text"], flush=True)
    return str(data["draft"]["text"])


def print_answers(maildir: str) -> None:
    box = mailbox.Maildir(maildir, create=False)
    for key in box.iterkeys():
        parsed = BytesParser(policy=default_policy).parsebytes(box.get_bytes(key))
        print(f"\n----- answer delivered to {maildir} -----")
        for header in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References"):
            print(f"{header}: {parsed[header]}")
        print()
        plain = parsed.get_body(preferencelist=("plain",))
        print(plain.get_content() if plain is not None else "(no text part)", flush=True)


def next_steps(settings: Settings, config: Path) -> str:
    cc = f"{command_prefix()} --config {config}"
    host, port, addr = settings.smtp_in.host, settings.smtp_in.port, settings.service.address
    question = "Can 64484 be billed without 64483? Medicare, office, DOS 2026-05-01."
    if shutil.which("swaks"):
        send = (f"  swaks --server {host}:{port} --to {addr} --from you@example.org \\\n"
                f"        --header 'Subject: 64483 with 64484?' --body '{question}'")
    else:
        send = (f"  {sys.executable} -c \"import smtplib; from email.message import EmailMessage as M; "
                f"m = M(); m['From'] = 'you@example.org'; m['To'] = '{addr}'; "
                f"m['Subject'] = '64483 with 64484?'; m.set_content('{question}'); "
                f"smtplib.SMTP('{host}', {port}).send_message(m)\"")
    return f"""[demo] done. The service keeps running; send more questions, e.g.:

{send}

and in another terminal (any directory; the file holds the demo's database, broker and ports):

  {cc} cases list
  {cc} cases show ID
  {cc} cases approve ID
  {cc} codes show 64484

Answers appear as files in {settings.smtp_out.maildir}/new. Ctrl-C to stop."""


def run_demo(base: Settings, root: Path = Path("var/demo"), once: bool = False) -> int:
    from consultant.review.actions import approve
    from consultant.services import (
        Sweeper,
        WorkerThread,
        start_smtpd,
        stop_requested,
        wait_forever,
    )
    from workers.tasks import dispatch

    done = stop_requested()
    root = root.absolute()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    settings = base
    # Absolute paths: the printed next steps work from any directory.
    settings.database.url = f"sqlite:///{root / 'caseconsultant.sqlite'}"
    settings.broker.url = f"sqla+sqlite:///{root / 'broker.sqlite'}"
    settings.smtp_out.maildir = str(root / "outbox-maildir")
    # The raw-mail key beside the database: later commands (run from anywhere with demo.toml)
    # must decrypt the same mail; the default key file is relative to the working directory.
    if not settings.privacy.raw_mail_keys:
        settings.privacy.key_file = str(root / "raw-mail.keys")
    settings.smtp_out.host = ""
    settings.imap.host = ""
    host, wanted = settings.smtp_in.host, settings.smtp_in.port
    if not port_free(host, wanted):
        settings.smtp_in.port = free_port(host)
        say(f"{host}:{wanted} is taken; the SMTP intake uses {host}:{settings.smtp_in.port} "
            "instead (choose one with [smtp_in] port or CASECONSULTANT_SMTP_IN__PORT)")
    config = root / "demo.toml"
    write_config(settings, config)
    say(f"state in {root}/ (database, broker, outbound Maildir, demo.toml)")
    upgrade(settings.database.url)
    rt = Runtime(settings)
    releases = import_demo_data(rt.factory)
    say("code data: ICD-10-CM FY2026 (built in) and an excerpt of the CMS files for the sample's "
        "codes, imported as published: " + "; ".join(releases))
    worker = WorkerThread(settings).start()
    controller = start_smtpd(rt)
    sweeper = Sweeper(rt, interval=5).start()
    stops = [worker.stop, controller.stop, sweeper.stop]
    addr = settings.service.address
    say(f"SMTP intake on {host}:{settings.smtp_in.port} for <{addr}>; a Celery worker thread on "
        "the SQLite broker")
    try:
        send_sample(settings)
        say(f"sent a sample question from {SAMPLE_FROM}: {SAMPLE_SUBJECT!r}")

        def drafted(session):  # type: ignore[no-untyped-def]
            return session.execute(select(Case.id).where(
                Case.status.in_([AWAITING_REVIEW, NEEDS_INFO]))).scalar()

        case_id = _wait(rt, drafted, 90, "the draft")
        draft = print_case(rt, case_id)
        # A consultant fills in every "[Consultant: …]" prompt before approving (approval
        # refuses otherwise); the demo stands in for one with a clearly marked sentence.
        answer = re.sub(rf"{re.escape(PROMPT_PREFIX)}[^\]]*\]",
                        "(Demo: a certified consultant writes this part of the answer.)", draft)
        effects = approve(rt.factory, settings, case_id, text=answer, by="demo-consultant@example.org")
        dispatch(effects)
        say(f"a stand-in consultant approved case {case_id}; waiting for the answer to go out…")

        def sent(session):  # type: ignore[no-untyped-def]
            case = session.get(Case, case_id)
            return case.status == SENT

        _wait(rt, sent, 90, "the answer to be sent")
        print_answers(settings.smtp_out.maildir)
    except BaseException:
        for stop in reversed(stops):
            stop()
        raise
    if once:
        say(f"short mode: stopping. The demo's state stays in {root}/; inspect it with\n"
            f"  {command_prefix()} --config {config} cases list")
        for stop in reversed(stops):
            stop()
        return 0
    print(next_steps(settings, config), flush=True)
    return wait_forever(stops, done)
