"""Rules for clinical entities a corpus-trained model misses: medications with dose, route and
frequency, lab values with value and unit, vital signs, procedures.

Regular expressions over the text; each match becomes a :class:`RuleMatch` with a label, a
character span, a normalised form and details. :func:`find_rules` is pure Python; the spaCy
component ``clinrag_clinical_rules`` (in :mod:`clinrag.ner.pipeline`) adds them to ``doc.ents``.

>>> [(m.label, m.normalized, dict(m.details)) for m in find_rules("Metformin 500 mg PO BID.")]
[('Medication', 'metformin', {'dose': '500 mg', 'route': 'PO', 'frequency': 'BID'})]
>>> [(m.label, dict(m.details)) for m in find_rules("BP 128/82 mmHg, HbA1c 7.2%")]
[('VitalSign', {'name': 'blood pressure', 'value': '128/82', 'unit': 'mmHg'}), \
('LabValue', {'name': 'hba1c', 'value': '7.2', 'unit': '%'})]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: labels produced by the rules
RULE_LABELS = ("Medication", "LabValue", "VitalSign", "Procedure")

_UNIT_DOSE = r"(?:mg/kg|mg/ml|mcg/h|mg|mcg|µg|ug|g|ml|l|units?|iu|meq|mmol|%|puffs?|tabs?|tablets?|capsules?|drops?)"
_DOSE = rf"\d+(?:[.,]\d+)?(?:\s*(?:/|-|to)\s*\d+(?:\.\d+)?)?\s*{_UNIT_DOSE}(?![a-z])"
_FORM = (r"(?:extended[- ]release\s+|delayed[- ]release\s+|chewable\s+|disintegrating\s+)?"
         r"(?:oral\s+)?(?:tablets?|capsules?|solution|suspension|injection|inhaler|patch|cream|ointment|spray|"
         r"syrup|powder|prefilled\s+syringe|auto-injector|injectable\s+suspension|metered\s+dose\s+inhaler)")
_ROUTE = (r"(?:p\.?o\.?|by mouth|orally|oral|i\.?v\.?|intravenous(?:ly)?|i\.?m\.?|intramuscular(?:ly)?|s\.?c\.?|"
          r"subq|subcutaneous(?:ly)?|s\.?l\.?|sublingual(?:ly)?|topical(?:ly)?|inhaled|via inhalation|by inhalation|"
          r"transdermal(?:ly)?|rectal(?:ly)?|p\.?r\.?|intranasal(?:ly)?|nasal|ophthalmic)")
_FREQ = (r"(?:once daily|twice daily|three times daily|four times daily|(?:once|twice|three times) (?:a|per) "
         r"(?:day|week)|daily|nightly|weekly|monthly|every (?:morning|evening|night|other day|\d+(?:-\d+)? "
         r"(?:hours?|hrs?|days?|weeks?))|at bedtime|as needed|b\.?i\.?d\.?|t\.?i\.?d\.?|q\.?i\.?d\.?|q\.?d\.?|"
         r"qhs|qam|qpm|qod|q\s?\d+\s?h(?:rs?)?|prn|stat)")
_SALT = (r"(?:\s+(?:hydrochloride|hcl|sodium|potassium|calcium|magnesium|sulfate|succinate|tartrate|besylate|"
         r"maleate|citrate|acetate|phosphate|mesylate|fumarate|bromide|er|xr|xl|sr|cr|dr))*")
_DRUG = rf"(?P<drug>(?:[A-Za-z][A-Za-z\-]{{2,}}[ \t]+)?[A-Za-z][A-Za-z\-]{{2,}}{_SALT})"
_MED = re.compile(
    rf"\b{_DRUG}\s*(?P<dose>{_DOSE})(?:\s+(?P<form>{_FORM}))?(?P<mods>(?:\s*,?\s*(?:{_ROUTE}|{_FREQ})\b){{0,3}})",
    re.IGNORECASE)
_ROUTE_RE = re.compile(rf"\b{_ROUTE}(?![a-z])", re.IGNORECASE)
_FREQ_RE = re.compile(rf"\b{_FREQ}(?![a-z])", re.IGNORECASE)
_NOT_DRUG = frozenset("""of the and to with was is a at on for in given take taking takes took received receive dose
doses total about approximately over than by daily weight was were be been has had have every increased decreased
reduced from up down per additional another lost gained weighs weighing started start starting continue continued
continues stopped stop discontinued discontinue increase decrease prescribed restarted resumed hold held add added
change changed switch switched initiated begin began on patient recommend recommended using use uses""".split())

#: lab name patterns → canonical name
LABS: dict[str, str] = {
    r"h(?:emo)?g(?:lo)?b(?:in)?\s*a1c|hba1c|a1c|glycated hemoglobin": "hba1c",
    r"(?:fasting\s+)?(?:blood\s+)?glucose|blood sugar": "glucose",
    r"creatinine|cr": "creatinine", r"blood urea nitrogen|bun": "bun", r"sodium|na": "sodium",
    r"potassium|k": "potassium", r"chloride|cl": "chloride", r"bicarbonate|hco3|co2": "bicarbonate",
    r"calcium|ca": "calcium", r"magnesium|mg": "magnesium", r"hemoglobin|hgb|hb": "hemoglobin",
    r"hematocrit|hct": "hematocrit", r"white blood cells?|white blood cell count|wbc": "wbc",
    r"platelets?|platelet count|plt": "platelets", r"ldl(?:\s+cholesterol)?|ldl-c": "ldl",
    r"hdl(?:\s+cholesterol)?|hdl-c": "hdl", r"total cholesterol|cholesterol": "cholesterol",
    r"triglycerides?|tg": "triglycerides", r"alt|sgpt|alanine aminotransferase": "alt",
    r"ast|sgot|aspartate aminotransferase": "ast", r"alkaline phosphatase|alp": "alkaline phosphatase",
    r"(?:total\s+)?bilirubin": "bilirubin", r"albumin": "albumin", r"tsh": "tsh", r"free t4|ft4": "free t4",
    r"inr": "inr", r"egfr|gfr": "egfr", r"troponin(?:\s+[it])?": "troponin", r"bnp|nt-probnp": "bnp",
    r"c-reactive protein|crp": "crp", r"lactate": "lactate", r"ferritin": "ferritin", r"psa": "psa",
    r"cd4(?:\+)?(?:\s+(?:count|cells))?": "cd4 count", r"viral load": "viral load",
}
_LAB_UNIT = (r"(?:mg/dl|mmol/l|g/dl|g/l|meq/l|u/l|iu/l|ng/ml|ng/dl|pg/ml|µg/l|ug/l|mcg/dl|k/ul|x\s?10\^?9/l|"
             r"10\^?3/ul|cells/mm3|cells/ul|/ul|/mm3|copies/ml|ml/min(?:/1\.73\s?m2)?|miu/l|uiu/ml|%)")
_LAB = re.compile(
    rf"\b(?P<name>{'|'.join(f'(?:{p})' for p in LABS)})(?:\s+(?:level|levels|count|value))?\s*(?:of|is|was|=|:|-)?"
    rf"\s*(?P<value>[<>]?\s?\d+(?:\.\d+)?)\s*(?P<unit>{_LAB_UNIT})?(?![\w/])",
    re.IGNORECASE)
_UNITLESS = {"inr"}

_VITALS: list[tuple[str, re.Pattern[str]]] = [
    ("blood pressure", re.compile(r"\b(?:bp|blood pressure|b/p)\s*(?:of|is|was|=|:)?\s*(?P<value>\d{2,3}\s?/\s?\d{2,3})"
                                  r"\s*(?P<unit>mm\s?hg)?", re.IGNORECASE)),
    ("heart rate", re.compile(r"\b(?:hr|heart rate|pulse(?: rate)?|p)\s*(?:of|is|was|=|:)?\s*(?P<value>\d{2,3})"
                              r"\s*(?P<unit>bpm|beats per minute|/min)?(?![\w/])", re.IGNORECASE)),
    ("respiratory rate", re.compile(r"\b(?:rr|resp(?:iratory)? rate|respirations)\s*(?:of|is|was|=|:)?\s*"
                                    r"(?P<value>\d{1,2})\s*(?P<unit>breaths per minute|/min|bpm)?(?![\w/])",
                                    re.IGNORECASE)),
    ("temperature", re.compile(r"\b(?:t|temp|temperature)\s*(?:of|is|was|=|:)?\s*(?P<value>\d{2,3}(?:\.\d)?)\s*"
                               r"(?P<unit>°\s?[cf]|deg(?:rees)?\s?[cf]|[cf])?(?![\w/])", re.IGNORECASE)),
    ("oxygen saturation", re.compile(r"\b(?:spo2|sao2|o2 sat(?:uration)?|oxygen saturation|sats?|pulse ox)\s*"
                                     r"(?:of|is|was|=|:)?\s*(?P<value>\d{2,3})\s*(?P<unit>%)", re.IGNORECASE)),
    ("weight", re.compile(r"\b(?:wt|weight|body weight)\s*(?:of|is|was|=|:)?\s*(?P<value>\d{1,3}(?:\.\d+)?)\s*"
                          r"(?P<unit>kg|lbs?|pounds)(?![\w/])", re.IGNORECASE)),
    ("height", re.compile(r"\b(?:ht|height|body height)\s*(?:of|is|was|=|:)?\s*(?P<value>\d{1,3}(?:\.\d+)?)\s*"
                          r"(?P<unit>cm|m|in|inches)(?![\w/])", re.IGNORECASE)),
    ("bmi", re.compile(r"\b(?:bmi|body mass index)\s*(?:of|is|was|=|:)?\s*(?P<value>\d{1,2}(?:\.\d+)?)\s*"
                       r"(?P<unit>kg/m2|kg/m\^2)?(?![\w/])", re.IGNORECASE)),
]
# vitals whose unit is required when the name is a one-letter abbreviation (t, p)
_SHORT = re.compile(r"^[tp]\b", re.IGNORECASE)

_PROC_WORDS = (r"biopsy|catheterization|angioplasty|angiography|intubation|extubation|hemodialysis|dialysis|"
               r"transfusion|ct scan|ct|computed tomography|mri|magnetic resonance imaging|x-ray|xray|radiograph|"
               r"ultrasound|sonography|echocardiogram|echocardiography|electrocardiogram|ecg|ekg|mammogram|"
               r"mammography|bypass graft(?:ing)?|cabg|pci|percutaneous coronary intervention|stent placement|"
               r"transplant(?:ation)?|chemotherapy|radiotherapy|radiation therapy|immunotherapy|surgery|resection|"
               r"excision|amputation|lumbar puncture|spinal tap|pap smear|vaccination|immunization|"
               r"physical therapy|psychotherapy|suture|cesarean section|c-section|ablation|cardioversion|"
               r"pacemaker (?:placement|insertion)|bronchoscopy|endoscopy|colonoscopy|sigmoidoscopy|laparoscopy|"
               r"arthroscopy|cystoscopy|gastroscopy|spirometry|pulmonary function test(?:ing)?")
_PROC = re.compile(
    r"\b(?P<mod>(?:(?:cardiac|coronary|chest|abdominal|head|brain|renal|liver|lung|breast|skin|bone marrow|"
    r"knee|hip|lumbar|cervical|upper|lower|total|partial|laparoscopic|open|diagnostic|screening)\s+){0,2})"
    rf"(?P<head>(?:{_PROC_WORDS})|[a-z]+(?:ectomy|otomy|ostomy|oplasty|oscopy|ography|ocentesis|orrhaphy|opexy))\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class RuleMatch:
    """A rule's entity: label, character span, normalised form and details."""

    label: str
    start: int
    end: int
    normalized: str
    details: tuple[tuple[str, str], ...] = ()
    name_end: int = -1  # medications: where the drug name ends (before the dose)


