"""Login, sessions, CSRF and the login rate limit, over HTTP."""

from __future__ import annotations

import logging

import pytest

from consultant.review import auth
from consultant.review.models import ConsoleSession
from tests.review.conftest import ADMIN, CONSULTANT, PASSWORD, csrf_of, login


@pytest.mark.parametrize("path", ["/queue", "/cases/1", "/requesters", "/account", "/"])
def test_anonymous_browsers_are_sent_to_login(console, path):
    response = console.client().get(path, follow_redirects=False)
    assert response.status_code == 303
    target = "/queue" if path == "/" else path
    if path == "/":
        response = console.client().get(target, follow_redirects=False)
    assert response.headers["location"].startswith("/login?next=")
    assert target in response.headers["location"].replace("%2F", "/")


def test_login_sets_a_hardened_session_cookie(console):
    client = console.client()
    response = login(client)
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    cookie = [c for c in response.headers.get_list("set-cookie") if c.startswith("cc_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    page = client.get("/queue")
    assert page.status_code == 200 and "Jane Coder" in page.text


def test_secure_cookies_when_configured(console):
    console.settings.console.secure_cookies = True
    response = login(console.client(base_url="https://testserver"))
    cookie = [c for c in response.headers.get_list("set-cookie") if c.startswith("cc_session=")][0]
    assert "Secure" in cookie


def test_wrong_password_and_unknown_account_look_alike(console):
    wrong = login(console.client(), CONSULTANT, "not the password")
    unknown = login(console.client(), "nobody@cc.test", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password" in wrong.text and "Wrong email or password" in unknown.text


def test_login_without_csrf_token_is_refused(console):
    client = console.client()
    client.get("/login")
    response = client.post("/login", data={"email": CONSULTANT, "password": PASSWORD},
                           follow_redirects=False)
    assert response.status_code == 403
    assert "cc_session" not in response.cookies


def test_five_failures_lock_the_account_from_that_address(console):
    client = console.client()
    for _ in range(auth.MAX_FAILURES):
        assert login(client, CONSULTANT, "wrong password!").status_code == 401
    # Even the right password is not checked once the limit is reached.
    limited = login(client, CONSULTANT, PASSWORD)
    assert limited.status_code == 429 and "Too many failed attempts" in limited.text
    # Another account from the same address still works.
    assert login(console.client(), ADMIN, PASSWORD).status_code == 303
    # The same account from another address still works (the limit is per account + IP).
    result = auth.authenticate(console.factory, CONSULTANT, PASSWORD, "198.51.100.7")
    assert result.user is not None and not result.limited


def test_post_without_or_with_forged_csrf_token_is_refused(console):
    case_id = console.case()
    client = console.logged_in()
    for data in ({"text": "hijacked"}, {"text": "hijacked", "csrf_token": "0" * 64}):
        response = client.post(f"/cases/{case_id}/approve", data=data, follow_redirects=False)
        assert response.status_code == 403
    # A token taken from another consultant's session does not work either.
    other = console.logged_in(ADMIN)
    foreign = csrf_of(other.get("/queue").text)
    response = client.post(f"/cases/{case_id}/approve", data={"text": "x", "csrf_token": foreign},
                           follow_redirects=False)
    assert response.status_code == 403
    assert console.dispatched == []


def test_logout_ends_the_session_on_the_server(console):
    client = console.logged_in()
    stolen = client.cookies.get("cc_session")
    token = csrf_of(client.get("/queue").text)
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    with console.factory() as session:
        assert session.query(ConsoleSession).count() == 0
    replay = console.client(cookies={"cc_session": stolen})
    assert replay.get("/queue", follow_redirects=False).status_code == 303


def test_tampered_session_cookie_is_ignored(console):
    client = console.logged_in()
    value = client.cookies.get("cc_session")
    forged = console.client(cookies={"cc_session": value[:-2] + ("AA" if value[-2:] != "AA" else "BB")})
    assert forged.get("/queue", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/phish", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(console, target):
    client = console.client()
    page = client.get("/login")
    response = client.post("/login", data={"email": CONSULTANT, "password": PASSWORD,
                                           "csrf_token": csrf_of(page.text), "next": target},
                           follow_redirects=False)
    assert response.headers["location"] == "/queue"


def test_session_survives_an_app_restart_with_a_configured_key(console):
    from consultant.review.web import create_app

    client = console.logged_in()
    restarted = create_app(console.settings, console.factory, dispatch=console.dispatched.append)
    from tests.review.conftest import TestClient

    again = TestClient(restarted, cookies={"cc_session": client.cookies.get("cc_session")})
    assert again.get("/queue", follow_redirects=False).status_code == 200


def test_without_a_key_a_random_one_is_used_and_a_warning_logged(console, caplog):
    from consultant.review.web import create_app

    console.settings.console.secret_key = ""
    with caplog.at_level(logging.WARNING):
        app1 = create_app(console.settings, console.factory)
        app2 = create_app(console.settings, console.factory)
    assert "secret_key is not set" in caplog.text
    assert app1.state.console.secret != app2.state.console.secret
    assert len(app1.state.console.secret) >= 32


def test_passwords_are_stored_as_argon2_hashes(console):
    with console.factory() as session:
        user = auth.get_user(session, CONSULTANT)
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    with pytest.raises(auth.AuthError):
        auth.add_user(console.factory, "short@cc.test", "short")


def test_pages_carry_security_headers(console):
    import re

    response = console.logged_in().get("/queue")
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    # The only scripts are the console's own files: no inline code the CSP would have to allow.
    scripts = re.findall(r"<script\b[^>]*>", response.text)
    assert scripts and all(re.search(r'src="/static/[\w.-]+\.js"', tag) for tag in scripts)
    assert re.search(r"\son\w+=", response.text) is None


def test_one_account_is_locked_whatever_the_address(console):
    # Guessing one account's password from many addresses (a botnet, or forged headers
    # believed by a misconfigured proxy) still ends in a lockout of that account.
    for i in range(auth.MAX_FAILURES_PER_ACCOUNT):
        result = auth.authenticate(console.factory, CONSULTANT, "wrong password!", f"203.0.113.{i}")
        assert result.user is None and not result.limited
    fresh = auth.authenticate(console.factory, CONSULTANT, PASSWORD, "198.51.100.200")
    assert fresh.limited and fresh.user is None
    assert auth.authenticate(console.factory, ADMIN, PASSWORD, "198.51.100.200").user is not None
