"""Temporal grids, date parsing and /query start dates."""

from __future__ import annotations

from datetime import datetime

import pytest

from loader.timegrid import DateError, Grid, Span, backend_dt, parse_data_date

MONTH = Grid("months", 1, "%Y-%m")
WEEK = Grid("weeks", 1, "%Gw%V")
DAY = Grid("days", 1, "%Y-%m-%d")
YEAR = Grid("years", 1, "%Y")


@pytest.mark.parametrize(
    ("grid", "moment", "on"),
    [
        (MONTH, datetime(2020, 2, 1), True),
        (MONTH, datetime(2020, 2, 15), False),
        (MONTH, datetime(2020, 2, 1, 0, 0, 1), False),
        (WEEK, datetime(2020, 2, 3), True),  # a Monday
        (WEEK, datetime(2020, 2, 4), False),
        (DAY, datetime(2020, 2, 4), True),
        (DAY, datetime(2020, 2, 4, 12), False),
        (YEAR, datetime(2020, 1, 1), True),
        (YEAR, datetime(2020, 2, 1), False),
    ],
)
def test_grid(grid: Grid, moment: datetime, on: bool) -> None:
    assert grid.is_on_grid(moment) is on


def test_stepping_and_formats() -> None:
    assert MONTH.add(datetime(2020, 11, 1), 3) == datetime(2021, 2, 1)
    assert WEEK.format(datetime(2021, 1, 4)) == "2021w01"
    assert WEEK.parse_formatted("2020w05") == datetime(2020, 1, 27)
    assert YEAR.add(datetime(2020, 1, 1), 2) == datetime(2022, 1, 1)
    assert backend_dt(datetime(2020, 2, 1)) == "2020-02-01 00:00:00"


def test_query_start_must_be_in_the_resolution_format() -> None:
    assert MONTH.parse_formatted("2020-02") == datetime(2020, 2, 1)
    with pytest.raises(DateError, match="not a date in the resolution's format %Y-%m"):
        MONTH.parse_formatted("2020-02-01")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-02-01", datetime(2020, 2, 1)),
        ("2020-02-01 00:00:00", datetime(2020, 2, 1)),
        ("2020-02-01T06:30", datetime(2020, 2, 1, 6, 30)),
        ("2020-02", datetime(2020, 2, 1)),  # the resolution's own format
    ],
)
def test_data_dates(text: str, expected: datetime) -> None:
    assert parse_data_date(text, MONTH) == expected


def test_data_dates_refused() -> None:
    with pytest.raises(DateError, match="time-zone-aware"):
        parse_data_date("2020-02-01T00:00:00+01:00", MONTH)
    with pytest.raises(DateError, match="cannot parse date '2020-13-01'"):
        parse_data_date("2020-13-01", MONTH)
    with pytest.raises(DateError, match="cannot parse date 'soon'"):
        parse_data_date("soon", MONTH)
    assert parse_data_date("01/02/2020", MONTH, "%d/%m/%Y") == datetime(2020, 2, 1)


def test_a_span_holds_its_first_moment_and_not_its_end_and_holds_its_last() -> None:
    first, end = datetime(2021, 2, 1), datetime(2021, 4, 1)
    half_open = Span(first=first, end=end)
    assert half_open.holds("2021-02-01 00:00:00") and half_open.holds("2021-03-31 23:00:00")
    assert not half_open.holds("2021-04-01 00:00:00")
    assert not half_open.holds("2021-01-31 23:59:59")
    through = Span(last=datetime(2021, 3, 1))  # an access rule's `until`: inclusive
    assert through.holds("2021-03-01 00:00:00") and not through.holds("2021-03-01 00:00:01")
    assert through.holds("1000-01-01 00:00:00")  # open at the start


def test_an_unbounded_span_holds_everything_without_reading_the_date() -> None:
    assert not Span().bounded
    assert Span().holds("not a date at all")  # never parsed: no cost per dataset
    assert Span(end=datetime(2000, 1, 1)).bounded