def _clean(s: str | None) -> str:
    return re.sub(r"\s+", " ", s or "").strip(" ,")


def medications(text: str) -> list[RuleMatch]:
    """Drug names followed by a dose, with optional form, route and frequency."""
    out = []
    for m in _MED.finditer(text):
        words = m.group("drug").split()
        start = m.start("drug")
        while words and words[0].lower() in _NOT_DRUG:
            start = text.index(words[1], start + len(words[0])) if len(words) > 1 else m.end("drug")
            words = words[1:]
        if not words:
            continue
        drug = " ".join(words)
        details = [("dose", _clean(m.group("dose")))]
        form, mods = m.group("form") or "", m.group("mods") or ""
        route = _ROUTE_RE.search(form) or _ROUTE_RE.search(mods)
        freq = _FREQ_RE.search(mods)
        if form:
            details.append(("form", _clean(form)))
        if route:
            details.append(("route", _clean(route.group(0))))
        if freq:
            details.append(("frequency", _clean(freq.group(0))))
        end = m.end("mods") if mods.strip() else (m.end("form") if form else m.end("dose"))
        out.append(RuleMatch("Medication", start, end, drug.lower(), tuple(details), m.end("drug")))
    return out


def _lab_name(raw: str) -> str:
    for pattern, name in LABS.items():
        if re.fullmatch(pattern, raw, re.IGNORECASE):
            return name
    return raw.lower()


