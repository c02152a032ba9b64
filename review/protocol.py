"""The review protocol: a YAML file validated by a pydantic model (schema: ``docs/review-protocol.schema.json``).

A protocol names review questions (PICO fields and several query formulations each), the
inclusion and exclusion criteria applied to what is retrieved (as flags with reasons, never
silent drops) and how deep to retrieve.

>>> p = ReviewProtocol.model_validate({"name": "demo", "questions": [
...     {"id": "q1", "pico": {"population": "adults with type 2 diabetes", "intervention": "metformin"},
...      "formulations": ["metformin type 2 diabetes", "biguanide glycaemic control"]}]})
>>> p.questions[0].queries()
['metformin type 2 diabetes', 'biguanide glycaemic control']
>>> p.depth, p.fusion
(100, 'rrf')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clinrag.errors import InputError, MissingDependencyError

if TYPE_CHECKING:
    from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
else:
    try:
        from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError("pydantic", "review", "review protocols") from exc

PROTOCOL_VERSION = 1
FUSION_METHODS = ("rrf", "combsum", "combmnz", "max", "wsum")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pico(_Strict):
    """Population, intervention, comparator and outcome of a question (free text, all optional)."""

    population: str | None = None
    intervention: str | None = None
    comparator: str | None = None
    outcome: str | None = None

    def text(self) -> str:
        """The filled fields joined by spaces (a formulation of last resort)."""
        return " ".join(v for v in (self.population, self.intervention, self.comparator, self.outcome) if v)


class YearRange(_Strict):
    """Publication years (or dates) admitted, both ends inclusive and optional."""

    from_: int | dt.date | None = Field(default=None, alias="from")
    to: int | dt.date | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _ordered(self) -> YearRange:
        if self.from_ is None and self.to is None:
            raise ValueError("give 'from', 'to' or both")
        lo, hi = _as_date(self.from_, start=True), _as_date(self.to, start=False)
        if lo and hi and lo > hi:
            raise ValueError(f"'from' ({self.from_}) is after 'to' ({self.to})")
        return self

    def bounds(self) -> tuple[dt.date | None, dt.date | None]:
        return _as_date(self.from_, start=True), _as_date(self.to, start=False)


def _as_date(v: int | dt.date | None, *, start: bool) -> dt.date | None:
    if v is None or isinstance(v, dt.date):
        return v
    return dt.date(v, 1, 1) if start else dt.date(v, 12, 31)


class Criterion(_Strict):
    """One inclusion or exclusion criterion. Exactly one of ``terms``, ``entities``, ``years``,
    ``publication_types`` or ``field`` (with ``values``) says what it tests.

    - ``terms``: words or phrases in the title or text (case-insensitive, whole words);
    - ``entities``: recognised entities (when chunks carry them; otherwise matched as terms,
      and the flag says so), optionally of one ``label`` such as ``Disease``;
    - ``years``: the record's date or ``year`` metadata within a range;
    - ``publication_types``: the ``publication_type`` metadata field is one of these;
    - ``field`` + ``values``: any metadata field equals one of ``values`` (case-insensitive).

    ``match`` says whether ``any`` (default) or ``all`` of the terms/entities/values must match.
    """

    name: str | None = None
    terms: list[str] | None = None
    entities: list[str] | None = None
    label: str | None = None
    years: YearRange | None = None
    publication_types: list[str] | None = None
    field: str | None = None
    values: list[str | int | float | bool] | None = None
    match: Literal["any", "all"] = "any"

    @model_validator(mode="after")
    def _one_kind(self) -> Criterion:
        kinds = [k for k in ("terms", "entities", "years", "publication_types", "field") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of terms, entities, years, publication_types or field "
                             f"(got {kinds or 'none'})")
        if self.field and not self.values:
            raise ValueError("'field' needs 'values' (the admitted values of that metadata field)")
        if self.values and not self.field:
            raise ValueError("'values' needs 'field' (the metadata field to test)")
        if self.label and not self.entities:
            raise ValueError("'label' only applies to 'entities'")
        for key in ("terms", "entities", "publication_types"):
            items = getattr(self, key)
            if items is not None and not [t for t in items if str(t).strip()]:
                raise ValueError(f"'{key}' must hold at least one non-empty item")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("terms", "entities", "years", "publication_types", "field") if getattr(self, k))

    @property
    def label_text(self) -> str:
        """The criterion's name, or a short description when it has none."""
        if self.name:
            return self.name
        if self.years is not None:
            return f"years {self.years.from_ or ''}-{self.years.to or ''}"
        if self.field:
            return f"{self.field} in {self.values}"
        items = self.terms or self.entities or self.publication_types or []
        return f"{self.kind}: {', '.join(map(str, items[:3]))}" + ("..." if len(items) > 3 else "")


