"""/healthz against real and unreachable parts; /metrics in the Prometheus text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from consultant.review.web import create_app
from tests.review.conftest import TestClient
from tests.servers import free_port


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics answer, parsed by prometheus_client's own text parser
    (which fails on anything that is not the Prometheus text format)."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples[(name, frozenset(labels.items()))]


def test_healthy_with_a_reachable_redis_broker(console, redis_url):
    console.settings.broker.url = redis_url
    response = console.client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_an_unreachable_broker_is_named(console):
    console.settings.broker.url = f"redis://127.0.0.1:{free_port()}/0"
    response = console.client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"] and body["checks"]["database"] == "ok"
    assert "127.0.0.1" not in response.text  # no URLs (and so no credentials) in the answer


def test_an_unreachable_database_is_named(console, tmp_path):
    from consultant.db import make_engine, make_session_factory

    console.settings.broker.url = "memory://"
    broken = make_session_factory(make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x"))
    client = TestClient(create_app(console.settings, broken))
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["database"]


def test_metrics_expose_pipeline_state(console):
    case_id = console.case()
    console.case(sender="other@clinic.test", subject="Another question")
    client = console.logged_in()
    page = client.get("/queue")
    from tests.review.conftest import csrf_of

    client.post(f"/cases/{case_id}/approve", data={"csrf_token": csrf_of(page.text), "text": "Yes."})
    response = console.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = scrape(response.text)
    assert value(samples, "caseconsultant_mails_received_total", disposition="case") == 2
    assert value(samples, "caseconsultant_cases", status="approved") == 1
    assert value(samples, "caseconsultant_cases", status="awaiting_review") == 1
    assert value(samples, "caseconsultant_queue_depth", queue="outbox_pending") == 1
    assert value(samples, "caseconsultant_queue_depth", queue="mail_unprocessed") == 0
    assert value(samples, "caseconsultant_send_failures_total", kind="permanent") == 0
    assert value(samples, "caseconsultant_draft_latency_seconds_count") == 2
    assert value(samples, "caseconsultant_draft_latency_seconds_sum") >= 0
    assert value(samples, "caseconsultant_draft_latency_seconds", quantile="0.5") >= 0
    lines = response.text.splitlines()
    assert "# TYPE caseconsultant_draft_latency_seconds summary" in lines
    assert "# TYPE caseconsultant_mails_received_total counter" in lines
    assert "# TYPE caseconsultant_cases gauge" in lines


def test_the_embedded_sqlite_broker_is_checked_too(console, tmp_path):
    console.settings.broker.url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert console.client().get("/healthz").status_code == 200
    console.settings.broker.url = f"sqla+sqlite:///{tmp_path / 'missing-dir' / 'broker.sqlite'}"
    response = console.client().get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["broker"]


def test_a_mailbox_not_fetched_for_alert_after_minutes_fails_health(console):
    from datetime import timedelta

    from consultant.models import ImapState, utcnow

    console.settings.broker.url = "memory://"
    console.settings.imap.alert_after_minutes = 30
    console.settings.imap.mailboxes = [
        {"host": "imap.clinic.test", "username": "fresh"},
        {"host": "imap.clinic.test", "username": "stuck"},
        {"host": "imap.clinic.test", "username": "new"}]
    with console.factory() as s, s.begin():
        s.add(ImapState(mailbox="fresh@imap.clinic.test", folder="INBOX", uidvalidity=1,
                        last_fetch_at=utcnow()))
        s.add(ImapState(mailbox="stuck@imap.clinic.test", folder="INBOX", uidvalidity=0,
                        failing_since=utcnow() - timedelta(minutes=45), failures=12,
                        last_error="LoginError: [AUTHENTICATIONFAILED] Authentication failed."))
    response = console.client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["mailboxes"]
    assert body["mailboxes"] == {"fresh@imap.clinic.test/INBOX": "ok",
                                 "stuck@imap.clinic.test/INBOX": "stale",
                                 "new@imap.clinic.test/INBOX": "unknown"}
    assert "AUTHENTICATIONFAILED" in body["checks"]["mailboxes"]
    samples = scrape(console.client().get("/metrics").text)
    stuck, fresh = {"mailbox": "stuck@imap.clinic.test", "folder": "INBOX"}, {"mailbox": "fresh@imap.clinic.test", "folder": "INBOX"}
    assert value(samples, "caseconsultant_imap_mailbox_stale", **stuck) == 1
    assert value(samples, "caseconsultant_imap_mailbox_stale", **fresh) == 0
    assert value(samples, "caseconsultant_imap_consecutive_failures", **stuck) == 12
    assert value(samples, "caseconsultant_imap_last_fetch_timestamp_seconds", **fresh) > 1.7e9


def test_label_values_are_escaped(console):
    from consultant.models import ImapState, utcnow

    odd = 'we"ird\\box\nname'
    with console.factory() as s, s.begin():
        s.add(ImapState(mailbox=odd, folder="INBOX", uidvalidity=1, last_fetch_at=utcnow()))
    text = console.client().get("/metrics").text
    assert value(scrape(text), "caseconsultant_imap_last_fetch_timestamp_seconds",
                 mailbox=odd, folder="INBOX") > 0
    assert 'mailbox="we\\"ird\\\\box\\nname"' in text  # one line per sample, quotes escaped