def lab_values(text: str) -> list[RuleMatch]:
    """Lab test names followed by a value and (except INR) a unit."""
    out = []
    for m in _LAB.finditer(text):
        name = _lab_name(re.sub(r"\s+(?:level|levels|count|value)$", "", _clean(m.group("name"))))
        unit = _clean(m.group("unit"))
        if not unit and name not in _UNITLESS:
            continue
        if len(m.group("name")) <= 2 and not m.group("name").isupper():  # "k", "na", "cr" only as capitals
            continue
        end = m.end("unit") if m.group("unit") else m.end("value")
        details = [("name", name), ("value", _clean(m.group("value")).replace(" ", ""))]
        if unit:
            details.append(("unit", unit))
        out.append(RuleMatch("LabValue", m.start(), end, name, tuple(details)))
    return out


def vital_signs(text: str) -> list[RuleMatch]:
    """Blood pressure, heart and respiratory rate, temperature, SpO2, weight, height, BMI."""
    out = []
    for name, pattern in _VITALS:
        for m in pattern.finditer(text):
            unit = _clean(m.group("unit"))
            if _SHORT.match(m.group(0)) and not unit:
                continue
            end = m.end("unit") if m.group("unit") else m.end("value")
            details = [("name", name), ("value", re.sub(r"\s+", "", m.group("value")))]
            if unit:
                details.append(("unit", unit))
            out.append(RuleMatch("VitalSign", m.start(), end, name, tuple(details)))
    return out


def procedures(text: str) -> list[RuleMatch]:
    """Procedure names (a list of common procedures and surgical suffixes)."""
    out = []
    for m in _PROC.finditer(text):
        head = m.group("head")
        if head.lower() in {"ct", "mri", "ecg", "ekg", "pci", "cabg"} and not head.isupper():
            continue  # abbreviations only in capitals
        out.append(RuleMatch("Procedure", m.start(), m.end(), _clean(m.group(0)).lower()))
    return out


def find_rules(text: str) -> list[RuleMatch]:
    """All rule matches, earliest first; overlapping matches keep the longer one."""
    found = sorted(medications(text) + vital_signs(text) + lab_values(text) + procedures(text),
                   key=lambda m: (m.start, -(m.end - m.start)))
    out: list[RuleMatch] = []
    for m in found:
        if out and m.start < out[-1].end:
            if m.end - m.start > out[-1].end - out[-1].start:
                out[-1] = m
            continue
        out.append(m)
    return out


__all__ = ["LABS", "RULE_LABELS", "RuleMatch", "find_rules", "lab_values", "medications", "procedures", "vital_signs"]
