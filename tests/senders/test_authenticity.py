"""Sender verdicts: our own MTA's Authentication-Results (foreign ones ignored, RFC 8601 §5) and
DKIM verified here with the key served by a local DNS server."""

from __future__ import annotations

from email.message import EmailMessage

import dkim  # type: ignore[import-untyped]

from consultant.mail.parse import parse_mail
from consultant.senders.authenticity import aligned, check
from consultant.settings import AuthenticitySettings
from tests.senders.conftest import signed_mail

OURS = "mx.cc.test"


def mail(*auth_results: str, sender: str = "coder@clinic.test") -> bytes:
    msg = EmailMessage()
    for value in auth_results:
        msg["Authentication-Results"] = value
    msg["From"] = sender
    msg["To"] = "consult@cc.test"
    msg["Subject"] = "77301 and 77338?"
    msg["Message-ID"] = "<q1@clinic.test>"
    msg.set_content("Can 77301 and 77338 be billed the same day?\n")
    return msg.as_bytes()


def verdict(raw: bytes, source: str = "imap", **cfg):  # type: ignore[no-untyped-def]
    settings = AuthenticitySettings(policy="hold", **({"authserv_id": OURS} | cfg))
    return check(settings, raw, parse_mail(raw), source)


def test_alignment_is_relaxed_but_not_by_suffix():
    assert aligned("clinic.test", "clinic.test") and aligned("clinic.test", "mail.clinic.test")
    assert aligned("mail.clinic.test", "clinic.test")
    assert not aligned("evilclinic.test", "clinic.test") and not aligned("", "clinic.test")


def test_our_authentication_results_decide():
    passed = verdict(mail(f"{OURS}; dkim=pass header.d=clinic.test; spf=fail; dmarc=pass"))
    assert (passed.verified, passed.method) == (True, "dmarc")
    dkim_only = verdict(mail(f"{OURS}; dkim=pass header.d=clinic.test header.s=sel"))
    assert (dkim_only.verified, dkim_only.method) == (True, "dkim")
    spf_only = verdict(mail(f"{OURS}; spf=pass smtp.mailfrom=bounce@mail.clinic.test"))
    assert (spf_only.verified, spf_only.method) == (True, "spf")
    # A valid signature of somebody else's domain says nothing about the From address.
    other = verdict(mail(f"{OURS}; dkim=pass header.d=bulkmailer.test; spf=pass "
                         "smtp.mailfrom=x@bulkmailer.test; dmarc=fail"))
    assert not other.verified and "nothing aligned with clinic.test" in other.detail
    failed = verdict(mail(f"{OURS}; dkim=fail header.d=clinic.test; spf=softfail; dmarc=fail"))
    assert not failed.verified and "dmarc=fail" in failed.detail


def test_a_forged_header_from_a_foreign_authserv_id_is_ignored():
    forged = verdict(mail("mx.attacker.test; dkim=pass header.d=clinic.test; dmarc=pass"))
    assert not forged.verified and "mx.attacker.test" in forged.detail and "ignored" in forged.detail
    # Our MTA's verdict on top, a forged "pass" from elsewhere below it: ours decides.
    both = verdict(mail(f"{OURS}; dmarc=fail; dkim=none",
                        "mx.attacker.test; dmarc=pass"))
    assert not both.verified and both.detail.startswith(f"{OURS}: dmarc=fail")
    below = verdict(mail("mx.attacker.test; dmarc=pass", f"{OURS}; dmarc=fail"))
    assert not below.verified and "ignored Authentication-Results from mx.attacker.test" in below.detail
    # Only the topmost header of ours counts: a forged one further down cannot override it.
    topmost = verdict(mail(f"{OURS}; dmarc=fail", f"{OURS}; dmarc=pass"))
    assert not topmost.verified
    assert not verdict(mail("garbage without semicolons ===")).verified
    assert not verdict(mail()).verified


def test_policy_off_checks_nothing():
    raw = mail(f"{OURS}; dmarc=fail")
    assert check(AuthenticitySettings(policy="off"), raw, parse_mail(raw), "imap") is None


def test_dkim_verified_here_for_the_smtp_listener(dns_stub, dkim_key):
    cfg = {"authserv_id": "", "verify_dkim": True, "dns_servers": [dns_stub.server]}
    raw = signed_mail(dkim_key)
    good = verdict(raw, "smtp", **cfg)
    assert (good.verified, good.method) == (True, "dkim-local"), good.detail
    assert "sel._domainkey.clinic.test" in dns_stub.queries
    # The same bytes through IMAP: our MTA should have checked them; no local check applies.
    assert not verdict(raw, "imap", **cfg).verified
    tampered = raw.replace(b"77338", b"77339")
    bad = verdict(tampered, "smtp", **cfg)
    assert not bad.verified and "body hash mismatch" in bad.detail
    unaligned = signed_mail(dkim_key, sender="coder@other.test")
    assert "not aligned with other.test" in verdict(unaligned, "smtp", **cfg).detail
    unknown_selector = signed_mail(dkim_key, selector=b"gone")
    assert not verdict(unknown_selector, "smtp", **cfg).verified
    assert "no DKIM signature" in verdict(mail(), "smtp", **cfg).detail
    assert dkim.__name__  # dkimpy itself, not a stand-in
