"""The login lockout over real HTTP through uvicorn, whose proxy-header handling decides which
client address the lockout sees: X-Forwarded-For is believed only from [console]
trusted_proxies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from consultant.review import auth
from consultant.review.models import LoginAttempt
from tests.review.conftest import CONSULTANT, PASSWORD, csrf_of


@pytest.fixture
def served(console: Any) -> Iterator[Any]:
    """Start the console under uvicorn on a free port; yields a function making a server with
    the given trusted proxies (each stopped at the end)."""
    from consultant.review.web.server import ConsoleServer

    started: list[ConsoleServer] = []

    def serve(trusted: list[str]) -> str:
        console.settings.console.host = "127.0.0.1"
        console.settings.console.trusted_proxies = trusted
        server = ConsoleServer(console.settings, console.factory, port=0,
                               dispatch=console.dispatched.append).start()
        started.append(server)
        return server.url

    yield serve
    for server in started:
        server.stop()


def attempt(url: str, password: str, forwarded_for: str) -> int:
    with httpx.Client(base_url=url) as client:
        page = client.get("/login")
        response = client.post("/login", data={"email": CONSULTANT, "password": password,
                                               "csrf_token": csrf_of(page.text), "next": "/queue"},
                               headers={"X-Forwarded-For": forwarded_for})
        return response.status_code


def test_a_forged_forwarded_header_does_not_walk_around_the_lockout(served):
    url = served([])
    codes = [attempt(url, "wrong password!", f"203.0.113.{i}") for i in range(auth.MAX_FAILURES + 3)]
    assert codes[:auth.MAX_FAILURES] == [401] * auth.MAX_FAILURES
    assert codes[auth.MAX_FAILURES:] == [429] * 3
    # The locked account stays locked with yet another made-up address and the right password.
    assert attempt(url, PASSWORD, "198.51.100.99") == 429


def test_a_trusted_proxy_s_header_is_believed_and_the_account_limit_still_holds(served, console):
    url = served(["127.0.0.1"])
    codes = [attempt(url, "wrong password!", f"203.0.113.{i}")
             for i in range(auth.MAX_FAILURES_PER_ACCOUNT)]
    assert codes == [401] * auth.MAX_FAILURES_PER_ACCOUNT  # each address is under its own limit
    with console.factory() as session:
        ips = set(session.execute(select(LoginAttempt.ip)).scalars())
    assert ips == {f"203.0.113.{i}" for i in range(auth.MAX_FAILURES_PER_ACCOUNT)}
    # ... but the account as a whole is now locked, from any address.
    assert attempt(url, PASSWORD, "198.51.100.7") == 429
