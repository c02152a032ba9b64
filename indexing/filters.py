"""Search filters, compiled to LanceDB SQL so they are pushed down to the store.

Top-level record fields (patient, encounter, source, section, kind, modality,
document ids) are columns; any other metadata field is matched through the
``meta_kv`` list column, which holds one lower-cased ``key=value`` string per
metadata value (a list value gives one entry per item).

>>> Filters(patient_id="p1", where={"mesh": ["Humans", "Adult"]}).to_sql()
"patient_id IN ('p1') AND array_has_any(meta_kv, ['mesh=humans', 'mesh=adult'])"
>>> Filters().to_sql() is None
True
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinrag.errors import FilterError

#: fields stored as their own columns (``where`` keys with these names use them)
COLUMNS = ("patient_id", "encounter_id", "source", "section", "kind", "doc_id", "modality")
_DURATION = re.compile(r"^(\d+)\s*([dwmy])$")


def meta_key_values(metadata: Mapping[str, Any]) -> list[str]:
    """Flatten metadata into the ``key=value`` strings stored in ``meta_kv``.

    >>> meta_key_values({"Year": 2019, "mesh": ["Humans", "Aged"], "open": True, "x": None})
    ['year=2019', 'mesh=humans', 'mesh=aged', 'open=true']
    """
    out: list[str] = []
    for key, value in metadata.items():
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        for v in values:
            if v is None or isinstance(v, dict):
                continue
            out.append(f"{_norm(key)}={_norm(v)}")
    return out


def _norm(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def parse_time(value: str | dt.date | dt.datetime | None, *, field_name: str = "since",
               now: dt.datetime | None = None) -> dt.datetime | None:
    """Parse an ISO date/datetime, or a relative duration (``6m``, ``2y``, ``10d``, ``3w``) before now.

    >>> parse_time("2019-03-01")
    datetime.datetime(2019, 3, 1, 0, 0)
    >>> parse_time("1y", now=dt.datetime(2020, 5, 1))
    datetime.datetime(2019, 5, 1, 0, 0)
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    text = str(value).strip()
    m = _DURATION.match(text.lower())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        ref = (now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).replace(
            hour=0, minute=0, second=0, microsecond=0)
        if unit in "dw":
            return ref - dt.timedelta(days=n * (7 if unit == "w" else 1))
        months = n * (12 if unit == "y" else 1)
        year, month = divmod(ref.year * 12 + ref.month - 1 - months, 12)
        day = min(ref.day, calendar.monthrange(year, month + 1)[1])
        return ref.replace(year=year, month=month + 1, day=day)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(
            f"--{field_name.replace('_', '-')}: cannot read {text!r} as a date; use YYYY-MM-DD, "
            "an ISO datetime, or a duration such as 6m, 2y, 30d"
        ) from None
    return parse_time(parsed)


