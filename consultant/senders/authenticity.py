"""Is the From address really the sender?  Read our own MTA's Authentication-Results, or verify
DKIM here for mail that reached our SMTP listener directly.

A forged From must not spend somebody else's answers, so a sender counts as verified only on
evidence tied to the From domain:

* ``Authentication-Results`` (RFC 8601) written by **our** receiving server, recognised by the
  configured ``authserv_id``.  Anyone can write such a header into a message, so headers with
  any other authserv-id are ignored, as §5 of the RFC asks; of ours, only the topmost counts —
  the one our border MTA prepended last (a well-configured MTA also strips look-alikes from
  incoming mail).  ``dmarc=pass`` verifies; so do ``dkim=pass`` with ``header.d`` and
  ``spf=pass`` with ``smtp.mailfrom`` in the From domain (relaxed alignment, RFC 7489 §3.1).
* For mail taken in by our SMTP listener (``source == "smtp"``, no upstream MTA), a valid
  DKIM signature (dkimpy) whose ``d=`` is aligned with the From domain, when ``verify_dkim``.

The parsing is done by maintained libraries (authres, dkimpy): both formats have corner cases
(comments, quoted values, folding, canonicalisation) that a hand-written parser gets wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import authres  # type: ignore[import-untyped]
import dkim  # type: ignore[import-untyped]

from consultant.mail.parse import MailView
from consultant.settings import AuthenticitySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Whether the From address is verified, by what, and a sentence for the consultant."""

    verified: bool
    method: str  # dmarc | dkim | spf | dkim-local | "" (none)
    detail: str

    def as_json(self) -> dict[str, object]:
        return {"verified": self.verified, "method": self.method, "detail": self.detail}


def aligned(domain: str | None, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a parent of the other (RFC 7489 §3.1)."""
    if not domain:
        return False
    d, f = domain.strip().lower().rstrip("."), from_domain.lower().rstrip(".")
    return d == f or f.endswith("." + d) or d.endswith("." + f)


def _prop(result: object, ptype: str, name: str) -> str | None:
    for prop in getattr(result, "properties", []):
        if prop.type == ptype and prop.name == name:
            return str(prop.value)
    return None


def from_authentication_results(view: MailView, authserv_id: str,
                                from_domain: str) -> Verdict | None:
    """The verdict of our own MTA's topmost Authentication-Results; None if it wrote none."""
    ours = authserv_id.strip().lower()
    ignored: list[str] = []
    for value in view.message.get_all("Authentication-Results") or []:
        try:
            header = authres.AuthenticationResultsHeader.parse_value(str(value))
        except Exception as exc:  # noqa: BLE001 - a malformed header is evidence of nothing
            log.info("unparseable Authentication-Results ignored: %s", exc)
            continue
        if str(header.authserv_id).lower() != ours:
            ignored.append(str(header.authserv_id))
            continue
        found = {str(r.method).lower(): r for r in header.results}
        summary = " ".join(f"{m}={str(r.result).lower()}" for m, r in found.items()) or "no results"
        note = f" (ignored Authentication-Results from {', '.join(ignored)})" if ignored else ""
        dmarc, spf = found.get("dmarc"), found.get("spf")
        if dmarc is not None and str(dmarc.result).lower() == "pass":
            return Verdict(True, "dmarc", f"{ours}: {summary}{note}")
        for result in header.results:
            if str(result.method).lower() == "dkim" and str(result.result).lower() == "pass" \
                    and aligned(_prop(result, "header", "d"), from_domain):
                return Verdict(True, "dkim", f"{ours}: {summary}{note}")
        if spf is not None and str(spf.result).lower() == "pass":
            mailfrom = _prop(spf, "smtp", "mailfrom") or ""
            if aligned(mailfrom.rpartition("@")[2], from_domain):
                return Verdict(True, "spf", f"{ours}: {summary}{note}")
        return Verdict(False, "", f"{ours}: {summary}, nothing aligned with {from_domain}{note}")
    if ignored:
        return Verdict(False, "", "only Authentication-Results from other hosts "
                                  f"({', '.join(ignored)}), which anyone can write; ignored")
    return None


def dns_function(cfg: AuthenticitySettings) -> Callable[..., bytes | None] | None:
    """dkimpy's DNS lookup against the configured servers (None: dkimpy's system resolver)."""
    if not cfg.dns_servers:
        return None
    import dns.nameserver
    import dns.rdatatype
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    servers = []
    for entry in cfg.dns_servers:
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "53")
        servers.append(dns.nameserver.Do53Nameserver(host, int(port or 53)))
    resolver.nameservers = servers

    def get_txt(name: bytes | str, timeout: float = cfg.dns_timeout) -> bytes | None:
        qname = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(qname, dns.rdatatype.TXT, lifetime=timeout,
                                      raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
            return None
        except dns.exception.Timeout as exc:
            raise dkim.DnsTimeoutError(f"DKIM key lookup for {qname} timed out: {exc}") from exc
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(next(iter(rrset)).strings)
        return None

    return get_txt


def verify_dkim(raw: bytes, from_domain: str, cfg: AuthenticitySettings) -> Verdict:
    """Check every DKIM signature of ``raw``; verified if one is valid and aligned."""
    if b"dkim-signature:" not in raw.lower():
        return Verdict(False, "", "no DKIM signature")
    checker = dkim.DKIM(raw, timeout=int(cfg.dns_timeout))
    lookup = dns_function(cfg)
    seen: list[str] = []
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    for index in range(count):
        try:
            valid = checker.verify(idx=index, dnsfunc=lookup) if lookup else checker.verify(idx=index)
        except dkim.DKIMException as exc:
            seen.append(f"signature {index + 1}: {exc}")
            continue
        domain = (checker.domain or b"").decode("ascii", "replace")
        if valid and aligned(domain, from_domain):
            return Verdict(True, "dkim-local", f"valid DKIM signature of {domain}")
        seen.append(f"d={domain}: " + ("valid but not aligned with " + from_domain if valid
                                       else "signature does not verify"))
    return Verdict(False, "", "DKIM: " + "; ".join(seen))


def check(cfg: AuthenticitySettings, raw: bytes, view: MailView, source: str) -> Verdict | None:
    """The sender verdict for a stored mail; None when the policy is off.

    Done outside the database transaction (a DKIM key lookup can take seconds)."""
    if cfg.policy == "off":
        return None
    from_domain = (view.from_addr or "").rpartition("@")[2]
    if not from_domain:
        return Verdict(False, "", "no From domain")
    reasons = []
    if cfg.authserv_id:
        verdict = from_authentication_results(view, cfg.authserv_id, from_domain)
        if verdict is not None and verdict.verified:
            return verdict
        reasons.append(verdict.detail if verdict else
                       f"no Authentication-Results from {cfg.authserv_id}")
    if cfg.verify_dkim and source == "smtp":
        verdict = verify_dkim(raw, from_domain, cfg)
        if verdict.verified:
            return verdict
        reasons.append(verdict.detail)
    return Verdict(False, "", "; ".join(reasons) or "no check applies to this intake path")
