"""Named rules that type a question.  They run in a fixed order; the first that matches decides,
and its name is recorded (``question_rule:<name>``) so a consultant can see why a question was
read as, say, bundling rather than modifier.  A question no rule types is ``other``: it still
gets its own part in the draft, with a prompt for the consultant."""

from __future__ import annotations

import re
from collections.abc import Callable

from consultant.analysis.model import QType, Question, System


class Known:
    """What the rules may know of a question's codes: each code's system, and which are add-on
    codes (from the AOC table, looked up before typing)."""

    def __init__(self, systems: dict[str, System], addons: set[str] | None = None,
                 modifiers: set[str] | None = None, units: set[str] | None = None) -> None:
        self.systems = systems
        self.addons = addons or set()
        self.modifiers = modifiers or set()  # modifiers the extraction found in the mail
        self.units = units or set()  # codes with units written on their line

    def get(self, code: str) -> System | None:
        return self.systems.get(code)


Systems = Known
Rule = Callable[[Question, Known], bool]

_MODIFIER_Q = re.compile(r"\b(which|what|right|correct|proper|appropriate)\s+(\w+\s+)?modifiers?\b|"
                         r"\bmodifiers?\s+(needed|required|should|do i|to use|go)|"
                         r"\b(need|needs|use|append|add|put)\s+(a|the|any)?\s*modifiers?\b|"
                         r"\b(25|59|X[EPSU])\s+(or|vs\.?|versus)\s+(25|59|X[EPSU])\b|"
                         r"\bmodifier\s+(25|59|X[EPSU]|\d\d)\s+(on|to|with)\b|"
                         r"\bwhere (does|do|should) (the )?(modifier|mod|25|59)\b|"
                         r"\b(should|do|can|must) (i|we) (use|append|add|bill with)\s+(modifier\s+)?-?(25|59|X[EPSU]|\d\d)\b", re.I)
_BUNDLING_Q = re.compile(r"\b(bill(ed)?|report(ed)?|code[d]?|charge[d]?|submit(ted)?|claim(ed)?)\b[^?]*\b(with|together|and|along|same (day|date|visit|session|encounter))\b|"
                         r"\bbundl|\bNCCI\b|\bPTP\b|\bCCI\b|\bseparately\b|\binclusive\b|\bincluded in\b|"
                         r"\bsame (day|date|session|encounter)\b|\bpaid together\b|\bdeny|denied|denial|\bedit\b|"
                         r"\balso (bill|report|code|charge)\b|\bbillable with\b", re.I)
_UNITS_Q = re.compile(r"\bhow many (units|times)\b|\bMUEs?\b|\bmax(imum)?\s+(units|number)\b|\bunits? of\b|"
                      r"\b(\d+|two|three|four|five|six) units\b|\bper (day|date of service|claim)\b|\bunit limit|"
                      r"\bunits?\b[^?]*\b(allowed|limit|ok|okay|too many|over)\b|\bover the (limit|mue)\b|"
                      r"\b[x×]\s?\d+\b[^?]*\b(ok|okay|right|correct|allowed|fine)\b", re.I)
_DRUG_Q = re.compile(r"\b(dose|dosage|vials?|mg|mcg|ml|injected|injection|administered|gave|given|infus\w*|"
                     r"waste|wasted|discard\w*|JW|JZ|units?)\b", re.I)
_ADDON_Q = re.compile(r"\badd[- ]?on\b|\bprimary (code|procedure)\b|\bwithout (the |a )?primary\b|\bZZZ\b|"
                      r"\bas (the |a )?primary\b", re.I)
_DIAG_Q = re.compile(r"\b(diagnos[ie]s|dx|icd|sequenc\w*|primary|principal|first[- ]listed|secondary|"
                     r"code first|use additional|excludes ?[12]?|combination code|coded together|"
                     r"link|linked|pointer|medical necessity|billable|7th|seventh|specific(ity)?|header)\b", re.I)
SEARCH_RE = re.compile(r"\b(what|which|correct|right|proper|best|appropriate)\s+(\w+\s+){0,2}?"
                       r"(code|cpt|hcpcs|icd(-?10)?(-cm)?|dx|diagnosis code|j-?code)s?\b[^?]*?\b(for|to use for|to report|to bill|when)\b\s*(?P<q>[^?]+)|"
                       r"\bhow (do|should|would) (i|we|you) (code|bill|report)\s+(?P<q2>[^?]+)|"
                       r"\bis there a (code|cpt|hcpcs|icd-?10\S*) (for|that covers)\s+(?P<q3>[^?]+)|"
                       r"\b(code|coding) for\s+(?P<q4>[^?]+)|"
                       r"\b(?:what|which)(?:'s|\s+is)?\s+(?:the\s+)?(?:\w+\s+){0,2}?(?:dx|icd(?:-?10)?(?:-cm)?|diagnosis|hcpcs|full|right|correct|proper)\s*codes?\b(?P<q5>)",
                       re.I)
