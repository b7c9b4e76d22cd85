"""Times on the wire: written one way, read one way."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, the one time format on the wire."""
    if moment is None:
        return None
    # isoformat truncates to milliseconds as strftime would, at a fraction of its cost (the
    # status read formats two times per answer).
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def read_aware_utc(text: object) -> datetime | None:
    """An ISO 8601 time with a zone, in UTC; None for anything else, including a time with no
    UTC form (year 0 or 10000 once shifted). Unix numbers and digit strings are not times."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None
