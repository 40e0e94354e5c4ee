"""Login and logout."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from consultant.review import auth
from consultant.review.web.app import PRE_COOKIE, SESSION_COOKIE, client_ip, console_of

router = APIRouter()


def _safe_next(target: str | None) -> str:
    # Only local paths: an absolute or scheme-relative URL here would make the login page an
    # open redirect that phishing mails could use to bounce consultants to a look-alike site.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    return target


def _login_page(request: Request, *, error: str | None = None, status_code: int = 200,
                email: str = "") -> Response:
    console = console_of(request)
    # The login form has no session yet, so its CSRF token is bound to a random pre-login
    # cookie instead (login CSRF would otherwise log a victim into an attacker's account).
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
    response = console.render(request, "login.html", {
        "user": None, "csrf": auth.csrf_token(console.secret, "pre:" + pre),
        "next": _safe_next(request.query_params.get("next")), "login_error": error,
        "email": email}, status_code=status_code)
    console.cookie(response, PRE_COOKIE, pre, max_age=3600)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if console_of(request).user(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    pre = request.cookies.get(PRE_COOKIE) or ""
    if not auth.csrf_ok(console.secret, "pre:" + pre, str(form.get("csrf_token") or "")):
        return _login_page(request, error="Your login form expired; please try again.",
                           status_code=403)
    email = str(form.get("email") or "")
    result = auth.authenticate(console.factory, email, str(form.get("password") or ""),
                               client_ip(request))
    if result.limited:
        return _login_page(request, error="Too many failed attempts. Wait 15 minutes and try "
                           "again.", status_code=429, email=email)
    if result.user is None:
        return _login_page(request, error="Wrong email or password.", status_code=401, email=email)
    token = auth.start_session(console.factory, result.user.id, client_ip(request))
    response = RedirectResponse(_safe_next(str(form.get("next") or "")), status_code=303)
    console.cookie(response, SESSION_COOKIE, console.signer.sign(token).decode("ascii"),
                   max_age=int(auth.SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(PRE_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    console = console_of(request)
    await console.checked_form(request)
    token = console.session_token(request)
    if token:
        auth.end_session(console.factory, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
