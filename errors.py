"""Typed errors raised by clinrag.

Every error subclasses a builtin (so ``except ValueError`` still works) and
:class:`ClinragError` (so ``except ClinragError`` catches all of them). Messages
say what went wrong, where (file, record, field) and how to fix it.

>>> try:
...     raise InputError("bad date", path="notes.jsonl", record=3, field="timestamp")
... except ValueError as exc:
...     print(exc)
notes.jsonl: record 3: field 'timestamp': bad date
"""

from __future__ import annotations


class ClinragError(Exception):
    """Base class of every error clinrag raises on purpose."""


class InputError(ClinragError, ValueError):
    """A source file or record cannot be read. Names the file, record and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        record: int | str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.record = record
        self.field = field
        self.reason = message
        parts = []
        if path is not None:
            parts.append(str(path))
        if record is not None:
            parts.append(f"record {record}")
        if field is not None:
            parts.append(f"field {field!r}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnknownFormatError(InputError):
    """The input format could not be detected or is not supported."""


class IndexError_(ClinragError, RuntimeError):
    """Base for problems with an index directory (named to avoid shadowing the builtin)."""


class IndexNotFoundError(IndexError_, FileNotFoundError):
    """No clinrag index at the given path."""


class IndexExistsError(IndexError_, FileExistsError):
    """An index already exists where a new one should be created."""


class IndexFormatError(IndexError_):
    """The manifest is missing, corrupt, or of an unsupported format version."""


class IndexMismatchError(IndexError_):
    """The index was built with other models or settings than requested."""


class IndexLockedError(IndexError_):
    """Another process is writing to the index."""


class FilterError(ClinragError, ValueError):
    """A search filter is malformed (bad field name, date or operator)."""


class ConfigError(ClinragError, ValueError):
    """An option or configuration value is invalid."""


class MissingDependencyError(ClinragError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package} is required{what} but is not installed. "
            f'Install it with: pip install "clinrag[{extra}]"'
        )
        self.package = package
        self.extra = extra


class PatientNotFoundError(ClinragError, LookupError):
    """No records of the given patient in the index."""


class ModelLoadError(ClinragError, OSError):
    """A model could not be loaded from the given id or path (offline, missing files, bad format)."""


__all__ = [
    "ClinragError",
    "ConfigError",
    "FilterError",
    "IndexError_",
    "IndexExistsError",
    "IndexFormatError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "InputError",
    "MissingDependencyError",
    "ModelLoadError",
    "PatientNotFoundError",
    "UnknownFormatError",
]
