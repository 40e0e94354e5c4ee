"""A consultant in a real browser (Debian's Chromium via Playwright) against the console served by
uvicorn, with a real Celery worker on Redis delivering answers to an SMTP sink.

Screenshots of the queue and a case are written to the test's temp dir; with
``CC_UPDATE_SCREENSHOTS=1`` they also replace docs/screenshots/queue.png and case.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from consultant.models import Case, QuotaEntry
from tests.conftest import make_settings
from tests.review.conftest import ADMIN, CONSULTANT, PASSWORD, make_case
from tests.review.conftest import backdate as backdate_case
from tests.review.test_case_actions import html_mail
from tests.servers import REPO, unavailable, wait_for

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (set CHROMIUM_PATH "
                    "for another location; never `playwright install` here)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("python playwright is not installed: pip install -e .[test]")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Live:
    settings: Any
    factory: Any
    url: str
    sink: Any

    def case(self, **mail: Any) -> int:
        return make_case(self.factory, self.settings, **mail)

    def status(self, case_id: int) -> str:
        with self.factory() as session:
            return session.get(Case, case_id).status


@pytest.fixture
def live(tmp_path: Path, redis_url: str, smtp_sink: Any) -> Iterator[Live]:
    """The console on a free port, a Celery worker on Redis, answers going to the SMTP sink."""
    from celery.contrib.testing.worker import start_worker

    from consultant.db import make_engine, make_session_factory, upgrade
    from consultant.review import auth
    from consultant.review.web.server import ConsoleServer
    from workers.app import app, configure

    url = f"sqlite:///{tmp_path / 'cc.sqlite'}"
    upgrade(url)
    settings = make_settings(url, tmp_path, smtp_out={"maildir": "", "host": smtp_sink.host,
                                                      "port": smtp_sink.port},
                             console={"host": "127.0.0.1", "secret_key": "browser-test-" + "k" * 32})
    settings.broker.url = redis_url
    from consultant.privacy.crypto import load_keys

    engine = make_engine(url, keys=load_keys(settings.privacy))
    factory = make_session_factory(engine)
    auth.add_user(factory, CONSULTANT, PASSWORD, name="Jane Coder", credential="CPC")
    auth.add_user(factory, ADMIN, PASSWORD, role="admin", name="Ada Admin")
    configure(settings)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=10):
        # The console's own dispatcher: the real path from an approval to the Celery queue.
        server = ConsoleServer(settings, factory, port=0).start()
        try:
            yield Live(settings, factory, server.url, smtp_sink)
        finally:
            server.stop()
            engine.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


def log_in(page: Any, live: Live, email: str = CONSULTANT) -> None:
    page.goto(live.url + "/queue")
    assert "/login" in page.url
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live.url + "/queue")


def screenshot(page: Any, tmp_path: Path, name: str, full_page: bool = False) -> None:
    target = tmp_path / name
    page.screenshot(path=str(target), full_page=full_page)
    if os.environ.get("CC_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, SCREENSHOTS / name)


def backdate(live: Live, case_id: int, hours: float) -> None:
    # Only the age changes, so the queue shows the SLA colours a real day would.
    backdate_case(live.factory, case_id, hours)


def test_log_in_edit_approve_and_the_answer_arrives(live, page, tmp_path):
    oldest = live.case(sender="coder@ortho-clinic.test", subject="Modifier 25 with 99214 and 20610 on the same day?",
                       body="Established patient, knee injection 20610 and a separate E/M 99214 "
                            "on DOS 2026-05-04, office, Medicare. Is modifier 25 appropriate?")
    others = [
        live.case(sender="billing@radonc.test", subject="Can 77301 and 77338 be billed together?"),
        live.case(sender="pharmacy@hospital.test", subject="J1885 units for 60 mg ketorolac?",
                  body="Ketorolac 60 mg IV given in the ED. How many units of J1885?"),
        live.case(sender="hims@clinic.test", subject="ICD-10 for type 2 diabetes with CKD stage 3a",
                  body="Which codes for T2DM with diabetic CKD stage 3a? DOS 2026-05-01.\n"
                       "Patient: John Smith, DOB 03/14/1956, MRN 00482913."),
        live.case(sender="frontdesk@peds.test", subject="99392 with 90460 and 90461 for two vaccines?"),
    ]
    for case_id, hours in zip([oldest, *others], (5.2, 3.4, 1.6, 0.9, 0.2), strict=True):
        backdate(live, case_id, hours)

    log_in(page, live)
    rows = page.locator("tr.row")
    assert rows.count() == 5
    assert "PHI suspected" in rows.nth(3).inner_text()
    assert rows.first.get_attribute("data-case") == str(oldest)
    assert "late" in rows.first.inner_text()
    screenshot(page, tmp_path, "queue.png")

    rows.first.locator("a").first.click()
    page.wait_for_url(f"{live.url}/cases/{oldest}")
    answer = ("Yes. Report 99214-25 with 20610 when the E/M is significant and separately "
              "identifiable from the decision for the injection; document both.")
    page.fill("#draft-text", answer)
    page.click("button#save")
    assert "Draft saved." in page.locator(".flash[role=status]").inner_text()
    assert page.input_value("#draft-text") == answer
    screenshot(page, tmp_path, "case.png", full_page=True)

    page.click("button#approve")
    assert f"Case {oldest} approved" in page.locator(".flash[role=status]").inner_text()
    # Approval moves the consultant on to the oldest case still awaiting review.
    with live.factory() as session:
        waiting = session.execute(select(Case.id).where(Case.status == "awaiting_review")
                                  .order_by(Case.created_at)).scalars().first()
    assert page.url == (f"{live.url}/cases/{waiting}" if waiting else f"{live.url}/queue")

    wait_for(lambda: len(live.sink.messages) == 1, timeout=30, what="the answer at the SMTP sink")
    [msg] = live.sink.parsed()
    assert msg["To"] == "coder@ortho-clinic.test"
    assert f"[CC-{oldest}]" in msg["Subject"]
    assert answer in " ".join(msg.get_body(preferencelist=("plain",)).get_content().split())
    wait_for(lambda: live.status(oldest) == "sent", timeout=15, what="the case marked sent")
    page.goto(f"{live.url}/cases/{oldest}")
    assert "approved" in page.locator("table").last.inner_text() or "approved" in page.content()
    assert CONSULTANT in page.content()


def test_request_info_sends_a_question_and_charges_nothing(live, page):
    case_id = live.case(sender="coder@clinic.test", subject="Units?", body="How many units?")
    log_in(page, live)
    page.goto(f"{live.url}/cases/{case_id}")
    page.fill("#draft-text", "Which drug and dose was given, and on what date of service?")
    page.click("button#request-info")
    assert "no quota charged" in page.locator(".flash[role=status]").inner_text()
    wait_for(lambda: len(live.sink.messages) == 1, timeout=30, what="the question at the SMTP sink")
    [msg] = live.sink.parsed()
    assert "Which drug and dose was given" in msg.get_body(preferencelist=("plain",)).get_content()
    assert live.status(case_id) == "awaiting_reply"
    with live.factory() as session:
        assert session.execute(select(QuotaEntry).where(QuotaEntry.kind == "charge")).first() is None
    assert "awaiting reply" in page.locator("h1 .status").inner_text()
    assert page.locator("button#approve").count() == 0


def test_anonymous_access_redirects_and_csrf_less_posts_are_refused(live, page):
    case_id = live.case()
    page.goto(f"{live.url}/cases/{case_id}")
    assert page.url.startswith(f"{live.url}/login?next=")
    assert page.locator("#password").is_visible()

    log_in(page, live)
    # Same cookies as the browser, but no CSRF token: what a forged cross-site form would send.
    response = page.context.request.post(f"{live.url}/cases/{case_id}/approve",
                                         form={"text": "forged answer"}, max_redirects=0)
    assert response.status == 403
    assert live.status(case_id) == "awaiting_review"
    assert live.sink.messages == []


def test_hostile_mail_html_runs_no_script(live, page):
    case_id = make_case(live.factory, live.settings, raw=html_mail())
    log_in(page, live)
    page.goto(f"{live.url}/cases/{case_id}")
    page.click("details summary")
    frame_el = page.locator("iframe.mailhtml")
    frame_el.wait_for()
    assert frame_el.get_attribute("sandbox") == ""
    inner = page.frame_locator("iframe.mailhtml")
    assert "J1885" in inner.locator("body").inner_text()
    # The link lost its javascript: target; clicking it does nothing.
    inner.locator("a", has_text="click me").click()
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    for frame in page.frames:
        assert frame.evaluate("typeof window.__xss") == "undefined"
    assert page.dialogs == []
    assert "<script>" not in page.content().lower()
