"""Patient memory: a compact per-patient summary built at index time, each line citing its records.

For every patient the memory holds active and resolved problems with onset, medications with
first and last prescription (and whether the last one was stopped), allergies, the last value and
trend of key labs and vitals, immunisations and the most recent encounters. It is computed from the
structured metadata the FHIR reader puts on rendered resources (``code``, ``value``, ``unit``,
``onset``, ``abatement``, ``status``, ``components``...), so any source with that metadata works.

The writer keeps it current: a commit recomputes only the patients whose records were added,
updated or deleted, and writes a new ``memory-<id>/memory.json`` named by the manifest (so it is
atomic with the rest of the commit).

>>> import datetime as dt
>>> rows = [
...   {"doc_id": "c1", "kind": "condition", "title": "Hypertension", "timestamp": dt.datetime(2010, 3, 1),
...    "meta": {"code": "38341003", "onset": "2010-03-01T00:00:00", "status": "active"}},
...   {"doc_id": "o1", "kind": "observation", "title": "Hemoglobin A1c", "timestamp": dt.datetime(2018, 1, 1),
...    "meta": {"code": "4548-4", "value": 6.1, "unit": "%"}},
...   {"doc_id": "o2", "kind": "observation", "title": "Hemoglobin A1c", "timestamp": dt.datetime(2019, 1, 1),
...    "meta": {"code": "4548-4", "value": 7.4, "unit": "%"}}]
>>> mem = summarize("p1", rows)
>>> mem.problems[0].text()
'Hypertension: active, since 2010-03-01 [c1]'
>>> mem.labs[0].text()
'Hemoglobin A1c: 7.4 % on 2019-01-01, rising (prev 6.1 on 2018-01-01) [o2, o1]'
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinrag.errors import IndexFormatError, PatientNotFoundError
from clinrag.indexing.manifest import atomic_write_text

if TYPE_CHECKING:
    from clinrag.indexing.store import LanceStore

MEMORY_FORMAT_VERSION = 1
MEMORY_FILE = "memory.json"
#: LOINC codes of labs and vitals always kept in the memory when present (others by frequency)
KEY_CODES = ("4548-4", "2339-0", "2345-7", "2160-0", "33914-3", "2093-3", "18262-6", "2085-9", "2571-8",
             "718-7", "6690-2", "777-3", "2947-0", "6298-4", "39156-5", "29463-7", "8302-2", "8867-4",
             "9279-1", "8310-5", "2708-6", "59408-5", "8480-6", "8462-4", "85354-9", "55284-4", "72514-3")
_INACTIVE = {"resolved", "inactive", "remission", "stopped", "completed", "cancelled", "entered-in-error"}
_COMPONENT = re.compile(r"^(.*?) = (-?\d+(?:\.\d+)?)\s*(.*)$")
MAX_LABS = 14
MAX_VITALS = 6
MAX_ENCOUNTERS = 5
MAX_IMMUNIZATIONS = 6


@dataclass(frozen=True)
class MemoryLine:
    """One fact of a patient's memory and the record ids it came from (``sources``)."""

    label: str
    status: str = ""
    start: str | None = None
    end: str | None = None
    value: str | None = None
    trend: str | None = None
    detail: str = ""
    sources: tuple[str, ...] = ()

    def text(self, cite: bool = True) -> str:
        """One line of plain text, e.g. ``Metformin: active, since 2015-03-01 [fhir:MedicationRequest/1]``."""
        if self.value:
            bits = [f"{self.value}" + (f" on {self.start}" if self.start else "")]
        else:
            bits = [self.status] if self.status else []
            if self.start and self.end:
                bits.append(f"{self.start} to {self.end}")
            elif self.start:
                bits.append(("since " if self.status == "active" else "on ") + self.start)
        bits += [b for b in (self.trend, self.detail) if b]
        out = f"{self.label}: " + ", ".join(bits) if bits else self.label
        return out + (f" [{', '.join(self.sources)}]" if cite and self.sources else "")


