"""The one billing-unit parser and the drug-unit arithmetic (CODING-RULES §4), on descriptor
forms from the HCPCS 2026 file."""

from __future__ import annotations

import pytest

from consultant.codes.units import BillingUnit, billing_unit, compute, convert


@pytest.mark.parametrize("descriptor, expected", [
    ("Injection, ketorolac tromethamine, per 15 mg", (15, "mg", False, False)),
    ("Injection, dexamethasone sodium phosphate, 1 mg", (1, "mg", False, False)),
    ("Injection, promethazine hcl, up to 50 mg", (50, "mg", True, False)),
    ("Injection, onabotulinumtoxina, 1 unit", (1, "units", False, False)),
    ("Injection, cyanocobalamin, up to 1,000 mcg", (1000, "mcg", True, False)),
    ("Infusion, normal saline solution, 250 cc", (250, "ml", False, False)),
    ("5% dextrose/normal saline (500 ml = 1 unit)", (500, "ml", False, False)),
    ("Hyaluronan or derivative, hyalgan, hyalan or supartz, for intra-articular injection, per dose",
     (None, None, False, True)),
])
def test_billing_unit_forms(descriptor: str, expected: tuple[object, ...]) -> None:
    bu = billing_unit(descriptor)
    assert bu is not None
    assert (bu.amount, bu.unit, bu.up_to, bu.per_item) == expected


def test_no_billing_unit() -> None:
    assert billing_unit("Unclassified drugs") is None


def test_rounding_up_and_minimum_one_unit() -> None:
    per10 = BillingUnit(10, "mg")
    assert compute("J9035", per10, 375, "mg").units == 38  # type: ignore[union-attr]
    calc = compute("J9035", per10, 3, "mg")
    assert calc is not None and calc.units == 1 and calc.rounded_up
    exact = compute("J1885", BillingUnit(15, "mg"), 60, "mg")
    assert exact is not None and exact.units == 4 and not exact.rounded_up


def test_waste_never_exceeds_what_was_opened() -> None:
    # CODING-RULES §4: 135 mg given at 10 mg per unit, two 100 mg vials opened: 14 + 6 JW.
    calc = compute("J9999", BillingUnit(10, "mg"), 135, "mg", wasted=65, wasted_unit="mg")
    assert calc is not None and (calc.units, calc.wasted_units, calc.modifier) == (14, 6, "JW")


def test_no_waste_is_jz_and_per_dose_counts_administrations() -> None:
    calc = compute("J1100", BillingUnit(1, "mg"), 10, "mg", no_waste=True)
    assert calc is not None and calc.modifier == "JZ"
    per_dose = compute("J7321", BillingUnit(None, None, per_item=True), 20, "mg", administrations=2)
    assert per_dose is not None and per_dose.units == 2


def test_units_convert_mass_and_volume_only() -> None:
    assert convert(1, "g", "mg") == 1000
    assert convert(1000, "mcg", "mg") == 1
    assert convert(1, "liter", "ml") == 1000
    assert convert(2, "ml", "mg") is None
    assert compute("J1885", BillingUnit(15, "mg"), 2, "ml") is None  # needs the concentration
