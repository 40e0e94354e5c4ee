"""Text that reflows: no template hard-wraps a sentence, so neither the draft editor nor the
sent mail shows a line broken mid-sentence; a paragraph is one line, and the MIME encoder
(quoted-printable) keeps the sent mail within the 998-octet line limit."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from consultant.models import Outbox
from consultant.settings import TEMPLATE_ROOT
from tests.review.conftest import csrf_of

TEXT_TEMPLATES = sorted((TEMPLATE_ROOT / "replies").glob("*.txt.j2"))


def hard_wraps(text: str) -> list[tuple[str, str]]:
    """Pairs of lines where a sentence runs on from one line into the next: the next starts
    in lower case (or with a variable right after a line not ending a sentence)."""
    found = []
    lines = text.splitlines()
    for a, b in zip(lines, lines[1:], strict=False):
        a, b = a.strip(), b.strip()
        if not a or not b or a.startswith(("{#", "--")) or re.fullmatch(r"(\{[%#].*?[%#]\}\s*)+", a):
            continue
        if b[0].islower() or (b.startswith("{{") and not re.search(r"[.:?!)\]]$|%\}$", a)):
            found.append((a[-50:], b[:50]))
    return found


def test_the_check_finds_a_wrapped_sentence():
    assert hard_wraps("Payer policy may differ. This is not legal\nadvice.") == [
        ("Payer policy may differ. This is not legal", "advice.")]
    assert hard_wraps("Your plan includes\n{{ answers }} answers.") != []
    assert hard_wraps("First paragraph.\n\nSecond one.\n{% if x %}\nthird{% endif %}") == []


@pytest.mark.parametrize("template", TEXT_TEMPLATES, ids=lambda p: p.name)
def test_no_reply_template_wraps_a_sentence(template: Path):
    assert hard_wraps(template.read_text(encoding="utf-8")) == []


def test_the_sent_answer_keeps_paragraphs_whole_within_the_line_limit(console):
    case_id = console.case()
    client = console.logged_in()
    page = client.get(f"/cases/{case_id}").text
    editor = page[page.index('id="draft-text"'):page.index("</textarea>")]
    assert hard_wraps(editor) == []
    paragraph = " ".join(["Report 99214-25 with 20610 when the E/M is significant and separate."] * 40)
    client.post(f"/cases/{case_id}/approve", data={"csrf_token": csrf_of(page),
                                                   "text": paragraph + "\n\nSecond paragraph."})
    [effects] = console.dispatched
    with console.factory() as session:
        raw = session.get(Outbox, effects.outbox_ids[0]).raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert max(len(line) for line in raw.splitlines()) <= 998
    body = message_from_bytes(raw, policy=policy.default).get_body(preferencelist=("plain",))
    text = body.get_content()
    assert len(paragraph) > 998 and paragraph in text.splitlines()
    assert body["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    # The footer's disclaimer is one line, as written, not wrapped at 80 columns.
    assert ("Payer policy may differ; the billing provider is responsible for the claim. "
            "This is not legal advice.") in text
    assert hard_wraps(text) == []
