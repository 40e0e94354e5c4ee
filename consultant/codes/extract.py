"""Finding codes, modifiers, units, doses, date of service, payer and setting in a mail body.

Only *candidates* are found here (no database); ``api.resolve`` checks them against the data.
Look-alikes are masked first (phone numbers, ZIP codes, dates, money, claim/account numbers), so
a code pattern can never match inside them.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter
from typing import TypedDict

from consultant.codes.units import unit_name

# CPT numeric modifiers (numbers only; their descriptors are AMA content and never shown).
CPT_MODIFIERS = frozenset(
    "22 23 24 25 26 27 32 33 47 50 51 52 53 54 55 56 57 58 59 62 63 66 73 74 76 77 78 79 80 81 "
    "82 90 91 92 93 95 96 97 99".split()
)
# Level II modifiers recognised as bare words (others need "-XX" or "modifier XX").  Two-letter
# English words (AS, AT, GO...) are deliberately absent.
BARE_MODIFIERS = frozenset(
    "XE XP XS XU RT LT LC LD RC LM RI GA GY GZ KX JW JZ TC QW GT GC QK QX QY QZ FA GP GN "
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
_STATES = (r"(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|PA|"
           r"RI|S[CD]|T[NX]|UT|V[AT]|W[AIVY])")
# Remittance advice remark codes (N130, M80, MA130), labelled or written after a CARC.
RARC_RES = [
    re.compile(r"\b(?:RARCs?|remark(?:\s+codes?)?|rmk)\b\s*(?:code)?\s*[:#-]?\s*"
               r"(?:(?:M|N|MA)\d{1,3}(?:\s*(?:,|/|and|&)\s*)?)+", re.IGNORECASE),
    re.compile(r"(?<=[\d\s])(?:/|,|\s)\s*(?:with\s+)?(?:MA\d{2,3}|N\d{1,3}|M\d{1,3})\b(?=[^\n]*\b(?:RARC|remark|denied|denial|EOB|ERA)\b)",
               re.IGNORECASE),
]
# Spans that look like codes but are not: masked before codes are searched.  Each is recognised
# by its context (a label, a state before a ZIP, the shape of a phone or NDC number), never by a
# list of example values.
LOOKALIKES = [
    re.compile(r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b"),  # phone / fax numbers
    # Money and amounts: $310, 99213.00, 1,250 (but not a dose or a BSA: 31.25 mg, BSA 1.76).
    re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?|\b\d{2,}(?:,\d{3})*\.\d{2}\b(?!\s*(?:m2|m²|mg|mcg|kg|ml|g\b|units?|%))"
               r"|\b\d{1,3}(?:,\d{3})+\b"),
    re.compile(r"\b\d{4,5}-\d{3,4}-\d{1,2}\b"),  # NDC 5-4-2 (and 4-4-2, 5-3-2 as labelled)
    re.compile(r"\bNDC\b\s*(?:#|no\.?|number|code)?\s*[:#]?\s*\d{10,11}\b", re.IGNORECASE),  # 11-digit NDC
    re.compile(r"\b\d{2}-\d{7}\b"),  # TIN / EIN
    re.compile(r"\b\d{2}D\d{7}\b", re.IGNORECASE),  # CLIA number
    re.compile(r"\b\d{5}-\d{4}\b"),  # ZIP+4
    # City, ST 12345 / ", ST 12345": a state abbreviation after a comma or a capitalised word.
    re.compile(rf"(?:,\s*|\b[A-Z][a-z]+\.?\s+){_STATES}\.?,?\s+\d{{5}}\b"),
    re.compile(r"\b(?:zip|postal)(?:\s*code)?\s*[:#]?\s*\d{5}\b", re.IGNORECASE),
    re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d+\b", re.IGNORECASE),  # PO Box 97140
    # A street number before a street name ("6410 Rockledge Dr", "12345 Main Street").
    re.compile(r"\b\d{3,6}\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+\s+){1,3}(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Dr|Drive|"
               r"Ln|Lane|Way|Ct|Court|Pkwy|Parkway|Hwy|Highway|Pl|Place|Cir|Circle|Ter|Terrace)\b\.?"),
    # Claim adjustment reason codes: group code + number (CO-45, PR 1, OA-23), or labelled.
    re.compile(r"\b(?:CO|PR|OA|PI|CR)\s?-\s?\d{1,3}\b|\b(?:CO|PR|OA|PI)\s\d{1,3}\b"),
    re.compile(r"\b(?:CARC|reason\s+codes?|adj(?:ustment)?\s+codes?)\b\s*[:#]?\s*(?:(?:CO|PR|OA|PI)?\s?-?\s?\d{1,3}"
               r"(?:\s*(?:,|/|and|&)\s*)?)+", re.IGNORECASE),
    *RARC_RES,
    re.compile(
        r"\b(?:claim|icn|dcn|account|acct|member|subscriber|policy|group|npi|tin|ein|mrn|chart|"
        r"ref(?:erence)?|invoice|case|ticket|order|auth(?:orization)?|confirmation|tracking|id|"
        r"phone|tel|fax|ext|lot|serial|clia|ptan|medicaid\s+id|taxonomy)\b\.?\s*(?:no\.?|number|num|id|#)?\s*[:#]?\s*[A-Z0-9][A-Z0-9-]*",
        re.IGNORECASE,
    ),
    re.compile(r"\b\d{1,2}:\d{2}(?:\s*[ap]\.?m\.?)?\b", re.IGNORECASE),  # times
    re.compile(r"\b\d{1,2}\s*[ap]\.?m\.?(?!\w)", re.IGNORECASE),
    DATE_RE,
]
# A line that talks about remittance codes: N/M-codes on it are remark codes, not ICD-10-CM.
REMIT_LINE_RE = re.compile(r"\b(?:RARC|CARC|remark|EOB|ERA|835|remit(?:tance)?|denial\s+code|denied\s+with)\b"
                           r"|\b(?:CO|PR|OA)\s?-\s?\d{1,3}\b", re.IGNORECASE)
REMARK_SHAPE_RE = re.compile(r"(?:MA|[MN])\d{1,3}", re.IGNORECASE)
CODE_RE = re.compile(
    r"(?<![\w$#])(?:"
    r"(?P<cpt>\d{4}[AFMTU]|\d{5})"
    r"|(?P<icddot>[A-Z]\d[0-9A-Z]\.[0-9A-Z]{1,5})"
    r"|(?P<alnum>[A-Z]\d[0-9A-Z]{1,5})"
    r")(?:(?=[x×]\s?\d)|(?!\w)(?!\.\w))",
    re.IGNORECASE,
)
ATTACHED_MOD_RE = re.compile(r"\s?-\s?([0-9A-Z]{2})\b")
# Units written straight after a code: "96372 x2", "J9035x10", "99213 ×1", "J1100 (x3)".
ATTACHED_UNITS_RE = re.compile(r"\s*\(?\s*[x×*]\s?(\d{1,4})\b\s*\)?(?:\s*units?\b)?|\s+(\d{1,4})\s*(?:units?|u)\b", re.IGNORECASE)
KEYWORD_MOD_RE = re.compile(
    r"\bmod(?:ifier)?s?\.?\s*[:#,-]?\s*((?:-?[0-9A-Z]{2}\b(?:\s*(?:,|/|&|\band\b|\bor\b|\+)\s*)?)+)",
    re.IGNORECASE,
)
# A CPT modifier written as a bare number, in words that make it one: "put 59 on 97140", "does
# 99203 need 25?", "is the 25 right", "59/XS", "bill 92012 with 24" (never "25 minutes").
NUMBER_MOD_RE = re.compile(
    r"(?:\b(?:the|a|put|puts|putting|use|using|add|append|appended|need|needs|needed|with|w/|plus|and|or|is it|be)\s+-?"
    r"|(?<=[\s(])(?=\d\d\s*(?:/|or|vs\.?)\s*(?:X[EPSU]|\d\d)\b)|(?<=[\s(])(?=\d\d\s+on\s+(?:the|it|this|that|\d{5})\b))"
    r"(?P<mod>2[2-7]|5[0-9]|7[6-9]|91)\b(?!\s*(?:min\w*|mg|mcg|ml|units?|u\b|%|years?|yrs?|y/?o|days?|hours?|hrs?|kg|lbs?|"
    r"mm|cm|sessions?|visits?|times|x\b|\d|,\d|\.\d|-\d|/\d))", re.IGNORECASE)
DASH_MOD_RE = re.compile(r"(?<![\w-])-([0-9]{2}|[A-Z]{2}|[A-Z][0-9])\b")
BARE_MOD_RE = re.compile(r"(?<![\w-])([A-Z][A-Z0-9])(?:/([A-Z][A-Z0-9]))?(?![\w-])")
UNITS_RE = re.compile(
    r"(?:[x×]\s*(?P<a>\d+)(?:\s*units?)?\b|\b(?P<b>\d+)\s*(?:units?|u)\b|\bunits?\s*(?:of|:|=|-)?\s*(?P<c>\d+)\b"
    r"|\b(?:qty|quantity)\s*(?:of|:|=)?\s*(?P<d>\d+)\b)",
    re.IGNORECASE,
)
_DOSE_UNIT = r"mg|mcg|µg|ug|micrograms?|milligrams?|grams?|gm|g|ml|mL|cc|meq|iu|units?|liters?|litres?"
DOSE_RE = re.compile(rf"(?<![\w./])(?P<amount>\d+(?:,\d{{3}})*(?:\.\d+)?)\s*(?P<unit>{_DOSE_UNIT})(?![\w/])", re.IGNORECASE)
# Arithmetic inputs coders write: 10 mg/kg × 80 kg, 75 mg/m2 × 1.8 m2, 2 mL of 40 mg/mL.
PER_KG_RE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>mg|mcg|units?)\s*/\s*kg\b", re.IGNORECASE)
WEIGHT_RE = re.compile(r"(?<![/\w.])(?P<w>\d+(?:\.\d+)?)\s*(?P<u>kg|kgs|kilograms?|lbs?|pounds?)\b", re.IGNORECASE)
PER_M2_RE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>mg|mcg|units?)\s*/\s*(?:m2|m²|m\^2|sq\.?\s*m)", re.IGNORECASE)
BSA_RE = re.compile(r"(?:\bBSA\b\s*(?:of|=|:|is)?\s*(?P<a>\d+(?:\.\d+)?)(?:\s*(?:m2|m²|m\^2))?"
                    r"|(?<![/\w.])(?P<b>\d+(?:\.\d+)?)\s*(?:m2|m²|m\^2)(?!\w))", re.IGNORECASE)
CONC_RE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>mg|mcg|units?)\s*/\s*(?P<per>\d+(?:\.\d+)?)?\s*(?:ml|cc)\b", re.IGNORECASE)
VOLUME_RE = re.compile(r"(?<![/\w.])(?P<v>\d+(?:\.\d+)?)\s*(?:ml|cc)(?![\w/])", re.IGNORECASE)
WASTE_RE = re.compile(
    rf"(?:\b(?:wasted|waste|discarded|discard|threw\s+away|thrown\s+away)\b\s*(?:was|of|:|=|-)?\s*\(?\s*(?P<a>\d+(?:\.\d+)?)\s*(?P<ua>{_DOSE_UNIT})(?![\w/])"
    rf"|(?P<b>\d+(?:\.\d+)?)\s*(?P<ub>{_DOSE_UNIT})(?![\w/])\s*(?:was\s+|were\s+|is\s+|are\s+)?(?:wasted|discarded|waste|thrown\s+away|left\s+over|leftover|remaining)\b)",
    re.IGNORECASE,
)
CONTAINER_RE = re.compile(
    rf"(?:(?P<n>\d+)\s*(?:x|×)\s*|(?P<nw>one|two|three|four|five|six)\s+(?:x\s+)?)?(?P<a>\d+(?:\.\d+)?)\s*(?P<u>{_DOSE_UNIT})(?![\w/])\s*"
    r"(?:single[- ]dose\s+|single[- ]use\s+|SDV\s+)?(?:vials?|syringes?|ampules?|ampoules?|bottles?|bags?)\b",
    re.IGNORECASE,
)
_COUNTED_RE = re.compile(rf"(?P<n>\d+)\s*[x×]\s*(?P<a>\d+(?:\.\d+)?)\s*(?P<u>{_DOSE_UNIT})(?![\w/])", re.IGNORECASE)
NO_WASTE_RE = re.compile(r"\b(?:no\s+(?:waste|wastage|discard(?:ed)?)|nothing\s+(?:was\s+)?(?:wasted|discarded)|"
                         r"none\s+(?:was\s+)?(?:wasted|discarded)|zero\s+waste|whole\s+vial|entire\s+vial|"
                         r"full\s+vial)\b", re.IGNORECASE)
NUM_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
DOS_RE = re.compile(
    r"\b(?:dos|d\.o\.s\.?|date\s+of\s+service|service\s+date|date\s+of\s+svc|svc\s+date|"
    r"(?:seen|performed|done|treated|provided|given|administered|visit(?:ed)?)\s+on)\b\s*(?:was|is|of|:|-|=)?\s*",
    re.IGNORECASE,
)
# Dates that are not the date of service (a birth date is an identifier, not a DOS).
NOT_DOS_BEFORE_RE = re.compile(r"(?:\bDOB|\bD\.O\.B\.?|date\s+of\s+birth|\bborn(?:\s+on)?|\bbirth\s*date|"
                               r"\bb\.|admi(?:tted|ssion)|discharg\w*|died|death|received|billed|paid|"
                               r"denied|submitted|processed|remit\w*)\s*(?:on|date|:|-|#)?\s*$", re.IGNORECASE)
PAYERS = [
    ("Medicare Advantage", r"\bmedicare\s+advantage\b|\bMA\s+plan\b|\bpart\s+c\b"),
    ("Medicare", r"\bmedicare\b|\bCMS\b|\bMAC\b|\bnoridian\b|\bnovitas\b|\bpalmetto\b|\bwps\b|\bpart\s+b\b"),
    ("Medicaid", r"\bmedicaid\b|\bmedi-cal\b|\bmasshealth\b|\bCHIP\b"),
    ("TRICARE", r"\btricare\b"),
    ("workers' compensation", r"\bworkers'?\s+comp(?:ensation)?\b"),
    ("commercial", r"\bcommercial\b|\bprivate\s+(?:insurance|payer|plan)\b|\bbcbs\b|\bblue\s+cross\b|"
                   r"\baetna\b|\bcigna\b|\bunited\s*healthcare\b|\buhc\b|\bhumana\b|\banthem\b|\bkaiser\b"),
]
SETTINGS = [
    ("hospital outpatient", r"\bPOS\s*(?:code\s*)?(?:19|22)\b|\bhospital\s+outpatient\b|\boutpatient\s+hospital\b|"
                            r"\bHOPD\b|\bOPPS\b|\bUB-?04\b|\bfacility\s+(?:side|claim|billing)\b"),
    ("ASC", r"\bPOS\s*(?:code\s*)?24\b|\bASC\b|\bambulatory\s+surg(?:ery|ical)\s+cent(?:er|re)\b"),
    ("emergency department", r"\bPOS\s*(?:code\s*)?23\b|\bemergency\s+(?:department|room)\b|\bER\b|\bED\s+visit\b"),
    ("hospital inpatient", r"\bPOS\s*(?:code\s*)?21\b|\binpatient\b"),
    ("telehealth", r"\bPOS\s*(?:code\s*)?(?:02|10)\b|\btele(?:health|medicine)\b"),
    ("nursing facility", r"\bPOS\s*(?:code\s*)?(?:31|32)\b|\bSNF\b|\bnursing\s+(?:facility|home)\b"),
    ("home", r"\bPOS\s*(?:code\s*)?12\b|\bhome\s+visit\b"),
    ("office", r"\bPOS\s*(?:code\s*)?11\b|\boffice\b|\bclinic\b|\bphysician\s+practice\b|\bpro(?:fessional)?\s+fee\b"),
    ("facility", r"\bfacility\b"),
]


@dataclass
class Mention:
    """A code-shaped token: ``kind`` is cpt, icd (had a dot) or alnum (HCPCS or dotless ICD).

    ``units`` are the units written on the code's own line ("96372 x2", a table's units column).
    """

    raw: str
    kind: str
    start: int
    end: int
    modifiers: list[str] = field(default_factory=list)
    units: int | None = None
    hint: str | None = None  # "hcpcs" when the words before it name a HCPCS code ("units of J188")

    @property
    def code(self) -> str:
        return self.raw.upper()


class ModifierMention(TypedDict):
    modifier: str
    code: str | None
    how: str  # attached | keyword | dash | bare


class UnitsMention(TypedDict):
    code: str | None
    units: int
    text: str


class DoseMention(TypedDict):
    """An amount given (or discarded) for a drug line, with the arithmetic inputs that made it."""

    code: str | None
    amount: float | int
    unit: str
    text: str
    start: int
    inputs: list[dict[str, object]]  # e.g. [{"per_kg": 10, "unit": "mg", "weight_kg": 80}]


@dataclass
class Extraction:
    mentions: list[Mention] = field(default_factory=list)
    modifiers: list[ModifierMention] = field(default_factory=list)
    units: list[UnitsMention] = field(default_factory=list)
    doses: list[DoseMention] = field(default_factory=list)
    wasted: list[DoseMention] = field(default_factory=list)
    containers: list[DoseMention] = field(default_factory=list)
    no_waste: bool = False
    date_of_service: date | None = None
    dos_text: str = ""
    payer: str | None = None
    setting: str | None = None
    # Code-shaped tokens read as something else, with why (shown to the consultant).
    rejected: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""  # what was read

    def line_after(self, pos: int) -> str:
        """The rest of the line from ``pos``."""
        end = self.text.find("\n", pos)
        return self.text[pos:end if end >= 0 else len(self.text)]


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


def _line_of(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end < 0 else end


def _nearest(mentions: list[Mention], pos: int, text: str, kinds: tuple[str, ...] = (),
             drug_only: bool = False) -> Mention | None:
    """The code mention closest before ``pos`` on the same line, else the first after it."""
    line_start, line_end = _line_of(text, pos)
    same = [m for m in mentions if line_start <= m.start < line_end and (not kinds or m.kind in kinds)
            and (not drug_only or _is_drug(m))]
    before = [m for m in same if m.end <= pos]
    if before:
        return before[-1]
    after = [m for m in same if m.start >= pos]
    return after[0] if after else None


def _is_drug(m: Mention) -> bool:
    return m.kind == "alnum" and m.code[:1] in "JQCA" and len(m.code) == 5 and m.code[1:].isdigit()


def _drug_for(mentions: list[Mention], pos: int, text: str) -> Mention | None:
    """The drug code a dose belongs to: on its line, else the only drug code in the text, else
    the nearest drug code (a drug named above its code: "Lupron Depot 22.5 mg …\n j9217 x3")."""
    near = _nearest(mentions, pos, text, ("alnum",), drug_only=True)
    if near is not None:
        return near
    drugs = [m for m in mentions if _is_drug(m)]
    if len({m.code for m in drugs}) == 1:
        return drugs[0]
    if drugs:
        return min(drugs, key=lambda m: min(abs(m.start - pos), abs(m.end - pos)))
    return None


def extract(text: str) -> Extraction:
    """Find code candidates and their context in ``text`` (plain text, quotes already removed)."""
    out = Extraction(text=text)
    masked = _mask(text)
    alternatives = _alternatives(text)
    taken: list[tuple[int, int]] = []
    for m in CODE_RE.finditer(masked):
        kind = "cpt" if m.group("cpt") else "icd" if m.group("icddot") else "alnum"
        raw = text[m.start():m.end()]
        if kind == "alnum" and not any(c.isdigit() for c in raw[1:]):
            continue
        if out.mentions and m.start() < out.mentions[-1].end:
            continue  # inside the previous code's modifiers or units ("96372 x12")
        reason = _lookalike_reason(text, masked, m.start(), raw, out.mentions)
        if reason:
            out.rejected.append((raw, reason))
            continue
        mention = Mention(raw, kind, m.start(), m.end())
        if _HCPCS_CUE_RE.search(text[max(0, m.start() - 20):m.start()]) and raw[:1].upper() in "JQ":
            mention.hint = "hcpcs"
        # Modifiers written onto the code: 99214-25, J1885-JZ, 64483-RT-59.
        pos = m.end()
        while (att := ATTACHED_MOD_RE.match(masked, pos)) and _is_modifier(att.group(1).upper(), attached=True):
            mention.modifiers.append(att.group(1).upper())
            pos = att.end()
        units = ATTACHED_UNITS_RE.match(masked, pos)
        if units and not _in_spans(pos, alternatives):
            mention.units = int(units.group(1) or units.group(2))
            out.units.append({"code": mention.code, "units": mention.units, "text": units.group(0).strip()})
            pos = units.end()
        mention.end = pos
        taken.append((m.start(), pos))
        out.mentions.append(mention)
    _expand_ranges(masked, out)
    for m in MALFORMED_RE.finditer(masked):
        if not any(x.start <= m.start(1) < x.end for x in out.mentions):
            out.mentions.append(Mention(m.group(1), "malformed", m.start(1), m.end(1)))
    out.mentions.sort(key=lambda x: x.start)
    # A token read as a remark code once (RARC N130, M80) is a remark code wherever it recurs
    # in the mail ("what does M80 mean here").
    remarks = {t.upper() for t in REMARK_SHAPE_RE.findall(" ".join(
        text[a.start():a.end()] for p in RARC_RES for a in p.finditer(text)))}
    kept = []
    for mention in out.mentions:
        if REMARK_SHAPE_RE.fullmatch(mention.raw) and mention.code in remarks:
            out.rejected.append((mention.raw, "remittance remark code (RARC)"))
        else:
            kept.append(mention)
    out.mentions = kept
    for mention in out.mentions:
        for mod in mention.modifiers:
            out.modifiers.append({"modifier": mod, "code": mention.code, "how": "attached"})

    # The spans taken so far never overlap (the code pass skips what is inside the previous
    # code, and every later pass takes only a free span), so sorted by start their ends are
    # sorted too and only the last span starting before ``b`` can overlap [a, b): a bisection
    # instead of a scan of every span, which was quadratic on a mail full of code-like tokens
    # (916,000 comparisons, ~0.8 s, on a 145 KB uuencoded corpus mail).
    taken.sort()

    def free(a: int, b: int) -> bool:
        i = bisect_left(taken, b, key=itemgetter(0)) - 1
        return i < 0 or taken[i][1] <= a

    for m in KEYWORD_MOD_RE.finditer(masked):
        if not free(m.start(), m.end()):
            continue
        target = _TARGET_RE.match(masked, m.end())
        # "modifier go on it": a Level II modifier is written in capitals; a word is not one.
        for tok in re.findall(r"\b-?([0-9A-Za-z]{2})\b", text[m.start(1):m.end(1)]):
            tok = tok.upper() if tok.isupper() or tok.isdigit() else ""
            if tok and _is_modifier(tok, attached=True):
                _add_modifier(out, tok, target.start(1) if target else m.start(), text, "keyword",
                              exact=bool(target))
        insort(taken, (m.start(), m.end()))
    for m in NUMBER_MOD_RE.finditer(masked):
        if free(m.start("mod"), m.end("mod")) and m.group("mod") in CPT_MODIFIERS:
            _add_modifier(out, m.group("mod"), m.start("mod"), text, "number")
            insort(taken, (m.start("mod"), m.end("mod")))
    for m in DASH_MOD_RE.finditer(masked):
        if free(m.start(), m.end()) and _is_modifier(m.group(1), attached=True):
            _add_modifier(out, m.group(1), m.start(), text, "dash")
            insort(taken, (m.start(), m.end()))
    for m in BARE_MOD_RE.finditer(masked):
        if not free(m.start(), m.end()):
            continue
        if _SIDE_RE.match(masked, m.end()):
            continue  # "RT knee, LT knee": the side of a body part, not a modifier
        for tok in filter(None, (m.group(1), m.group(2))):
            if tok in BARE_MODIFIERS:
                _add_modifier(out, tok, m.start(), text, "bare")
    # Units and doses are read with the codes masked too ("96372 units: 2" is 2 units).
    chars = list(masked)
    for s, e in taken:
        chars[s:e] = "#" * (e - s)
    masked = "".join(chars)
    _table_units(text, out)
    stated = {u["code"] for u in out.units}
    for m in UNITS_RE.finditer(masked):
        if _in_spans(m.start(), alternatives):
            continue
        value = int(next(v for v in (m.group("a"), m.group("b"), m.group("c"), m.group("d")) if v))
        near = _nearest(out.mentions, m.start(), text, ("cpt", "alnum"))
        after = _UNITS_OF_RE.match(masked, m.end())
        if after is not None:
            # "2 units of 77301": the code follows.
            near = next((x for x in out.mentions if x.start == after.end()), near)
            if near is not None and near.start == after.end() and near.code not in stated:
                out.units.append({"code": near.code, "units": value, "text": m.group(0).strip()})
                near.units = near.units or value
                stated.add(near.code)
                continue
        # Units belong to a code written just before them ("96372 units: 2", "97110 for 4
        # units"), not to any code far back on the line ("did 64615 … 155 units botox").
        if near is not None and (near.end > m.start() or m.start() - near.end > 30
                                 or re.search(r"[.;(]", text[near.end:m.start()])):
            near = None
        if near is not None and near.code in stated:
            continue
        out.units.append({"code": near.code if near else None, "units": value, "text": m.group(0).strip()})
        if near is not None:
            near.units = near.units or value
            stated.add(near.code)
    _doses(text, masked, out)
    out.date_of_service, out.dos_text = _date_of_service(text)
    out.payer = _first_label(PAYERS, text)
    out.setting = _first_label(SETTINGS, text)
    return out


_UNITS_OF_RE = re.compile(r"\s*(?:of|for)\s+(?:code\s+|cpt\s+|hcpcs\s+)?(?=#)", re.IGNORECASE)
# "do we bill J3420 x 1000 or x1??": units offered as alternatives in a question are asked about,
# not billed.
_ALTERNATIVES_RE = re.compile(r"\bor\s+(?:x\s?)?\d+\b[^.?!\n]{0,200}\?", re.IGNORECASE)


def _alternatives(text: str) -> list[tuple[int, int]]:
    """The question sentences that offer units as alternatives.  Found from the "or N" itself
    and widened to the sentence around it, so a long line costs one pass (a pattern starting
    with [^.?!\n]* retried from every position of the line: 9-21 s on a 50,000-character line)."""
    spans = []
    for m in _ALTERNATIVES_RE.finditer(text):
        before = text.rfind("\n", 0, m.start())
        for stop in ".?!":
            before = max(before, text.rfind(stop, 0, m.start()))
        spans.append((before + 1, m.end()))
    return spans


def _in_spans(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


_SIDE_RE = re.compile(r"\s+(?:knee|shoulder|hip|elbow|wrist|ankle|foot|hand|eye|ear|arm|leg|breast|side|thumb|"
                      r"finger|toe|kidney|lung|heel)s?\b", re.IGNORECASE)
_HCPCS_CUE_RE = re.compile(r"\b(?:units?\s+of|j-?codes?|hcpcs)\s*$", re.IGNORECASE)
# A number written as a code that has no code's length: "procedure code 992144", "cpt 9921".
MALFORMED_RE = re.compile(r"\b(?:code|cpt|hcpcs|proc(?:edure)?)\s*(?:code)?\s*[:#]?\s*[\"']?(?!(?:19|20)\d\d\b)(\d{4}|\d{6,7})\b(?!\s*(?:mg|ml|units?|min))",
                          re.IGNORECASE)
_RANGE_RE = re.compile(r"\b(\d{5})\s*(?:-|–|to|through|thru)\s*(\d{5})\b", re.IGNORECASE)


def _expand_ranges(masked: str, out: Extraction) -> None:
    """"99202-99205" names every code of the range (a short run of one code family only)."""
    for m in _RANGE_RE.finditer(masked):
        first, last = int(m.group(1)), int(m.group(2))
        if not (0 < last - first <= 10 and m.group(1)[:3] == m.group(2)[:3]):
            continue
        at = next((i for i, x in enumerate(out.mentions) if x.start == m.start(1)), None)
        if at is None:
            continue
        have = {x.code for x in out.mentions}
        extra = [Mention(f"{n:05d}", "cpt", m.start(1), m.start(1)) for n in range(first + 1, last)
                 if f"{n:05d}" not in have]
        out.mentions[at + 1:at + 1] = extra


def _lookalike_reason(text: str, masked: str, pos: int, raw: str, before: list[Mention]) -> str | None:
    """Why a code-shaped token is not a code, from its context; None when it is a candidate."""
    # "x12" (lower-case x + digits) is a multiplier, never ICD-10-CM X12; so is "X2" right after
    # a code ("96372 X2").
    if raw[:1] in "xX" and raw[1:].isdigit() and (
            (before and 0 <= pos - before[-1].end <= 2) or re.match(r"\s*units?\b", text[pos + len(raw):])
            or (raw[0] == "x" and (len(raw) < 3 or re.search(r"\d\s*$", text[max(0, pos - 3):pos])))):
        return "units multiplier"
    line_start, line_end = _line_of(text, pos)
    if REMARK_SHAPE_RE.fullmatch(raw) and REMIT_LINE_RE.search(text[line_start:line_end]):
        return "remittance remark code (RARC)"
    return None


# A header row of a charge table and the separators between its cells.
_TABLE_HEADER_RE = re.compile(r"^(?=.*\b(?:cpt|hcpcs|code|codes|proc(?:edure)?)\b)(?=.*\b(?:units?|qty|quantity|uos|u/s)\b).*$",
                              re.IGNORECASE | re.MULTILINE)
_CELL_SPLIT_RE = re.compile(r"\s*\|\s*|\t+|\s{2,}")


def _table_units(text: str, out: Extraction) -> None:
    """Units from a charge table's units column (a header row naming codes and units)."""
    for header in _TABLE_HEADER_RE.finditer(text):
        cells = [c for c in _CELL_SPLIT_RE.split(header.group(0).strip()) if c]
        col = next((i for i, c in enumerate(cells)
                    if re.fullmatch(r"(?:units?|qty|quantity|uos|u/s)\b.*", c.strip(), re.IGNORECASE)), None)
        mod_col = next((i for i, c in enumerate(cells) if re.fullmatch(r"mods?|modifiers?", c.strip(), re.IGNORECASE)), None)
        if col is None:
            continue
        pos = header.end() + 1
        for line in text[pos:].split("\n"):
            row = [c for c in _CELL_SPLIT_RE.split(line.strip()) if c]
            start = pos
            pos += len(line) + 1
            if not row:
                break
            mention = next((m for m in out.mentions if start <= m.start < start + len(line)), None)
            if mention is not None and mod_col is not None and len(row) == len(cells):
                for tok in re.findall(r"[0-9A-Z]{2}", row[mod_col]):
                    if _is_modifier(tok, attached=True) and tok not in mention.modifiers:
                        mention.modifiers.append(tok)
                        out.modifiers.append({"modifier": tok, "code": mention.code, "how": "table"})
            if mention is None or len(row) != len(cells) or not re.fullmatch(r"\d{1,4}", row[col].strip()):
                continue
            if mention.units is None:
                mention.units = int(row[col])
                out.units.append({"code": mention.code, "units": mention.units, "text": f"units column: {row[col]}"})


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 4)


