"""Outlook's winmail.dat: plain, HTML and RTF-only bodies read; broken or oversized ones noted."""

from __future__ import annotations

from email.message import EmailMessage

from compressed_rtf import compress

from consultant.mail.body import new_text
from consultant.mail.parse import parse_mail
from consultant.mail.tnef import MAX_RTF_COMPRESSED_BYTES, read_tnef
from tests.mail.winmail import rtf_only_mail, winmail_dat

QUESTION = "Can 77301 and 77338 be billed on the same date of service for Medicare?"
RTF_QUESTION = (b"{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss\\fcharset0 Calibri;}}"
                b"\\f0\\fs22 Can 77301 and 77338 be billed on the same date of service for "
                b"Medicare\\'3f\\par See {\\field{\\*\\fldinst{HYPERLINK \"https://cms.example/ncci\"}}"
                b"{\\fldrslt{\\ul the NCCI manual}}}, caf\\u233? and na\\'efve.\\par}")


def _notes(view_attachments: list[dict[str, object]]) -> list[str]:
    return [str(a["note"]) for a in view_attachments if "note" in a]


def test_an_outlook_winmail_dat_body_is_read_and_its_attachments_listed(shared):
    corpus = shared / "corpus" / "mail" / "jstedfast-mimekit" / "tnef"
    view = parse_mail((corpus / "ukr.eml").read_bytes())
    assert "RR Test 1" in view.text  # the body exists only inside winmail.dat
    rich = parse_mail((corpus / "rich-text.eml").read_bytes())
    listed = {a["filename"]: a for a in rich.attachments}
    assert listed["kitten-playing-with-a-christmas-tree.jpg"]["size"] == 375081


def test_the_corpus_rtf_only_winmail_dat_is_read_as_the_body(shared):
    # mimekit's rich-text.eml: Outlook "rich text", no text/plain part, no plain or HTML body in
    # the TNEF, only PR_RTF_COMPRESSED (5 kB compressed, 15 kB of RTF with a Word font table).
    raw = (shared / "corpus" / "mail" / "jstedfast-mimekit" / "tnef" / "rich-text.eml").read_bytes()
    view = parse_mail(raw)
    assert "You've made this a Christmas to remember" in view.text
    assert "Strangers when we met, lovers as we leave" in view.text
    assert "\\rtf" not in view.text and "Times New Roman" not in view.text  # no RTF markup left
    assert _notes(view.attachments) == []
    assert new_text(view).startswith("You've made this a Christmas to remember")


def test_an_rtf_only_body_reads_as_text_with_its_escapes_and_links():
    view = parse_mail(rtf_only_mail(RTF_QUESTION))
    assert QUESTION in view.text
    # Links read as their visible text; \u233? is é, and \'ef is ï in the document's cp1252.
    assert "See the NCCI manual, café and naïve." in view.text and "https://" not in view.text
    assert QUESTION in new_text(view)


def test_rtf_stored_uncompressed_is_read_too():
    assert QUESTION in parse_mail(rtf_only_mail(RTF_QUESTION, compressed=False)).text


def test_rtf_that_makes_striprtf_backtrack_is_still_read():
    # Without one control word per line, striprtf's font-table expression did not finish on
    # this in five minutes (the suite's timeout ends such a test); the fuzz mode times it.
    rtf = (b"{\\rtf1\\ansi{\\fonttbl " + b"\\f1\\fcharset0 a" * 300 + b"}"
           + RTF_QUESTION[RTF_QUESTION.index(b"Can"):-1]
           + b'{\\field{\\*\\fldinst{ HYPERLINK "x" ' * 800 + b"}")
    assert QUESTION in parse_mail(rtf_only_mail(rtf)).text


def test_an_rtf_body_over_the_limit_is_noted_not_read():
    filler = b"{\\rtf1\\ansi " + b"x" * MAX_RTF_COMPRESSED_BYTES + b" 99213}"
    view = parse_mail(rtf_only_mail(filler, compressed=False))  # stored, so its size is kept
    assert view.text == ""
    assert any("RTF body of" in n and "not read (limit" in n for n in _notes(view.attachments))


def test_a_corrupt_rtf_body_is_noted_not_fatal():
    packed = bytearray(compress(RTF_QUESTION))
    packed[-3] ^= 0xFF  # the CRC no longer matches
    content = read_tnef(winmail_dat(bytes(packed)))
    assert content.text == "" and "RTF body could not be read" in content.note


def test_the_rtf_body_is_left_alone_when_the_mail_has_a_text_part():
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "coder@clinic.test", "consult@cc.test", "q"
    msg.set_content(QUESTION)
    msg.add_attachment(winmail_dat(compress(b"{\\rtf1\\ansi Something else: 99999.\\par}")),
                       maintype="application", subtype="ms-tnef", filename="winmail.dat")
    view = parse_mail(msg.as_bytes())
    assert view.text.strip() == QUESTION and _notes(view.attachments) == []
    assert "Something else" in read_tnef(winmail_dat(compress(b"{\\rtf1\\ansi Something else.}"))).text


def test_a_broken_winmail_dat_is_listed_not_fatal():
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "coder@clinic.test", "consult@cc.test", "q"
    msg.set_content(QUESTION)
    msg.add_attachment(b"\x78\x9f\x3e\x22" + b"\xff" * 64, maintype="application", subtype="ms-tnef",
                       filename="winmail.dat")
    view = parse_mail(msg.as_bytes())
    assert view.text.strip() == QUESTION
    notes = _notes(view.attachments)
    assert any("could not be read" in n or "no readable text" in n for n in notes), notes
