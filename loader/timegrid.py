"""Temporal resolutions: the grid a dataset's date must lie on, stepping, date formats and
the start dates the backend's /query understands (standard library only).

A resolution is `relativedelta_unit` x `relativedelta_num` with a strftime `date_format`
(`%Y`, `%Y-%m`, `%Gw%V`, `%Y-%m-%d`). A date is on the grid when it is the start of its
unit: 1 January, the first of a month, a Monday (ISO week), midnight, the full hour.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from loader.contract import BACKEND_DT_FORMAT
from loader.model import TemporalResolution, excerpt

UNITS = ("years", "months", "weeks", "days", "hours")
FIRST_YEAR, LAST_YEAR = 1000, 9999  # what MySQL's DATETIME holds (and %Y writes as 4 digits)

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


class DateError(ValueError):
    """A date text that cannot be used; the message says why."""


@dataclass(frozen=True)
class Grid:
    """A temporal resolution's calendar arithmetic."""

    unit: str
    step: int
    date_format: str

    @classmethod
    def of(cls, resolution: TemporalResolution) -> Grid:
        return cls(resolution.unit, resolution.step, resolution.date_format)

    def is_on_grid(self, moment: datetime) -> bool:
        return self.floor(moment) == moment

    def floor(self, moment: datetime) -> datetime:
        """The start of the unit that contains `moment`."""
        hour = moment.replace(minute=0, second=0, microsecond=0)
        if self.unit == "hours":
            return hour
        day = hour.replace(hour=0)
        if self.unit == "days":
            return day
        if self.unit == "weeks":
            return day - timedelta(days=day.weekday())
        if self.unit == "months":
            return day.replace(day=1)
        return day.replace(month=1, day=1)

    def expected(self) -> str:
        return {
            "hours": "a full hour",
            "days": "midnight",
            "weeks": "a Monday at midnight (ISO week)",
            "months": "the first of a month at midnight",
            "years": "1 January at midnight",
        }[self.unit]

    def add(self, moment: datetime, steps: int) -> datetime:
        amount = self.step * steps
        if self.unit == "hours":
            return moment + timedelta(hours=amount)
        if self.unit == "days":
            return moment + timedelta(days=amount)
        if self.unit == "weeks":
            return moment + timedelta(weeks=amount)
        months = amount * (12 if self.unit == "years" else 1)
        index = moment.year * 12 + (moment.month - 1) + months
        year, month = divmod(index, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day)

    def steps_between(self, first: datetime, last: datetime) -> int:
        """How many steps lead from `first` to `last` (both on the grid, last >= first)."""
        if self.unit in ("years", "months"):
            months = (last.year - first.year) * 12 + last.month - first.month
            span = months // (12 if self.unit == "years" else 1)
        else:
            seconds = {"hours": 3600, "days": 86400, "weeks": 604800}[self.unit]
            span = int((last - first).total_seconds() // seconds)
        steps = span // self.step
        while self.add(first, steps) < last:  # a step that does not divide the span
            steps += 1
        return steps

    def format(self, moment: datetime) -> str:
        """The date as the backend keys it in /query and /timerange answers."""
        return moment.strftime(self.date_format)

    def parse_formatted(self, text: str) -> datetime:
        """Parse a date written in this resolution's format (a /query start date)."""
        fmt = self.date_format
        value = text
        # strptime needs a weekday to make sense of an ISO week number.
        if ("%V" in fmt or "%G" in fmt) and "%u" not in fmt:
            fmt, value = f"{fmt}-%u", f"{text}-1"
        try:
            moment = datetime.strptime(value, fmt)
        except ValueError:
            example = self.format(datetime(2020, 2, 3))
            raise DateError(
                f"'{excerpt(text)}' is not a date in the resolution's format {self.date_format} "
                f"(for example {example})"
            ) from None
        if not FIRST_YEAR <= moment.year <= LAST_YEAR:
            raise DateError(
                f"'{excerpt(text)}' is outside the years the backend stores "
                f"({FIRST_YEAR} to {LAST_YEAR})"
            )
        return moment


def parse_data_date(text: str, grid: Grid, date_format: str | None = None) -> datetime:
    """Parse a date cell of a data file: ISO 8601, or the resolution's own format, or the
    dataset's explicit `date_format`. Time-zone-aware dates are refused: the backend keeps
    naive datetimes and the loader will not guess an offset. So are years the backend's
    DATETIME cannot hold."""
    moment = _parse_data_date(text, grid, date_format)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise DateError(
            f"date '{excerpt(text)}' is outside the years the backend stores "
            f"({FIRST_YEAR} to {LAST_YEAR})"
        )
    return moment


def _parse_data_date(text: str, grid: Grid, date_format: str | None) -> datetime:
    stripped = text.strip()
    if date_format:
        try:
            return datetime.strptime(stripped, date_format)
        except ValueError:
            raise DateError(
                f"cannot parse date '{excerpt(text)}' with date_format {date_format}"
            ) from None
    match = _ISO.match(stripped)
    if match:
        if match.group(8):
            raise DateError(
                f"date '{excerpt(text)}' is time-zone-aware; the backend stores naive dates: "
                "write it without an offset"
            )
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups()[:6])
        micro = int((match.group(7) or "0").ljust(6, "0")[:6])
        try:
            return datetime(year, month, day, hour, minute, second, micro)
        except ValueError as error:
            raise DateError(f"cannot parse date '{excerpt(text)}': {error}") from None
    try:
        return grid.parse_formatted(stripped)
    except DateError:
        raise DateError(
            f"cannot parse date '{excerpt(text)}' (expected ISO 8601 like 2020-02-01, "
            f"or the resolution's format {grid.date_format})"
        ) from None


def backend_dt(moment: datetime) -> str:
    """The `dt` text the backend accepts (`2020-02-01` or `2020-02` are refused with 500)."""
    return moment.strftime(BACKEND_DT_FORMAT)


def from_backend_dt(text: str) -> datetime:
    return datetime.strptime(text, BACKEND_DT_FORMAT)


@dataclass(frozen=True)
class Span:
    """A stretch of time from `first` (inclusive) up to `end` (exclusive) or through
    `last` (inclusive); an end left None is open. The one date type of `--only dates=`
    (calendar bounds) and of access rules (the backend's /query steps), each of which
    says how its text becomes these moments."""

    first: datetime | None = None
    end: datetime | None = None
    last: datetime | None = None

    @property
    def bounded(self) -> bool:
        return not (self.first is None and self.end is None and self.last is None)

    def contains(self, moment: datetime) -> bool:
        if self.first is not None and moment < self.first:
            return False
        if self.end is not None and moment >= self.end:
            return False
        return not (self.last is not None and moment > self.last)

    def holds(self, dt: str) -> bool:
        """Whether a dataset's date (the backend's dt text) lies in the span."""
        return not self.bounded or self.contains(from_backend_dt(dt))
