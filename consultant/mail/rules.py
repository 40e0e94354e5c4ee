"""Small named classification rules; every hit is recorded on the mail so a human sees why.

Order matters and is fixed in :data:`CHAIN`: bounces come before auto-replies because many MTAs
stamp ``Auto-Submitted: auto-replied`` on their bounces too (961 of the 1,831 corpus mails are
bounces), and both come before anything that could create a case or send a reply — answering
an automated message is how mail loops start (RFC 3834 §2).

Every check takes the view and a :class:`RuleContext` (what the service knows about itself:
its addresses, its Message-ID signer), so a new rule is one function and one line in
:data:`CHAIN`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from consultant.mail.msgid import MessageIdSigner, signer_for
from consultant.mail.parse import MailView
from consultant.settings import Settings

LOOP_HEADER = "X-CaseConsultant-Loop"

_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery (status notification|failure|has failed|failed)|mail delivery failed|"
    r"returned mail|failure notice|non[- ]?delivery|delivery notification|mail system error|"
    r"could not be delivered|returned to sender|nondeliverable)",
    re.I,
)
_AUTOREPLY_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|abwesenheit|"
    r"r[ée]ponse automatique|away from)", re.I,
)


@dataclass(frozen=True)
class RuleContext:
    """What the rules may know about the service itself."""

    own_addresses: frozenset[str] = frozenset()
    signer: MessageIdSigner = field(default_factory=lambda: MessageIdSigner("", "localhost"))

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleContext:
        own = {settings.service.address, *settings.service.aliases}
        return cls(own_addresses=frozenset(a.lower() for a in own), signer=signer_for(settings))


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[MailView, RuleContext], bool]


def _report_type(view: MailView) -> str:
    msg = view.message
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "") or "").lower()


def is_bounce(view: MailView, ctx: RuleContext) -> bool:
    """A delivery status notification: DSN report, MAILER-DAEMON sender, or a bounce subject
    from a null/daemon sender (old MTAs send bounces without a DSN part)."""
    if view.message.get_content_type() == "multipart/report" and \
            _report_type(view) not in {"feedback-report", "disposition-notification"}:
        return True
    sender = " ".join(filter(None, [view.header("From"), view.header("Sender")])).lower()
    if "mailer-daemon" in sender:
        return True
    if view.from_addr and _BOUNCE_SENDERS.match(view.from_addr):
        return True
    if view.header("X-Failed-Recipients"):
        return True
    return bool(_BOUNCE_SUBJECT.search(view.subject) and
                any(p.get_content_type() in {"message/delivery-status", "message/rfc822",
                                             "text/rfc822-headers"}
                    for p in view.message.walk()))


def is_feedback_report(view: MailView, ctx: RuleContext) -> bool:
    """An abuse/feedback report (ARF, RFC 5965) or a read receipt (MDN): machine mail."""
    return _report_type(view) in {"feedback-report", "disposition-notification"}


def is_auto_submitted(view: MailView, ctx: RuleContext) -> bool:
    """RFC 3834 ``Auto-Submitted`` other than ``no``, plus the common vendor signals."""
    value = view.header("Auto-Submitted").strip().lower()
    if value and not value.startswith("no"):
        return True
    if any(view.header(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if view.header("X-Auto-Response-Suppress").strip().lower() in {"all", "oof"} and \
            _AUTOREPLY_SUBJECT.search(view.subject):
        return True
    precedence = view.header("Precedence").strip().lower()
    if precedence in {"auto_reply", "bulk", "junk", "list"}:
        return True
    if view.header("List-Id") or view.header("List-Unsubscribe"):
        return True
    return bool(_AUTOREPLY_SUBJECT.search(view.subject))


def is_loop(view: MailView, ctx: RuleContext) -> bool:
    """Sent by a CaseConsultant (ours coming back, or another instance's answer or notice):
    every one of them stamps X-CaseConsultant-Loop, and answering it is how two robots loop."""
    return bool(view.header(LOOP_HEADER))


def is_from_self(view: MailView, ctx: RuleContext) -> bool:
    """From one of the service's own addresses, or carrying a Message-ID we signed: our own
    mail delivered back to us."""
    if view.from_addr is not None and view.from_addr in ctx.own_addresses:
        return True
    return bool(view.message_id and ctx.signer.verify(view.message_id))


def has_no_sender(view: MailView, ctx: RuleContext) -> bool:
    """No usable From address: nobody to answer, so quarantine for a human."""
    return view.from_addr is None


# The rules, in order; the first hit decides the disposition.
CHAIN: list[tuple[Rule, str]] = [
    (Rule("is_bounce", "delivery status notification (bounce)", is_bounce), "bounce"),
    (Rule("is_feedback_report", "ARF feedback report or read receipt", is_feedback_report), "bounce"),
    (Rule("is_loop", "sent by a CaseConsultant service (X-CaseConsultant-Loop): answering would loop",
          is_loop), "auto_reply"),
    (Rule("is_auto_submitted", "automatic reply or bulk mail (RFC 3834)", is_auto_submitted),
     "auto_reply"),
    (Rule("is_from_self", "sent from the service's own address or with our own Message-ID",
          is_from_self), "quarantined"),
    (Rule("has_no_sender", "no usable From address", has_no_sender), "quarantined"),
]


def classify_machine_mail(view: MailView, ctx: RuleContext | None = None
                          ) -> tuple[str | None, list[str]]:
    """Return (disposition or None, rule names that hit). None means: mail from a person."""
    ctx = ctx or RuleContext()
    hits: list[str] = []
    decided: str | None = None
    for rule, disposition in CHAIN:
        try:
            hit = rule.check(view, ctx)
        except Exception:  # noqa: BLE001 - a rule that trips on odd input does not hit
            hit = False
        if hit:
            hits.append(rule.name)
            decided = decided or disposition
    return decided, hits
