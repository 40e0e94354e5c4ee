"""Rules for identifiers that have a shape: numbers, dates tied to a person, contacts, places.

Each rule is one named regular expression whose group ``v`` is the identifier itself; the cue
around it ("DOB", "MRN #", "Phone:") stays in the text so a reader sees what was there.  Codes
must survive: no rule matches a bare 5-character CPT/HCPCS code, an ICD-10-CM code, an NDC
(4-4-2, 5-3-2, 5-4-1, 5-4-2), a dosage or a date of service, and the hard negatives in
``tests/privacy/mails.toml`` keep it that way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import phonenumbers

from consultant.privacy.hits import Hit
from consultant.privacy.kinds import Kind


@dataclass(frozen=True)
class PatternRule:
    name: str
    kind: Kind
    description: str
    patterns: tuple[re.Pattern[str], ...]

    def find(self, text: str) -> Iterator[Hit]:
        for pattern in self.patterns:
            for m in pattern.finditer(text):
                start, end = m.span("v")
                if end > start:
                    yield Hit(self.name, self.kind, start, end)


def _rule(name: str, kind: Kind, description: str, pattern: str, flags: int = 0) -> PatternRule:
    """One rule; its pattern's top-level alternatives (split on ``||``) each name group ``v``."""
    return PatternRule(name, kind, description,
                       tuple(re.compile(alt, flags) for alt in pattern.split("||")))


_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DATE = (rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})(?!\d)|\d{{4}}[/.-]\d{{1,2}}[/.-]\d{{1,2}}(?!\d)"
         rf"|{_MONTH}\.?[ -]\d{{1,2}}(?:st|nd|rd|th)?,?[ -]\d{{4}}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?[ -]{_MONTH}\.?,?[ -]\d{{2,4}}"
         rf"|{_MONTH}\.?[/-]\d{{1,2}}[/-]\d{{2,4}})")
# After a birth cue, also compact forms (04171961, 041761) and a bare year-less day/month.
_DOB_VALUE = rf"(?:{_DATE}|\d{{8}}(?!\d)|\d{{6}}(?!\d)|\d{{1,2}}/\d{{1,2}}(?![/\d]))"
_FILL = r"(?:\s*(?:is|was|of|on|=)\b)?[\s:#=(\-]*"
_DOB_CUE = (r"\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|birthdate|birthday|born(?:\s+on)?|"
            r"b\.)")
_EVENT_CUE = (r"\b(?:admit(?:ted)?(?:\s+date)?|admission(?:\s+date)?|date\s+of\s+admission|"
              r"discharged?(?:\s+date)?|date\s+of\s+discharge|date\s+of\s+death|DOD|died(?:\s+on)?|"
              r"expired(?:\s+on)?|deceased(?:\s+on)?|passed\s+away(?:\s+on)?)")

_MBI_L = "AC-HJKMNP-RT-Y"
_MBI = (rf"[1-9][{_MBI_L}][{_MBI_L}0-9]\d-?[{_MBI_L}][{_MBI_L}0-9]\d-?[{_MBI_L}][{_MBI_L}]\d\d")
_ID_VALUE = r"(?=(?:[A-Z-]*\d){3})[A-Z0-9][A-Z0-9-]{2,24}[A-Z0-9]\b"
# Long values only (>= 6 characters): "account 99214" or "claim J1885" are codes, not numbers.
_LONG_ID = r"(?=(?:[A-Z-]*\d){4})[A-Z0-9][A-Z0-9-]{4,24}[A-Z0-9]\b"
_SUFFIX_WORD = (r"(?i:street|avenue|road|drive|lane|boulevard|court|circle|terrace|parkway|highway|"
                r"place|way|trail|square|plaza|alley|crescent)")
_SUFFIX_ABBR = r"(?:St|Ave|Av|Rd|Dr|Ln|Blvd|Ct|Cir|Ter|Pkwy|Hwy|Trl|Sq|Pl|Plz|Cres)\.?"
_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|"
           "NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR")
# Two-letter states that are also clinical credentials ("Dr. Lee, MD 99214"): a ZIP after them
# needs a ZIP cue or a street address just before.
_CITY_STATE = (rf",\s*[A-Z][a-zA-Z.]+(?:\s[A-Z][a-zA-Z.]+){{0,2}},?\s+"
               rf"(?:{_STATES}|[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)\b")