class Criteria(_Strict):
    """Inclusion criteria (a record should meet all) and exclusion criteria (a record meeting any is flagged)."""

    include: list[Criterion] = Field(default_factory=list)
    exclude: list[Criterion] = Field(default_factory=list)


class Question(_Strict):
    """A review question: PICO fields, query formulations, its own criteria and optional depth."""

    id: str
    title: str | None = None
    pico: Pico = Field(default_factory=Pico)
    formulations: list[str] = Field(default_factory=list)
    include: list[Criterion] = Field(default_factory=list)
    exclude: list[Criterion] = Field(default_factory=list)
    depth: int | None = Field(default=None, ge=1, le=100_000)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-' (it names the output folder)")
        return v

    @field_validator("formulations")
    @classmethod
    def _formulations(cls, v: list[str]) -> list[str]:
        for i, f in enumerate(v):
            if not f.strip():
                raise ValueError(f"formulation {i} is empty")
        if len(set(v)) != len(v):
            raise ValueError("formulations repeat; each must be distinct")
        return v

    @model_validator(mode="after")
    def _something_to_search(self) -> Question:
        if not self.formulations and not self.pico.text():
            raise ValueError("give at least one formulation (or PICO fields to search)")
        return self

    def queries(self) -> list[str]:
        """The formulations to run (the PICO text when none are given)."""
        return list(self.formulations) or [self.pico.text()]


class ReviewProtocol(_Strict):
    """A systematic-review search protocol (version 1)."""

    version: Literal[1] = 1
    name: str = "review"
    description: str | None = None
    depth: int = Field(default=100, ge=1, le=100_000, description="Records retrieved per formulation.")
    fusion: Literal["rrf", "combsum", "combmnz", "max", "wsum"] = "rrf"
    mode: Literal["lexical", "late", "hybrid"] | None = Field(
        default=None, description="Retrieval mode; the index's default when absent (the CLI's --mode wins).")
    snippets: int = Field(default=2, ge=0, le=10, description="Best evidence snippets kept per record.")
    criteria: Criteria = Field(default_factory=Criteria)
    questions: list[Question] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> ReviewProtocol:
        seen: set[str] = set()
        for q in self.questions:
            if q.id.lower() in seen:
                raise ValueError(f"question id {q.id!r} repeats (ids name output folders; case-insensitive)")
            seen.add(q.id.lower())
        return self

    def question_depth(self, q: Question) -> int:
        return q.depth or self.depth

    def question_criteria(self, q: Question) -> tuple[list[Criterion], list[Criterion]]:
        """The global and the question's own (include, exclude) criteria."""
        return [*self.criteria.include, *q.include], [*self.criteria.exclude, *q.exclude]

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def sha256(self) -> str:
        """A hash of the validated protocol (formatting and comments of the YAML do not change it)."""
        return _hash(self.canonical())

    def question_sha256(self, q: Question) -> str:
        """A hash of everything that decides one question's output (its part and the global settings)."""
        glob = {k: v for k, v in self.canonical().items() if k not in ("questions", "name", "description")}
        return _hash({"global": glob, "question": q.model_dump(mode="json", by_alias=True)})


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def load_protocol(path: str | os.PathLike[str]) -> ReviewProtocol:
    """Read and validate a protocol YAML (or JSON) file. Errors name the file and the field.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "p.yaml"
    >>> _ = p.write_text("questions:\\n  - id: q1\\n    formulations: [statins]\\n    depth: 0\\n")
    >>> try:
    ...     load_protocol(p)
    ... except InputError as exc:
    ...     print(exc.field, "|", exc.reason)
    questions[0].depth | Input should be greater than or equal to 1
    """
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("PyYAML", "review", "review protocols") from exc
    from pydantic import ValidationError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("does not exist", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 ({exc.reason})", path=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InputError(f"invalid YAML{where}: {getattr(exc, 'problem', exc)}", path=str(p)) from None
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping with 'questions', got {type(data).__name__}", path=str(p))
    try:
        return ReviewProtocol.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        field = _loc(first["loc"]) or None
        raise InputError(first["msg"].removeprefix("Value error, ") + more, path=str(p), field=field) from None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema of protocol files (written to ``docs/review-protocol.schema.json``)."""
    schema = ReviewProtocol.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "clinrag review protocol"
    return schema


__all__ = ["FUSION_METHODS", "PROTOCOL_VERSION", "Criteria", "Criterion", "Pico", "Question", "ReviewProtocol",
           "YearRange", "load_protocol", "protocol_json_schema"]
