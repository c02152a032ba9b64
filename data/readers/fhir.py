"""FHIR R4: Bundles (``*.json``), single resources, and NDJSON exports (``*.ndjson``).

One file is parsed at a time and dropped before the next. Output, one :class:`Document` each:

- ``DocumentReference`` with an inline base64 note -> kind ``note``, the decoded text;
- ``Patient``, ``Condition``, ``Observation``, ``MedicationRequest``, ``Procedure``,
  ``Immunization``, ``AllergyIntolerance``, ``CarePlan``, ``DiagnosticReport``, ``ImagingStudy``,
  ``Encounter``, ``Goal`` -> short dated text (kind = the resource type lowercased), see
  :mod:`clinrag.data.readers._fhir_render`;
- everything else (Claim, ExplanationOfBenefit, Provenance, Organization, ...) is skipped.

Ids are ``fhir:<ResourceType>/<id>``; ``patient_id`` and ``encounter_id`` are the bare resource ids
of the Patient and Encounter (``urn:uuid:`` and ``Patient/<id>`` references are resolved).

>>> import json, tempfile, pathlib
>>> from clinrag.data.report import ErrorSink
>>> p = pathlib.Path(tempfile.mkdtemp()) / "b.json"
>>> _ = p.write_text(json.dumps({"resourceType": "Bundle", "entry": [
...     {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
...     {"resource": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "urn:uuid:p1"},
...       "code": {"text": "Hemoglobin A1c"}, "effectiveDateTime": "2019-01-01",
...       "valueQuantity": {"value": 6.2, "unit": "%"}}}]}))
>>> [(d.id, d.patient_id, d.text) for d in read_fhir(p, ErrorSink())][1]
('fhir:Observation/o1', 'p1', 'Observation: Hemoglobin A1c = 6.2 %. Date 2019-01-01.')
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clinrag.data.readers._common import parse_iso
from clinrag.data.readers._fhir_render import RENDERERS, FieldError, Rendered, concept
from clinrag.data.report import ErrorSink
from clinrag.data.schema import Document
from clinrag.errors import InputError

log = logging.getLogger(__name__)

SOURCE = "fhir"
NOTE_FIELD = "content[0].attachment.data"


class _Index:
    """Resolves references within one bundle: ``urn:uuid:<id>``, ``Type/<id>``, absolute URLs."""

    def __init__(self, entries: Iterable[tuple[str | None, dict[str, Any]]]) -> None:
        self.by_ref: dict[str, dict[str, Any]] = {}
        self.patients: list[str] = []
        for full_url, res in entries:
            rt, rid = res.get("resourceType"), res.get("id")
            if full_url:
                self.by_ref[full_url] = res
            if rt and rid:
                self.by_ref[f"{rt}/{rid}"] = res
            if rt == "Patient" and rid:
                self.patients.append(str(rid))

    def resolve(self, ref: Any) -> dict[str, Any] | None:
        if not isinstance(ref, str):
            return None
        hit = self.by_ref.get(ref)
        if hit is None and ref.count("/") > 1:
            hit = self.by_ref.get("/".join(ref.rsplit("/", 2)[-2:]))
        return hit

    def ref_id(self, ref: Any) -> str | None:
        """The bare id a reference (a dict with ``reference`` or a string) points to."""
        if isinstance(ref, dict):
            ref = ref.get("reference")
        if not isinstance(ref, str) or not ref:
            return None
        target = self.resolve(ref)
        if target is not None and target.get("id"):
            return str(target["id"])
        if ref.startswith("urn:uuid:"):
            return ref[len("urn:uuid:"):]
        if "?identifier=" in ref:
            return ref.rsplit("|", 1)[-1]
        return ref.rstrip("/").rsplit("/", 1)[-1]


def _subject(res: dict[str, Any], index: _Index) -> str | None:
    if res.get("resourceType") == "Patient":
        return str(res.get("id")) if res.get("id") else None
    for key in ("subject", "patient", "beneficiary"):
        if res.get(key):
            return index.ref_id(res[key])
    return index.patients[0] if len(index.patients) == 1 else None


def _encounter(res: dict[str, Any], index: _Index) -> str | None:
    if res.get("resourceType") == "Encounter":
        return str(res["id"]) if res.get("id") else None
    ctx = res.get("context")
    if isinstance(ctx, dict) and isinstance(ctx.get("encounter"), list) and ctx["encounter"]:
        return index.ref_id(ctx["encounter"][0])
    for ref in (res.get("encounter"), ctx):
        if isinstance(ref, dict) and ref.get("reference"):
            return index.ref_id(ref)
    return None


def _note(res: dict[str, Any]) -> Rendered:
    """Decode the inline base64 note of a DocumentReference."""
    content = res.get("content")
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        raise FieldError("content", "missing (a DocumentReference needs content[0].attachment)")
    att = content[0].get("attachment")
    if not isinstance(att, dict):
        raise FieldError("content[0].attachment")
    data = att.get("data")
    if not isinstance(data, str):
        raise FieldError(NOTE_FIELD, "missing: only notes with inline base64 data are supported")
    ctype = str(att.get("contentType") or "text/plain")
    if not ctype.startswith("text/"):
        raise FieldError("content[0].attachment.contentType", f"{ctype!r} is not a text note")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FieldError(NOTE_FIELD, f"not valid base64 ({exc})") from None
    charset = ctype.partition("charset=")[2].split(";")[0].strip() or "utf-8"
    try:
        text = raw.decode(charset)
    except LookupError:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise FieldError(NOTE_FIELD, f"decoded note is not valid {charset} (byte {exc.start})") from None
    ctx: dict[str, Any] = res["context"] if isinstance(res.get("context"), dict) else {}
    try:
        when = parse_iso(res.get("date"))
    except ValueError as exc:
        raise FieldError("date", str(exc)) from None
    if when is None:
        try:
            period = ctx.get("period")
            when = parse_iso(period.get("start") if isinstance(period, dict) else None)
        except ValueError as exc:
            raise FieldError("context.period.start", str(exc)) from None
    dtype = res.get("type")
    title = (dtype.get("text") if isinstance(dtype, dict) else None) or concept(dtype)[0] or "Clinical note"
    _, system, code = concept(dtype)
    meta = {k: v for k, v in {"code": code, "system": system, "status": res.get("status"),
                              "doc_status": res.get("docStatus"), "content_type": ctype}.items() if v}
    return Rendered(text, str(title), when, meta)


def document_from_resource(res: dict[str, Any], index: _Index, path: Path, record: str) -> Document | None:
    """Render one resource as a :class:`Document`; None for resource types that are skipped."""
    rt = res.get("resourceType")
    if rt != "DocumentReference" and rt not in RENDERERS:
        return None
    rid = res.get("id")
    if not isinstance(rid, str | int) or rid == "":
        raise InputError("missing resource id", path=str(path), record=record, field="id")
    try:
        out = _note(res) if rt == "DocumentReference" else RENDERERS[rt](res, index.resolve)
    except FieldError as exc:
        raise InputError(exc.message, path=str(path), record=f"resource {rt}/{rid}", field=exc.field) from None
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise InputError(f"malformed resource ({type(exc).__name__}: {exc})", path=str(path),
                         record=f"resource {rt}/{rid}") from None
    meta = {"resource_type": rt, "fhir_id": str(rid), **out.metadata}
    return Document(id=f"fhir:{rt}/{rid}", text=out.text, title=out.title, source=SOURCE,
                    kind="note" if rt == "DocumentReference" else str(rt).lower(),
                    patient_id=_subject(res, index), timestamp=out.timestamp,
                    encounter_id=_encounter(res, index), metadata=meta)


def _load_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (byte {exc.start})", path=str(path)) from None
    del raw
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string")
        hint = " (the file looks truncated)" if truncated else ""
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}{hint}: {exc.msg}",
                         path=str(path)) from None


def _read_resources(items: Iterable[tuple[str, dict[str, Any]]], index: _Index, path: Path,
                    sink: ErrorSink) -> Iterator[Document]:
    for record, res in items:
        try:
            doc = document_from_resource(res, index, path, record)
        except InputError as exc:
            sink.handle(exc)
            continue
        if doc is not None:
            yield doc


def _read_ndjson(path: Path, sink: ErrorSink) -> Iterator[Document]:
    index = _Index(())
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                res = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                sink.handle(InputError(f"invalid JSON line ({exc})", path=str(path), record=line_no))
                continue
            if not isinstance(res, dict) or "resourceType" not in res:
                sink.handle(InputError("not a FHIR resource", path=str(path), record=line_no, field="resourceType"))
                continue
            yield from _read_resources([(f"line {line_no}", res)], index, path, sink)


def read_fhir(path: Path, sink: ErrorSink) -> Iterator[Document]:
    """Yield the Documents of one FHIR file (a Bundle, a single resource, or NDJSON)."""
    path = Path(path)
    if path.suffix.lower() == ".ndjson":
        yield from _read_ndjson(path, sink)
        return
    try:
        data = _load_json(path)
    except InputError as exc:
        sink.handle(exc)
        return
    if not isinstance(data, dict) or "resourceType" not in data:
        sink.handle(InputError("not a FHIR resource or Bundle (no resourceType)", path=str(path),
                               field="resourceType"))
        return
    if data["resourceType"] != "Bundle":
        items: list[tuple[str | None, dict[str, Any]]] = [(None, data)]
    else:
        entries = data.get("entry") or []
        if not isinstance(entries, list):
            sink.handle(InputError("expected a list", path=str(path), field="entry"))
            return
        items = []
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                sink.handle(InputError("no resource with a resourceType", path=str(path), record=f"entry {i}",
                                       field="resource"))
                continue
            items.append((entry.get("fullUrl"), res))
    del data
    index = _Index(items)
    labelled = ((f"resource {r.get('resourceType')}/{r.get('id', '?')}", r) for _, r in items)
    yield from _read_resources(labelled, index, path, sink)