RULES: list[PatternRule] = [
    _rule("ssn", Kind.SSN, "a Social Security number (###-##-####, or 9 digits after 'SSN')",
          r"(?<![\w-])(?P<v>(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\2(?!0000)\d{4})(?![\w-])"
          r"||\b(?:SSN|SS\s*#|SS\s*No\.?|social\s+security(?:\s+(?:number|no\.?|#))?)"
          r"(?:\s*(?:last\s*(?:4|four)|ending(?:\s+in)?))?" + _FILL +
          r"(?P<v>\d{9}|\d{3}[ .-]?\d{2}[ .-]?\d{4}|(?:xxx|\*{3})-?(?:xx|\*\*)-?\d{4}|\d{4})(?!\d)",
          re.I),
    _rule("mbi", Kind.MBI, "a Medicare Beneficiary Identifier (CMS's 11-character format)",
          rf"\b(?P<v>{_MBI})\b"),
    _rule("medicare_number", Kind.MBI, "a Medicare number after its cue (MBI, HICN, Medicare ID)",
          r"\b(?:MBI|HICN|HIC|Medicare\s*(?:ID|number|no\.?|#|card(?:\s*(?:number|#))?)|"
          r"Medicare\s+beneficiary\s+(?:ID|identifier|number))" + _FILL +
          r"(?P<v>(?=(?:[A-Z-]*\d){3})[A-Z0-9][A-Z0-9-]{7,14}[A-Z0-9])\b", re.I),
    _rule("dob", Kind.DOB, "a date of birth after its cue", _DOB_CUE + _FILL + rf"(?P<v>{_DOB_VALUE})",
          re.I),
    _rule("person_date", Kind.DATE, "an admission, discharge or death date after its cue",
          _EVENT_CUE + _FILL + rf"(?P<v>{_DATE}|\d{{1,2}}/\d{{1,2}}(?![/\d]))", re.I),
    _rule("age_over_89", Kind.AGE, "an age over 89",
          r"\b(?P<v>(?:9\d|1[01]\d)\s*-?\s*(?:y/?o\b|yo\b|y\.o\.|yrs?\.?[- ]old|years?[- ]old|"
          r"year-old|yr-old|years?\s+of\s+age))"
          r"||\bage[ds]?\s*[:=]?\s*(?P<v>(?:9\d|1[01]\d))\b", re.I),
    _rule("mrn", Kind.MRN, "a medical record, chart, patient, encounter or visit number",
          r"\b(?:MRN|MR\s*#|MR\s+(?:number|no\.?)|med(?:ical)?\.?\s*rec(?:ord)?\.?(?:\s*(?:number|no\.?|#))?|"
          r"chart\s*(?:number|no\.?|#|ID)|patient\s*(?:ID|number|no\.?|#|acct)|pt\.?\s*(?:ID|#|no\.?)|"
          r"encounter\s*(?:number|no\.?|#|ID)|FIN(?:\s*(?:number|no\.?|#))?|visit\s*(?:number|no\.?|#|ID))"
          + _FILL + rf"(?P<v>{_ID_VALUE})"
          r"||\b(?:chart|record|patient|pt)" + _FILL + rf"(?P<v>{_LONG_ID})", re.I),
    _rule("account_number", Kind.ACCOUNT,
          "an account, member, subscriber, policy, group, claim, ICN or authorisation number",
          r"\b(?:acct|account|member|subscriber|policy(?:holder)?|insurance|ins|medicaid|group|"
          r"claim|ICN|DCN|TCN|ref(?:erence)?|(?:prior\s+)?auth(?:ori[sz]ation)?|beneficiary|"
          r"(?<!NPI )(?<!tax )(?<!TIN )ID)"
          r"(?:\s*(?:ID|number|no\.?|#))?" + _FILL + rf"(?P<v>{_LONG_ID})", re.I),
    _rule("phone", Kind.PHONE, "a North American phone or fax number",
          r"(?<![\w/.-])(?P<v>(?:\+?1[\s.-]?)?(?:\([2-9]\d{2}\)\s*|[2-9]\d{2}[\s.-])\d{3}[\s.-]\d{4}"
          r"(?:\s*(?:x|ext\.?)\s*\d{1,5})?)(?![\w/-])"
          r"||\b(?:phone|ph|tel|telephone|cell|mobile|fax|call)\.?\s*[:#]?\s*(?P<v>[2-9]\d{9})\b", re.I),
    _rule("email", Kind.EMAIL, "an e-mail address",
          r"(?P<v>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b"),
    _rule("url", Kind.URL, "a web address",
          r"(?P<v>\b(?:https?://|www\.)[^\s<>\"'\]]*[^\s<>\"'\]).,;:!?])", re.I),
    _rule("ipv4", Kind.IP, "an IPv4 address",
          r"(?<![\d.])(?P<v>(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"
          r"(?![\d.]|\.\d)"),
    _rule("ipv6", Kind.IP, "an IPv6 address",
          r"(?<![\w:])(?P<v>(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4})(?![\w:])"
          r"||(?<![\w:])(?P<v>(?:[0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4})(?![\w:])"),
    _rule("street_address", Kind.ADDRESS, "a street address (with city and state when they follow)",
          rf"(?<![\w/.-])(?P<v>\d{{1,6}}[A-Z]?\s+(?:[NSEW]\.?\s+|(?i:north|south|east|west)\s+)?"
          rf"(?:[A-Z0-9][\w'.-]*\s+){{1,4}}(?:{_SUFFIX_WORD}|{_SUFFIX_ABBR})(?![\w])"
          rf"(?:,?\s*(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*#?\s*[A-Z0-9-]+)?(?:{_CITY_STATE})?)"
          r"||(?P<v>\bP\.?\s*O\.?\s*Box\s+\d+)", 0),
    _rule("zip_code", Kind.ZIP, "a ZIP code (after a ZIP cue, an address or a city and state)",
          r"\b(?:ZIP|zip\s*code|postal\s*code)\s*[:#]?\s*(?P<v>\d{5}(?:-\d{4})?)\b"
          rf"||(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Drive|Dr\.?|Lane|Ln\.?|Blvd\.?|Court|Ct\.?|"
          rf"Suite\s*\w+|Apt\.?\s*\w+|Box\s+\d+)[^\n\d]{{0,40}}?\b(?:{_STATES})\s+(?P<v>\d{{5}}(?:-\d{{4}})?)\b"
          rf"||,\s*(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IA|KS|KY|LA|MA|MI|MN|MS|MO|MT|NE|NV|NH|"
          rf"NJ|NM|NY|NC|ND|OH|OK|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)\s+(?P<v>\d{{5}}(?:-\d{{4}})?)\b",
          re.I),
    _rule("device_serial", Kind.DEVICE, "a device identifier or serial number after its cue",
          r"\b(?:serial(?:\s*(?:number|no\.?|#))?|S/N|(?-i:SN)|device\s*(?:ID|identifier|serial|number|no\.?|#)|"
          r"UDI|implant\s*(?:ID|serial|number|#)|pacemaker\s*(?:serial|ID|#)|IMEI|MAC\s*address)"
          + _FILL + r"(?P<v>(?=[A-Z0-9()/:-]*\d)[A-Z0-9(][A-Z0-9()/:-]{4,60}[A-Z0-9])", re.I),
]