@dataclass(frozen=True)
class PatientMemory:
    """The summary of one patient's record (see the module docstring for what it holds)."""

    patient_id: str
    problems: tuple[MemoryLine, ...] = ()
    resolved: tuple[MemoryLine, ...] = ()
    medications: tuple[MemoryLine, ...] = ()
    allergies: tuple[MemoryLine, ...] = ()
    labs: tuple[MemoryLine, ...] = ()
    immunizations: tuple[MemoryLine, ...] = ()
    encounters: tuple[MemoryLine, ...] = ()
    n_records: int = 0
    first_date: str | None = None
    last_date: str | None = None

    def section_titles(self) -> dict[str, str]:
        return {"problems": "Active problems", "resolved": "Resolved problems", "medications": "Medications",
                "allergies": "Allergies", "labs": "Last labs and vitals", "immunizations": "Immunizations",
                "encounters": "Recent encounters"}

    def to_text(self, *, cite: bool = True, max_lines: int | None = None) -> str:
        """The memory as plain text, one section per paragraph (``max_lines`` per section)."""
        out = [f"Patient {self.patient_id}: {self.n_records} records"
               + (f" from {self.first_date} to {self.last_date}." if self.first_date else ".")]
        for name, title in self.section_titles().items():
            lines = getattr(self, name)[:max_lines] if max_lines else getattr(self, name)
            if lines:
                out.append(f"{title}: " + "; ".join(line.text(cite) for line in lines) + ".")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PatientMemory:
        def lines(name: str) -> tuple[MemoryLine, ...]:
            return tuple(MemoryLine(**{**item, "sources": tuple(item.get("sources", ()))})
                         for item in data.get(name, ()))

        return cls(patient_id=str(data["patient_id"]), problems=lines("problems"), resolved=lines("resolved"),
                   medications=lines("medications"), allergies=lines("allergies"), labs=lines("labs"),
                   immunizations=lines("immunizations"), encounters=lines("encounters"),
                   n_records=int(data.get("n_records", 0)), first_date=data.get("first_date"),
                   last_date=data.get("last_date"))


def _day(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, str) and value:
        return value[:10]
    return None


def _key(row: Mapping[str, Any]) -> str:
    meta = row["meta"]
    return str(meta.get("code") or row.get("title") or "").lower()


def _by_time(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: (r.get("timestamp") or dt.datetime.min, r["doc_id"]))


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}".rstrip("0").rstrip(".")


def _trend(last: float, prev: float) -> str:
    if prev == 0:
        return "stable" if last == 0 else "rising" if last > 0 else "falling"
    change = (last - prev) / abs(prev)
    return "rising" if change > 0.05 else "falling" if change < -0.05 else "stable"


def _problems(rows: list[Mapping[str, Any]]) -> tuple[list[MemoryLine], list[MemoryLine]]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[_key(r)].append(r)
    active, resolved = [], []
    for items in groups.values():
        items = _by_time(items)
        last = items[-1]
        onset = _day(items[0]["meta"].get("onset")) or _day(items[0].get("timestamp"))
        abated = _day(last["meta"].get("abatement"))
        status = str(last["meta"].get("status") or "").lower()
        is_active = not abated and status not in _INACTIVE
        n = f"{len(items)} episodes" if len(items) > 1 else ""
        ids = tuple(dict.fromkeys([items[0]["doc_id"], last["doc_id"]]))
        if is_active:
            active.append(MemoryLine(last["title"], "active", onset, None, detail=n, sources=ids))
        else:
            resolved.append(MemoryLine(last["title"], "resolved", onset, abated, detail=n, sources=ids))
    active.sort(key=lambda m: m.start or "")
    resolved.sort(key=lambda m: m.end or m.start or "", reverse=True)
    return active, resolved


def _medications(rows: list[Mapping[str, Any]]) -> list[MemoryLine]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[_key(r)].append(r)
    out = []
    for items in groups.values():
        items = _by_time(items)
        first, last = items[0], items[-1]
        status = str(last["meta"].get("status") or "").lower()
        stopped = status in _INACTIVE
        dosage = str(last["meta"].get("dosage") or "")
        detail = "; ".join(x for x in (dosage and f"dosage {dosage}",
                                       f"{len(items)} prescriptions" if len(items) > 1 else "") if x)
        out.append(MemoryLine(last["title"], "stopped" if stopped else (status or "active"),
                              _day(first.get("timestamp")), _day(last.get("timestamp")) if stopped else None,
                              detail=detail, sources=tuple(dict.fromkeys([first["doc_id"], last["doc_id"]]))))
    out.sort(key=lambda m: (m.status == "stopped", m.end or "", m.start or ""), reverse=False)
    return out


