"""Finding codes, modifiers, units, doses, date of service, payer and setting in a mail body.

Only *candidates* are found here (no database); ``api.analyse`` validates them against the data.
Look-alikes are masked first (phone numbers, ZIP codes, dates, money, claim/account numbers), so
a code pattern can never match inside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

# CPT numeric modifiers (numbers only; their descriptors are AMA content and never shown).
CPT_MODIFIERS = frozenset(
    "22 23 24 25 26 27 32 33 47 50 51 52 53 54 55 56 57 58 59 62 63 66 73 74 76 77 78 79 80 81 "
    "82 90 91 92 93 95 96 97 99".split()
)
# Level II modifiers recognised as bare words (others need "-XX" or "modifier XX").  Two-letter
# English words (AS, AT, GO...) are deliberately absent.
BARE_MODIFIERS = frozenset(
    "XE XP XS XU RT LT LC LD RC LM RI GA GY GZ KX JW JZ TC QW GT GC QK QX QY QZ FA "
    "F1 F2 F3 F4 F5 F6 F7 F8 F9 TA T1 T2 T3 T4 T5 T6 T7 T8 T9 E1 E2 E3 E4".split()
)
MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}

_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
DATE_RE = re.compile(
    r"\b(?:(?P<m>\d{1,2})[/.-](?P<d>\d{1,2})[/.-](?P<y>\d{4}|\d{2})"
    r"|(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})"
    rf"|(?P<tm>{_MONTH})\.?\s+(?P<td>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<ty>\d{{4}})"
    rf"|(?P<ed>\d{{1,2}})\s+(?P<em>{_MONTH})\.?,?\s+(?P<ey>\d{{4}}))\b",
    re.IGNORECASE,
)
# Spans that look like codes but are not: masked before codes are searched.
LOOKALIKES = [
    re.compile(r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b"),  # phone numbers
    re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*\.\d{2}\b|\b\d{1,3}(?:,\d{3})+\b"),  # money, 1,234
    re.compile(r"\b\d{5}-\d{4}\b"),  # ZIP+4
    re.compile(r"\b(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|PA|RI|S[CD]|T[NX]|UT|V[AT]|W[AIVY]),?\s+\d{5}\b"),  # state + ZIP
    re.compile(r"\b(?:zip|postal)(?:\s*code)?\s*[:#]?\s*\d{5}\b", re.IGNORECASE),
    re.compile(
        r"\b(?:claim|icn|dcn|account|acct|member|subscriber|policy|group|npi|tin|ein|mrn|chart|"
        r"ref(?:erence)?|invoice|case|ticket|order|auth(?:orization)?|confirmation|tracking|id|"
        r"phone|tel|fax|ext)\b\.?\s*(?:no\.?|number|num|id|#)?\s*[:#]?\s*[A-Z0-9][A-Z0-9-]*",
        re.IGNORECASE,
    ),
    re.compile(r"\b\d{1,2}:\d{2}\b"),  # times
    DATE_RE,
]
CODE_RE = re.compile(
    r"(?<![\w$#])(?:"
    r"(?P<cpt>\d{4}[AFMTU]|\d{5})"
    r"|(?P<icddot>[A-Z]\d[0-9A-Z]\.[0-9A-Z]{1,4})"
    r"|(?P<alnum>[A-Z]\d[0-9A-Z]{1,5})"
    r")(?![\w.]\w)",
    re.IGNORECASE,
)
ATTACHED_MOD_RE = re.compile(r"\s?-\s?([0-9A-Z]{2})\b")
KEYWORD_MOD_RE = re.compile(
    r"\bmod(?:ifier)?s?\.?\s*[:#-]?\s*((?:-?[0-9A-Z]{2}\b(?:\s*(?:,|/|&|\band\b|\bor\b|\+)\s*)?)+)",
    re.IGNORECASE,
)
DASH_MOD_RE = re.compile(r"(?<![\w-])-([0-9]{2}|[A-Z]{2}|[A-Z][0-9])\b")
BARE_MOD_RE = re.compile(r"(?<![\w-])([A-Z][A-Z0-9])(?:/([A-Z][A-Z0-9]))?(?![\w-])")
UNITS_RE = re.compile(
    r"(?:[x×]\s*(?P<a>\d+)(?:\s*units?)?\b|\b(?P<b>\d+)\s*units?\b|\bunits?\s*(?:of|:|=|-)?\s*(?P<c>\d+)\b"
    r"|\b(?:qty|quantity)\s*(?:of|:|=)?\s*(?P<d>\d+)\b)",
    re.IGNORECASE,
)
DOSE_RE = re.compile(r"\b(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>mg|mcg|µg|g|ml|cc|meq|iu)\b", re.IGNORECASE)
DOS_RE = re.compile(
    r"\b(?:dos|d\.o\.s\.?|date\s+of\s+service|service\s+date|date\s+of\s+svc|"
    r"(?:seen|performed|done|treated|provided|visit(?:ed)?)\s+on)\b\s*(?:was|is|of|:|-|=)?\s*",
    re.IGNORECASE,
)
PAYERS = [
    ("Medicare Advantage", r"\bmedicare\s+advantage\b|\bMA\s+plan\b|\bpart\s+c\b"),
    ("Medicare", r"\bmedicare\b|\bCMS\b|\bMAC\b|\bnoridian\b|\bnovitas\b|\bpalmetto\b|\bwps\b"),
    ("Medicaid", r"\bmedicaid\b|\bmedi-cal\b|\bmasshealth\b|\bCHIP\b"),
    ("TRICARE", r"\btricare\b"),
    ("workers' compensation", r"\bworkers'?\s+comp(?:ensation)?\b"),
    ("commercial", r"\bcommercial\b|\bprivate\s+(?:insurance|payer|plan)\b|\bbcbs\b|\bblue\s+cross\b|"
                   r"\baetna\b|\bcigna\b|\bunited\s*healthcare\b|\buhc\b|\bhumana\b|\banthem\b|\bkaiser\b"),
]
SETTINGS = [
    ("hospital outpatient", r"\bPOS\s*(?:code\s*)?(?:19|22)\b|\bhospital\s+outpatient\b|\boutpatient\s+hospital\b|\bHOPD\b|\bOPPS\b"),
    ("ASC", r"\bPOS\s*(?:code\s*)?24\b|\bASC\b|\bambulatory\s+surg(?:ery|ical)\s+cent(?:er|re)\b"),
    ("emergency department", r"\bPOS\s*(?:code\s*)?23\b|\bemergency\s+(?:department|room)\b|\bER\b|\bED\s+visit\b"),
    ("hospital inpatient", r"\bPOS\s*(?:code\s*)?21\b|\binpatient\b"),
    ("telehealth", r"\bPOS\s*(?:code\s*)?(?:02|10)\b|\btele(?:health|medicine)\b"),
    ("nursing facility", r"\bPOS\s*(?:code\s*)?(?:31|32)\b|\bSNF\b|\bnursing\s+(?:facility|home)\b"),
    ("home", r"\bPOS\s*(?:code\s*)?12\b|\bhome\s+visit\b"),
    ("office", r"\bPOS\s*(?:code\s*)?11\b|\boffice\b|\bclinic\b|\bphysician\s+practice\b"),
    ("facility", r"\bfacility\b"),
]


@dataclass
class Mention:
    """A code-shaped token: ``kind`` is cpt, icd (had a dot) or alnum (HCPCS or dotless ICD)."""

    raw: str
    kind: str
    start: int
    end: int
    modifiers: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        return self.raw.upper()


@dataclass
class Extraction:
    mentions: list[Mention] = field(default_factory=list)
    modifiers: list[dict[str, object]] = field(default_factory=list)
    units: list[dict[str, object]] = field(default_factory=list)
    doses: list[dict[str, object]] = field(default_factory=list)
    date_of_service: date | None = None
    payer: str | None = None
    setting: str | None = None


def parse_date(m: re.Match[str]) -> date | None:
    g = m.groupdict()
    try:
        if g["y"]:
            year = int(g["y"]) + (2000 if len(g["y"]) == 2 else 0)
            return date(year, int(g["m"]), int(g["d"]))
        if g["iy"]:
            return date(int(g["iy"]), int(g["im"]), int(g["id"]))
        if g["tm"]:
            return date(int(g["ty"]), MONTHS[g["tm"][:3].lower()], int(g["td"]))
        if g["ed"]:
            return date(int(g["ey"]), MONTHS[g["em"][:3].lower()], int(g["ed"]))
    except ValueError:
        return None
    return None


def _mask(text: str) -> str:
    chars = list(text)
    for pattern in LOOKALIKES:
        for m in pattern.finditer(text):
            chars[m.start():m.end()] = "#" * (m.end() - m.start())
    return "".join(chars)


def _nearest(mentions: list[Mention], pos: int, text: str, kinds: tuple[str, ...] = ()) -> Mention | None:
    """The code mention closest before ``pos`` on the same line, else the first after it."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end < 0 else line_end
    same = [m for m in mentions if line_start <= m.start < line_end and (not kinds or m.kind in kinds)]
    before = [m for m in same if m.end <= pos]
    if before:
        return before[-1]
    after = [m for m in same if m.start >= pos]
    return after[0] if after else None


