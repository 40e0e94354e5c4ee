"""``/healthz`` for load balancers and ``/metrics`` in the Prometheus text format.

``/metrics`` is rendered by prometheus_client from a custom collector that reads the database
at scrape time (it replaced a hand-written text renderer and its label escaping).

Both are unauthenticated so that probes and scrapers need no console account; they therefore
show only counts and timestamps, never a requester, subject or URL with credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
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
        checks["mailboxes"] = "not fetched for alert_after_minutes: " + ", ".join(
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


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class PipelineCollector(Collector):
    """Every metric read from the database when Prometheus scrapes (prometheus_client renders
    them): the state lives in the database, shared by every process, so no process-local
    counter could be right for a service of several processes."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session, self.settings = session, settings

    def collect(self) -> Iterator[Metric]:
        session = self.session
        by_disposition = dict(session.execute(
            select(InboundMail.disposition, func.count(InboundMail.id)).group_by(InboundMail.disposition)).all())
        # prometheus_client adds the _total suffix of a counter's samples itself.
        received = CounterMetricFamily("caseconsultant_mails_received",
                                       "Inbound mails stored, by disposition (none: not processed yet).",
                                       labels=["disposition"])
        for d in DISPOSITIONS:
            received.add_metric([d], int(by_disposition.get(d, 0)))
        received.add_metric(["none"], int(by_disposition.get(None, 0)))
        yield received

        by_status = dict(session.execute(select(Case.status, func.count(Case.id)).group_by(Case.status)).all())
        cases = GaugeMetricFamily("caseconsultant_cases", "Cases by status.", labels=["status"])
        for status in CASE_STATUSES:
            cases.add_metric([status], int(by_status.get(status, 0)))
        yield cases

        pending_out = session.execute(
            select(func.count(Outbox.id)).where(Outbox.status == OUT_PENDING)).scalar_one()
        depth = GaugeMetricFamily("caseconsultant_queue_depth",
                                  "Work waiting: pending outbox messages and unprocessed inbound mails.",
                                  labels=["queue"])
        depth.add_metric(["outbox_pending"], int(pending_out))
        depth.add_metric(["mail_unprocessed"], int(by_disposition.get(None, 0)))
        yield depth

        fetched = GaugeMetricFamily("caseconsultant_imap_last_fetch_timestamp_seconds",
                                    "Unix time of the last successful IMAP fetch, per mailbox and folder.",
                                    labels=["mailbox", "folder"])
        for mailbox, folder, at in session.execute(
                select(ImapState.mailbox, ImapState.folder, ImapState.last_fetch_at)).all():
            if at is not None:
                fetched.add_metric([mailbox, folder], at.timestamp())
        yield fetched

        mailboxes = mailbox_health(session, self.settings.imap)
        stale = GaugeMetricFamily(
            "caseconsultant_imap_mailbox_stale",
            "1 when a configured mailbox has not fetched for its alert_after_minutes, else 0.",
            labels=["mailbox", "folder"])
        failures = GaugeMetricFamily(
            "caseconsultant_imap_consecutive_failures",
            "Failed connection or fetch attempts in a row, per mailbox (0 after a good fetch).",
            labels=["mailbox", "folder"])
        for m in mailboxes:
            stale.add_metric([m.mailbox, m.folder], int(m.status == "stale"))
            failures.add_metric([m.mailbox, m.folder], m.failures)
        yield stale
        yield failures

        failed = session.execute(select(func.count(Outbox.id)).where(Outbox.status == OUT_FAILED)).scalar_one()
        retried = session.execute(select(func.coalesce(func.sum(Outbox.attempts - 1), 0))
                                  .where(Outbox.attempts > 1)).scalar_one()
        send_failures = CounterMetricFamily(
            "caseconsultant_send_failures",
            "Outbound send failures: permanently failed messages, and failed attempts later retried.",
            labels=["kind"])
        send_failures.add_metric(["permanent"], int(failed))
        send_failures.add_metric(["retried_attempts"], int(retried))
        yield send_failures

        by_out = dict(session.execute(select(Outbox.status, func.count(Outbox.id)).group_by(Outbox.status)).all())
        outbox = GaugeMetricFamily("caseconsultant_outbox_messages", "Outbox messages by status.",
                                   labels=["status"])
        for status, n in sorted(by_out.items()):
            outbox.add_metric([status], int(n))
        yield outbox

        latencies = latency.draft_latencies(session, LATENCY_SAMPLE)
        # SummaryMetricFamily has no quantile samples: a plain summary Metric takes them.
        name = "caseconsultant_draft_latency_seconds"
        summary = Metric(name, "Seconds from a mail's arrival to its case's first draft, cases held "
                               f"for quota or sender confirmation left out (the latest {LATENCY_SAMPLE}).",
                         "summary")
        for q in LATENCY_QUANTILES:
            summary.add_sample(name, {"quantile": str(q)}, _quantile(latencies, q))
        summary.add_sample(name + "_sum", {}, sum(latencies))
        summary.add_sample(name + "_count", {}, len(latencies))
        yield summary

        overdue = GaugeMetricFamily("caseconsultant_sla_overdue_cases",
                                    "Open cases past their [sla] turnaround target (waiting on a consultant).")
        overdue.add_metric([], sla.overdue_count(session, self.settings))
        yield overdue


def exposition(session: Session, settings: Settings) -> str:
    """All metrics as Prometheus text (format 0.0.4), computed from the database now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(session, settings))
    return generate_latest(registry).decode("utf-8")


@router.get("/metrics")
def metrics(request: Request) -> Response:
    console = console_of(request)
    with console.factory() as session:
        body = exposition(session, console.settings)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