def _labs(rows: list[Mapping[str, Any]]) -> list[MemoryLine]:
    series: dict[str, list[tuple[dt.datetime, float, str, str, str]]] = defaultdict(list)
    code_of: dict[str, str] = {}
    vital: set[str] = set()
    for r in rows:
        ts = r.get("timestamp")
        if ts is None:
            continue
        meta = r["meta"]
        value = _num(meta.get("value"))
        if value is not None:
            key = str(meta.get("code") or r["title"])
            series[key].append((ts, value, str(meta.get("unit") or ""), r["doc_id"], r["title"]))
            code_of[key] = str(meta.get("code") or "")
            if any("vital" in str(c).lower() for c in meta.get("category") or []):
                vital.add(key)
        for comp in meta.get("components") or []:
            if m := _COMPONENT.match(str(comp)):
                key = m.group(1)
                series[key].append((ts, float(m.group(2)), m.group(3), r["doc_id"], m.group(1)))
                vital.add(key)

    def rank(key: str) -> tuple[int, int]:
        code = code_of.get(key, "")
        return (KEY_CODES.index(code) if code in KEY_CODES else len(KEY_CODES), -len(series[key]))
    out = []
    keys = sorted(series, key=rank)
    picked = [k for k in keys if k in vital][:MAX_VITALS]
    picked += [k for k in keys if k not in vital][:MAX_LABS - len(picked)]
    for key in picked:
        pts = sorted(series[key], key=lambda p: (p[0], p[3]))
        ts, value, unit, doc, title = pts[-1]
        shown = f"{_fmt(value)} {unit}".strip()
        trend, ids = None, [doc]
        if len(pts) > 1:
            pts_prev = pts[-2]
            trend = f"{_trend(value, pts_prev[1])} (prev {_fmt(pts_prev[1])} on {_day(pts_prev[0])})"
            ids.append(pts_prev[3])
        out.append(MemoryLine(title, "", _day(ts), None, shown, trend, f"{len(pts)} values" if len(pts) > 2 else "",
                              tuple(dict.fromkeys(ids))))
    return out


def _simple(rows: list[Mapping[str, Any]], limit: int, detail_key: str | None = None,
            group: bool = False) -> list[MemoryLine]:
    rows = _by_time(rows)
    if group:
        last: dict[str, Mapping[str, Any]] = {}
        count: dict[str, int] = defaultdict(int)
        for r in rows:
            last[_key(r)] = r
            count[_key(r)] += 1
        rows = _by_time(last.values())
    out = []
    for r in reversed(rows[-limit:] if limit else rows):
        detail = r["meta"].get(detail_key) if detail_key else None
        if isinstance(detail, list):
            detail = ", ".join(map(str, detail))
        if group and count[_key(r)] > 1:
            detail = f"{count[_key(r)]} doses, last"
        out.append(MemoryLine(r["title"], "", _day(r.get("timestamp")), None,
                              detail=str(detail or ""), sources=(r["doc_id"],)))
    return out


def _allergies(rows: list[Mapping[str, Any]]) -> list[MemoryLine]:
    out = []
    for r in _by_time(rows):
        meta = r["meta"]
        reaction = ", ".join(map(str, meta.get("reaction") or []))
        detail = "; ".join(x for x in (reaction and f"reaction {reaction}",
                                       meta.get("criticality") and f"criticality {meta['criticality']}") if x)
        out.append(MemoryLine(r["title"], str(meta.get("status") or ""), _day(r.get("timestamp")), None,
                              detail=detail, sources=(r["doc_id"],)))
    return out


