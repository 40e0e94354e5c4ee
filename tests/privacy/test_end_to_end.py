"""End to end on real servers, for every labelled PHI mail: not one identifier value reaches the
SMTP sink, a console page in a real browser, an API response, a log line, or the database
outside the encrypted raw column.

The mails go the whole way: stored, processed and drafted, approved through the HTTP API of
the console served by uvicorn (with the one confirmation a PHI case needs), sent over SMTP to an
aiosmtpd sink by the outbox sender; then every case page is loaded in Chromium, every API view
fetched, every table read.  (The Celery hop is covered by tests/review/test_browser.py; it is
left out here so that 66 sends do not depend on a Redis database shared with other test runs.)
"""

from __future__ import annotations

import html
import json
import logging
import re
import sqlite3
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr

import httpx
import pytest

from consultant.intake.store import Location, store_raw
from consultant.models import InboundMail, Outbox
from consultant.outbox.send import send_one
from consultant.outbox.transport import SmtpTransport
from consultant.processing import process_mail
from consultant.review import auth
from tests.privacy import labelled
from tests.review.conftest import CONSULTANT
from tests.review.test_browser import browser, log_in, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
PROMPT = re.compile(r"\[Consultant:[^\]]*\]")


def _as_sent_by_a_new_requester(mail: labelled.LabelledMail, n: int) -> bytes:
    """The labelled mail from its own address (each requester has one guest answer)."""
    msg = BytesParser(policy=policy.default).parsebytes(mail.raw)
    assert isinstance(msg, EmailMessage)
    name, _ = parseaddr(str(msg["From"]))
    del msg["From"]
    msg["From"] = f'"{name}" <requester{n}@clinic{n}.test>' if name else f"requester{n}@clinic{n}.test"
    return msg.as_bytes()


def _message_text(raw: bytes) -> str:
    """Subject and every decoded text part of a message (QP/base64 would hide a value)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    parts = [str(msg["Subject"] or "")]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))
    return "\n".join(parts)


def _database_text(url: str) -> str:
    """Every value of every table, except the encrypted raw mail itself."""
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    out = []
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            for row in conn.execute(f"SELECT * FROM {table}"):
                for column, value in zip(columns, row, strict=True):
                    if table == "inbound_mail" and column == "raw":
                        continue
                    if isinstance(value, bytes):
                        value = _message_text(value) if table == "outbox" else value.decode("utf-8", "replace")
                    out.append(str(value))
    finally:
        conn.close()
    return "\n".join(out)


def _leaks(value: str, text: str) -> bool:
    for candidate in {text, html.unescape(text)}:
        if re.search(rf"(?<![\w]){re.escape(value)}(?![\w])", candidate):
            return True
    return False


def test_no_identifier_leaves_the_encrypted_raw_mail(served, page, caplog):  # noqa: F811
    live = served
    caplog.set_level(logging.DEBUG)
    mails = labelled.load("mails_phi.toml")
    token = auth.mint_token(live.factory, CONSULTANT, "e2e")
    api = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    case_of: dict[str, int] = {}
    for n, mail in enumerate(mails):
        stored = store_raw(live.factory, _as_sent_by_a_new_requester(mail, n), Location("cli"))
        process_mail(live.factory, live.settings, stored.mail_id)
        with live.factory() as session:
            case_id = session.get(InboundMail, stored.mail_id).case_id
        assert case_id is not None, mail.id
        case_of[mail.id] = case_id

    per_case: dict[str, list[str]] = {}
    for mail in mails:
        case_id = case_of[mail.id]
        shown = api.get(f"/api/v1/cases/{case_id}").json()
        assert shown["redaction"]["counts"], mail.id  # every PHI mail had something removed
        answer = PROMPT.sub("Yes.", shown["draft"]["text"])
        refused = api.post(f"/api/v1/cases/{case_id}/approve", json={"text": answer})
        assert refused.status_code == 409 and "confirm_phi" in refused.json()["error"]
        approved = api.post(f"/api/v1/cases/{case_id}/approve",
                            json={"text": answer, "confirm_phi": True})
        assert approved.status_code == 200, (mail.id, approved.text)
        per_case[mail.id] = [json.dumps(shown, ensure_ascii=False), refused.text, approved.text,
                             api.get(f"/api/v1/cases/{case_id}").text]

    with live.factory() as session:
        outbox_ids = [o.id for o in session.query(Outbox).order_by(Outbox.id)]
    transport = SmtpTransport(live.settings.smtp_out)
    try:
        assert [send_one(live.factory, live.settings, i, transport) for i in outbox_ids] == \
            ["sent"] * len(mails)
    finally:
        transport.close()
    sent = [_message_text(m["raw"]) for m in live.sink.messages]

    log_in(page, live)
    pages = []
    for path in ["/queue", "/queue?status=all"]:
        page.goto(live.url + path)
        pages.append(page.content())
    for mail in mails:
        page.goto(f"{live.url}/cases/{case_of[mail.id]}")
        assert page.locator("#phi-removed").count() == 1, mail.id
        per_case[mail.id].append(page.content())
    listing = api.get("/api/v1/cases", params={"limit": 500}).text

    everywhere = "\n".join([*sent, *pages, listing, _database_text(live.settings.database.url),
                            *(r.getMessage() for r in caplog.records),
                            *(t for texts in per_case.values() for t in texts)])
    originals = {m.id: m.raw.decode("utf-8", "replace") for m in mails}
    leaks = []
    for mail in mails:
        own = "\n".join(per_case[mail.id])
        for kind, value in mail.phi:
            # Every value is looked for in its own case's pages, API views and answer; values
            # that no other mail contains (a date of service elsewhere may equal an admission
            # date here; an age "93" is in many texts) are looked for everywhere.
            unique = len(value) >= 5 and not any(_leaks(value, text) for other, text in
                                                 originals.items() if other != mail.id)
            if _leaks(value, own) or (unique and _leaks(value, everywhere)):
                leaks.append(f"{mail.id}: {kind} {value!r}")
    assert leaks == [], "\n".join(leaks)
    assert len(sent) == len(mails)
