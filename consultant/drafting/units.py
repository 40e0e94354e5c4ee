"""Drug-unit arithmetic for HCPCS drug codes: dose ÷ billing unit, rounding, JW/JZ, MUE.

The billing unit is read from the HCPCS long descriptor ("Injection, ketorolac tromethamine,
per 15 mg" → 15 mg per unit; "up to 50 mg" → one unit covers up to 50 mg).  A dose that is not a
whole number of billing units is rounded *up*: a partial unit is billed as one unit.  When a
single-dose container was opened and part of it discarded, the discarded amount goes on its own
line with JW, so that administered + discarded units equal the units in the container; when
nothing was discarded, the administered line carries JZ.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from consultant.drafting.kb import MueFact

_BILLING_UNIT = re.compile(
    r"(?:(per|up to)\s+)?(\d+(?:\.\d+)?)\s*(mg|mcg|micrograms?|gm|g|grams?|units?|iu|ml|cc)\b", re.I)
_MASS_TO_MG = {"mg": 1.0, "mcg": 0.001, "g": 1000.0}


@dataclass
class BillingUnit:
    amount: float
    unit: str  # mg | mcg | g | units | ml
    up_to: bool
    text: str

    def label(self) -> str:
        prefix = "up to " if self.up_to else ""
        return f"{prefix}{_fmt(self.amount)} {self.unit}"


@dataclass
class UnitCalc:
    code: str
    dose: float
    dose_unit: str
    billing: BillingUnit
    exact: float
    units: int
    steps: list[str] = field(default_factory=list)
    formula: str = ""
    jw_units: int | None = None
    modifier: str | None = None  # JZ (no waste) | JW (discarded line) | None (unknown)
    mue: MueFact | None = None
    over_mue: bool = False
    source: str = ""


def _fmt(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


def _unit_name(unit: str) -> str:
    unit = unit.lower()
    if unit.startswith("microgram"):
        return "mcg"
    if unit in ("gm", "gram", "grams"):
        return "g"
    if unit in ("unit", "iu"):
        return "units"
    if unit == "cc":
        return "ml"
    return unit


def billing_unit(descriptor: str) -> BillingUnit | None:
    """The billing unit written in a HCPCS drug descriptor (the last amount in it)."""
    matches = list(_BILLING_UNIT.finditer(descriptor))
    if not matches:
        return None
    m = matches[-1]
    return BillingUnit(float(m.group(2)), _unit_name(m.group(3)), (m.group(1) or "").lower() == "up to",
                       m.group(0))


def _convert(amount: float, unit: str, to: str) -> float | None:
    if unit == to:
        return amount
    if unit in _MASS_TO_MG and to in _MASS_TO_MG:
        return amount * _MASS_TO_MG[unit] / _MASS_TO_MG[to]
    return None


def units_for(code: str, descriptor: str, dose: float, dose_unit: str, *, source: str,
              mue: MueFact | None = None, container: tuple[float, str] | None = None,
              discarded: tuple[float, str] | None = None, no_waste: bool = False) -> UnitCalc | None:
    """Work out the units of ``code`` for ``dose``; ``container``/``discarded`` are (amount, unit).

    Returns None when the descriptor has no billing unit or the dose cannot be converted to it
    (e.g. a dose in ml for a per-mg code): that needs the consultant.
    """
    bu = billing_unit(descriptor)
    if bu is None:
        return None
    amount = _convert(dose, _unit_name(dose_unit), bu.unit)
    if amount is None:
        return None
    exact = amount / bu.amount
    units = max(1, math.ceil(round(exact, 6)))
    calc = UnitCalc(code=code, dose=dose, dose_unit=_unit_name(dose_unit), billing=bu, exact=exact,
                    units=units, mue=mue, source=source)
    shown_dose = f"{_fmt(dose)} {calc.dose_unit}"
    if calc.dose_unit != bu.unit:
        shown_dose += f" = {_fmt(amount)} {bu.unit}"
    bu_unit = "unit" if bu.unit == "units" and bu.amount == 1 else bu.unit
    per = f"{'up to ' if bu.up_to else ''}{_fmt(bu.amount)} {bu_unit} per unit"
    calc.formula = f"{shown_dose} ÷ {per} = {_fmt(round(exact, 3))}"
    if not math.isclose(exact, units):
        calc.formula += f", rounded up to {units}"
    if math.isclose(exact, round(exact)) and round(exact) >= 1:
        calc.steps.append(f"{shown_dose} ÷ {per} = {units} unit{'s' if units != 1 else ''} of {code}")
    else:
        calc.steps.append(f"{shown_dose} ÷ {per} = {_fmt(round(exact, 3))}, rounded up to "
                          f"{units} unit{'s' if units != 1 else ''} of {code} "
                          "(a partial billing unit is billed as a whole unit)")
    total = None  # administered + discarded, in the billing unit's measure
    if discarded is not None:
        wasted = _convert(discarded[0], _unit_name(discarded[1]), bu.unit)
        if wasted is not None:
            total = amount + wasted
    elif container is not None:
        total = _convert(container[0], _unit_name(container[1]), bu.unit)
    if total is not None:
        total_units = math.ceil(round(total / bu.amount, 6))
        jw = total_units - units
        if jw > 0:
            calc.jw_units, calc.modifier = jw, "JW"
            size = "" if bu.amount == 1 and bu.unit == "units" else f" = {total_units} units"
            calc.steps.append(
                f"Administered + discarded = {_fmt(total)} {bu.unit}{size}; {total_units} − {units} "
                f"administered = {jw} unit{'s' if jw != 1 else ''} discarded, reported on a "
                "separate line with JW")
        else:
            calc.modifier = "JZ"
            calc.steps.append("Nothing left to discard: JZ on the administered line")
    elif no_waste:
        calc.modifier = "JZ"
        calc.steps.append("No amount discarded: JZ on the administered line")
    if mue is not None:
        reported = units + (calc.jw_units or 0)
        calc.over_mue = reported > mue.value
        verdict = "above" if calc.over_mue else "within"
        calc.steps.append(f"{reported} unit{'s' if reported != 1 else ''} reported is {verdict} "
                          f"the MUE of {mue.value} (MAI {mue.mai}; {mue.source})")
    return calc
