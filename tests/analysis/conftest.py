"""The knowledge base the analysis tests read: the real CMS files, the PTP tables cut to the codes
of the labelled mails (and of anything the product reads in them), built once per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from consultant.codes.extract import extract
from consultant.db import make_engine, make_session_factory
from tests import kb, servers
from tests.analysis.labelled import grade

# Codes the bounds tests use beside the labelled mails' codes.
EXTRA_CODES = {"20610", "99214", "99213", "77301", "77306", "64483", "64484", "96372", "J1885", "J9035"}


@pytest.fixture(scope="session")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    shared = servers.require_shared()
    return grade.expected_all(shared)


@pytest.fixture(scope="session")
def labelled_factory(tmp_path_factory: pytest.TempPathFactory,
                     graded: dict[str, dict[str, Any]]) -> Iterator[sessionmaker[Session]]:
    shared = servers.require_shared()
    cases = grade.load_cases()
    # PTP rows for every code the labels name and every code the product reads (so a code read
    # by mistake still meets its real edits and can produce a false finding).
    codes = {c.split(":", 1)[1] for e in graded.values() for c in e["codes"]} | EXTRA_CODES
    for case in cases.values():
        codes |= {m.code for m in extract(f"{case['subject']}\n\n{case['body']}").mentions}
    work = tmp_path_factory.mktemp("labelled-kb")
    path = kb.build(work / "kb.sqlite", shared / "data" / "cms", codes)
    copy = work / "copy.sqlite"
    shutil.copyfile(path, copy)
    engine = make_engine(f"sqlite:///{copy}")
    yield make_session_factory(engine)
    engine.dispose()