_DEF_Q = re.compile(r"\bwhat (is|does|are)\b|\bdefin|\bdescri|\bmean(ing)?\b|\bstand for\b|\bvalid\b|\bis it billable\b|"
                    r"\bstill (active|valid|good|around)\b|\bdeleted\b|\bterminated\b|\bdiscontinued\b|\bcovers?\b|\bexpired?\b", re.I)
_SEQUENCING = re.compile(r"\b(sequenc\w*|first|primary|principal|secondary|together|both|order|"
                         r"code first|use additional|excludes)\b", re.I)


def _of(q: Question, systems: Systems, *wanted: System) -> list[str]:
    return [c for c in q.codes if systems.get(c) in wanted]


def _procedures(q: Question, systems: Systems) -> list[str]:
    return _of(q, systems, System.CPT, System.HCPCS)


def _drugs(q: Question, systems: Systems) -> list[str]:
    return [c for c in _of(q, systems, System.HCPCS) if c[:1] in "JQ"]


def rule_drug_units(q: Question, systems: Systems) -> bool:
    return bool(_drugs(q, systems)) and bool(_DRUG_Q.search(q.text))


def rule_addon(q: Question, systems: Systems) -> bool:
    return bool(_procedures(q, systems)) and bool(_ADDON_Q.search(q.text))


_ALONE_Q = re.compile(r"\b(alone|by itself|on its own|without|denied|deny|denial|rejected|after|first|primary|initial)\b", re.I)


def rule_addon_code_alone(q: Question, systems: Systems) -> bool:
    """An add-on code asked about without (or with) its primary, in words that do not say so."""
    procs = _procedures(q, systems)
    return any(c in systems.addons for c in procs) and (len(procs) == 1 or bool(_ALONE_Q.search(q.text))) \
        and not _UNITS_Q.search(q.text)


def rule_modifier_choice(q: Question, systems: Systems) -> bool:
    return bool(_procedures(q, systems)) and bool(_MODIFIER_Q.search(q.text))


def rule_units_mue(q: Question, systems: Systems) -> bool:
    return bool(_procedures(q, systems)) and bool(_UNITS_Q.search(q.text))


def rule_bundling_pair(q: Question, systems: Systems) -> bool:
    return len(_procedures(q, systems)) >= 2 and bool(_BUNDLING_Q.search(q.text))


def rule_diagnosis(q: Question, systems: Systems) -> bool:
    icd = _of(q, systems, System.ICD)
    if len(icd) == 1 and _DEF_Q.search(q.text) and not _SEQUENCING.search(q.text) and not _procedures(q, systems):
        return False  # "What is M17.11, is it billable?" asks about the code itself
    return (bool(icd) and (len(icd) >= 2 or bool(_DIAG_Q.search(q.text)))) or (
        not q.codes and bool(re.search(r"\b(sequenc|first[- ]listed|principal diagnosis|code first)", q.text, re.I)))


_POINTER = re.compile(r"^(that|this|it|this one|that one|these|those|them)$", re.I)
_QUOTED = re.compile(r"[\"“]([^\"”]{3,100})[\"”]")


def search_query(text: str) -> str:
    """What a "what code for …" question describes.  "What code do I use for that?" and "what
    dx code?" point at words written before them: a quoted phrase, else the sentence before."""
    m = SEARCH_RE.search(text)
    if not m:
        return ""
    query = next((g for g in (m.group("q"), m.group("q2"), m.group("q3"), m.group("q4")) if g), "")
    query = re.sub(r"^\s*(a|an|the)\s+", "", query).strip(" .,:;")
    if not query or _POINTER.match(query):
        quoted = _QUOTED.search(text)
        if quoted:
            query = quoted.group(1)
        else:
            before = re.split(r"(?<=[.!?:])\s+", text[:m.start()].strip())
            query = next((b for b in reversed(before) if len(b.split()) >= 2), "")
            query = re.sub(r"^[\w\s,'-]*?\b(?:says?|wrote|note[sd]?|documented)\b\s*:?\s*", "", query)
    return query.strip(" .,:;-")[:200]


def rule_code_search(q: Question, systems: Systems) -> bool:
    query = search_query(q.text)
    # "What code for 99213?" or "which dx for e11.2 and N18.31" asks about codes, not for one.
    words = [w for w in re.findall(r"[a-z]{3,}", re.sub(r"\b[A-Z]\d[0-9A-Z.]*\b|\b\d{4,5}\w?\b", " ", query, flags=re.I).lower())
             if w not in ("and", "the", "with", "for", "codes", "code")]
    if not query or (q.codes and len(words) < 2):
        return False
    if any(re.search(rf"(?<![\w.]){re.escape(c)}(?!\w)", query, re.I) for c in q.codes):
        return False  # "how do we bill J0585 and the wasted units?" asks about a code it names
    q.search_query = query
    return True


