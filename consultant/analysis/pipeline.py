"""One analysis per mail: extract → split → type → facts → decide.  The draft and
``caseconsultant codes analyse`` both call ``analyse``, so they cannot disagree.

Bad input gets a bounded answer: the text is capped (a huge pasted table is cut at a line
boundary) and so is the number of codes; what was left out is recorded in ``truncated`` for the
draft to say.  Nothing found in a mail raises.
"""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy.orm import Session

from consultant.analysis import decide as decide_stage
from consultant.analysis import facts as kb
from consultant.analysis import rules, split
from consultant.analysis.model import Analysis, Candidate, Code, Context, QType, Question, System
from consultant.codes import icd
from consultant.codes.api import resolve
from consultant.codes.extract import Extraction, extract
from consultant.codes.sources import open_sources

MAX_CHARS = 40_000
MAX_CODES = 60
MAX_QUESTIONS = 12
_POINTS_BACK = re.compile(r"^\s*(also|and|plus)\b|\bwith (it|that|them|this|those|these)\b", re.I)
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd)\s*:\s*)+", re.I)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[:cut if cut > limit // 2 else limit]


def analyse(session: Session, body: str, *, subject: str = "", date_of_service: date | None = None) -> Analysis:
    """Analyse a mail's subject and body (the requester's own words, quotes removed)."""
    truncated: dict[str, int] = {}
    subject = _REPLY_PREFIX.sub("", subject or "").strip()
    capped = _cap(body, MAX_CHARS)
    if len(capped) < len(body):
        truncated["characters"] = len(body) - len(capped)
    # The subject is read too: codes often sit only there ("J1885 units?" above "we gave 60 mg").
    text = f"{subject}\n\n{capped}" if subject else capped
    ext = extract(text)
    if len(ext.mentions) > MAX_CODES:
        truncated["codes"] = len(ext.mentions) - MAX_CODES
        ext.mentions = ext.mentions[:MAX_CODES]
    ctx = Context(date_of_service or ext.date_of_service, ext.dos_text, ext.payer, ext.setting)
    with open_sources(session) as src:
        resolved = resolve(src, ext)
        codes = _codes(resolved.codes, ext)
        questions = _questions(capped or subject, subject, ext, resolved.by_raw, codes)
        if len(questions) > MAX_QUESTIONS:
            truncated["questions"] = len(questions) - MAX_QUESTIONS
            questions = questions[:MAX_QUESTIONS]
        procs = [c for c, e in codes.items() if e.procedure]
        icds = [c for c, e in codes.items() if e.system == System.ICD]
        addons = kb.addons(src, procs, ctx.date_of_service)
        known = rules.Known({c: e.system for c, e in codes.items()}, set(addons),
                            {str(m["modifier"]) for m in ext.modifiers},
                            {c for c, e in codes.items() if e.units is not None})
        for q in questions:
            rules.classify(q, known)
        questions = _join_asks(questions)
        mue, mue_source = kb.mue(src, procs)
        ptp = kb.ptp(src, procs, ctx.date_of_service, ctx.facility)
        if len(set(procs)) > 10:
            truncated["pairs"] = len(set(procs)) * (len(set(procs)) - 1) // 2 - kb.MAX_PAIRS
        icd_facts, entries = kb.icd_facts(src, icds)
        for f in icd_facts.values():
            if f.needs_7th:
                f.seventh = kb.seventh_options(f.code, f.seventh)
        excludes1 = kb.excludes1(src, icds, entries)
        mf = decide_stage.MailFacts(codes, ext, ctx, mue, mue_source, ptp, addons, icd_facts, excludes1)
        parts = []
        for q in questions:
            found: list[Candidate] = []
            if q.qtype == "code_search":
                found = kb.candidates(session, q.search_query, _search_system(q.text),
                                      context=q.text.replace(q.search_query, " "))
            parts.append(decide_stage.decide(q, mf, found))
        others = decide_stage.other_pairs(parts, mf)
        other_mue, other_addons = decide_stage.other_codes(parts, mf)
        terms = [(h["code"], h.get("term_date"), h.get("source")) for h in resolved.hcpcs]
        findings = resolved.findings + decide_stage.findings(mf, terms)
    releases: dict[str, None] = {}
    for item in [*resolved.codes, *findings]:
        if item.get("source"):
            releases.setdefault(str(item["source"]), None)
    return Analysis(ctx, list(codes.values()), parts, findings, list(releases), ext.rejected, others,
                    other_mue, other_addons, truncated,
                    cpt_descriptors=any(c.get("copyright") for c in resolved.codes))