def summarize(patient_id: str, rows: Iterable[Mapping[str, Any]]) -> PatientMemory:
    """Build a patient's memory from their document rows (``doc_id``, ``kind``, ``title``,
    ``timestamp``, ``meta``: the metadata dict)."""
    by_kind: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    dates: list[dt.datetime] = []
    n = 0
    for r in rows:
        n += 1
        by_kind[str(r.get("kind") or "")].append(r)
        if r.get("timestamp") is not None:
            dates.append(r["timestamp"])
    active, resolved = _problems(by_kind["condition"])
    return PatientMemory(
        patient_id=patient_id, problems=tuple(active), resolved=tuple(resolved),
        medications=tuple(_medications(by_kind["medicationrequest"])),
        allergies=tuple(_allergies(by_kind["allergyintolerance"])),
        labs=tuple(_labs(by_kind["observation"])),
        immunizations=tuple(_simple(by_kind["immunization"], MAX_IMMUNIZATIONS, group=True)),
        encounters=tuple(_simple(by_kind["encounter"], MAX_ENCOUNTERS, "reason")),
        n_records=n, first_date=_day(min(dates)) if dates else None, last_date=_day(max(dates)) if dates else None)


def rows_from_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group LanceDB document rows (with ``meta_json``) by patient, ready for :func:`summarize`."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("patient_id"):
            out[r["patient_id"]].append({**r, "meta": json.loads(r.get("meta_json") or "{}")})
    return out


MEMORY_COLUMNS = ("doc_id", "kind", "title", "timestamp", "patient_id", "meta_json")


def load_memory(root: Path, memory_dir: str | None) -> dict[str, dict[str, Any]]:
    """The stored memories of an index (``{patient_id: dict}``); empty when it has none."""
    if not memory_dir:
        return {}
    path = Path(root) / memory_dir / MEMORY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path} cannot be read ({exc}); rebuild the index with --overwrite") from exc
    if data.get("format") != "clinrag-patient-memory" or data.get("format_version") != MEMORY_FORMAT_VERSION:
        raise IndexFormatError(f"{path} is not patient memory of format version {MEMORY_FORMAT_VERSION}; "
                               "rebuild the index with this clinrag (`clinrag index ... --overwrite`)")
    return dict(data["patients"])


def read_patient_memory(root: Path, memory_dir: str | None, store: LanceStore, patient_id: str, *,
                        stored: Mapping[str, Mapping[str, Any]] | None = None) -> PatientMemory:
    """A patient's memory: the stored one (``stored``, as :func:`load_memory` returns, is read from
    ``memory_dir`` when not given), else summarised from the patient's document rows in ``store``.
    Raises PatientNotFoundError for a patient with no records."""
    from clinrag.indexing.store import sql_in

    if stored is None and memory_dir:
        stored = load_memory(root, memory_dir)
    if stored is not None and patient_id in stored:
        return PatientMemory.from_dict(stored[patient_id])
    rows = rows_from_table(store.scan("documents", list(MEMORY_COLUMNS), sql_in("patient_id", [patient_id]))
                           .to_pylist()).get(patient_id)
    if not rows:
        raise PatientNotFoundError(f"{root} has no records of patient {patient_id!r}; "
                                   "list patients with `clinrag search ... --json` or check the id")
    return summarize(patient_id, rows)


def save_memory(root: Path, patients: Mapping[str, Mapping[str, Any]]) -> str:
    """Write a new ``memory-<id>/memory.json`` under ``root`` (temp file + rename); returns its name."""
    name = f"memory-{uuid.uuid4().hex[:12]}"
    target = Path(root) / name
    target.mkdir()
    try:
        atomic_write_text(target / MEMORY_FILE, json.dumps(
            {"format": "clinrag-patient-memory", "format_version": MEMORY_FORMAT_VERSION,
             "patients": {k: patients[k] for k in sorted(patients)}}, ensure_ascii=False, default=str))
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return name


def update_memory(old: Mapping[str, Mapping[str, Any]], touched: Sequence[str],
                  rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``old`` with the ``touched`` patients recomputed from ``rows`` (their current document rows);
    a touched patient with no rows left is dropped."""
    new = {k: dict(v) for k, v in old.items() if k not in set(touched)}
    for pid, prow in rows_from_table(rows).items():
        new[pid] = summarize(pid, prow).to_dict()
    return new


__all__ = ["MEMORY_COLUMNS", "MemoryLine", "PatientMemory", "load_memory", "read_patient_memory", "rows_from_table",
           "save_memory", "summarize", "update_memory"]
