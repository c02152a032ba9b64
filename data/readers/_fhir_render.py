"""Render structured FHIR R4 resources as short, dated textual evidence.

Every renderer takes a resource (a dict) and a ``resolve`` function (reference -> resource in the
same bundle, or None) and returns a :class:`Rendered`, or raises :class:`FieldError` naming the
missing or malformed field.

>>> r = {"resourceType": "Condition", "id": "c1", "onsetDateTime": "2010-03-01",
...      "abatementDateTime": "2012-05-02", "clinicalStatus": {"coding": [{"code": "resolved"}]},
...      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003",
...                           "display": "Hypertension"}]}}
>>> RENDERERS["Condition"](r, lambda ref: None).text
'Condition: Hypertension (SNOMED 38341003). Onset 2010-03-01. Resolved 2012-05-02. Status: resolved.'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clinrag.data.readers._common import iso_date, parse_iso

Resolve = Callable[[Any], "dict[str, Any] | None"]

SYSTEMS = {
    "http://snomed.info/sct": "SNOMED", "http://loinc.org": "LOINC", "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm", "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM", "http://hl7.org/fhir/sid/icd-9-cm": "ICD-9-CM",
    "http://unitsofmeasure.org": "UCUM", "http://dicom.nema.org/resources/ontology/DCM": "DICOM",
}


class FieldError(Exception):
    """A required field is missing or malformed."""

    def __init__(self, field: str, message: str = "missing") -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Rendered:
    text: str
    title: str
    timestamp: dt.datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)


def system_name(system: str | None) -> str:
    """A short name for a code system URL ("SNOMED", "LOINC", ...)."""
    if not system:
        return ""
    return SYSTEMS.get(system) or system.rstrip("/").rsplit("/", 1)[-1]


def concept(cc: Any) -> tuple[str, str, str]:
    """(label, system short name, code) of a CodeableConcept (or a Coding)."""
    if not isinstance(cc, dict):
        return "", "", ""
    coding = cc.get("coding")
    codings: list[Any] = coding if isinstance(coding, list) else [cc] if "code" in cc else []
    first = next((c for c in codings if isinstance(c, dict)), {})
    label = cc.get("text") or first.get("display") or first.get("code") or ""
    return str(label), system_name(first.get("system")), str(first.get("code") or "")


def required_concept(r: dict[str, Any], key: str) -> tuple[str, str, str]:
    label, system, code = concept(r.get(key))
    if not label:
        raise FieldError(key, "missing" if key not in r else "has no text, display or code")
    return label, system, code


def date_of(r: dict[str, Any], key: str) -> dt.datetime | None:
    value = r.get(key)
    if isinstance(value, dict):  # a Period
        value = value.get("start")
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise FieldError(key, str(exc)) from None


def status_of(r: dict[str, Any], key: str = "status") -> str:
    value = r.get(key)
    return concept(value)[0] if isinstance(value, dict) else str(value or "")


def fmt_number(v: Any) -> str:
    """Numbers as people write them: ``175.98241`` -> ``175.98``, ``0.00123`` -> ``0.00123``."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) >= 1 else f"{v:.3g}"


def value_of(r: dict[str, Any]) -> tuple[str, Any, str]:
    """(rendered value, raw value, unit) of an Observation or component ``value[x]``."""
    if isinstance(q := r.get("valueQuantity"), dict):
        unit = str(q.get("unit") or q.get("code") or "")
        return f"{fmt_number(q.get('value'))} {unit}".strip(), q.get("value"), unit
    if "valueCodeableConcept" in r:
        label = concept(r["valueCodeableConcept"])[0]
        return label, label, ""
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime", "valueTime"):
        if key in r:
            return fmt_number(r[key]), r[key], ""
    if isinstance(rng := r.get("valueRange"), dict):
        lo, hi = (rng.get(k) or {} for k in ("low", "high"))
        return f"{fmt_number(lo.get('value'))}-{fmt_number(hi.get('value'))} {lo.get('unit', '')}".strip(), None, ""
    if "dataAbsentReason" in r:
        return f"not available ({concept(r['dataAbsentReason'])[0]})", None, ""
    return "", None, ""


def _code_part(system: str, code: str) -> str:
    return f" ({system} {code})" if system and code else f" ({code})" if code else ""


def _meta(system: str, code: str, status: str, **more: Any) -> dict[str, Any]:
    meta = {"code": code or None, "system": system or None, "status": status or None, **more}
    return {k: v for k, v in meta.items() if v not in (None, "", [])}


