"""The folder an export writes (loader/exportfolder.py): config.json one entity a line,
ids as safe file names, CSVs that quote what needs quoting, Parquet decimals read back
exactly by the loader."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loader.exportfolder import _write_csv, _write_parquet, config_text, file_name

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
entities = st.lists(st.dictionaries(st.text(max_size=6), json_scalars, max_size=4), max_size=4)


@given(st.dictionaries(st.text(max_size=10), entities, min_size=1, max_size=4))
def test_config_text_is_the_config_one_entity_a_line(config: dict[str, list[dict]]) -> None:
    text = config_text(config)
    assert json.loads(text) == config
    lines = text.removesuffix("\n").split("\n")  # as git sees lines
    assert len(lines) == 2 + len(config) + sum(len(e) + 1 for e in config.values() if e)


@pytest.mark.parametrize(("given_id", "name"), [
    ("residents.residents", "residents.residents"), ("a/b", "a_b"), ("..", "_"),
    ("../../up", "_.._up"), ("x y", "x_y"), ("", "_"), ("é", "_"),
])  # fmt: skip
def test_ids_become_file_names_that_stay_where_they_are_put(given_id: str, name: str) -> None:
    assert file_name(given_id) == name
    assert "/" not in name and name not in (".", "..") and "~" not in name


def test_a_csv_quotes_the_unit_codes_that_need_it(tmp_path: Path) -> None:
    path = tmp_path / "flows.csv"
    datasets = {"2021-01-01 00:00:00": {("A,1", 'B"2'): 1_500_000_000, ("C", "D"): -1},
                "2021-01-01 06:00:00": {("C", "D"): 0}}  # fmt: skip
    _write_csv(path, datasets, flow=True)
    with open(path, newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [
            ["date", "origin", "destination", "value"],
            ["2021-01-01", "A,1", 'B"2', "1.5"], ["2021-01-01", "C", "D", "-0.000000001"],
            ["2021-01-01 06:00:00", "C", "D", "0"],
        ]  # fmt: skip


def test_parquet_carries_decimals_a_float_would_lose(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "exact.parquet"
    _write_parquet(path, {"2021-01-01 00:00:00": {("D1",): 2147483646_123456789}}, flow=False)
    table = pq.read_table(path)
    assert table.column_names == ["date", "unit", "value"]
    assert str(table.column("value")[0]) == "2147483646.123456789"
