"""Hostile input found by trying: broken From headers, huge bodies, part bombs."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from consultant.intake.store import Location, store_raw
from consultant.mail.guards import MAX_PARTS, MailParseError, check_part_limits, repair_headers
from consultant.mail.parse import MAX_TEXT_CHARS, parse_mail, shorten
from consultant.models import AuditEvent, Case, InboundMail
from consultant.processing import process_mail

BROKEN_FROM = [
    # An encoded word that decodes to CR/LF: policy.default refuses the whole header.
    b"From: =?utf-8?q?Jane=0D=0ADoe?= <jane@clinic.example>\r\n",
    b"From: =?utf-8?b?SmFuZQ0KRG9l?= <jane@clinic.example>\r\n",
    # A raw CR/LF inside the quoted display name ends the header block early.
    b'From: "Jane\r\nDoe" <jane@clinic.example>\r\n',
    b'From: "Jane\nDoe" <jane@clinic.example>\r\n',
    b"From: Jane\rDoe <jane@clinic.example>\r\n",
]


@pytest.mark.parametrize("from_line", BROKEN_FROM)
def test_cr_lf_in_the_from_display_name_keeps_the_sender(from_line):
    raw = from_line + b"To: consult@cc.test\r\nSubject: J1885 units\r\n\r\nHow many units?\r\n"
    view = parse_mail(raw)
    assert view.from_addr == "jane@clinic.example"
    assert view.from_name == "Jane Doe"
    assert view.subject == "J1885 units"
    assert view.text.strip() == "How many units?"


def test_lf_only_message_with_a_broken_unquoted_name_is_repaired():
    raw = b"From: Jane\nDoe <jane@clinic.example>\nTo: consult@cc.test\nSubject: s\n\nbody\n"
    fixed, repairs = repair_headers(raw)
    assert repairs and fixed.startswith(b"From: Jane\n Doe <jane@clinic.example>\n")
    assert parse_mail(raw).from_addr == "jane@clinic.example"


def test_a_body_without_its_blank_line_is_not_pulled_into_the_header():
    raw = b"From: j@clinic.example\nSubject: x\nHello team,\nQuestion: can I bill 77301?\n\nThanks\n"
    assert repair_headers(raw) == (raw, [])
    view = parse_mail(raw)
    assert view.subject == "x"
    assert view.text.startswith("Hello team,\nQuestion: can I bill 77301?")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_broken_from_becomes_a_case_not_a_quarantine(settings, factory):
    raw = (b"From: =?utf-8?q?Jane=0D=0ADoe?= <jane@clinic.example>\r\nTo: consult@cc.test\r\n"
           b"Subject: 77301 and 77338\r\nMessage-ID: <x1@clinic.example>\r\n\r\n"
           b"Can 77301 and 77338 be billed the same day?\r\n")
    stored = store_raw(factory, raw, Location("cli"))
    process_mail(factory, settings, stored.mail_id)
    with factory() as session:
        mail = session.get(InboundMail, stored.mail_id)
        assert mail is not None and mail.disposition == "case", mail.disposition_reason
        assert mail.from_addr == "jane@clinic.example"


def test_shorten_cuts_at_a_line_end_then_a_sentence_then_a_space():
    assert shorten("short", 10) == "short"
    text = "a" * 90 + "\n" + "b" * 50
    assert shorten(text, 100) == "a" * 90
    sentence = "Question one is here. " + "word " * 30
    cut = shorten(sentence, 100)
    assert len(cut) <= 100 and cut.endswith(("word", "."))
    assert not cut.endswith("wor")
    assert shorten("x" * 200, 100) == "x" * 100  # nothing better in the last fifth


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_huge_body_is_cut_at_a_line_end_and_the_case_says_so(settings, factory):
    line = b"Can 77301 and 77338 be billed together for this patient on the same date?\r\n"
    body = line * (5_000_000 // len(line))
    raw = (b"From: Jane <jane@clinic.example>\r\nTo: consult@cc.test\r\nSubject: long\r\n"
           b"Message-ID: <big@clinic.example>\r\n\r\n" + body)
    view = parse_mail(raw)
    assert len(view.text) <= MAX_TEXT_CHARS
    assert view.text.endswith("same date?")  # a whole line, not cut mid-word
    (kind, before, kept), = view.shortened
    assert (kind, before, kept) == ("text/plain", len(body), len(view.text))

    stored = store_raw(factory, raw, Location("cli"))
    process_mail(factory, settings, stored.mail_id)
    with factory() as session:
        mail = session.get(InboundMail, stored.mail_id)
        assert mail is not None and mail.disposition == "case"
        assert "text_shortened" in mail.rule_hits
        assert len(mail.raw) == len(raw)  # the raw mail is kept whole
        case = session.get(Case, mail.case_id)
        assert case is not None
        note = f"text shortened from {len(body):,} to {kept:,} characters"
        assert note in case.flags
        events = session.execute(select(AuditEvent).where(AuditEvent.case_id == case.id,
                                                          AuditEvent.action == "text_shortened")
                                 ).scalars().all()
        assert [e.detail["note"] for e in events] == [note]


def _multipart(parts: int) -> bytes:
    return (b"From: a@clinic.example\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            + b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\npart\r\n" for _ in range(parts))
            + b"--B--\r\n")


def test_part_bombs_are_refused_before_parsing():
    check_part_limits(_multipart(MAX_PARTS - 1))
    with pytest.raises(MailParseError, match="too many MIME parts"):
        check_part_limits(_multipart(10_000))
    nested = b"From: a@clinic.example\r\n"
    for level in range(1_000):
        nested += b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (level, level)
    with pytest.raises(MailParseError, match="multipart boundaries"):
        parse_mail(nested)


def test_signature_dashes_are_not_counted_as_parts():
    body = b"-- \r\nJane\r\n" * 1_000
    raw = b"From: a@clinic.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\n" + \
        body + b"--B--\r\n"
    check_part_limits(raw)


def test_attachments_are_listed_and_capped():
    parts = b"".join(
        b"--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        b"filename=\"r%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n" % i
        for i in range(60))
    raw = (b"From: a@clinic.example\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=B\r\n"
           b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" + parts + b"--B--\r\n")
    view = parse_mail(raw)
    assert view.attachments[0] == {"filename": "r0.pdf", "content_type": "application/pdf", "size": 4}
    assert len(view.attachments) == 51
    assert "not listed" in str(view.attachments[-1]["note"])
