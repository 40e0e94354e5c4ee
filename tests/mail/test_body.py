"""The sender's own words: quotes cut, forwarded questions read when the forwarder adds little."""

from __future__ import annotations

from email.message import EmailMessage

from consultant.mail.body import new_text
from consultant.mail.parse import parse_mail

QUESTION = "Can 77301 and 77338 be billed on the same date of service for Medicare?"


def _mail(body: str, subject: str = "Fwd: billing question") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "coder@clinic.test", "consult@cc.test", subject
    msg.set_content(body)
    return msg.as_bytes()


def test_an_inline_forward_with_little_added_is_read_as_the_question():
    body = ("FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Dr. Lee <lee@clinic.test>\n"
            "Date: Mon, 5 Jan 2026\nSubject: billing question\nTo: coder@clinic.test\n\n"
            f"{QUESTION}\n\nOn Sun, 4 Jan 2026 someone wrote:\n> an older quoted mail\n")
    text = new_text(parse_mail(_mail(body)))
    assert text.startswith("FYI, see below.") and QUESTION in text
    assert "older quoted mail" not in text and "Dr. Lee" not in text


def test_an_outlook_forward_in_a_fw_mail():
    body = (f"Please answer.\n\n________________________________\nFrom: Dr. Lee\nSent: Monday\n"
            f"To: Coder\nSubject: question\n\n{QUESTION}\n")
    assert QUESTION in new_text(parse_mail(_mail(body, subject="FW: question")))


def test_an_attached_forwarded_message_is_read():
    inner = EmailMessage()
    inner["From"], inner["Subject"] = "lee@clinic.test", "question"
    inner.set_content(f"{QUESTION}\n\n-- \nDr. Lee\n")
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "coder@clinic.test", "consult@cc.test", "Fwd: question"
    outer.set_content("see attached")
    outer.add_attachment(inner)
    text = new_text(parse_mail(outer.as_bytes()))
    assert text == f"see attached\n\n{QUESTION}"


def test_a_reply_quoting_our_answer_is_not_read_as_a_forward():
    body = "Thanks!\n\nOn Mon, 5 Jan 2026 CaseConsultant <consult@cc.test> wrote:\n> 77301 and 77338 ...\n"
    assert new_text(parse_mail(_mail(body, subject="Re: question [CC-4]"))) == "Thanks!"


def test_a_forwarder_who_writes_the_question_is_not_second_guessed():
    own = "Our physician asks whether " + QUESTION + " We have seen denials before and need a citation."
    body = own + "\n\n---------- Forwarded message ---------\nFrom: x\n\nSomething else entirely 99213.\n"
    assert new_text(parse_mail(_mail(body))) == own
