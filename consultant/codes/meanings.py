"""Plain-language meanings of CMS indicator values (from CMS's own file documentation)."""

from __future__ import annotations

MAI = {
    1: "Line edit: units above the MUE on one claim line are denied; units on separate lines "
       "(with appropriate modifiers) are adjudicated separately.",
    2: "Date of service edit, policy: an absolute per-day limit set by policy; units above it are "
       "denied and not payable on appeal.",
    3: "Date of service edit, clinical: a per-day limit based on clinical data; units above it "
       "are denied but may be paid on appeal with documentation of medical necessity.",
}
PTP_MODIFIER = {
    0: "Not allowed: no modifier bypasses this edit; the column 2 code is not separately "
       "payable with the column 1 code.",
    1: "Allowed: a PTP-associated modifier (e.g. 59, XE, XS, XP, XU, or anatomic modifiers such "
       "as RT/LT) may bypass the edit when the services are distinct and documented.",
    9: "Not applicable: the edit was deleted from the date it took effect and does not apply.",
}
AOC_TYPE = {
    1: "Only the listed primary codes are eligible.",
    2: "CMS lists no primary codes; each contractor defines the eligible primaries.",
    3: "Some primary codes are listed; a contractor may accept others.",
}
HCPCS_COVERAGE = {
    "C": "Carrier judgment",
    "D": "Special coverage instructions apply",
    "I": "Not payable by Medicare",
    "M": "Non-covered by Medicare",
    "S": "Non-covered by Medicare statute",
}
HCPCS_PRICING = {
    "00": "Service not separately priced by Part B",
    "11": "Price established using national RVUs",
    "12": "Price established using national anesthesia base units",
    "13": "Price established by carriers",
    "21": "Price subject to national limitation amount",
    "22": "Price established by carriers",
    "31": "Frequently serviced DME",
    "32": "Inexpensive and routinely purchased DME",
    "33": "Oxygen and oxygen equipment",
    "34": "DME supplies",
    "35": "Surgical dressings",
    "36": "Capped rental DME",
    "37": "Ostomy, tracheostomy and urological supplies",
    "38": "Orthotics, prosthetics, prosthetic devices and vision services",
    "39": "Parenteral and enteral nutrition",
    "45": "Customized DME items",
    "46": "Carrier priced (not otherwise classified, individually determined)",
    "51": "Drugs",
    "52": "Reasonable charge",
    "53": "Statute",
    "54": "Vaccinations",
    "55": "Splints and casts",
    "56": "IOLs inserted in a physician's office",
    "57": "Other carrier priced",
    "99": "Value not established",
}
# Said of every code on CMS's NOC list (the claim-line narrative rule for NOC codes).
NOC_CLAIM = (
    "Not otherwise classified (NOC) code: for use only when no more specific code describes the "
    "item or service. The claim line must carry a narrative description (e.g. in the claim's "
    "remarks/NTE segment): for a drug, its name, dosage and route of administration, and the NDC; "
    "for a supply, device or service, what it is."
)