def _dose(out: Extraction, text: str, pos: int, amount: float, unit: str, raw: str,
          inputs: list[dict[str, object]]) -> DoseMention:
    near = _drug_for(out.mentions, pos, text)
    return {"code": near.code if near else None, "amount": _num(amount), "unit": unit_name(unit),
            "text": raw, "start": pos, "inputs": inputs}


def _doses(text: str, masked: str, out: Extraction) -> None:
    """Doses given, amounts discarded and containers opened, with weight/BSA/volume arithmetic."""
    spans: list[tuple[int, int]] = []

    def claim(a: int, b: int) -> bool:
        if any(s < b and a < e for s, e in spans):
            return False
        spans.append((a, b))
        return True

    for m in WASTE_RE.finditer(masked):
        amount, unit = (m.group("a"), m.group("ua")) if m.group("a") else (m.group("b"), m.group("ub"))
        claim(m.start(), m.end())
        out.wasted.append(_dose(out, text, m.start(), float(amount), unit, m.group(0), []))
    for m in CONTAINER_RE.finditer(masked):
        if not claim(m.start(), m.end()):
            continue
        n = int(m.group("n")) if m.group("n") else NUM_WORDS[m.group("nw").lower()] if m.group("nw") else 1
        out.containers.append(_dose(out, text, m.start(), float(m.group("a")) * n, m.group("u"), m.group(0),
                                    [{"containers": n, "each": _num(float(m.group("a")))}]))
    # A weight or body surface area written on another line than the dose is searched for in the
    # whole text once, and only when a line needs it: searched again for every line, 2,300 lines
    # of codes took 3.9 s (found by the fuzz mode).
    found: dict[re.Pattern[str], re.Match[str] | None] = {}

    def anywhere(pattern: re.Pattern[str]) -> re.Match[str] | None:
        if pattern not in found:
            found[pattern] = pattern.search(masked)
        return found[pattern]

    for line_start, line in _lines(masked):
        if re.search(r"\bvials?\b", line, re.IGNORECASE):
            # "Vials used: 2 x 400mg + 3 x 100mg", "vials opened: 1 x 400mg, 1 x 200mg".
            for c in _COUNTED_RE.finditer(line):
                if claim(line_start + c.start(), line_start + c.end()):
                    n = int(c.group("n"))
                    out.containers.append(_dose(out, text, line_start + c.start(), float(c.group("a")) * n,
                                                c.group("u"), c.group(0), [{"containers": n, "each": _num(float(c.group("a")))}]))
        per_kg = PER_KG_RE.search(line)
        weight = (WEIGHT_RE.search(line) or anywhere(WEIGHT_RE)) if per_kg else None
        if per_kg and weight:
            kg = float(weight.group("w")) * (0.45359237 if weight.group("u").lower().startswith(("lb", "pound")) else 1)
            total = float(per_kg.group("amount")) * kg
            claim(line_start + per_kg.start(), line_start + per_kg.end())
            claim(line_start + weight.start(), line_start + weight.end()) if weight.string is line else None
            out.doses.append(_dose(out, text, line_start + per_kg.start(), total, per_kg.group("unit"),
                                   per_kg.group(0), [{"per_kg": _num(float(per_kg.group("amount"))),
                                                      "weight_kg": _num(kg), "weight_text": weight.group(0)}]))
            continue
        per_m2 = PER_M2_RE.search(line)
        bsa = BSA_RE.search(line[per_m2.end():]) if per_m2 else None
        bsa = bsa or (anywhere(BSA_RE) if per_m2 else None)
        if per_m2 and bsa:
            area = float(bsa.group("a") or bsa.group("b"))
            claim(line_start + per_m2.start(), line_start + per_m2.end())
            out.doses.append(_dose(out, text, line_start + per_m2.start(), float(per_m2.group("amount")) * area,
                                   per_m2.group("unit"), per_m2.group(0),
                                   [{"per_m2": _num(float(per_m2.group("amount"))), "bsa_m2": area}]))
            continue
        conc = CONC_RE.search(line)
        if conc:
            rest = line[:conc.start()] + " " * (conc.end() - conc.start()) + line[conc.end():]
            vol = VOLUME_RE.search(rest)
            if vol is None and conc.group("per") and float(conc.group("per")) != 1:
                # "Synvisc-One 48mg/6mL": a whole package's amount, given as one dose.
                claim(line_start + conc.start(), line_start + conc.end())
                out.doses.append(_dose(out, text, line_start + conc.start(), float(conc.group("amount")),
                                       conc.group("unit"), conc.group(0), []))
                continue
            if vol:
                per_ml = float(conc.group("amount")) / float(conc.group("per") or 1)
                total = per_ml * float(vol.group("v"))
                claim(line_start + conc.start(), line_start + conc.end())
                claim(line_start + vol.start(), line_start + vol.end())
                out.doses.append(_dose(out, text, line_start + conc.start(), total, conc.group("unit"),
                                       conc.group(0), [{"per_ml": _num(per_ml), "volume_ml": _num(float(vol.group("v")))}]))
    for m in DOSE_RE.finditer(masked):
        if not claim(m.start(), m.end()):
            continue
        if re.search(r"\b(?:per|is|are|=)\s*$", masked[max(0, m.start() - 6):m.start()], re.IGNORECASE) and \
                re.search(r"\b(?:per|unit)\b", masked[max(0, m.start() - 20):m.start()], re.IGNORECASE):
            continue  # "J9263 is per 0.5 mg": the billing unit quoted, not a dose given
        if re.match(r"\s*(?:per\s+unit|=\s*1\s+unit)\b", masked[m.end():m.end() + 14], re.IGNORECASE):
            continue  # "J7325 is 1 mg per unit"
        amount = float(m.group("amount").replace(",", ""))
        out.doses.append(_dose(out, text, m.start(), amount, m.group("unit"), m.group(0), []))
    out.doses.sort(key=lambda d: d["start"])
    out.no_waste = bool(NO_WASTE_RE.search(text)) and not out.wasted


def _lines(text: str) -> list[tuple[int, str]]:
    pos, lines = 0, []
    for line in text.split("\n"):
        lines.append((pos, line))
        pos += len(line) + 1
    return lines


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


def _date_of_service(text: str) -> tuple[date | None, str]:
    """A date labelled as the date of service, else the first date not labelled as something
    else (a birth, admission or billing date)."""
    for label in DOS_RE.finditer(text):
        m = DATE_RE.match(text, label.end())
        if m:
            return parse_date(m), m.group(0)
    for m in DATE_RE.finditer(text):
        if NOT_DOS_BEFORE_RE.search(text[max(0, m.start() - 30):m.start()]):
            continue
        found = parse_date(m)
        if found is not None:
            return found, m.group(0)
    return None, ""


def _first_label(table: list[tuple[str, str]], text: str) -> str | None:
    for label, pattern in table:
        if re.search(pattern, text, re.IGNORECASE if label not in ("ASC",) else 0):
            return label
    return None
