"""The identifier kinds we detect (HIPAA Safe Harbor, as text in a coding mail carries them)."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    NAME = "name"
    MBI = "mbi"
    SSN = "ssn"
    MRN = "mrn"
    ACCOUNT = "account"  # account, member/subscriber/policy, claim and ICN numbers
    DOB = "dob"
    DATE = "date"  # admission, discharge and death dates (a date of service stays)
    AGE = "age"  # ages over 89
    PHONE = "phone"  # phone and fax
    EMAIL = "email"  # any address but the sender's and ours
    ADDRESS = "address"  # street address (with its city and state when they follow)
    ZIP = "zip"
    URL = "url"
    IP = "ip"
    DEVICE = "device"  # device identifiers and serial numbers


PLACEHOLDERS: dict[Kind, str] = {
    Kind.NAME: "[NAME]", Kind.MBI: "[MBI]", Kind.SSN: "[SSN]", Kind.MRN: "[MRN]",
    Kind.ACCOUNT: "[ACCOUNT]", Kind.DOB: "[DOB]", Kind.DATE: "[DATE]", Kind.AGE: "[AGE]",
    Kind.PHONE: "[PHONE]", Kind.EMAIL: "[EMAIL]", Kind.ADDRESS: "[ADDRESS]", Kind.ZIP: "[ZIP]",
    Kind.URL: "[URL]", Kind.IP: "[IP]", Kind.DEVICE: "[DEVICE]",
}

# What the requester is told was removed (kinds only, never values).
DESCRIPTIONS: dict[Kind, str] = {
    Kind.NAME: "patient names", Kind.MBI: "Medicare Beneficiary Identifiers",
    Kind.SSN: "Social Security numbers", Kind.MRN: "medical record numbers",
    Kind.ACCOUNT: "account, member or claim numbers", Kind.DOB: "dates of birth",
    Kind.DATE: "admission, discharge or death dates", Kind.AGE: "ages over 89",
    Kind.PHONE: "phone or fax numbers", Kind.EMAIL: "e-mail addresses",
    Kind.ADDRESS: "street addresses", Kind.ZIP: "ZIP codes", Kind.URL: "web addresses",
    Kind.IP: "IP addresses", Kind.DEVICE: "device or serial numbers",
}
