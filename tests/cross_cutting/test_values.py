"""Canonical values: exactly what the backend's DECIMAL(20,9) stores."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loader.data import nanos_stats, to_nanos
from loader.model import (
    MAX_ABS_VALUE,
    canonical_nanos,
    nanos_to_float,
    nanos_to_text,
    value_nanos,
)

EDGE_VALUES = [
    # (CSV number, canonical decimal text): half away from zero, on the float's repr
    ("0.1234567895", "0.12345679"),  # a true tie: rounds up, though the float is below it
    ("1.0000000015", "1.000000002"),
    ("1e-10", "0"),
    ("-0.0000000004", "0"),  # -0 becomes 0
    ("2147483647.123456789", "2147483647.1234567"),  # a float keeps 17 digits
    ("-0.0000000005", "-0.000000001"),  # away from zero on the negative side
    ("-2.5", "-2.5"),
    ("123456.12345678912", "123456.123456789"),
    ("544650", "544650"),
]


@pytest.mark.parametrize(("text", "expected"), EDGE_VALUES)
def test_canonical_value_of_edge_values(text: str, expected: str) -> None:
    assert nanos_to_text(canonical_nanos(text)) == expected


@pytest.mark.parametrize(("text", "expected"), EDGE_VALUES)
def test_vectorised_conversion_agrees_on_edge_values(text: str, expected: str) -> None:
    [nanos] = to_nanos(np.array([float(text)])).tolist()
    assert nanos_to_text(nanos) == expected


def reference(value: float) -> int:
    """The definition, spelled out independently of the code under test."""
    exact = Decimal(repr(value)).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)
    return int(exact.scaleb(9))


finite_values = st.floats(
    min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE, allow_nan=False, allow_infinity=False
)
decimal_texts = st.builds(
    lambda whole, frac, digits: float(f"{whole}.{frac:0{digits}d}"),
    st.integers(-10_000_000, 10_000_000),
    st.integers(0, 10**12 - 1),
    st.integers(12, 12),
)


@given(st.lists(st.one_of(finite_values, decimal_texts), min_size=1, max_size=50))
def test_vectorised_conversion_equals_the_definition(values: list[float]) -> None:
    assert to_nanos(np.array(values)).tolist() == [reference(v) for v in values]


def test_ties_at_the_tenth_decimal_are_exact() -> None:
    values = [float(f"0.{i:09d}5") for i in range(0, 10**9, 7_777_777)]
    assert to_nanos(np.array(values)).tolist() == [reference(v) for v in values]


def test_stats_are_exact_without_overflow() -> None:
    nanos = np.array([MAX_ABS_VALUE * 10**9] * 10_000, dtype=np.int64)
    stats = nanos_stats(nanos)
    assert stats.sum == MAX_ABS_VALUE * 10**9 * 10_000
    assert (stats.count, stats.min, stats.max) == (10_000, nanos[0], nanos[0])


def test_server_float_is_the_float_of_the_stored_decimal() -> None:
    assert nanos_to_float(canonical_nanos("123456.12345678912")) == 123456.123456789


def exact(value: float) -> int:
    """The definition for any finite float, in a context wide enough for 1e308."""
    with localcontext() as context:
        context.prec = 800
        scaled = Decimal(repr(value)) * 10**9
        return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@given(st.lists(st.one_of(finite_values, decimal_texts, st.floats(allow_nan=False,
       allow_infinity=False)), min_size=1, max_size=50))  # fmt: skip
def test_one_value_conversion_equals_the_definition(values: list[float]) -> None:
    assert [value_nanos(v) for v in values] == [exact(v) for v in values]


@pytest.mark.parametrize(("text", "expected"), EDGE_VALUES)
def test_one_value_conversion_on_edge_values(text: str, expected: str) -> None:
    assert nanos_to_text(value_nanos(float(text))) == expected