def _categories(r: dict[str, Any]) -> list[str]:
    cats = r.get("category")
    cats = cats if isinstance(cats, list) else [cats] if cats else []
    return [c if isinstance(c, str) else concept(c)[0] for c in cats if c]


def _refs_text(refs: Any, resolve: Resolve) -> list[str]:
    """Labels of referenced resources: the target's code text when it is in the bundle, else display."""
    out = []
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and "reference" not in ref and ("coding" in ref or "text" in ref):
            out.append(concept(ref)[0])
            continue
        target = resolve(ref.get("reference")) if isinstance(ref, dict) else None
        label = concept((target or {}).get("code"))[0] if target else ""
        label = label or (ref.get("display") if isinstance(ref, dict) else "") or ""
        if label:
            out.append(str(label))
    return out


def _sentences(*parts: Any) -> str:
    return " ".join(p if p.endswith(".") else p + "." for p in parts if p)


def condition(r: dict[str, Any], resolve: Resolve) -> Rendered:
    name, system, code = required_concept(r, "code")
    onset, abatement = date_of(r, "onsetDateTime") or date_of(r, "onsetPeriod"), date_of(r, "abatementDateTime")
    recorded = date_of(r, "recordedDate")
    status = status_of(r, "clinicalStatus")
    text = _sentences(f"Condition: {name}{_code_part(system, code)}", onset and f"Onset {iso_date(onset)}",
                      abatement and f"Resolved {iso_date(abatement)}",
                      not onset and recorded and f"Recorded {iso_date(recorded)}", status and f"Status: {status}")
    meta = _meta(system, code, status, onset=onset and onset.isoformat(),
                 abatement=abatement and abatement.isoformat(), category=_categories(r),
                 verification=status_of(r, "verificationStatus"))
    return Rendered(text, name, onset or recorded, meta)


def observation(r: dict[str, Any], resolve: Resolve) -> Rendered:
    name, system, code = required_concept(r, "code")
    when = date_of(r, "effectiveDateTime") or date_of(r, "effectivePeriod") or date_of(r, "issued")
    shown, raw, unit = value_of(r)
    comps = []
    for comp in r.get("component") or []:
        if isinstance(comp, dict):
            c_shown = value_of(comp)[0]
            comps.append(f"{concept(comp.get('code'))[0]} = {c_shown}" if c_shown else concept(comp.get("code"))[0])
    head = f"Observation: {name}" + (f" = {shown}" if shown else "") + (": " + "; ".join(comps) if comps else "")
    cats = _categories(r)
    parts = [head, when and f"Date {iso_date(when)}", cats and "Category: " + ", ".join(cats)]
    if interp := _refs_text(r.get("interpretation"), resolve):
        parts.append("Interpretation: " + ", ".join(interp))
    value = raw if isinstance(raw, str | int | float) else None
    meta = _meta(system, code, status_of(r), value=value, unit=unit or None, category=cats, components=comps)
    return Rendered(_sentences(*parts), name, when, meta)


def _dosage(r: dict[str, Any]) -> str:
    out = []
    for d in r.get("dosageInstruction") or []:
        if not isinstance(d, dict):
            continue
        if d.get("text"):
            out.append(str(d["text"]))
            continue
        bits = []
        for dr in d.get("doseAndRate") or []:
            if isinstance(q := (dr or {}).get("doseQuantity"), dict):
                bits.append(f"{fmt_number(q.get('value'))} {q.get('unit', '')}".strip())
        rep = ((d.get("timing") or {}).get("repeat") or {}) if isinstance(d.get("timing"), dict) else {}
        if rep.get("frequency") and rep.get("period"):
            bits.append(f"{fmt_number(rep['frequency'])} times per {fmt_number(rep['period'])} "
                        f"{rep.get('periodUnit', '')}".strip())
        if d.get("asNeededBoolean"):
            bits.append("as needed")
        if bits:
            out.append(", ".join(bits))
    return "; ".join(out)


