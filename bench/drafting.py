"""Drafting cost per mail: parse, analysis, and analysis + rendered draft, on the same mails.

The mails are the golden drafting mails (tests/drafting/mails) and the labelled set
(tests/analysis/labelled); the knowledge base is the real CMS files (HCPCS, MUE, AOC, ICD-10-CM,
and the three PTP tables cut to the mails' codes, as the tests build it).  Three figures per run,
each p50/p99 over every mail:

* parse only: the raw bytes parsed and the requester's words taken (the ceiling for the rest);
* analysis only: ``consultant.analysis.analyse`` (extract, split, type, facts, decide);
* draft: ``make_draft`` (the same analysis, plus templates, PHI check and JSON facts).

It also counts how many times the analysis runs per draft (the issue: once per mail).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import tomllib
from email.message import EmailMessage
from pathlib import Path

from bench.common import REPO, Env, Figure, Sizes, percentile


def _mails() -> list[bytes]:
    raws = [p.read_bytes() for p in sorted((REPO / "tests" / "drafting" / "mails").glob("*.eml"))]
    for path in sorted((REPO / "tests" / "analysis" / "labelled" / "cases").glob("*.toml")):
        case = tomllib.loads(path.read_text(encoding="utf-8"))
        msg = EmailMessage()
        msg["From"] = "coder@clinic.example"
        msg["To"] = "consult@cc.example"
        msg["Subject"] = case["subject"]
        msg.set_content(case["body"])
        raws.append(msg.as_bytes())
    return raws


def _times(fn, items) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(env: Env, sizes: Sizes) -> list[Figure]:
    from consultant import analysis
    from consultant.codes.extract import extract
    from consultant.db import make_engine, make_session_factory
    from consultant.drafting import draft as draft_module
    from consultant.mail.body import new_text
    from consultant.mail.parse import parse_mail
    from consultant.settings import load_settings
    from tests import kb, servers

    cms = servers.require_shared() / "data" / "cms"
    raws = _mails()
    if sizes.corpus_limit:
        raws = raws[:sizes.corpus_limit]
    views = [parse_mail(r) for r in raws]
    texts = [(v.subject, new_text(v)) for v in views]
    codes = {m.code for s, b in texts for m in extract(f"{s}\n\n{b}").mentions}
    work = Path(tempfile.mkdtemp(prefix="cc-bench-drafting-"))
    print(f"drafting: building the knowledge base for {len(raws)} mails ({len(codes)} codes) ...", flush=True)
    path = kb.build(work / "kb.sqlite", cms, codes)
    engine = make_engine(f"sqlite:///{path}")
    factory = make_session_factory(engine)
    settings = load_settings(environ={})

    calls = {"n": 0}
    real = draft_module.analyse

    def counted(*args, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(*args, **kw)

    with factory() as session:
        for s, b in texts[:5]:  # warm the per-process caches (ICD blocks, templates)
            draft_module.make_draft(session, settings, question=b, subject=s, requester_name=None)
        parse = _times(lambda r: new_text(parse_mail(r)), raws)
        only = _times(lambda t: analysis.analyse(session, t[1], subject=t[0]), texts)
        draft_module.analyse = counted  # type: ignore[assignment]
        try:
            full = _times(lambda t: draft_module.make_draft(session, settings, question=t[1], subject=t[0],
                                                            requester_name=None), texts)
        finally:
            draft_module.analyse = real  # type: ignore[assignment]
    engine.dispose()
    n = len(texts)
    figures = [
        Figure("drafting: parse only p50", statistics.median(parse), "ms", note=f"{n} mails; the ceiling for the rows below"),
        Figure("drafting: parse only p99", percentile(parse, 99), "ms"),
        Figure("drafting: analysis only p50", statistics.median(only), "ms", statistics.median(parse),
               higher_is_better=False, note="extract, split, type, facts (batched queries), decide"),
        Figure("drafting: analysis only p99", percentile(only, 99), "ms", percentile(parse, 99), higher_is_better=False),
        Figure("drafting: analysis + draft p50", statistics.median(full), "ms", statistics.median(only),
               higher_is_better=False, note="ceiling: analysis only"),
        Figure("drafting: analysis + draft p99", percentile(full, 99), "ms", percentile(only, 99), higher_is_better=False),
        Figure("drafting: analyses per draft", calls["n"] / n, "count", 1.0, higher_is_better=False,
               note=f"{calls['n']} analyses for {n} drafts"),
    ]
    return figures
