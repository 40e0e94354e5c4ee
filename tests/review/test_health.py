"""/healthz against real and unreachable parts; /metrics in the Prometheus text format."""

from __future__ import annotations

from consultant.review.web import create_app
from tests.review.conftest import TestClient
from tests.servers import free_port


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
    lines = response.text.splitlines()
    assert 'caseconsultant_mails_received_total{disposition="case"} 2' in lines
    assert 'caseconsultant_cases{status="approved"} 1' in lines
    assert 'caseconsultant_cases{status="awaiting_review"} 1' in lines
    assert 'caseconsultant_queue_depth{queue="outbox_pending"} 1' in lines
    assert 'caseconsultant_queue_depth{queue="mail_unprocessed"} 0' in lines
    assert 'caseconsultant_send_failures_total{kind="permanent"} 0' in lines
    assert "caseconsultant_draft_latency_seconds_count 2" in lines
    assert "# TYPE caseconsultant_draft_latency_seconds summary" in lines
    assert any(line.startswith('caseconsultant_draft_latency_seconds{quantile="0.5"}') for line in lines)
    # Every sample line is "name{labels} value" with a numeric value.
    for line in lines:
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


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
    lines = console.client().get("/metrics").text.splitlines()
    assert 'caseconsultant_imap_mailbox_stale{mailbox="stuck@imap.clinic.test",folder="INBOX"} 1' in lines
    assert 'caseconsultant_imap_mailbox_stale{mailbox="fresh@imap.clinic.test",folder="INBOX"} 0' in lines
    assert 'caseconsultant_imap_consecutive_failures{mailbox="stuck@imap.clinic.test",folder="INBOX"} 12' in lines
