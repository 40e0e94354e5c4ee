"""Tasks that exist only for the benchmarks, imported by bench workers (``--include``)."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from typing import Any, cast

from sqlalchemy import CursorResult, insert, select, update

from bench.ingest import MAX_HEADER_BYTES, _header_len
from consultant.db import transaction
from consultant.mail.parse import storable_text
from consultant.models import AWAITING_REVIEW, Case, InboundMail, Requester, utcnow
from workers.app import app, runtime

# The one requester every floor case belongs to (made by bench.latency before the run).
FLOOR_SENDER = "floor@bench.test"
_floor_requester: list[int] = []


@app.task(name="bench.noop")
def noop(x: int) -> None:
    """The empty task: what any task costs on this app, broker and worker."""
    return None


def _parse(raw: bytes) -> str:
    """The stdlib parse of the mail and its plain body; its subject, '' when it has none or
    the parse fails (the corpus has mails the stdlib refuses, and a header block the ingest
    ceiling skips for the same reason: see bench.ingest.MAX_HEADER_BYTES).  Such a mail is
    recorded all the same: the product quarantines it, which is one transaction too."""
    if _header_len(raw) > MAX_HEADER_BYTES:
        return ""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        body = msg.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        if body is not None:
            body.get_content()
        return storable_text(str(msg["Subject"] or ""))[:998]
    except Exception:  # noqa: BLE001 - LookupError on unknown charsets etc., as in the ceiling
        return ""


@app.task(name="bench.floor_mail")
def floor_mail(mail_id: int) -> str:
    """The least a crash-safe consumer of this pipeline's fixed shape does per stored mail:
    read it (decrypting the raw bytes), parse it with the stdlib, and in one transaction
    record its disposition and a drafted case, committed before the task is acked.  Nothing
    else: no rules, privacy, quota, analysis, audit or drafting.  ``latency.floor`` runs the
    same poller, broker, worker processes and servers with this task in place of
    ``process_mail``, so the difference is the product's own cost per mail."""
    rt = runtime()
    with rt.factory() as session:
        raw = session.execute(select(InboundMail.raw).where(
            InboundMail.id == mail_id, InboundMail.disposition.is_(None))).scalar()
    if raw is None:
        return "decided"
    subject = _parse(raw)
    with transaction(rt.factory) as session:
        if not _floor_requester:
            _floor_requester.append(session.execute(
                select(Requester.id).where(Requester.email == FLOOR_SENDER)).scalar_one())
        claimed = cast("CursorResult[Any]", session.execute(
            update(InboundMail).where(InboundMail.id == mail_id, InboundMail.disposition.is_(None))
            .values(disposition="case", processed_at=utcnow()))).rowcount
        if not claimed:
            return "decided"
        session.execute(insert(Case).values(
            requester_id=_floor_requester[0], subject=subject,
            first_mail_id=mail_id, status=AWAITING_REVIEW, drafted_at=utcnow()))
    return "ok"
