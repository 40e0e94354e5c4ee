"""REST API for integrations under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``).

Authentication is ``Authorization: Bearer <token>`` only (tokens from ``caseconsultant users
token EMAIL`` or the console's account page).  Session cookies are deliberately *not* accepted
here: a browser attaches cookies to cross-site requests by itself, a bearer header it does not,
which is why these endpoints need no CSRF token.  Every error is JSON: ``{"error": "..."}``.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated aliases
# (User, Admin) defined inside create_api, which string annotations would hide from it.
import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import fastapi_offline
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from consultant.codes.api import lookup, search
from consultant.models import CASE_STATUSES, Case
from consultant.quota import admin as quota_admin
from consultant.quota import orgs
from consultant.review import actions, auth
from consultant.review.models import ConsultantUser
from consultant.review.web import queries
from consultant.review.web.app import Console
from consultant.views import case_json, mail_json

SWAGGER_ASSETS = Path(fastapi_offline.__file__).parent / "static"
bearer = HTTPBearer(auto_error=False, description="API token: `caseconsultant users token EMAIL`")


class ApproveBody(BaseModel):
    text: str | None = Field(None, description="final answer text; default: the latest draft",
                             max_length=100_000)
    kind: Literal["answer", "needs_info"] | None = Field(
        None, description="send as an answer (charges quota) or a clarifying question; "
                          "default: the kind of the latest draft")
    expected_version: int | None = Field(
        None, ge=0, description="the draft version you read (GET /cases/{id} draft.version); if "
                                "someone saved a newer one since, the approval is refused with 409")
    confirm_phi: bool = Field(
        False, description="required (true) when patient identifiers were removed from the "
                           "case's mail: the consultant confirms the answer holds none of them")


class RejectBody(BaseModel):
    reason: str = Field(..., min_length=1, max_length=10_000)


class GrantBody(BaseModel):
    answers: int | None = Field(None, ge=1, le=100_000, description="answers to grant")
    pack: str | None = Field(None, description="or: a top-up plan from [quota.plans]")
    why: str = Field("", max_length=1000, description="recorded in the ledger")


class RefundBody(BaseModel):
    case_id: int | None = Field(None, description="the case whose answer is refunded")
    outbox_id: int | None = Field(None, description="or: the answer's outbox id")
    why: str = Field(..., min_length=1, max_length=1000)


class PlanBody(BaseModel):
    plan: str = Field(..., description="guest, registered or a plan from [quota.plans]")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def create_api(console: Console) -> FastAPI:
    api = FastAPI(title="CaseConsultant API", version="1", openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None)
    api.state.console = console
    # FastAPI's own /docs loads Swagger UI from a CDN, which the console's CSP blocks (and a
    # console should not depend on a third party).  The packaged copy is served from here.
    api.mount("/static", StaticFiles(directory=str(SWAGGER_ASSETS)), name="api-static")

    @api.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return console.templates.TemplateResponse(request, "api_docs.html",
                                                  {"title": api.title, "root": root})

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "details": exc.errors()}, status_code=422)

    def token_user(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ConsultantUser:
        user = auth.token_user(console.factory, creds.credentials) if creds else None
        if user is None:
            raise HTTPException(status_code=401, detail="a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        return user

    def admin_user(user: Annotated[ConsultantUser, Depends(token_user)]) -> ConsultantUser:
        if not user.is_admin:
            raise HTTPException(status_code=403, detail="admin role required")
        return user

    User = Annotated[ConsultantUser, Depends(token_user)]
    Admin = Annotated[ConsultantUser, Depends(admin_user)]

    CaseId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

    def _case(session: Any, case_id: int) -> Case:
        case = session.get(Case, case_id)
        if case is None:
            raise HTTPException(status_code=404, detail=f"case {case_id} does not exist")
        return case

    @api.get("/cases", summary="List cases, oldest first")
    def list_cases(user: User,
                   status: Annotated[str | None, Query(description="one case status")] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
        if status is not None and status not in CASE_STATUSES:
            raise HTTPException(status_code=422, detail=f"unknown status {status!r} "
                                f"(one of: {', '.join(CASE_STATUSES)})")
        with console.factory() as session:
            query = select(Case).order_by(Case.created_at, Case.id).limit(limit).offset(offset)
            if status:
                query = query.where(Case.status == status)
            return [{"id": c.id, "status": c.status, "requester": c.requester.email,
                     "subject": c.subject, "created_at": c.created_at.isoformat(),
                     "assigned_to": c.assigned_to}
                    for c in session.execute(query).scalars()]

    @api.get("/cases/{case_id}", summary="One case with its draft, codes and mails")
    def show_case(case_id: CaseId, user: User) -> dict[str, Any]:
        with console.factory() as session:
            case = _case(session, case_id)
            data = case_json(session, console.settings, case)
            data["mails"] = [mail_json(m) for m in case.mails]
            return data

    @api.post("/cases/{case_id}/approve", summary="Approve the draft (or `text`) and queue it")
    def approve_case(case_id: CaseId, user: User, body: ApproveBody | None = None) -> dict[str, Any]:
        text = body.text if body else None
        kind = body.kind if body else None
        expected = body.expected_version if body else None
        confirm_phi = body.confirm_phi if body else False
        if text is not None and not text.strip():
            raise HTTPException(status_code=422, detail="refusing to approve an empty answer")
        with console.factory() as session:
            _case(session, case_id)
        try:
            effects = actions.approve(console.factory, console.settings, case_id, text=text,
                                      by=user.email, kind=kind, expected_version=expected,
                                      confirm_phi=confirm_phi)
        except actions.ActionError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        console.dispatch(effects)
        with console.factory() as session:
            status = _case(session, case_id).status
        return {"id": case_id, "status": status, "outbox_ids": effects.outbox_ids}

    @api.post("/cases/{case_id}/reject", summary="Reject a case (nothing is sent or charged)")
    def reject_case(case_id: CaseId, body: RejectBody,
                    user: User) -> dict[str, Any]:
        with console.factory() as session:
            _case(session, case_id)
        try:
            actions.reject(console.factory, case_id, reason=body.reason, by=user.email)
        except actions.ActionError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        return {"id": case_id, "status": "rejected"}

    def _quota(action: Any) -> dict[str, Any]:
        try:
            result = action()
        except quota_admin.QuotaAdminError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        console.dispatch(result.effects)
        return {**result.data, "held_cases_redrafted": result.effects.draft_case_ids}

    @api.get("/requesters", summary="Requesters with their balances")
    def list_requesters(user: User,
                        q: Annotated[str, Query(max_length=200, description="email contains")] = "",
                        limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
        with console.factory() as session:
            return [{**r["balance"].as_json(), "name": r["requester"].name,
                     "open_cases": r["open_cases"]}
                    for r in queries.requesters(session, console.settings, q, limit)]

    @api.get("/requesters/{email}", summary="A requester's plan, balance and newest ledger entries")
    def show_requester(email: str, user: User) -> dict[str, Any]:
        with console.factory() as session:
            try:
                requester = quota_admin.find_requester(session, email)
            except quota_admin.QuotaAdminError as exc:
                raise HTTPException(status_code=404, detail=str(exc)) from exc
            return quota_admin.requester_json(session, console.settings, requester, entries=50)

    @api.put("/requesters/{email}/plan", summary="Set a requester's plan (admins)")
    def put_plan(email: str, body: PlanBody, user: Admin) -> dict[str, Any]:
        if "@" not in email:
            raise HTTPException(status_code=422, detail="not an email address")
        return _quota(lambda: quota_admin.set_plan(console.factory, console.settings, email,
                                                   body.plan, by=user.email))

    # Grants and refunds give answers away: admins only, checked here whatever the client is.
    @api.post("/requesters/{email}/grants", summary="Grant answers or a top-up pack (admins)")
    def post_grant(email: str, body: GrantBody, user: Admin) -> dict[str, Any]:
        if "@" not in email:
            raise HTTPException(status_code=422, detail="not an email address")
        return _quota(lambda: quota_admin.grant(console.factory, console.settings, email,
                                                answers=body.answers, pack=body.pack,
                                                why=body.why, by=user.email))

    @api.post("/requesters/{email}/refunds", summary="Refund the answer of a case (admins)")
    def post_refund(email: str, body: RefundBody, user: Admin) -> dict[str, Any]:
        return _quota(lambda: quota_admin.refund(console.factory, console.settings, email,
                                                 case_id=body.case_id, outbox_id=body.outbox_id,
                                                 why=body.why, by=user.email))

    @api.get("/orgs/{name}", summary="An organisation's plan, balance, domains and members")
    def show_org(name: str, user: User) -> dict[str, Any]:
        with console.factory() as session:
            try:
                org = orgs.get_org(session, name)
            except orgs.OrgError as exc:
                raise HTTPException(status_code=404, detail=str(exc)) from exc
            return quota_admin.org_json(session, console.settings, org)

    @api.get("/codes/search", summary="Search code descriptors")
    def search_codes(user: User, q: Annotated[str, Query(min_length=2, max_length=200)],
                     system: Annotated[str | None, Query(
                         description="CPT, HCPCS, ICD-10-CM or MODIFIER")] = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 10) -> Any:
        with console.factory() as session:
            return _jsonable(search(session, q, system=system, limit=limit))

    @api.get("/codes/{code}", summary="One code: descriptor, release and edits")
    def show_code(code: str, user: User) -> Any:
        with console.factory() as session:
            result = lookup(session, code.strip().upper())
        if result is None:
            raise HTTPException(status_code=404, detail=f"no release knows code {code!r}")
        return _jsonable(result)

    return api
