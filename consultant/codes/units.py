"""Billing units of HCPCS drug codes: the one parser of a descriptor's billing unit and the one
place that turns a dose into units (Pub 100-04 Ch. 17; CODING-RULES §4).

The billing unit is the amount the LONG descriptor names at its end ("…, per 15 mg", "…, 1 mg",
"…, up to 50 mg").  "Per dose", "each" and similar descriptors count administrations, not an
amount.  A dose that is not a whole number of billing units is rounded up; under one unit is one
unit.  When a single-dose container was opened and part of it discarded, the discarded amount is
billed on its own line with JW (never more than the container held); JZ says nothing was
discarded.  No English is written here: the reply templates word the result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# The amount at the end of a descriptor ("per 15 mg", "1 mg", "per 1,000 units", "up to 50 mg").
_UNIT_RE = re.compile(
    r"(?:\b(?P<pre>per|up\s+to)\s+)?(?P<amount>\d+(?:,\d{3})*(?:\.\d+)?)\s*"
    r"(?P<unit>mg|mcg|micrograms?|milligrams?|gm|grams?|g|ml|cc|units?|iu|meq|mci|millicuries?|microcuries?|uci)\b",
    re.IGNORECASE,
)
# Descriptors that count administrations or items instead of an amount.
_PER_ITEM_RE = re.compile(r"\b(?:per\s+(?:dose|injection|vial|application|treatment|instillation|"
                          r"implant|syringe|unit\s+dose)|each|per\s+each)\b\s*$", re.IGNORECASE)
_EQUALS_RE = re.compile(r"\((?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>ml|cc|mg|mcg|units?)\s*=\s*1\s*units?\)", re.IGNORECASE)
UNIT_NAMES = {"micrograms": "mcg", "microgram": "mcg", "milligram": "mg", "milligrams": "mg",
              "gm": "g", "gram": "g", "grams": "g", "cc": "ml", "unit": "units", "iu": "units",
              "millicuries": "mci", "millicurie": "mci", "microcuries": "uci", "microcurie": "uci",
              "liter": "l", "liters": "l", "litre": "l", "litres": "l"}
_MASS_IN_MG = {"mg": 1.0, "mcg": 0.001, "g": 1000.0}
_VOLUME_IN_ML = {"ml": 1.0, "l": 1000.0}


def unit_name(unit: str) -> str:
    """The canonical spelling of a dose unit (mg, mcg, g, ml, units, meq, mci, uci)."""
    low = unit.lower()
    return UNIT_NAMES.get(low, low)


@dataclass(frozen=True)
class BillingUnit:
    """What one billing unit of a code stands for."""

    amount: float | None  # None for per-administration descriptors
    unit: str | None
    up_to: bool = False
    per_item: bool = False
    text: str = ""

    @classmethod
    def from_json(cls, value: dict[str, object]) -> BillingUnit:
        amount = value.get("amount")
        return cls(float(amount) if isinstance(amount, int | float) else None,
                   str(value["unit"]) if value.get("unit") else None, bool(value.get("up_to")),
                   bool(value.get("per_item")), str(value.get("text") or ""))

    def as_json(self) -> dict[str, object]:
        return {"amount": _num(self.amount) if self.amount is not None else None, "unit": self.unit,
                "up_to": self.up_to, "per_item": self.per_item, "text": self.text}


def billing_unit(descriptor: str) -> BillingUnit | None:
    """The billing unit the descriptor states, or None when it names none."""
    equal = _EQUALS_RE.search(descriptor)
    if equal:  # "normal saline solution infusion (500 ml = 1 unit)"
        return BillingUnit(float(equal.group("amount")), unit_name(equal.group("unit")), text=equal.group(0))
    # The last comma-separated part, a thousands separator ("per 1,000 units") not counting.
    tail = re.split(r",(?!\d{3}\b)", descriptor.strip())[-1].strip()
    if _PER_ITEM_RE.search(tail):
        return BillingUnit(None, None, per_item=True, text=tail)
    matches = list(_UNIT_RE.finditer(tail))
    if not matches:
        return None
    m = matches[-1]
    amount = float(m.group("amount").replace(",", ""))
    pre = (m.group("pre") or "").lower()
    return BillingUnit(amount, unit_name(m.group("unit")), up_to=pre.startswith("up"), text=m.group(0))


def convert(amount: float, unit: str, to: str) -> float | None:
    """``amount`` of ``unit`` in ``to`` (mass units convert; others only to themselves)."""
    unit, to = unit_name(unit), unit_name(to)
    if unit == to:
        return amount
    for table in (_MASS_IN_MG, _VOLUME_IN_ML):
        if unit in table and to in table:
            return amount * table[unit] / table[to]
    return None


@dataclass
class UnitsCalc:
    """Units of one drug line, with every input of the arithmetic (the template shows them)."""

    code: str
    given: float
    given_unit: str
    billing: BillingUnit
    given_in_billing_unit: float | None = None  # the dose converted to the descriptor's unit
    exact: float | None = None  # given ÷ billing amount, before rounding
    units: int = 1
    rounded_up: bool = False
    wasted: float | None = None
    wasted_units: int = 0
    modifier: str | None = None  # "JW" (a discarded line), "JZ" (nothing discarded) or None
    administrations: int = 1
    inputs: list[dict[str, object]] = field(default_factory=list)  # mg/kg × kg etc., from extract


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 4)


def _ceil_units(amount: float, per: float) -> tuple[float, int]:
    exact = amount / per
    # round() first: 0.1 + 0.2 style float noise must not add a unit.
    return exact, max(1, math.ceil(round(exact, 6)))


def compute(code: str, billing: BillingUnit, given: float, given_unit: str, *,
            wasted: float | None = None, wasted_unit: str | None = None, no_waste: bool = False,
            administrations: int = 1) -> UnitsCalc | None:
    """Units for a dose of ``code``; None when the dose cannot be expressed in the billing unit
    (a dose in ml for a per-mg code needs the concentration, which the mail did not give)."""
    calc = UnitsCalc(code=code, given=given, given_unit=unit_name(given_unit), billing=billing,
                     administrations=administrations)
    if billing.per_item:
        calc.units = max(1, administrations)
        calc.modifier = "JZ" if no_waste else None
        return calc
    assert billing.amount is not None and billing.unit is not None
    amount = convert(given, given_unit, billing.unit)
    if amount is None:
        return None
    calc.given_in_billing_unit = _num(amount)
    exact, units = _ceil_units(amount, billing.amount)
    calc.exact, calc.units = _num(exact), units
    calc.rounded_up = not math.isclose(exact, units)
    if wasted and wasted_unit:
        waste = convert(wasted, wasted_unit, billing.unit)
        if waste is not None and waste > 0:
            # Given + JW units never exceed the units of what was opened: work out the total and
            # bill the difference (CMS JW FAQ; 14 + 6 for two 100 mg vials at 10 mg per unit).
            _, total_units = _ceil_units(amount + waste, billing.amount)
            calc.wasted = _num(waste)
            calc.wasted_units = max(0, total_units - units)
            calc.modifier = "JW" if calc.wasted_units else "JZ"
            return calc
    if no_waste:
        calc.modifier = "JZ"
    return calc
