"""Cut a requester's text into numbered questions and decide each one's type by named rules.

The rules run in a fixed order and the first that matches decides; its name is recorded
(``question_rule:<name>``) so the consultant can see *why* a question was read as, say, a
bundling question rather than a modifier question.  Quoted earlier mail is removed before this
module sees the text (``consultant.mail.body.new_text``), so our own cited codes are never
re-read as new questions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

# Question types, in the order the console lists them.
BUNDLING = "bundling"
MODIFIER = "modifier"
UNITS_MUE = "units_mue"
DIAGNOSIS = "diagnosis"
DRUG_UNITS = "drug_units"
CODE_SEARCH = "code_search"
CODE_DEFINITION = "code_definition"
OTHER = "other"
QUESTION_TYPES = (BUNDLING, MODIFIER, UNITS_MUE, DIAGNOSIS, DRUG_UNITS, CODE_SEARCH,
                  CODE_DEFINITION, OTHER)

# --- code and context extraction ------------------------------------------------------------
# CPT: five digits, or four digits + F/T/U (Category II/III, PLA).  HCPCS Level II: letter A-V
# + four digits.  ICD-10-CM: letter, digit, digit-or-letter, optional dot and up to 4 more.
_CPT = r"\d{4}[0-9FTU]"
_HCPCS = r"[A-V]\d{4}"
_ICD = r"[A-TV-Z]\d[0-9A-Z](?:\.?[0-9A-Z]{1,4})?"
# Not inside dates, amounts, phone numbers or ZIP+4 ("60614-1234"); "99214-25" is a modifier.
CODE_RE = re.compile(rf"(?<![\w.$/-])(?:({_CPT})|({_HCPCS})|({_ICD}))(?![\w/])(?!\.\d)(?!-\d{{3}})")
# Modifiers written as "-25", "modifier 59", "mod XU", "with 25", "JW".
_MOD_AFTER_WORD = re.compile(r"\b(?:modifiers?|mod)\s*[-:#]?\s*((?:[0-9A-Z]{2})(?:\s*(?:,|/|or|and|&)\s*[0-9A-Z]{2})*)\b", re.I)
_MOD_DASH = re.compile(r"\b(?:\d{4}[0-9FTU]|[A-V]\d{4})-([0-9A-Z]{2})\b")
_HCPCS_MODS = re.compile(r"\b(JW|JZ|X[EPSU]|RT|LT|TC|GA|GY|GZ|KX|QW|F[A1-9]|T[A1-9]|E[1-4]|GP|GO|GN|CQ|CO|FY|PO|PN)\b")
_NUM_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
              "eight": 8, "nine": 9, "ten": 10, "twelve": 12}

_MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})\b")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_WORD_DATE = re.compile(r"\b(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) +
                        r")\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.I)
_DOB_BEFORE = re.compile(r"(?:\bDOB|\bD\.O\.B\.?|date of birth|\bborn(?: on)?|\bbirth ?date|\bb\.)\s*[:#-]?\s*$", re.I)
_DOS_BEFORE = re.compile(r"(?:\bDOS|date of service|service date|seen on|performed on|done on|on)\s*[:#-]?\s*$", re.I)

# Payers: order matters (Medicare Advantage before Medicare).
PAYERS = [
    ("Medicare Advantage", re.compile(r"\b(medicare advantage|MA plan|part c)\b", re.I)),
    ("Medicare", re.compile(r"\b(medicare|traditional medicare|original medicare|part b|CMS)\b", re.I)),
    ("Medicaid", re.compile(r"\b(medicaid|medi-cal|CHIP)\b", re.I)),
    ("Tricare", re.compile(r"\btricare\b", re.I)),
    ("workers' compensation", re.compile(r"\bworkers'? ?comp(ensation)?\b", re.I)),
    ("commercial", re.compile(r"\b(commercial|private insurance|BCBS|blue cross|blue shield|aetna|cigna|"
                              r"united ?health(care)?|UHC|humana|anthem|kaiser|self[- ]pay)\b", re.I)),
]
_PAYER_UNKNOWN = re.compile(r"\b(any payer|all payers|regardless of (the )?payer|payer doesn'?t matter)\b", re.I)


@dataclass
class Dose:
    amount: float
    unit: str  # mg, mcg, g, ml, units
    text: str


@dataclass
class Part:
    """One question of a mail, with what was found in its own words."""

    number: int
    text: str
    qtype: str = OTHER
    rule: str = ""
    codes: list[str] = field(default_factory=list)
    modifiers: list[str] = field(default_factory=list)
    doses: list[Dose] = field(default_factory=list)
    search_query: str = ""
    units_asked: int | None = None


@dataclass
class MailContext:
    """Facts about the whole mail that decide whether a question can be answered yet."""

    date_of_service: date | None = None
    dos_text: str = ""
    payer: str | None = None
    setting: str | None = None
    # Amounts as (number, unit), unit one of mg, mcg, g, units.
    container: tuple[float, str] | None = None
    wasted: tuple[float, str] | None = None
    no_waste: bool = False


def normalise_code(code: str) -> str:
    """Upper-case; ICD-10-CM codes get their dot after the third character."""
    code = code.strip().upper().replace(" ", "")
    if re.fullmatch(_HCPCS, code) or re.fullmatch(_CPT, code):
        return code
    if re.fullmatch(r"[A-TV-Z]\d[0-9A-Z][0-9A-Z]{1,4}", code):
        return code[:3] + "." + code[3:]
    return code


def code_system(code: str) -> str:
    """CPT, HCPCS or ICD-10-CM, from the shape of a normalised code."""
    if re.fullmatch(_CPT, code):
        return "CPT"
    if re.fullmatch(_HCPCS, code):
        return "HCPCS"
    return "ICD-10-CM"


def find_codes(text: str) -> list[str]:
    """Codes in order of first mention, without duplicates.

    Dates, dollar amounts, phone numbers and ZIP+4 are excluded by the lookarounds; a bare five-
    digit number is still taken as CPT, as coders write them.
    """
    seen: dict[str, None] = {}
    for m in CODE_RE.finditer(text):
        raw = m.group(0)
        # A trailing "." ends a sentence ("...with 99214."), it is not part of the code.
        code = normalise_code(raw)
        if m.group(3) and not _plausible_icd(code):
            continue
        seen.setdefault(code, None)
    return list(seen)


def _plausible_icd(code: str) -> bool:
    # "Q1", "A1c" and similar never reach here (3 chars minimum); dotless 3-char matches like
    # "E11" are categories, kept.  Reject things like "V30" ("NCCI v30.2") via the dot check.
    return not re.fullmatch(r"V3\d\.\d", code)


def find_modifiers(text: str) -> list[str]:
    mods: dict[str, None] = {}
    for m in _MOD_AFTER_WORD.finditer(text):
        for mod in re.split(r"\s*(?:,|/|or|and|&)\s*", m.group(1), flags=re.I):
            if mod and mod.lower() not in ("or", "an", "to", "on", "is", "be"):
                mods.setdefault(mod.upper(), None)
    for m in _MOD_DASH.finditer(text):
        mods.setdefault(m.group(1).upper(), None)
    for m in _HCPCS_MODS.finditer(text):
        mods.setdefault(m.group(1).upper(), None)
    return list(mods)


_DOSE = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?)\s*(mg|mcg|µg|ug|micrograms?|milligrams?|grams?|g|ml|mL|cc|units?|iu)\b", re.I)


def find_doses(text: str) -> list[Dose]:
    out = []
    for m in _DOSE.finditer(text):
        unit = m.group(2).lower()
        unit = {"µg": "mcg", "ug": "mcg", "microgram": "mcg", "micrograms": "mcg",
                "milligram": "mg", "milligrams": "mg", "gram": "g", "grams": "g", "cc": "ml",
                "unit": "units", "iu": "units"}.get(unit, unit)
        out.append(Dose(float(m.group(1).replace(",", "")), unit, m.group(0)))
    return out


def _to_date(y: int, m: int, d: int) -> date | None:
    if y < 100:
        y += 2000
    try:
        return date(y, m, d)
    except ValueError:
        return None


def find_dates(text: str) -> list[tuple[date, int, str]]:
    """(date, position, matched text) for every date written in the text."""
    found = []
    for m in _ISO_DATE.finditer(text):
        d = _to_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if d:
            found.append((d, m.start(), m.group(0)))
    for m in _NUMERIC_DATE.finditer(text):
        if any(m.start() >= s and m.start() < s + len(t) for _, s, t in found):
            continue
        d = _to_date(int(m.group(3)), int(m.group(1)), int(m.group(2)))  # US order: M/D/Y
        if d:
            found.append((d, m.start(), m.group(0)))
    for m in _WORD_DATE.finditer(text):
        month = _MONTHS[m.group(1).lower()]
        d = _to_date(int(m.group(3)), month, int(m.group(2)))
        if d:
            found.append((d, m.start(), m.group(0)))
    return sorted(found, key=lambda item: item[1])


def date_of_service(text: str) -> tuple[date | None, str]:
    """The date of service: a date labelled DOS/date of service, else any date not a birth date."""
    candidates = []
    for d, pos, raw in find_dates(text):
        before = text[max(0, pos - 30):pos]
        if _DOB_BEFORE.search(before):
            continue
        labelled = bool(_DOS_BEFORE.search(before))
        candidates.append((not labelled, pos, d, raw))
    if not candidates:
        return None, ""
    candidates.sort()
    _, _, d, raw = candidates[0]
    return d, raw


def find_payer(text: str) -> str | None:
    if _PAYER_UNKNOWN.search(text):
        return "any"
    for name, pattern in PAYERS:
        if pattern.search(text):
            return name
    return None


_VIAL = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|g|units?)\s*(?:single[- ]dose |single[- ]use |SDV |)?(?:vial|syringe|ampule|ampoule|bottle)", re.I)
_VIAL_OF = re.compile(r"(?:vial|syringe|ampule|ampoule)\s+(?:of|contains|containing|is)\s+(\d+(?:\.\d+)?)\s*(mg|mcg|g|units?)", re.I)
_WASTE = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|g|units?)\s*(?:was |were |is |are )?(?:wasted|discarded|thrown away|left over|leftover|remaining)", re.I)
_NO_WASTE = re.compile(r"\b(no (waste|wastage|discarded)|nothing (was )?(wasted|discarded)|multi[- ]dose vial|whole vial|entire vial|full vial)\b", re.I)


def mail_context(text: str) -> MailContext:
    ctx = MailContext()
    ctx.date_of_service, ctx.dos_text = date_of_service(text)
    ctx.payer = find_payer(text)
    if re.search(r"\b(hospital outpatient|HOPD|facility|OPPS|ASC|ambulatory surgery)\b", text, re.I):
        ctx.setting = "facility"
    elif re.search(r"\b(office|clinic|practice|physician|professional|pro fee)\b", text, re.I):
        ctx.setting = "practitioner"
    m = _VIAL.search(text) or _VIAL_OF.search(text)
    if m:
        ctx.container = (float(m.group(1)), _amount_unit(m.group(2)))
    w = _WASTE.search(text)
    if w:
        ctx.wasted = (float(w.group(1)), _amount_unit(w.group(2)))
    ctx.no_waste = bool(_NO_WASTE.search(text)) and ctx.wasted is None
    return ctx


def _amount_unit(unit: str) -> str:
    unit = unit.lower()
    return "units" if unit.startswith("unit") else unit


# --- splitting into parts -------------------------------------------------------------------
_ITEM = re.compile(r"^\s*(?:(?:Q(?:uestion)?\s*)?(\d{1,2})[.):]|Q(?:uestion)?\s*(\d{1,2})\s*[-:]|[-*•]\s+(?=.*\?))\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[?.!])\s+(?=[A-Z0-9(\"'])")
_CONTINUATION = re.compile(r"^\s*(if so|if not|and |also,? |or |what about|which modifier|what modifier|"
                           r"do i need|does it|is it|would|should i|how about|and if)", re.I)
_GREETING = re.compile(r"^\s*(hi|hello|dear|good (morning|afternoon|evening)|hey)\b[^,\n!:]{0,40}([,!:]|$)", re.I | re.M)
_SIGNOFF = re.compile(r"^\s*(thanks|thank you|regards|best|cheers|sincerely|kind regards|many thanks)\b[\s\S]*$",
                      re.I | re.M)


def _clean(text: str) -> str:
    text = _GREETING.sub("", text, count=1)
    m = _SIGNOFF.search(text)
    if m and m.start() > 0:
        text = text[:m.start()]
    lines = text.strip().split("\n")
    # A trailing signature ("Sam Okafor" / "Summit Pain Management"): short lines without
    # digits or sentence punctuation after the last real sentence.
    while lines and (not lines[-1].strip() or (
            len(lines[-1].split()) <= 6 and not re.search(r"\d|[.?!]\s*$", lines[-1]))):
        lines.pop()
    return "\n".join(lines).strip()


def split_parts(text: str) -> tuple[str, list[str]]:
    """(preamble, question texts): numbered items if the sender numbered them, else sentences
    ending in "?" with the statements before them as their context."""
    body = _clean(text)
    lines = body.split("\n")
    items: list[list[str]] = []
    preamble: list[str] = []
    for line in lines:
        m = _ITEM.match(line)
        if m and (m.group(1) or m.group(2) or line.strip().startswith(("-", "*", "•"))):
            items.append([line[m.end():]])
        elif items and line.strip():
            items[-1].append(line)
        elif items and not line.strip():
            items[-1].append("")
        else:
            preamble.append(line)
    if len(items) >= 2:
        return "\n".join(preamble).strip(), [" ".join(x.strip() for x in i if x.strip()) for i in items]
    flat = re.sub(r"\s+", " ", body).strip()
    sentences = _SENTENCE_END.split(flat)
    parts: list[str] = []
    pending: list[str] = []
    for sentence in sentences:
        pending.append(sentence)
        if sentence.rstrip().endswith("?"):
            joined = " ".join(pending)
            if parts and (_CONTINUATION.match(sentence) and not find_codes(" ".join(pending[:-1]) + sentence)
                          or not find_codes(joined) and not _looks_like_search(joined)):
                parts[-1] = parts[-1] + " " + joined
            else:
                parts.append(joined)
            pending = []
    if pending:
        rest = " ".join(pending)
        if parts:
            # Statements after the last question usually add detail to it ("Patient is 67.").
            parts[-1] = parts[-1] + " " + rest
        else:
            parts.append(rest)
    return "", [p.strip() for p in parts if p.strip()]


# --- classification rules -------------------------------------------------------------------
Rule = Callable[[Part], bool]

_MODIFIER_Q = re.compile(r"\b(which|what|right|correct|proper|appropriate)\s+(\w+\s+)?modifiers?\b|"
                         r"\bmodifiers?\s+(needed|required|should|do i|to use|go)|"
                         r"\b(need|needs|use|append|add|put)\s+(a|the|any)?\s*modifiers?\b|"
                         r"\b(25|59|X[EPSU])\s+(or|vs\.?|versus)\s+(25|59|X[EPSU])\b|"
                         r"\bmodifier\s+(25|59|X[EPSU]|JW|JZ|\d\d)\s+(on|to|with)\b|"
                         r"\b(should|do|can|must) (i|we) (use|append|add|bill with)\s+(modifier\s+)?-?(25|59|X[EPSU]|\d\d)\b", re.I)
_BUNDLING_Q = re.compile(r"\b(bill(ed)?|report(ed)?|code[d]?|charge[d]?|submit(ted)?|claim(ed)?)\b[^?]*\b(with|together|and|along|same (day|date|visit|session|encounter))\b|"
                         r"\bbundl|\bNCCI\b|\bPTP\b|\bCCI\b|\bseparately\b|\binclusive\b|\bincluded in\b|"
                         r"\bsame (day|date|session|encounter)\b|\bpaid together\b|\bdeny|denied|denial", re.I)
_UNITS_Q = re.compile(r"\bhow many (units|times)\b|\bMUEs?\b|\bmax(imum)?\s+(units|number)\b|\bunits? of\b|"
                      r"\b(\d+|two|three|four|five|six) units\b|\bper (day|date of service|claim)\b|\bunit limit", re.I)
_DRUG_Q = re.compile(r"\b(dose|dosage|vial|mg|mcg|ml|injected|injection|administered|gave|given|infus|"
                     r"waste|wasted|discard|JW|JZ)\b|\bhow many units\b", re.I)
_DIAG_Q = re.compile(r"\b(diagnos[ie]s|dx|icd|sequenc|primary|principal|first[- ]listed|secondary|"
                     r"code first|use additional|excludes ?[12]?|combination code|coded together|"
                     r"link|linked|pointer|medical necessity)\b", re.I)
_SEARCH_Q = re.compile(r"\b(what|which|correct|right|proper|best|appropriate)\s+(\w+\s+)?"
                       r"(code|cpt|hcpcs|icd(-?10)?(-cm)?|dx|diagnosis code|j-?code)s?\b[^?]*\b(for|to use for|to report|to bill)\b\s*(?P<q>[^?]+)|"
                       r"\bhow (do|should|would) (i|we|you) (code|bill|report)\s+(?P<q2>[^?]+)|"
                       r"\bis there a (code|cpt|hcpcs|icd-?10) (for|that covers)\s+(?P<q3>[^?]+)|"
                       r"\b(code|coding) for\s+(?P<q4>[^?]+)", re.I)
_DEF_Q = re.compile(r"\bwhat (is|does|are)\b|\bdefin|\bdescri|\bmeaning\b|\bstand for\b|\bvalid\b|"
                    r"\bbillable\b|\bstill (active|valid)\b|\bdeleted\b|\bterminated\b|\bcovers?\b", re.I)


def _looks_like_search(text: str) -> bool:
    return bool(_SEARCH_Q.search(text))


def _procedures(part: Part) -> list[str]:
    return [c for c in part.codes if code_system(c) in ("CPT", "HCPCS")]


def _drugs(part: Part) -> list[str]:
    return [c for c in part.codes if c.startswith("J") and code_system(c) == "HCPCS"]


def rule_drug_units(part: Part) -> bool:
    return bool(_drugs(part)) and (bool(part.doses) or bool(_DRUG_Q.search(part.text))) and (
        bool(part.doses) or bool(re.search(r"\bunits?\b|JW|JZ|wast|discard", part.text, re.I)))


def rule_modifier_choice(part: Part) -> bool:
    return bool(_procedures(part)) and bool(_MODIFIER_Q.search(part.text))


def rule_bundling_pair(part: Part) -> bool:
    return len(_procedures(part)) >= 2 and bool(_BUNDLING_Q.search(part.text))


def rule_units_mue(part: Part) -> bool:
    return bool(_procedures(part)) and bool(_UNITS_Q.search(part.text))


_SEQUENCING = re.compile(r"\b(sequenc\w*|first|primary|principal|secondary|together|both|order|"
                        r"code first|use additional|excludes)\b", re.I)


def rule_diagnosis(part: Part) -> bool:
    icd = [c for c in part.codes if code_system(c) == "ICD-10-CM"]
    if len(icd) == 1 and _DEF_Q.search(part.text) and not _SEQUENCING.search(part.text):
        return False  # "What is M17.11, is it billable?" asks about the code itself
    return (bool(icd) and (len(icd) >= 2 or bool(_DIAG_Q.search(part.text)))) or (
        not part.codes and bool(re.search(r"\b(sequenc|first[- ]listed|principal diagnosis|code first)", part.text, re.I)))


def rule_code_search(part: Part) -> bool:
    m = _SEARCH_Q.search(part.text)
    if not m:
        return False
    query = next((g for g in (m.group("q"), m.group("q2"), m.group("q3"), m.group("q4")) if g), "")
    # "What code for 99213?" asks about a code, not for one.
    query = re.sub(r"^\s*(a|an|the)\s+", "", query).strip(" .,:;")
    if not query or find_codes(query) and len(query.split()) <= 2:
        return False
    part.search_query = query[:200]
    return True


def rule_code_definition(part: Part) -> bool:
    return bool(part.codes) and bool(_DEF_Q.search(part.text))


def rule_two_codes_default(part: Part) -> bool:
    # Two procedure codes and a question, nothing more specific: the usual intent is "together?".
    return len(_procedures(part)) >= 2


def rule_single_code_default(part: Part) -> bool:
    return len(part.codes) == 1


RULES: list[tuple[str, str, Rule]] = [
    ("drug_dose_with_j_code", DRUG_UNITS, rule_drug_units),
    ("asks_modifier_choice", MODIFIER, rule_modifier_choice),
    ("asks_units_or_mue", UNITS_MUE, rule_units_mue),
    ("two_procedures_billed_together", BUNDLING, rule_bundling_pair),
    ("diagnosis_codes_or_sequencing", DIAGNOSIS, rule_diagnosis),
    ("asks_code_for_description", CODE_SEARCH, rule_code_search),
    ("asks_what_code_means", CODE_DEFINITION, rule_code_definition),
    ("two_procedures_default_bundling", BUNDLING, rule_two_codes_default),
    ("single_code_default_definition", CODE_DEFINITION, rule_single_code_default),
]


def classify(part: Part) -> Part:
    """Set ``part.qtype`` and ``part.rule`` from the first rule that matches."""
    for name, qtype, rule in RULES:
        if rule(part):
            part.qtype, part.rule = qtype, name
            return part
    part.qtype, part.rule = OTHER, "no_rule_matched"
    return part


def _units_asked(text: str) -> int | None:
    m = re.search(r"\b(\d{1,4}|" + "|".join(_NUM_WORDS) + r")\s+units?\b", text, re.I)
    if not m:
        m = re.search(r"\bx\s?(\d{1,3})\b|\b(\d{1,3})\s?x\b", text, re.I)
        if m:
            return int(m.group(1) or m.group(2))
        return None
    word = m.group(1).lower()
    return int(word) if word.isdigit() else _NUM_WORDS[word]


def parse_question(text: str) -> tuple[MailContext, list[Part]]:
    """The mail's context and its classified questions (at least one)."""
    ctx = mail_context(text)
    preamble, texts = split_parts(text)
    shared_codes = find_codes(preamble)
    parts = []
    for number, t in enumerate(texts or [text.strip() or "(empty message)"], start=1):
        part = Part(number=number, text=t)
        part.codes = find_codes(t)
        if not part.codes:
            part.codes = list(shared_codes)
        part.modifiers = find_modifiers(t)
        part.doses = [d for d in find_doses(t) if not re.search(r"vial|wasted|discarded", t[t.find(d.text):t.find(d.text) + len(d.text) + 25], re.I)] or find_doses(t)
        part.units_asked = _units_asked(t)
        parts.append(classify(part))
    return ctx, parts