def extract(text: str) -> Extraction:
    """Find code candidates and their context in ``text`` (plain text, quotes already removed)."""
    out = Extraction()
    masked = _mask(text)
    taken: list[tuple[int, int]] = []
    for m in CODE_RE.finditer(masked):
        kind = "cpt" if m.group("cpt") else "icd" if m.group("icddot") else "alnum"
        raw = text[m.start():m.end()]
        if kind == "alnum" and not any(c.isdigit() for c in raw[1:]):
            continue
        mention = Mention(raw, kind, m.start(), m.end())
        # Modifiers written onto the code: 99214-25, J1885-JZ, 64483-RT-59.
        pos = m.end()
        while (att := ATTACHED_MOD_RE.match(masked, pos)) and _is_modifier(att.group(1).upper(), attached=True):
            mention.modifiers.append(att.group(1).upper())
            pos = att.end()
        mention.end = pos
        taken.append((m.start(), pos))
        out.mentions.append(mention)
    for mention in out.mentions:
        for mod in mention.modifiers:
            out.modifiers.append({"modifier": mod, "code": mention.code, "how": "attached"})

    def free(a: int, b: int) -> bool:
        return not any(s < b and a < e for s, e in taken)

    for m in KEYWORD_MOD_RE.finditer(masked):
        target = _TARGET_RE.match(masked, m.end())
        for tok in re.findall(r"[0-9A-Z]{2}\b", m.group(1).upper()):
            if _is_modifier(tok, attached=True):
                _add_modifier(out, tok, target.start(1) if target else m.start(), text, "keyword",
                              exact=bool(target))
        taken.append((m.start(), m.end()))
    for m in DASH_MOD_RE.finditer(masked):
        if free(m.start(), m.end()) and _is_modifier(m.group(1), attached=True):
            _add_modifier(out, m.group(1), m.start(), text, "dash")
            taken.append((m.start(), m.end()))
    for m in BARE_MOD_RE.finditer(masked):
        if not free(m.start(), m.end()):
            continue
        for tok in filter(None, (m.group(1), m.group(2))):
            if tok in BARE_MODIFIERS:
                _add_modifier(out, tok, m.start(), text, "bare")
    # Units and doses are read with the codes masked too ("96372 units: 2" is 2 units).
    chars = list(masked)
    for mention in out.mentions:
        chars[mention.start:mention.end] = "#" * (mention.end - mention.start)
    masked = "".join(chars)
    for m in UNITS_RE.finditer(masked):
        value = int(next(v for v in (m.group("a"), m.group("b"), m.group("c"), m.group("d")) if v))
        near = _nearest(out.mentions, m.start(), text, ("cpt", "alnum"))
        out.units.append({"code": near.code if near else None, "units": value, "text": m.group(0).strip()})
    for m in DOSE_RE.finditer(masked):
        near = _nearest(out.mentions, m.start(), text, ("alnum",)) or _nearest(out.mentions, m.start(), text)
        unit = {"µg": "mcg", "cc": "ml", "iu": "units"}.get(m.group("unit").lower(), m.group("unit").lower())
        amount = float(m.group("amount"))
        out.doses.append({"code": near.code if near else None,
                          "amount": int(amount) if amount.is_integer() else amount,
                          "unit": unit, "text": m.group(0)})
    out.date_of_service = _date_of_service(text)
    out.payer = _first_label(PAYERS, text)
    out.setting = _first_label(SETTINGS, text)
    return out


