"""The console application: one FastAPI app for the pages, a mounted one for ``/api/v1``.

Everything a route needs hangs off :class:`Console` (``request.app.state.console``): settings,
the session factory, the signing key, templates and the dispatcher for after-commit work.
Nothing is reached through module globals, so two apps (tests) never share state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import BadSignature, Signer, URLSafeSerializer
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException
from starlette.templating import Jinja2Templates

from consultant.models import utcnow
from consultant.processing import Effects
from consultant.review import auth
from consultant.review.models import ConsultantUser
from consultant.settings import TEMPLATE_ROOT, Settings

log = logging.getLogger(__name__)

TEMPLATE_DIR = TEMPLATE_ROOT / "console"
SESSION_COOKIE = "cc_session"
PRE_COOKIE = "cc_pre"
FLASH_COOKIE = "cc_flash"

# Pages are server-rendered and work without script; the only scripts are the console's own
# files under /static (keyboard shortcuts, the API docs' start-up), so the policy allows
# script-src 'self' and nothing inline: markup that slipped into a page could not run.  The
# policy also applies inside the srcdoc iframe that shows a mail's sanitised HTML (which is
# sandboxed without allow-scripts as well), so remote images (tracking pixels) stay blocked.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
STATIC_DIR = TEMPLATE_DIR / "static"


class LoginRequired(Exception):
    """Raised by page routes for anonymous visitors: handled as a redirect to /login."""


class Forbidden(Exception):
    """A logged-in consultant tried an admin-only action."""


@dataclass
class Console:
    settings: Settings
    factory: sessionmaker[Session]
    secret: str
    templates: Jinja2Templates
    dispatch: Callable[[Effects], None]

    @property
    def signer(self) -> Signer:
        return Signer(self.secret, salt="caseconsultant.console.session")

    @property
    def flash_serializer(self) -> URLSafeSerializer:
        return URLSafeSerializer(self.secret, salt="caseconsultant.console.flash")

    def cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        # HttpOnly: no script may read the session; SameSite=Lax: cross-site POSTs carry no
        # cookie (CSRF tokens are the second line); Secure when served over HTTPS.
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                            secure=self.settings.console.secure_cookies, path="/")

    def render(self, request: Request, name: str, context: dict[str, Any],
               status_code: int = 200) -> HTMLResponse:
        user = context.get("user")
        flash = self._read_flash(request)
        ctx = {"settings": self.settings, "now": utcnow(), "flash": flash, **context}
        if user is not None and "csrf" not in ctx:
            ctx["csrf"] = self.csrf_for(request)
        response = self.templates.TemplateResponse(request, name, ctx, status_code=status_code)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    # --- one-shot messages after a redirect ---------------------------------------------------
    # Kept in a signed cookie rather than the URL, so a crafted link cannot make the console
    # display a message of an attacker's choosing.
    def flash(self, response: Response, text: str, kind: str = "ok") -> Response:
        value = self.flash_serializer.dumps([kind, text[:500]])
        self.cookie(response, FLASH_COOKIE, value, max_age=60)
        return response

    def _read_flash(self, request: Request) -> tuple[str, str] | None:
        value = request.cookies.get(FLASH_COOKIE)
        if not value:
            return None
        try:
            kind, text = self.flash_serializer.loads(value)
        except (BadSignature, ValueError, TypeError):
            return None
        return str(kind), str(text)

    def redirect(self, url: str, text: str | None = None, kind: str = "ok") -> Response:
        response = RedirectResponse(url, status_code=303)
        if text:
            self.flash(response, text, kind)
        return response

    # --- sessions ---------------------------------------------------------------------------
    def session_token(self, request: Request) -> str | None:
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        try:
            return self.signer.unsign(value).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None

    def user(self, request: Request) -> ConsultantUser | None:
        if hasattr(request.state, "cc_user"):
            cached: ConsultantUser | None = request.state.cc_user
            return cached
        token = self.session_token(request)
        user = auth.session_user(self.factory, token) if token else None
        request.state.cc_user = user
        return user

    def require_user(self, request: Request) -> ConsultantUser:
        user = self.user(request)
        if user is None:
            raise LoginRequired()
        return user

    def require_admin(self, request: Request) -> ConsultantUser:
        user = self.require_user(request)
        if not user.is_admin:
            raise Forbidden()
        return user

    def csrf_for(self, request: Request) -> str:
        token = self.session_token(request) or ""
        return auth.csrf_token(self.secret, "session:" + token)

    async def checked_form(self, request: Request) -> Any:
        """The POSTed form of a logged-in user, after the CSRF check (403 without a valid token)."""
        self.require_user(request)
        form = await request.form()
        token = self.session_token(request) or ""
        if not auth.csrf_ok(self.secret, "session:" + token, str(form.get("csrf_token") or "")):
            raise HTTPException(status_code=403, detail="invalid or missing CSRF token")
        return form


def console_of(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


async def posted(request: Request) -> tuple[Console, Any, ConsultantUser]:
    """For form POST routes: the console, the CSRF-checked form and the logged-in user."""
    console = console_of(request)
    form = await console.checked_form(request)
    return console, form, console.require_user(request)


def client_ip(request: Request) -> str:
    # The peer address as uvicorn saw it.  uvicorn rewrites it from X-Forwarded-For only when the
    # peer is one of [console] trusted_proxies (server.py); trusting the header here would let
    # anyone pick a fresh "IP" per login attempt and walk around the rate limit.
    return request.client.host if request.client else "unknown"


def _default_dispatch(settings: Settings) -> Callable[[Effects], None]:
    def dispatch(effects: Effects) -> None:
        from workers.app import app as celery_app
        from workers.app import configure
        from workers.tasks import dispatch as celery_dispatch

        if celery_app.conf.broker_url != settings.broker.url:
            configure(settings)
        celery_dispatch(effects)

    return dispatch


def _filters(env: Environment) -> None:
    def age(value: datetime | None) -> str:
        if value is None:
            return "-"
        seconds = max(0, int((utcnow() - value).total_seconds()))
        if seconds < 3600:
            return f"{seconds // 60} min"
        if seconds < 86400 * 2:
            return f"{seconds / 3600:.1f} h"
        return f"{seconds / 86400:.1f} d"

    def due(value: datetime | None) -> str:
        # A due time as the consultant reads it: "in 1.5 h" or "2.0 h late".
        if value is None:
            return "-"
        seconds = int((value - utcnow()).total_seconds())
        span = age(utcnow() - timedelta(seconds=abs(seconds)))
        return f"in {span}" if seconds >= 0 else f"{span} late"

    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"

    def plural(count: int, word: str, many: str | None = None) -> str:
        # "1 answer left", "0 answers left": never "1 answers" or "answer(s)".
        return f"{count} {word if count == 1 else (many or word + 's')}"

    def audit_items(detail: dict[str, Any] | None) -> list[tuple[str, str]]:
        # An audit event's detail as short "key: value" pairs; the machine-draft diff is shown
        # on its own (folded), never as a Python dict that overflows the page.
        items = []
        for key, value in (detail or {}).items():
            if key == "machine_diff" and isinstance(value, dict):
                items.append(("changed", "yes" if value.get("changed") else "no"))
                continue
            if value is None or value == "":
                continue
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            items.append((key.replace("_", " "), shown if len(shown) <= 120 else shown[:117] + "…"))
        return items

    env.filters["age"] = age
    env.filters["when"] = when
    env.filters["due"] = due
    env.filters["plural"] = plural
    env.filters["audit_items"] = audit_items


def create_app(settings: Settings, factory: sessionmaker[Session] | None = None, *,
               dispatch: Callable[[Effects], None] | None = None) -> FastAPI:
    """Build the console for ``settings`` (``factory`` defaults to one on settings.database)."""
    if factory is None:
        from consultant.db import make_engine, make_session_factory
        from consultant.privacy.crypto import load_keys

        factory = make_session_factory(make_engine(settings.database.url,
                                                   keys=load_keys(settings.privacy)))
    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    _filters(env)
    console = Console(settings=settings, factory=factory, secret=auth.secret_key(settings.console),
                      templates=Jinja2Templates(env=env),
                      dispatch=dispatch or _default_dispatch(settings))

    app = FastAPI(title="CaseConsultant console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = console

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        # Pages carry patient-adjacent data: keep them out of shared caches and history.  The
        # console's own scripts and styles (no data in them) may be cached by the browser.
        static = request.url.path.startswith(("/static/", "/api/v1/static/"))
        response.headers.setdefault("Cache-Control", "private, max-age=3600" if static else "no-store")
        return response

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = "/queue"
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return console.render(request, "error.html", {"user": console.user(request),
                              "status": 403, "message": "This page is for administrators."},
                              status_code=403)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # /cases/abc or /cases/99999999999999999999: a page that cannot exist is a 404 on the
        # console's own error page, not FastAPI's JSON for API clients.
        in_path = any(err.get("loc", ("",))[0] == "path" for err in exc.errors())
        status = 404 if in_path else 400
        message = (f"There is no page {request.url.path}." if in_path
                   else "The request had a missing or invalid value.")
        return console.render(request, "error.html", {"user": console.user(request),
                              "status": status, "message": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.url.path in ("/healthz", "/metrics"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return console.render(request, "error.html", {"user": console.user(request),
                              "status": exc.status_code, "message": str(exc.detail)},
                              status_code=exc.status_code)

    from consultant.review.web import (
        api,
        health,
        pages_admin,
        pages_auth,
        pages_case,
        pages_macros,
        pages_quarantine,
        pages_queue,
        pages_sla,
    )

    for module in (pages_auth, pages_queue, pages_case, pages_sla, pages_macros, pages_quarantine,
                   pages_admin, health):
        app.include_router(module.router)
    app.mount("/api/v1", api.create_api(console))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app
