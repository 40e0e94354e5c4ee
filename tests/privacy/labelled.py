"""The labelled mails of tests/privacy/*.toml, built into real raw messages and scored."""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

from consultant.mail.parse import MailView, parse_mail
from consultant.privacy.detect import detect
from consultant.privacy.hits import Hit
from consultant.privacy.html import html_text
from consultant.privacy.mail import RedactedMail, redact_mail
from consultant.privacy.redact import known_names, redact_filename

HERE = Path(__file__).parent
# Codes that must survive: CPT/HCPCS (5 characters), ICD-10-CM, NDC, 2-character modifiers
# after a dash.  Computed from the original text, independently of the detector.
CODES = re.compile(r"\b(?:\d{4}[0-9AFMTU]|[A-V]\d{4}|[A-TV-Z]\d[0-9A-Z]\.[0-9A-Z]{1,4}|"
                   r"\d{4,5}-\d{3,4}-\d{1,2})\b")


@dataclass
class LabelledMail:
    id: str
    raw: bytes
    phi: list[tuple[str, str]]
    view: MailView = field(init=False)

    def __post_init__(self) -> None:
        self.view = parse_mail(self.raw)


def _raw(entry: dict[str, object]) -> bytes:
    msg = EmailMessage()
    name, addr = parseaddr(str(entry["from"]))
    local, _, domain = addr.partition("@")
    msg["From"] = Address(display_name=name, username=local, domain=domain)
    msg["To"] = "consult@localhost"
    msg["Subject"] = str(entry.get("subject", ""))
    msg["Message-ID"] = f"<{entry['id']}@labelled.example>"
    if "text" in entry:
        msg.set_content(str(entry["text"]))
        if "html" in entry:
            msg.add_alternative(str(entry["html"]), subtype="html")
    else:
        msg.set_content(str(entry["html"]), subtype="html")
    for filename in entry.get("attachments", []):  # type: ignore[attr-defined]
        msg.add_attachment(b"%PDF-1.4 test", maintype="application", subtype="pdf",
                           filename=str(filename))
    return msg.as_bytes()


def load(name: str) -> list[LabelledMail]:
    data = tomllib.loads((HERE / name).read_text(encoding="utf-8"))
    return [LabelledMail(str(e["id"]), _raw(e), [(str(k), str(v)) for k, v in e.get("phi", [])])
            for e in data["mail"]]


def outputs(red: RedactedMail) -> list[str]:
    # Attachment names as a person reads them: "John_Smith.pdf" holds "John Smith".
    return [red.subject, red.from_name, red.text, red.new_text, red.html or "",
            *(str(a["filename"]).replace("_", " ") for a in red.attachments)]


def inputs(view: MailView) -> list[str]:
    """The fields as detection reads them (HTML as its joined text, attachment names last)."""
    return [view.subject, view.from_name, view.text, html_text(view.html) if view.html else "",
            *(str(a.get("filename") or "").replace("_", " ") for a in view.attachments)]


def _hits(text: str, index: int, allowed: list[str], names: list[str]) -> list[Hit]:
    if index >= 4:  # an attachment name, read as redact_filename reads it
        return redact_filename(text, names).hits
    return detect(text, allowed_emails=allowed, known_names=names)


@dataclass
class Score:
    labelled: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    true_hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    codes: int = 0
    codes_kept: int = 0
    lost_codes: list[str] = field(default_factory=list)

    def recall(self, kind: str) -> float:
        return self.found[kind] / self.labelled[kind] if self.labelled[kind] else 1.0

    def precision(self, kind: str) -> float:
        return self.true_hits[kind] / self.hits[kind] if self.hits[kind] else 1.0

    def table(self) -> str:
        kinds = sorted(set(self.labelled) | set(self.hits))
        lines = [f"{'kind':<9} {'labelled':>8} {'found':>6} {'recall':>7} {'hits':>5} {'true':>5} {'precision':>9}"]
        for k in kinds:
            lines.append(f"{k:<9} {self.labelled[k]:>8} {self.found[k]:>6} {self.recall(k):>7.3f} "
                         f"{self.hits[k]:>5} {self.true_hits[k]:>5} {self.precision(k):>9.3f}")
        total_h, total_t = sum(self.hits.values()), sum(self.true_hits.values())
        total_l, total_f = sum(self.labelled.values()), sum(self.found.values())
        lines.append(f"{'all':<9} {total_l:>8} {total_f:>6} {total_f / max(total_l, 1):>7.3f} {total_h:>5} "
                     f"{total_t:>5} {total_t / max(total_h, 1):>9.3f}")
        lines.append(f"codes kept: {self.codes_kept}/{self.codes}")
        return "\n".join(lines)


def _occurrences(value: str, text: str) -> list[re.Match[str]]:
    # Whole words only: the age "93" is not inside the code "99309".
    return list(re.finditer(rf"(?<![\w]){re.escape(value)}(?![\w])", text))


def _occurs(value: str, text: str) -> bool:
    return bool(_occurrences(value, text))


def score(mails: list[LabelledMail]) -> Score:
    result = Score()
    for mail in mails:
        red = redact_mail(mail.view)
        out = outputs(red)
        for kind, value in mail.phi:
            result.labelled[kind] += 1
            if any(_occurs(value, o) for o in out):
                result.missed.append(f"{mail.id}: {kind} {value!r}")
            else:
                result.found[kind] += 1
        values = [v for _, v in mail.phi]
        allowed = [mail.view.from_addr or ""]
        field_texts = inputs(mail.view)
        names = known_names(field_texts)
        for index, text in enumerate(field_texts):
            spans = [(m.start(), m.end()) for v in values for m in _occurrences(v, text)]
            for hit in _hits(text, index, allowed, names):
                result.hits[str(hit.kind)] += 1
                if any(s < hit.end and hit.start < e for s, e in spans):
                    result.true_hits[str(hit.kind)] += 1
                else:
                    result.false.append(f"{mail.id}: {hit.rule} {text[hit.start:hit.end]!r}")
        original = " ".join(field_texts)
        redacted = " ".join(out)
        for code in set(CODES.findall(original)):
            if any(code in v for v in values):
                continue
            result.codes += 1
            if code in redacted:
                result.codes_kept += 1
            else:
                result.lost_codes.append(f"{mail.id}: {code}")
    return result