_PLUS_BEFORE_DIGIT = re.compile(r"\+[\s(]*\d")
# E.164 allows 15 digits; with spaces, dots, brackets and an "ext. 12345" a number stays well
# within this.
_NUMBER_WINDOW = 64


class InternationalPhoneRule:
    """Phone numbers written with a country code (+44 20 7946 0958), by libphonenumber."""

    name = "phone_international"
    kind = Kind.PHONE
    description = "a phone number with a +country code (libphonenumber)"

    def find(self, text: str) -> Iterator[Hit]:
        # Only numbers that start with their "+" are kept, so the matcher reads a short window
        # from each "+" before a digit instead of the whole text: over a whole text it tries
        # every digit run as a number (18,786 tries, ~1 s of CPU, on a 145 KB uuencoded corpus
        # mail).  At the POSSIBLE leniency it looks at no character before a number, and the
        # window holds the longest number with an extension, so every "+" number the whole-text
        # reading found is found (checked against it over the mail corpus).
        for lead in _PLUS_BEFORE_DIGIT.finditer(text):
            at = lead.start()
            window = text[at:at + _NUMBER_WINDOW]
            match = next(iter(phonenumbers.PhoneNumberMatcher(
                window, "US", leniency=phonenumbers.Leniency.POSSIBLE)), None)
            # Only this "+"'s own number: one found further on has a window of its own.
            if match is not None and match.start == 0:
                yield Hit(self.name, self.kind, at, at + match.end)