def medication_request(r: dict[str, Any], resolve: Resolve) -> Rendered:
    if "medicationCodeableConcept" in r:
        name, system, code = required_concept(r, "medicationCodeableConcept")
    elif isinstance(ref := r.get("medicationReference"), dict):
        target = resolve(ref.get("reference")) or {}
        name, system, code = concept(target.get("code"))
        name = name or str(ref.get("display") or "")
    else:
        name = system = code = ""
    if not name:
        raise FieldError("medication[x]", "missing (medicationCodeableConcept or medicationReference)")
    when = date_of(r, "authoredOn")
    status = status_of(r)
    dosage = _dosage(r)
    reasons = _refs_text(r.get("reasonReference"), resolve) + _refs_text(r.get("reasonCode"), resolve)
    text = _sentences(f"Medication: {name}{_code_part(system, code)}", when and f"Prescribed {iso_date(when)}",
                      status and f"Status: {status}", dosage and f"Dosage: {dosage}",
                      reasons and "Reason: " + ", ".join(reasons))
    return Rendered(text, name, when, _meta(system, code, status, dosage=dosage, reason=reasons))


def procedure(r: dict[str, Any], resolve: Resolve) -> Rendered:
    name, system, code = required_concept(r, "code")
    when = date_of(r, "performedDateTime") or date_of(r, "performedPeriod")
    status = status_of(r)
    reasons = _refs_text(r.get("reasonReference"), resolve) + _refs_text(r.get("reasonCode"), resolve)
    text = _sentences(f"Procedure: {name}{_code_part(system, code)}", when and f"Performed {iso_date(when)}",
                      status and f"Status: {status}", reasons and "Reason: " + ", ".join(reasons))
    return Rendered(text, name, when, _meta(system, code, status, reason=reasons))


def immunization(r: dict[str, Any], resolve: Resolve) -> Rendered:
    name, system, code = required_concept(r, "vaccineCode")
    when = date_of(r, "occurrenceDateTime") or date_of(r, "recorded")
    status = status_of(r)
    text = _sentences(f"Immunization: {name}{_code_part(system, code)}", when and f"Given {iso_date(when)}",
                      status and f"Status: {status}")
    return Rendered(text, name, when, _meta(system, code, status))


def allergy(r: dict[str, Any], resolve: Resolve) -> Rendered:
    name, system, code = required_concept(r, "code")
    when = date_of(r, "onsetDateTime") or date_of(r, "recordedDate")
    status = status_of(r, "clinicalStatus")
    cats = _categories(r)
    reactions = [m for rx in r.get("reaction") or [] if isinstance(rx, dict)
                 for m in _refs_text(rx.get("manifestation"), resolve)]
    text = _sentences(f"Allergy: {name}{_code_part(system, code)}", r.get("type") and f"Type: {r['type']}",
                      cats and "Category: " + ", ".join(cats),
                      r.get("criticality") and f"Criticality: {r['criticality']}",
                      reactions and "Reaction: " + ", ".join(reactions), when and f"Recorded {iso_date(when)}",
                      status and f"Status: {status}")
    return Rendered(text, name, when, _meta(system, code, status, category=cats, reaction=reactions,
                                            criticality=r.get("criticality")))


def care_plan(r: dict[str, Any], resolve: Resolve) -> Rendered:
    cats = _categories(r)
    first = concept((r.get("category") or [{}])[0]) if isinstance(r.get("category"), list) else ("", "", "")
    name = cats[0] if cats else str(r.get("title") or r.get("description") or "Care plan")
    start, end = date_of(r, "period"), date_of(r.get("period") or {}, "end")
    status = status_of(r)
    acts = [concept(a["detail"].get("code"))[0] for a in r.get("activity") or []
            if isinstance(a, dict) and isinstance(a.get("detail"), dict)]
    acts = [a for a in acts if a]
    addresses = _refs_text(r.get("addresses"), resolve)
    text = _sentences(f"Care plan: {name}{_code_part(first[1], first[2])}", start and f"Started {iso_date(start)}",
                      end and f"Ended {iso_date(end)}", status and f"Status: {status}",
                      acts and "Activities: " + "; ".join(acts), addresses and "Addresses: " + ", ".join(addresses))
    return Rendered(text, name, start, _meta(first[1], first[2], status, activities=acts, addresses=addresses))


