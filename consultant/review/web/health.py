"""``/healthz`` for load balancers and ``/metrics`` in the Prometheus text format.

Both are unauthenticated so that probes and scrapers need no console account; they therefore
show only counts and timestamps, never a requester, subject or URL with credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from consultant.intake.health import MailboxHealth, mailbox_health
from consultant.models import (
    CASE_STATUSES,
    DISPOSITIONS,
    OUT_FAILED,
    OUT_PENDING,
    Case,
    ImapState,
    InboundMail,
    Outbox,
)
from consultant.review import latency, sla
from consultant.review.web.app import console_of
from consultant.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter()
LATENCY_QUANTILES = (0.5, 0.9, 0.99)
LATENCY_SAMPLE = 10_000  # the most recent drafted cases the latency summary is computed over


def check_database(factory: Any) -> str | None:
    try:
        with factory() as session:
            session.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        log.warning("health: database unreachable: %s", exc)
        return type(exc).__name__


def check_broker(settings: Settings, timeout: float = 3.0) -> str | None:
    url = settings.broker.url
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
            try:
                client.ping()
            finally:
                client.close()
        elif url.startswith("sqla+"):
            # kombu's SQLAlchemy transport connects lazily, so ask the database itself.
            from sqlalchemy import create_engine

            engine = create_engine(url[len("sqla+"):])
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            finally:
                engine.dispose()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=timeout) as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
        return None
    except Exception as exc:  # noqa: BLE001
        log.warning("health: broker unreachable: %s", exc)
        return type(exc).__name__


def check_mailboxes(factory: Any, settings: Settings) -> list[MailboxHealth]:
    with factory() as session:
        return mailbox_health(session, settings.imap)


@router.get("/healthz")
def healthz(request: Request) -> Response:
    console = console_of(request)
    checks = {"database": check_database(console.factory), "broker": check_broker(console.settings)}
    mailboxes = check_mailboxes(console.factory, console.settings) if checks["database"] is None else []
    stale = [m for m in mailboxes if m.status == "stale"]
    if stale:
        checks["mailboxes"] = "not fetched for [imap] alert_after_minutes: " + ", ".join(
            f"{m.mailbox}/{m.folder}" + (f" ({m.last_error})" if m.last_error else "") for m in stale)
    failing = [name for name, err in checks.items() if err]
    body: dict[str, Any] = {"status": "ok" if not failing else "unavailable",
            "checks": {name: ("ok" if err is None else f"failed: {err}") for name, err in checks.items()}}
    if mailboxes:
        # Mailbox labels and folders only: no credentials, no server URLs (unauthenticated route).
        body["mailboxes"] = {f"{m.mailbox}/{m.folder}": m.status for m in mailboxes}
    if failing:
        body["failing"] = failing
    return JSONResponse(body, status_code=200 if not failing else 503)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def exposition(session: Session, settings: Settings) -> str:
    """All metrics as Prometheus text (format 0.0.4), computed from the database."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: Sequence[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            suffix = name + ("_" + labels.pop("__suffix") if "__suffix" in labels else "")
            rendered = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{suffix}{{{rendered}}} {value}" if rendered else f"{suffix} {value}")

    by_disposition = dict(session.execute(
        select(InboundMail.disposition, func.count(InboundMail.id)).group_by(InboundMail.disposition)).all())
    metric("caseconsultant_mails_received_total", "counter",
           "Inbound mails stored, by disposition (none: not processed yet).",
           [({"disposition": d}, int(by_disposition.get(d, 0))) for d in DISPOSITIONS]
           + [({"disposition": "none"}, int(by_disposition.get(None, 0)))])

    by_status = dict(session.execute(select(Case.status, func.count(Case.id)).group_by(Case.status)).all())
    metric("caseconsultant_cases", "gauge", "Cases by status.",
           [({"status": s}, int(by_status.get(s, 0))) for s in CASE_STATUSES])

    pending_out = session.execute(select(func.count(Outbox.id)).where(Outbox.status == OUT_PENDING)).scalar_one()
    unprocessed = by_disposition.get(None, 0)
    metric("caseconsultant_queue_depth", "gauge",
           "Work waiting: pending outbox messages and unprocessed inbound mails.",
           [({"queue": "outbox_pending"}, int(pending_out)), ({"queue": "mail_unprocessed"}, int(unprocessed))])

    fetches = session.execute(select(ImapState.mailbox, ImapState.folder, ImapState.last_fetch_at)).all()
    metric("caseconsultant_imap_last_fetch_timestamp_seconds", "gauge",
           "Unix time of the last successful IMAP fetch, per mailbox and folder.",
           [({"mailbox": m, "folder": f}, at.timestamp()) for m, f, at in fetches if at is not None])

    mailboxes = mailbox_health(session, settings.imap)
    metric("caseconsultant_imap_mailbox_stale", "gauge",
           "1 when a configured mailbox has not fetched for [imap] alert_after_minutes, else 0.",
           [({"mailbox": m.mailbox, "folder": m.folder}, int(m.status == "stale")) for m in mailboxes])
    metric("caseconsultant_imap_consecutive_failures", "gauge",
           "Failed connection or fetch attempts in a row, per mailbox (0 after a good fetch).",
           [({"mailbox": m.mailbox, "folder": m.folder}, m.failures) for m in mailboxes])

    failed = session.execute(select(func.count(Outbox.id)).where(Outbox.status == OUT_FAILED)).scalar_one()
    retried = session.execute(select(func.coalesce(func.sum(Outbox.attempts - 1), 0))
                              .where(Outbox.attempts > 1)).scalar_one()
    metric("caseconsultant_send_failures_total", "counter",
           "Outbound send failures: permanently failed messages, and failed attempts later retried.",
           [({"kind": "permanent"}, int(failed)), ({"kind": "retried_attempts"}, int(retried))])
    by_out = dict(session.execute(select(Outbox.status, func.count(Outbox.id)).group_by(Outbox.status)).all())
    metric("caseconsultant_outbox_messages", "gauge", "Outbox messages by status.",
           [({"status": s}, int(n)) for s, n in sorted(by_out.items())])

    latencies = latency.draft_latencies(session, LATENCY_SAMPLE)
    samples: list[tuple[dict[str, str], float]] = [
        ({"quantile": str(q)}, _quantile(latencies, q)) for q in LATENCY_QUANTILES]
    samples += [({"__suffix": "sum"}, sum(latencies)), ({"__suffix": "count"}, len(latencies))]
    metric("caseconsultant_draft_latency_seconds", "summary",
           f"Seconds from a mail's arrival to its case's first draft, cases held for quota or "
           f"sender confirmation left out (the latest {LATENCY_SAMPLE}).", samples)
    metric("caseconsultant_sla_overdue_cases", "gauge",
           "Open cases past their [sla] turnaround target (waiting on a consultant).",
           [({}, sla.overdue_count(session, settings))])
    return "\n".join(lines) + "\n"


@router.get("/metrics")
def metrics(request: Request) -> Response:
    console = console_of(request)
    with console.factory() as session:
        body = exposition(session, console.settings)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")
