"""The error policy of ingestion and the report of what was skipped.

Readers never decide themselves whether a bad record stops the run: they hand every
:class:`~clinrag.errors.InputError` to an :class:`ErrorSink`, which re-raises it
(policy ``"raise"``) or logs it, records a :class:`Problem` and lets the reader go on
with the next record or file (policy ``"skip"``).

>>> from clinrag.errors import InputError
>>> sink = ErrorSink("skip")
>>> sink.handle(InputError("not JSON", path="a.jsonl", record=3))
>>> sink.skipped, sink.to_dict()["problems"][0]["record"]
(1, 3)
>>> ErrorSink().handle(InputError("not JSON", path="a.jsonl", record=3))
Traceback (most recent call last):
...
clinrag.errors.InputError: a.jsonl: record 3: not JSON
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

from clinrag.errors import ConfigError, InputError

log = logging.getLogger(__name__)

Policy = Literal["raise", "skip"]


@dataclass(frozen=True)
class Problem:
    """One skipped record or file: where it was and why it was skipped."""

    path: str
    record: str | int | None
    field: str | None
    message: str


class ErrorSink:
    """Receives the input errors of a run and applies the policy ``"raise"`` or ``"skip"``."""

    def __init__(self, on_error: Policy = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error: Policy = on_error
        self.problems: list[Problem] = []

    def handle(self, exc: InputError) -> None:
        """Raise ``exc`` (policy ``"raise"``), or log it and record it as a :class:`Problem`."""
        if self.on_error == "raise":
            raise exc
        log.warning("skipped: %s", exc)
        self.problems.append(Problem(path=str(exc.path or ""), record=exc.record, field=exc.field,
                                     message=exc.reason))

    @property
    def skipped(self) -> int:
        """How many records or files were skipped."""
        return len(self.problems)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able report: ``{"skipped": n, "problems": [{path, record, field, message}, ...]}``."""
        return {"skipped": self.skipped, "problems": [asdict(p) for p in self.problems]}


__all__ = ["ErrorSink", "Policy", "Problem"]