def diagnostic_report(r: dict[str, Any], resolve: Resolve) -> Rendered:
    name, system, code = required_concept(r, "code")
    when = date_of(r, "effectiveDateTime") or date_of(r, "effectivePeriod") or date_of(r, "issued")
    status = status_of(r)
    cats = _categories(r)
    results = []
    for ref in r.get("result") or []:
        target = resolve(ref.get("reference")) if isinstance(ref, dict) else None
        if target:
            label, shown = concept(target.get("code"))[0], value_of(target)[0]
            results.append(f"{label} = {shown}" if shown else label)
        elif isinstance(ref, dict) and ref.get("display"):
            results.append(str(ref["display"]))
    shown_cats = [c for c in cats if c != name]
    text = _sentences(f"Diagnostic report: {name}{_code_part(system, code)}", when and f"Date {iso_date(when)}",
                      shown_cats and "Category: " + ", ".join(shown_cats), status and f"Status: {status}",
                      results and "Results: " + "; ".join(results),
                      r.get("conclusion") and f"Conclusion: {r['conclusion']}")
    return Rendered(text, name, when, _meta(system, code, status, category=cats, results=results))


def imaging_study(r: dict[str, Any], resolve: Resolve) -> Rendered:
    when = date_of(r, "started")
    series = [s for s in r.get("series") or [] if isinstance(s, dict)]
    modalities = sorted({concept(s.get("modality"))[0] for s in series} - {""})
    sites = sorted({concept(s.get("bodySite"))[0] for s in series} - {""})
    name = " and ".join(modalities) or "Imaging study"
    if sites:
        name += " of " + ", ".join(sites)
    status = status_of(r)
    n_inst = r.get("numberOfInstances") or sum(len(s.get("instance") or []) for s in series)
    text = _sentences(f"Imaging study: {name}", when and f"Started {iso_date(when)}",
                      f"Series: {len(series)}, instances: {n_inst}", status and f"Status: {status}",
                      r.get("description") and str(r["description"]))
    return Rendered(text, name, when, _meta("", "", status, modality=modalities, body_site=sites))


def encounter(r: dict[str, Any], resolve: Resolve) -> Rendered:
    types = r.get("type") if isinstance(r.get("type"), list) else []
    name, system, code = concept(types[0]) if types else ("", "", "")
    cls = r.get("class")
    cls_code = str(cls.get("display") or cls.get("code") or "") if isinstance(cls, dict) else ""
    name = name or cls_code or "Encounter"
    start, end = date_of(r, "period"), date_of(r.get("period") or {}, "end")
    status = status_of(r)
    reasons = _refs_text(r.get("reasonCode"), resolve) + _refs_text(r.get("reasonReference"), resolve)
    when = iso_date(start) + (f" to {iso_date(end)}" if end and iso_date(end) != iso_date(start) else "")
    text = _sentences(f"Encounter: {name}{_code_part(system, code)}", cls_code and f"Class: {cls_code}",
                      when and f"Date {when}", reasons and "Reason: " + ", ".join(reasons),
                      status and f"Status: {status}")
    return Rendered(text, name, start, _meta(system, code, status, encounter_class=cls_code, reason=reasons))


def goal(r: dict[str, Any], resolve: Resolve) -> Rendered:
    name = required_concept(r, "description")[0]
    when = date_of(r, "startDate")
    status = str(r.get("lifecycleStatus") or "")
    achievement = status_of(r, "achievementStatus")
    text = _sentences(f"Goal: {name}", when and f"Started {iso_date(when)}", status and f"Status: {status}",
                      achievement and f"Achievement: {achievement}")
    return Rendered(text, name, when, _meta("", "", status, achievement=achievement))


def patient(r: dict[str, Any], resolve: Resolve) -> Rendered:
    names = [n for n in r.get("name") or [] if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    full = official.get("text") or " ".join([*map(str, official.get("given") or []), str(official.get("family", ""))])
    full = " ".join(full.split()) or "unnamed"
    birth = date_of(r, "birthDate")
    death = date_of(r, "deceasedDateTime")
    gender = str(r.get("gender") or "")
    text = _sentences(f"Patient: {full}", gender and f"Gender: {gender}", birth and f"Born {iso_date(birth)}",
                      death and f"Died {iso_date(death)}")
    meta = _meta("", "", "", gender=gender, birth_date=iso_date(birth), deceased=death and death.isoformat())
    return Rendered(text, full, birth, meta)


RENDERERS: dict[str, Callable[[dict[str, Any], Resolve], Rendered]] = {
    "Patient": patient, "Condition": condition, "Observation": observation,
    "MedicationRequest": medication_request, "Procedure": procedure, "Immunization": immunization,
    "AllergyIntolerance": allergy, "CarePlan": care_plan, "DiagnosticReport": diagnostic_report,
    "ImagingStudy": imaging_study, "Encounter": encounter, "Goal": goal,
}