def _codes(entries: list[dict[str, object]], ext: Extraction) -> dict[str, Code]:
    # Units of one code on several lines add up ("64483-RT x1 / 64483-LT x1" is 2 that day);
    # units repeated inside a question ("is 96375 x2 ok?") restate a line, unless no line has them.
    units: dict[str, int] = {}
    asked: dict[str, int] = {}
    for m in ext.mentions:
        if m.units is None:
            continue
        target = asked if ext.line_after(m.end).rstrip().endswith("?") else units
        target[m.code] = target.get(m.code, 0) + m.units
    for code, n in asked.items():
        units.setdefault(code, n)
    out: dict[str, Code] = {}
    for e in entries:
        code = str(e["code"])
        extra = {k: v for k, v in e.items() if k not in ("system", "code", "description", "source", "modifiers")}
        out[code] = Code(System(str(e["system"])), code, e.get("description"), e.get("source"),  # type: ignore[arg-type]
                         list(e.get("modifiers") or []), units.get(code), extra)  # type: ignore[call-overload]
    return out


def _search_system(text: str) -> str | None:
    low = text.lower()
    if re.search(r"\bicd|\bdiagnos|\bdx\b", low):
        return "ICD-10-CM"
    if re.search(r"\bhcpcs\b|\bj-?codes?\b|\bdrug\b", low):
        return "HCPCS"
    return None


def _questions(body: str, subject: str, ext: Extraction, by_raw: dict[str, str],
               codes_by: dict[str, Code]) -> list[Question]:
    """The asks, each with the codes whose mention lies in its words (numbered after typing)."""
    raws = sorted({m.raw for m in ext.mentions}, key=len, reverse=True)
    patterns = [(raw, re.compile(rf"(?<![\w.]){re.escape(raw)}(?![\w])", re.I)) for raw in raws]

    def code_of(raw: str) -> str | None:
        code = by_raw.get(raw.upper()) or by_raw.get(icd.normalise(raw.upper()) or "")
        return code if code in codes_by else None

    def codes_in(fragment: str) -> list[str]:
        found = []
        for raw, pattern in patterns:
            for m in pattern.finditer(fragment):
                code = code_of(raw)
                if code:
                    found.append((m.start(), code))
        return list(dict.fromkeys(c for _, c in sorted(found)))

    preamble, texts = split.split(body, lambda t: bool(codes_in(t)), lambda t: bool(rules.search_query(t)))
    shared = codes_in(subject) + [c for c in codes_in(preamble) if c not in codes_in(subject)]
    everything = list(dict.fromkeys(c for c in (code_of(r) for r in raws) if c))
    out: list[Question] = []
    before: list[str] = []  # the codes of the question before
    for group, t in enumerate(texts):
        # A question without codes is about the codes of the question before it ("Which modifier
        # goes where?"), else the subject's and preamble's; one that points back ("Also bill
        # 96372 with it?") is about both its own codes and those.
        whole = codes_in(t) or before or list(shared) or (everything if len(texts) == 1 else [])
        if codes_in(t) and before and _POINTS_BACK.search(t):
            whole = whole + [c for c in before if c not in whole]
        earlier: list[str] = whole if _POINTS_BACK.search(t) else []
        for ask in split.asks(t):
            own = codes_in(ask)
            # A later ask without codes is about the question's codes ("…, and which modifier?");
            # one with a single procedure code of its own also concerns the codes asked about
            # before it ("how many units of J1885, and do I also bill 96372?").
            procs = [c for c in own if codes_by[c].procedure]
            codes = (own + [c for c in earlier if c not in own]) if len(procs) == 1 and earlier else (own or whole)
            q = Question(number=0, text=ask, codes=codes, group=group)
            q.modifiers = sorted({mod for c in q.codes if c in codes_by for mod in codes_by[c].modifiers})
            out.append(q)
            earlier = list(dict.fromkeys(earlier + codes))
        before = whole
    return out


def _join_asks(asks: list[Question]) -> list[Question]:
    """Neighbouring asks of one question that ask the same thing become one; an ask no rule
    types joins the ask before it (or after it, when it comes first)."""
    out: list[Question] = []
    for q in asks:
        prev = out[-1] if out and out[-1].group == q.group else None
        if prev is not None and (q.qtype == prev.qtype or q.qtype == QType.OTHER):
            prev.text = f"{prev.text}, {q.text}"
            prev.codes += [c for c in q.codes if c not in prev.codes]
            prev.modifiers = sorted(set(prev.modifiers) | set(q.modifiers))
            continue
        if out and out[-1].qtype == QType.OTHER and not out[-1].codes and \
                (prev is not None or out[-1].text.rstrip().endswith("?") is False or len(out) == 1):
            q.text = f"{out[-1].text} {q.text}"  # context before the real question
            out[-1] = q
            continue
        out.append(q)
    for number, q in enumerate(out, start=1):
        q.number = number
    return out
