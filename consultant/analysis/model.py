"""The typed results of the analysis pipeline: what each stage hands to the next.

Stages (``pipeline``): extract (``consultant.codes.extract``) → split (``split``) → type
(``rules``) → facts (``facts``) → decide (``decide``) → render (``consultant.drafting``).  These
types carry numbers, codes and release names only: the wording lives in the reply templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from consultant.codes.units import UnitsCalc


class QType(StrEnum):
    BUNDLING = "bundling"
    MODIFIER = "modifier"
    UNITS_MUE = "units_mue"
    DRUG_UNITS = "drug_units"
    ADDON = "addon"
    DIAGNOSIS = "diagnosis"
    CODE_SEARCH = "code_search"
    CODE_DEFINITION = "code_definition"
    OTHER = "other"


class System(StrEnum):
    CPT = "CPT"
    HCPCS = "HCPCS"
    ICD = "ICD-10-CM"
    MODIFIER = "MODIFIER"


@dataclass
class Context:
    """Facts about the whole mail that the answers depend on."""

    date_of_service: date | None = None
    dos_text: str = ""
    payer: str | None = None
    setting: str | None = None

    @property
    def facility(self) -> bool:
        """Hospital outpatient claims use the hospital (OPPS/I/OCE) PTP table."""
        return self.setting in ("hospital outpatient", "emergency department", "facility")


@dataclass
class Code:
    """A code found in the mail and resolved against the data."""

    system: System
    code: str
    description: str | None = None
    source: str | None = None
    modifiers: list[str] = field(default_factory=list)
    units: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # billable, header, billing_unit, term_date...

    @property
    def procedure(self) -> bool:
        return self.system in (System.CPT, System.HCPCS)


@dataclass
class Question:
    """One question of a mail: its words, the codes it is about, its type and why."""

    number: int
    text: str
    codes: list[str] = field(default_factory=list)  # normalised codes, mail order
    modifiers: list[str] = field(default_factory=list)
    qtype: QType = QType.OTHER
    rule: str = ""
    search_query: str = ""
    group: int = 0  # the question (sentence or item) this ask was cut from


# --- facts --------------------------------------------------------------------------------------
@dataclass
class Mue:
    code: str
    value: int
    mai: int
    rationale: str | None
    source: str


@dataclass
class PtpPair:
    """What the PTP table in use says of two procedure codes, either order."""

    a: str
    b: str
    source: str | None  # None: no PTP release loaded
    column_1: str | None = None
    column_2: str | None = None
    modifier_indicator: int | None = None  # None: no edit in force
    rationale: str | None = None
    snapshot: bool = False  # the table is an in-force snapshot (no effective dates)
    effective: date | None = None  # the release's effective date
    through: date | None = None  # the last day the release answers for (its quarter's end)
    deleted_on: date | None = None  # an edit existed and was deleted (last day in force)
    deleted_between: tuple[date, date] | None = None  # gone between two releases
    deleted_source: str | None = None
    begins_on: date | None = None  # an edit that takes effect after the date of service
    # Column orders (column 1, column 2) with rows in the data but none in force on the date.
    not_in_force: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Addon:
    code: str
    edit_types: list[int]
    primaries: list[str]
    present: list[str]  # eligible primaries that are in the mail
    source: str
    alone: bool = False  # the question asks about the add-on without its primary


@dataclass
class IcdFacts:
    code: str
    description: str | None
    billable: bool
    needs_7th: bool
    header: bool
    children: list[tuple[str, str]] = field(default_factory=list)  # billable descendants
    children_total: int = 0
    seventh: list[tuple[str, str]] = field(default_factory=list)  # (character, meaning)
    code_first: list[str] = field(default_factory=list)
    use_additional: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class Excludes1:
    a: str
    b: str
    level: str
    note: str
    combination: list[tuple[str, str]] = field(default_factory=list)  # codes the tabular offers
    source: str = ""


@dataclass
class Candidate:
    system: str
    code: str
    description: str | None
    source: str | None
    billable: bool | None = None


# --- decisions ----------------------------------------------------------------------------------
@dataclass
class UnitsDecision:
    calc: UnitsCalc | None
    code: str
    descriptor: str | None
    source: str | None
    reason: str | None = None  # why no number: no_dose | no_billing_unit | unit_mismatch | unknown_code
    mue: Mue | None = None
    over_mue: bool = False
    terminated: date | None = None


@dataclass
class MueDecision:
    code: str
    units: int | None
    mue: Mue | None
    over: bool = False
    source: str | None = None  # the MUE release searched when no row exists


@dataclass
class PtpDecision:
    pair: PtpPair
    modifier_on: str | None = None  # the code a bypass modifier goes on (column 2)
    suggested_modifier: str | None = None  # "25" on E/M, else "59/X{EPSU}/anatomic"
    modifiers_given: list[str] = field(default_factory=list)


@dataclass
class DefinitionDecision:
    code: Code
    terminated: date | None = None
    replacements: list[str] = field(default_factory=list)


@dataclass
class Part:
    """One question with the facts and decisions its answer rests on."""

    question: Question
    units: list[UnitsDecision] = field(default_factory=list)
    mue: list[MueDecision] = field(default_factory=list)
    ptp: list[PtpDecision] = field(default_factory=list)
    addons: list[Addon] = field(default_factory=list)
    icd: list[IcdFacts] = field(default_factory=list)
    excludes1: list[Excludes1] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    definitions: list[DefinitionDecision] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # prompt keys the templates word
    decided: bool = False  # the data decides the whole answer (no consultant judgement left)


@dataclass
class Analysis:
    """Everything the pipeline found in one mail (run once per mail)."""

    context: Context
    codes: list[Code]
    parts: list[Part]
    findings: list[dict[str, Any]]
    releases: list[str]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    other_pairs: list[PtpDecision] = field(default_factory=list)
    other_mue: list[MueDecision] = field(default_factory=list)  # codes no question is about
    other_addons: list[Addon] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)  # what the size caps left out
    cpt_descriptors: bool = False