def rule_code_definition(q: Question, systems: Systems) -> bool:
    return bool(q.codes) and bool(_DEF_Q.search(q.text))


def rule_two_codes_default(q: Question, systems: Systems) -> bool:
    return len(_procedures(q, systems)) >= 2


def rule_single_code_default(q: Question, systems: Systems) -> bool:
    return len(q.codes) == 1


def rule_icd_only_default(q: Question, systems: Systems) -> bool:
    return bool(q.codes) and all(systems.get(c) == System.ICD for c in q.codes)


_WASTE_MODIFIER_Q = re.compile(r"\b(JW|JZ)\b", re.I)
_HOW_MANY = re.compile(r"\bhow many\b|\bunits?\b|\bmath\b|\bcalculat", re.I)


def rule_waste_modifier(q: Question, systems: Systems) -> bool:
    """"Do we need JZ on the drug line?": the waste modifiers, asked without the units."""
    return bool(_WASTE_MODIFIER_Q.search(q.text)) and not _HOW_MANY.search(q.text) and bool(_procedures(q, systems))


_VALID_Q = re.compile(r"\b(is|are)\s+(\w+\s+)?(still\s+)?(valid|active|deleted|terminated|discontinued|good|current)\b|"
                      r"\bstill (the|a|valid|active|good|around|current)\b|\b(deleted|terminated|discontinued|replaced)\b|"
                      r"\bwhat (is|does)\b[^?]*\b(mean|stand for|cover)\b", re.I)


def rule_code_validity(q: Question, systems: Systems) -> bool:
    """"Is J2001 valid for …?", "J0171 still the code?": about the code itself."""
    return bool(q.codes) and len(_procedures(q, systems)) <= 2 and bool(_VALID_Q.search(q.text)) \
        and not _UNITS_WORDS.search(q.text)


_UNITS_WORDS = re.compile(r"\bhow many\b|\bunits?\b", re.I)
_DENIED = re.compile(r"\b(denied|deny|denial|rejected|MUE|limit|too many|max(imum)?|allowed)\b", re.I)


def rule_units_denied(q: Question, systems: Systems) -> bool:
    """"Billed 11721 x2 … denied": units written on a code, and a denial or a limit."""
    return any(c in systems.units for c in _procedures(q, systems)) and bool(_DENIED.search(q.text)) \
        and not _ADDON_Q.search(q.text)


_MODIFIER_WORD = re.compile(r"\bmod(ifier)?s?\b", re.I)


def rule_modifier_mentioned(q: Question, systems: Systems) -> bool:
    """A modifier named in the question ("GA or GZ on the claim?", "does the 99213 need 25?")."""
    if not _procedures(q, systems) and not _MODIFIER_WORD.search(q.text):
        return False
    named = [m for m in systems.modifiers if re.search(rf"(?<![\w.]){re.escape(m)}(?!\w)", q.text)]
    return bool(named) or bool(_MODIFIER_WORD.search(q.text))


RULES: list[tuple[str, QType, Rule]] = [
    ("asks_if_code_valid", QType.CODE_DEFINITION, rule_code_validity),
    ("asks_jw_or_jz", QType.MODIFIER, rule_waste_modifier),
    ("units_on_a_code_denied", QType.UNITS_MUE, rule_units_denied),
    ("asks_code_for_description", QType.CODE_SEARCH, rule_code_search),
    ("drug_dose_with_drug_code", QType.DRUG_UNITS, rule_drug_units),
    ("asks_about_addon_code", QType.ADDON, rule_addon),
    ("asks_modifier_choice", QType.MODIFIER, rule_modifier_choice),
    ("addon_code_alone_or_denied", QType.ADDON, rule_addon_code_alone),
    ("asks_units_or_mue", QType.UNITS_MUE, rule_units_mue),
    ("names_a_modifier", QType.MODIFIER, rule_modifier_mentioned),
    ("two_procedures_billed_together", QType.BUNDLING, rule_bundling_pair),
    ("diagnosis_codes_or_sequencing", QType.DIAGNOSIS, rule_diagnosis),
    ("asks_what_code_means", QType.CODE_DEFINITION, rule_code_definition),
    ("two_procedures_default_bundling", QType.BUNDLING, rule_two_codes_default),
    ("diagnosis_codes_default", QType.DIAGNOSIS, rule_icd_only_default),
    ("single_code_default_definition", QType.CODE_DEFINITION, rule_single_code_default),
]


def classify(q: Question, systems: Systems) -> Question:
    """Set ``q.qtype`` and ``q.rule`` from the first rule that matches."""
    for name, qtype, rule in RULES:
        if rule(q, systems):
            q.qtype, q.rule = qtype, name
            return q
    q.qtype, q.rule = QType.OTHER, "no_rule_matched"
    return q
