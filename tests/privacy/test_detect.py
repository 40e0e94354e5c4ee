"""Detection and redaction: rules and spans recorded, every field of a mail, codes kept."""

from __future__ import annotations

from email.message import EmailMessage

from consultant.mail.parse import parse_mail
from consultant.privacy.detect import detect
from consultant.privacy.html import redact_html
from consultant.privacy.kinds import Kind
from consultant.privacy.mail import redact_mail
from consultant.privacy.redact import Summary, redact_filename, redact_text

ISSUE_MAIL = ("Patient: John Q. Smith, DOB 04/17/1961, SSN 123-45-6789, MRN 00482913, Medicare ID "
              "1EG4-TE5-MK73. Phone (555) 867-5309, 12 Elm Street")


def test_the_issue_example_loses_every_identifier_and_keeps_its_cues() -> None:
    red = redact_text(ISSUE_MAIL)
    assert red.text == ("Patient: [NAME], DOB [DOB], SSN [SSN], MRN [MRN], Medicare ID [MBI]. "
                        "Phone [PHONE], [ADDRESS]")
    # Each hit names its rule and its span in the original text.
    by_kind = {h.kind: (h.rule, ISSUE_MAIL[h.start:h.end]) for h in red.hits}
    assert by_kind[Kind.NAME] == ("name_after_label", "John Q. Smith")
    assert by_kind[Kind.MBI] == ("mbi", "1EG4-TE5-MK73")
    assert by_kind[Kind.ADDRESS] == ("street_address", "12 Elm Street")


def test_a_name_found_once_is_found_everywhere_in_the_mail() -> None:
    msg = EmailMessage()
    msg["From"] = "Coder <coder@clinic.test>"
    msg["Subject"] = "Modifier 25 question for patient John Smith"
    msg.set_content("Mr. Smith had 20610 and 99214 on DOS 03/12/2026. SMITH signed the ABN.")
    red = redact_mail(parse_mail(msg.as_bytes()))
    assert red.subject == "Modifier 25 question for patient [NAME]"
    assert red.text.strip() == "Mr. [NAME] had 20610 and 99214 on DOS 03/12/2026. [NAME] signed the ABN."
    assert red.summary.counts == {"name": 3}


def test_display_names_attachment_names_and_html_are_redacted() -> None:
    msg = EmailMessage()
    msg["From"] = "\"Billing re pt Susan Clarke\" <billing@derm.test>"
    msg["Subject"] = "11102 and 11104"
    msg.set_content("<p><b>DOB:</b> 08/30/1955. Contact <a href='mailto:kin@home.test'>kin@home.test</a></p>",
                    subtype="html")
    msg.add_attachment(b"%PDF", maintype="application", subtype="pdf",
                       filename="Michael_Johnson_DOB_041761.pdf")
    red = redact_mail(parse_mail(msg.as_bytes()))
    assert red.from_name == "Billing re pt [NAME]"
    assert red.attachments[0]["filename"] == "[NAME]_DOB_[DOB].pdf"
    assert red.html is not None and "08/30/1955" not in red.html and "kin@home.test" not in red.html
    assert "<b>DOB:</b> [DOB]" in red.html and 'href="mailto:[EMAIL]"' in red.html


def test_values_removed_from_html_attributes_are_read_from_the_attribute() -> None:
    # An attribute hit's span indexes the attribute's value, not the page's text: the outgoing
    # check must be given the address itself.
    msg = EmailMessage()
    msg["From"] = "coder@clinic.test"
    msg["Subject"] = "99213"
    msg.set_content("<p>Is 99213 right? <a href='mailto:kin@home.test'>write to the family</a></p>",
                    subtype="html")
    red = redact_mail(parse_mail(msg.as_bytes()))
    assert (Kind.EMAIL, "kin@home.test") in red.values


def test_html_keeps_markup_and_escapes_text() -> None:
    red = redact_html("<div>Patient: <i>Ann Lee</i> &amp; 99213 &lt;b&gt;</div>")
    assert red.text == "<div>Patient: <i>[NAME]</i> &amp; 99213 &lt;b&gt;</div>"


def test_the_senders_own_address_is_not_an_identifier() -> None:
    text = "Reply to ann@clinic.test, not to the patient at pat@home.test"
    assert redact_text(text, allowed_emails=["Ann@Clinic.test"]).text == \
        "Reply to ann@clinic.test, not to the patient at [EMAIL]"


def test_dates_of_service_codes_units_and_payers_survive() -> None:
    text = ("DOS 03/12/2026 (also 3/12/26, 2026-03-12, March 12, 2026, 12-Mar-2026). Medicare "
            "Advantage, Blue Cross. 77301 and 77338, 99214-25, J1885 x 4 units, 60 mg, "
            "NDC 0409-3795-01, lot 4H7K2, E11.22, N18.31, POS 11, PA 99213, Dr. Patel.")
    assert detect(text) == []
    assert redact_filename("lab_requisition_2026-03-04.pdf").hits == []


def test_summary_round_trips_and_names_kinds_not_values() -> None:
    summary = Summary()
    summary.add(redact_text(ISSUE_MAIL).hits)
    again = Summary.from_json(summary.as_json())
    assert again.counts == summary.counts
    assert again.described()[:2] == ["patient names", "Medicare Beneficiary Identifiers"]
    assert "Smith" not in str(summary.as_json())


def test_numbers_with_a_country_code_are_found_wherever_they_are_in_a_long_text() -> None:
    # The rule reads a window after each "+"; a number deep inside a long text full of "+" and
    # digits (as uuencoded text is) is found as at its start, and a "+" before a digit that is
    # no phone number is left alone.
    noise = "M+3=A+Q12%_+0@(+9 items " * 400
    text = (noise + "Call the UK office on +44 20 7946 0958 or Paris (+33 1 42 68 53 00). "
            "Add +2 units of J1885.")
    found = [(h.rule, text[h.start:h.end]) for h in detect(text) if h.kind is Kind.PHONE]
    assert found == [("phone_international", "+44 20 7946 0958"),
                     ("phone_international", "+33 1 42 68 53 00")]