@dataclass(frozen=True)
class Filters:
    """Restrictions on what a search may return. All given conditions must hold (AND).

    ``where`` maps a field to a value or a list of accepted values (membership).

    Entities (indexes built with NER; chunks only): ``entity`` keeps chunks mentioning any of
    these terms (normalised; a word of a longer entity matches, so ``metformin`` finds
    ``metformin hydrochloride``), ``label`` chunks with an entity of any of these labels, and
    ``exclude_negated`` counts only entities that are not negated ("no pneumonia" does not match).

    >>> Filters(entity="Metformin", exclude_negated=True).to_sql()
    "array_has_any(entity_keys, ['k+:metformin'])"
    """

    patient_id: str | Sequence[str] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    source: str | Sequence[str] | None = None
    section: str | Sequence[str] | None = None
    kind: str | Sequence[str] | None = None
    modality: str | Sequence[str] | None = None
    doc_ids: Sequence[str] | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    entity: str | Sequence[str] | None = None
    label: str | Sequence[str] | None = None
    exclude_negated: bool = False

    @classmethod
    def coerce(cls, value: Filters | Mapping[str, Any] | None) -> Filters:
        """Accept a :class:`Filters`, a plain dict of the same fields, or None."""
        if value is None:
            return cls()
        if isinstance(value, Filters):
            return value
        known = set(cls.__dataclass_fields__)
        data = dict(value)
        extra = {k: data.pop(k) for k in list(data) if k not in known}
        where = dict(data.pop("where", {}) or {})
        where.update(extra)
        for key in ("since", "until"):
            if key in data:
                data[key] = parse_time(data[key], field_name=key)
        return cls(**data, where=where)

    def is_empty(self) -> bool:
        return self.to_sql() is None

    @property
    def uses_entities(self) -> bool:
        """Whether the filter needs the entity columns of an index built with NER."""
        return bool(_as_list(self.entity) or _as_list(self.label) or self.exclude_negated)

    def _entity_sql(self) -> list[str]:
        from clinrag.ner.schema import normalize

        plus = "+" if self.exclude_negated else ""
        terms, labels = _as_list(self.entity), _as_list(self.label)
        if self.exclude_negated and not (terms or labels):
            raise FilterError("--exclude-negated qualifies --entity or --label: give one of them too")
        parts = []
        if terms:
            keys = ", ".join(_quote(f"k{plus}:{normalize(str(t))}") for t in terms)
            parts.append(f"array_has_any(entity_keys, [{keys}])")
        if labels:
            keys = ", ".join(_quote(f"l{plus}:{str(v).strip().lower()}") for v in labels)
            parts.append(f"array_has_any(entity_keys, [{keys}])")
        return parts

    def to_sql(self, *, table: str = "chunks") -> str | None:
        """The SQL ``WHERE`` clause for ``table`` (``chunks``, ``documents`` or ``images``)."""
        parts: list[str] = []
        columns = {
            "patient_id": self.patient_id, "source": self.source, "section": self.section,
            "kind": self.kind, "modality": self.modality, "doc_id": self.doc_ids,
        }
        for key, value in self.where.items():
            if key in COLUMNS:
                columns[key] = _as_list(columns.get(key)) + _as_list(value)
        for column, value in columns.items():
            values = [str(v) for v in _as_list(value)]
            if not values:
                continue
            if column == "modality":
                parts.append(f"array_has_any(meta_kv, [{', '.join(_quote('modality=' + _norm(v)) for v in values)}])")
                continue
            if column == "section" and table != "chunks":
                continue
            if column == "doc_id" and table == "images":
                column = "image_id"
            if column in ("source", "section", "kind"):  # case-insensitive
                parts.append(f"lower({column}) IN ({', '.join(_quote(_norm(v)) for v in values)})")
            else:
                parts.append(f"{column} IN ({', '.join(_quote(v) for v in values)})")
        if self.since is not None:
            parts.append(f"timestamp >= {_ts(self.since)}")
        if self.until is not None:
            parts.append(f"timestamp <= {_ts(self.until)}")
        if self.since and self.until and self.since > self.until:
            raise FilterError(f"--since ({self.since:%Y-%m-%d}) is after --until ({self.until:%Y-%m-%d})")
        for key, value in self.where.items():
            if key in COLUMNS:
                continue
            if not re.fullmatch(r"[\w.\-:]+", key):
                raise FilterError(f"bad metadata field name {key!r}: use letters, digits, '_', '.', '-'")
            values = _as_list(value)
            if not values:
                continue
            kv = ", ".join(_quote(f"{_norm(key)}={_norm(v)}") for v in values)
            parts.append(f"array_has_any(meta_kv, [{kv}])")
        if table == "chunks" and self.uses_entities:
            parts += self._entity_sql()
        return " AND ".join(parts) if parts else None


def _ts(value: dt.datetime) -> str:
    return f"timestamp '{value:%Y-%m-%d %H:%M:%S}'"


def parse_where(items: Sequence[str]) -> dict[str, list[str]]:
    """Parse CLI ``--where field=value`` items; repeating a field means membership.

    >>> parse_where(["source=pubmedqa", "mesh=Humans", "mesh=Aged"])
    {'source': ['pubmedqa'], 'mesh': ['Humans', 'Aged']}
    """
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FilterError(f"--where {item!r}: expected FIELD=VALUE, e.g. --where source=pubmedqa")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


__all__ = ["COLUMNS", "Filters", "meta_key_values", "parse_time", "parse_where"]
