"""Fixtures for the console: accounts, real cases made by the pipeline, logged-in clients."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from consultant.intake.store import Location, store_raw
from consultant.processing import Effects, process_mail
from consultant.review import auth
from consultant.settings import Settings
from tests.conftest import question_mail

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "correct horse battery staple"
CONSULTANT = "jane@cc.test"
ADMIN = "root@cc.test"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_case(factory: Any, settings: Settings, raw: bytes | None = None, **mail: Any) -> int:
    """A case made the real way: store the raw mail, then classify and draft it."""
    stored = store_raw(factory, raw if raw is not None else question_mail(**mail), Location("cli"))
    process_mail(factory, settings, stored.mail_id)
    from consultant.models import InboundMail

    with factory() as session:
        case_id = session.get(InboundMail, stored.mail_id).case_id
    assert case_id is not None, "the mail did not open or join a case"
    return int(case_id)


def backdate(factory: Any, case_id: int, hours: float) -> None:
    """Make a case (and the arrival of its first mail, where its SLA clock starts) ``hours``
    old, as a real day's queue would have it."""
    from datetime import timedelta

    from sqlalchemy import update

    from consultant.models import Case, InboundMail, utcnow

    then = utcnow() - timedelta(hours=hours)
    with factory() as session, session.begin():
        session.execute(update(Case).where(Case.id == case_id).values(created_at=then))
        first = session.get(Case, case_id).first_mail_id
        session.execute(update(InboundMail).where(InboundMail.id == first).values(received_at=then))


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, email: str = CONSULTANT, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": csrf_of(page.text), "next": "/queue"},
                       follow_redirects=False)


@dataclass
class ConsoleEnv:
    settings: Settings
    factory: Any
    app: Any
    dispatched: list[Effects] = field(default_factory=list)

    def client(self, **kwargs: Any) -> TestClient:
        return TestClient(self.app, **kwargs)

    def logged_in(self, email: str = CONSULTANT) -> TestClient:
        client = self.client()
        response = login(client, email)
        assert response.status_code == 303, response.text
        return client

    def case(self, **mail: Any) -> int:
        return make_case(self.factory, self.settings, **mail)


@pytest.fixture
def console(settings: Settings, factory: Any) -> Iterator[ConsoleEnv]:
    """The console app on the test database (SQLite and PostgreSQL), sends recorded not queued."""
    from consultant.review.web import create_app

    settings.console.secret_key = "test-secret-" + "x" * 32
    auth.add_user(factory, CONSULTANT, PASSWORD, role="consultant", name="Jane Coder")
    auth.add_user(factory, ADMIN, PASSWORD, role="admin", name="Ada Admin")
    env = ConsoleEnv(settings, factory, None)
    env.app = create_app(settings, factory, dispatch=env.dispatched.append)
    yield env