def _is_modifier(tok: str, attached: bool) -> bool:
    if tok.isdigit():
        return tok in CPT_MODIFIERS
    return attached and bool(re.fullmatch(r"[A-Z][A-Z0-9]|[0-9][A-Z]", tok))


# "modifier 59 on 20610": the code the modifier is written for follows it.
_TARGET_RE = re.compile(r"\s*(?:on|to|with|for|appended\s+to)\s+(?:code\s+|cpt\s+|hcpcs\s+)?([A-Z0-9]{5})\b", re.IGNORECASE)


def _add_modifier(out: Extraction, tok: str, pos: int, text: str, how: str, exact: bool = False) -> None:
    near = next((m for m in out.mentions if m.start == pos), None) if exact else None
    near = near or _nearest(out.mentions, pos, text, ("cpt", "alnum"))
    code = near.code if near else None
    if near is not None and tok not in near.modifiers:
        near.modifiers.append(tok)
    if not any(m["modifier"] == tok and m["code"] == code for m in out.modifiers):
        out.modifiers.append({"modifier": tok, "code": code, "how": how})


def _date_of_service(text: str) -> date | None:
    for label in DOS_RE.finditer(text):
        m = DATE_RE.match(text, label.end())
        if m:
            return parse_date(m)
    return None


def _first_label(table: list[tuple[str, str]], text: str) -> str | None:
    for label, pattern in table:
        if re.search(pattern, text, re.IGNORECASE if label not in ("ASC",) else 0):
            return label
    return None
