"""``caseconsultant demo``: the whole pipeline in one process with no servers installed.

SQLite for data, a SQLite-backed Celery broker with a worker thread, the inbound SMTP listener
on 127.0.0.1:2525, and outbound mail written to a local Maildir.  The demo keeps its own state
under ``var/demo/`` and starts it afresh each run, so the sample requester always has quota.
"""

from __future__ import annotations

import mailbox
import re
import shutil
import smtplib
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import select

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


def _wait(rt: Runtime, predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with rt.factory() as session:
            value = predicate(session)
            if value:
                return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_demo(base: Settings, root: Path = Path("var/demo")) -> int:
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
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    settings = base
    settings.database.url = f"sqlite:///{root / 'caseconsultant.sqlite'}"
    settings.broker.url = f"sqla+sqlite:///{root / 'broker.sqlite'}"
    settings.smtp_out.maildir = str(root / "outbox-maildir")
    settings.smtp_out.host = ""
    settings.imap.host = ""
    print(f"[demo] state in {root}/ (database, broker, outbound Maildir)", flush=True)
    upgrade(settings.database.url)
    rt = Runtime(settings)
    worker = WorkerThread(settings).start()
    controller = start_smtpd(rt)
    sweeper = Sweeper(rt, interval=5).start()
    addr = settings.service.address
    print(f"[demo] SMTP intake on {settings.smtp_in.host}:{settings.smtp_in.port} for <{addr}>; "
          "Celery worker thread on the SQLite broker", flush=True)

    msg = EmailMessage(policy=default_policy)
    msg["From"] = f"Pat Coder <{SAMPLE_FROM}>"
    msg["To"] = addr
    msg["Subject"] = SAMPLE_SUBJECT
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(SAMPLE_BODY)
    with smtplib.SMTP(settings.smtp_in.host, settings.smtp_in.port, timeout=30) as smtp:
        smtp.send_message(msg)
    print(f"[demo] sent a sample question from {SAMPLE_FROM}: {SAMPLE_SUBJECT!r}", flush=True)

    def drafted(session):  # type: ignore[no-untyped-def]
        return session.execute(select(Case.id).where(Case.status.in_([AWAITING_REVIEW, NEEDS_INFO]))
                               ).scalar()

    case_id = _wait(rt, drafted, 90, "the draft")
    from consultant.views import case_json

    with rt.factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        data = case_json(session, settings, case)
    print(f"\n[demo] case {case_id}: status {data['status']}, requester {data['requester']} "
          f"({data['plan']}, {data['answers_remaining']} answer(s) left)")
    for code in data["codes"]:
        print(f"  {code['system']:<10} {code['code']:<8} {code['description'] or '(no descriptor)'}")
    print(f"\n----- machine draft (v{data['draft']['version']}, template {data['draft']['template']}) -----")
    print(data["draft"]["text"])

    with rt.factory() as session:
        from consultant.codes.releases import current_releases

        if not current_releases(session):
            print("[demo] only the built-in ICD-10-CM data is loaded. Import CMS files to see "
                  "HCPCS, MUE, add-on and PTP facts in drafts, e.g.\n"
                  "         caseconsultant codes import hcpcs HCPC2026_JAN_ANWEB.txt\n"
                  "         caseconsultant codes import mue MCR_MUE_PractitionerServices.csv\n"
                  "       (or `caseconsultant codes update` on a machine with internet access)",
                  flush=True)
    # A consultant fills in every "[Consultant: …]" prompt before approving (approval refuses
    # otherwise); the demo stands in for one with a clearly marked sentence.
    answer = re.sub(rf"{re.escape(PROMPT_PREFIX)}[^\]]*\]",
                    "(Demo: a certified consultant writes this part of the answer.)",
                    data["draft"]["text"])
    effects = approve(rt.factory, settings, case_id, text=answer, by="demo-consultant@example.org")
    dispatch(effects)
    print(f"[demo] a stand-in consultant filled the prompts and approved case {case_id}; "
          "waiting for the answer to go out…", flush=True)

    def sent(session):  # type: ignore[no-untyped-def]
        case = session.get(Case, case_id)
        return case.status == SENT

    _wait(rt, sent, 90, "the answer to be sent")
    box = mailbox.Maildir(settings.smtp_out.maildir, create=False)
    for key in box.iterkeys():
        parsed = BytesParser(policy=default_policy).parsebytes(box.get_bytes(key))
        print(f"\n----- answer delivered to {settings.smtp_out.maildir} -----")
        for header in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References"):
            print(f"{header}: {parsed[header]}")
        print()
        plain = parsed.get_body(preferencelist=("plain",))
        print(plain.get_content() if plain is not None else "(no text part)")
    print(f"""[demo] done. The service keeps running; send more questions, e.g.:

  swaks --server {settings.smtp_in.host}:{settings.smtp_in.port} --to {addr} \\
        --from you@example.org --header 'Subject: 64483 with 64484?' \\
        --body 'Can 64484 be billed without 64483? Medicare, office, DOS 2026-05-01.'

and in another terminal (same directory):

  export CASECONSULTANT_DATABASE__URL=sqlite:///{root}/caseconsultant.sqlite
  export CASECONSULTANT_BROKER__URL=sqla+sqlite:///{root}/broker.sqlite
  caseconsultant cases list
  caseconsultant cases show ID
  caseconsultant cases approve ID

Answers appear as files in {settings.smtp_out.maildir}/new. Ctrl-C to stop.""", flush=True)
    return wait_forever([worker.stop, controller.stop, sweeper.stop], done)
