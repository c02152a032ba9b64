"""Helpers shared by the readers: date parsing.

>>> parse_iso("2019-01-01T10:00:00+02:00")
datetime.datetime(2019, 1, 1, 8, 0)
>>> parse_iso("2020-03")
datetime.datetime(2020, 3, 1, 0, 0)
>>> parse_lenient("March 3, 2020"), parse_lenient("3/7/2020"), parse_lenient("sometime")
(datetime.datetime(2020, 3, 3, 0, 0), datetime.datetime(2020, 3, 7, 0, 0), None)
"""

from __future__ import annotations

import datetime as dt
import re

from clinrag.data.schema import to_utc

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_LENIENT_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%m/%d/%Y", "%m/%d/%y", "%d %B %Y",
                    "%d %b %Y", "%Y/%m/%d", "%B %Y", "%b %Y")


def parse_iso(value: object) -> dt.datetime | None:
    """Parse an ISO 8601 / FHIR date or dateTime (``YYYY``, ``YYYY-MM`` allowed) to naive UTC.

    Returns None for None or ""; raises ValueError for anything else that is not a date.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime | dt.date):
        return to_utc(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO date string, got {type(value).__name__}")
    s = value.strip()
    m = _PARTIAL.match(s)
    if m:
        return dt.datetime(int(m.group(1)), int(m.group(2) or 1), 1)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        return to_utc(dt.datetime.fromisoformat(s))
    except ValueError:
        raise ValueError(f"not an ISO date: {value!r}") from None


def parse_lenient(value: str | None) -> dt.datetime | None:
    """Parse a free-form date ("March 3, 2020", "2020", "3/3/2020", ISO); None when it cannot."""
    if not value or not value.strip():
        return None
    s = " ".join(value.split())
    try:
        return parse_iso(s)
    except ValueError:
        pass
    for fmt in _LENIENT_FORMATS:
        try:
            return dt.datetime.strptime(s, fmt)
        except ValueError:
            continue
    return None


def iso_date(ts: dt.datetime | None) -> str:
    """``YYYY-MM-DD`` of a datetime, or "" (for rendering)."""
    return ts.date().isoformat() if ts else ""
