"""loader/readers.py: the same table as CSV, compressed CSV (gzip, bz2, xz, zstd, zip) and
Parquet gives the same canonical datasets and digests; compressed CSV problems are located
by line and column of the decompressed text, Parquet problems by row; each accepted
Parquet type (units as text or dictionary, dates as date, naive timestamp or text, values
as integer, float, decimal or text) is read, and others are refused with one line; nulls
are missing, and the `missing` spellings apply to text only; large files are read in
chunks and in two passes as CSV is."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from loader import readers
from loader.data import FileReport, read_datasets
from loader.fileformats import FileFormat
from loader.model import Dataset, Position, nanos_to_text
from loader.readers import CsvReader, ParquetReader, reader_for
from loader.validation import validate
from tests.helpers import without_package, write_manifest, zipped

RESIDENTS = (
    "month,pcod,residents,residents_perKm2,arrived\n"
    "2021-01-01,EX01-01,100,0.123456789,5\n"
    "2021-01-01,EX02-01,300,1.5,\n"
    "2021-02-01,EX01-01,200,2.5,7\n"
    "2021-02-01,EX01-02,210,0.5,8\n"
)
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


def residents_table(**types: pa.DataType) -> pa.Table:
    """RESIDENTS as an Arrow table: dates as dates, units as text, values as numbers
    (nulls where the CSV is empty); `types` casts columns."""
    table = pa.table(
        {
            "month": [date(2021, 1, 1)] * 2 + [date(2021, 2, 1)] * 2,
            "pcod": ["EX01-01", "EX02-01", "EX01-01", "EX01-02"],
            "residents": pa.array([100, 300, 200, 210], pa.int64()),
            "residents_perKm2": [0.123456789, 1.5, 2.5, 0.5],
            "arrived": pa.array([5, None, 7, 8], pa.int32()),
        }
    )
    for name, kind in types.items():
        table = table.set_column(
            table.schema.get_field_index(name), name, table.column(name).cast(kind)
        )
    return table


def manifest_with(directory: Path, name: str, content: bytes, extra_entry: str = "") -> Path:
    """A manifest whose one residents entry reads `name` (holding `content`)."""
    manifest = write_manifest(directory, {name: ""})
    (directory / name).write_bytes(content)
    if extra_entry:
        manifest.write_text(manifest.read_text() + extra_entry)
    return manifest


def datasets_of(manifest: Path) -> tuple[dict[str, Dataset], list[FileReport]]:
    report = validate(manifest, data=False)
    assert report.ok, report.problems
    assert report.manifest is not None
    setup = report.manifest.setup()
    found: dict[str, Dataset] = {}
    reports = []
    for spec in report.manifest.datasets:
        for file in spec.files:
            iterator, file_report = read_datasets(spec, file, setup)
            found.update({f"{d.key.indicator_id} {d.key.dt[:10]}": d for d in iterator})
            reports.append(file_report)
    return found, reports


def canonical(found: dict[str, Dataset]) -> dict[str, tuple[str, list[Any], list[int]]]:
    return {k: (d.summary.digest, d.units, list(d.values)) for k, d in found.items()}


def parquet_bytes(table: pa.Table, directory: Path, **options: Any) -> bytes:
    path = directory / "written.parquet"
    pq.write_table(table, path, **options)
    return path.read_bytes()


@pytest.fixture
def plain(tmp_path: Path) -> dict[str, tuple[str, list[Any], list[int]]]:
    directory = tmp_path / "plain"
    directory.mkdir()
    found, _ = datasets_of(write_manifest(directory, {"residents.csv": RESIDENTS}))
    assert len(found) == 6  # residents and density on two dates, arrived on two
    return canonical(found)


@pytest.mark.parametrize("suffix", [*COMPRESSORS, "zip"])
def test_a_compressed_csv_gives_the_plain_files_datasets(
    tmp_path: Path, plain: dict[str, Any], suffix: str
) -> None:
    data = RESIDENTS.encode()
    content = zipped(("residents.csv", data)) if suffix == "zip" else COMPRESSORS[suffix](data)
    found, [report] = datasets_of(manifest_with(tmp_path, f"residents.csv.{suffix}", content))
    assert canonical(found) == plain
    assert (report.rows, report.values) == (4, 11)


def test_a_compression_named_in_the_manifest_is_used_whatever_the_suffix(
    tmp_path: Path, plain: dict[str, Any]
) -> None:
    manifest = manifest_with(tmp_path, "residents.data", gzip.compress(RESIDENTS.encode()))
    manifest.write_text(
        manifest.read_text().replace("    columns:", "    format: csv.gz\n    columns:")
    )
    found, _ = datasets_of(manifest)
    assert canonical(found) == plain


@pytest.mark.parametrize(
    "types",
    [
        {},
        {"pcod": pa.dictionary(pa.int32(), pa.string())},
        {"pcod": pa.large_string()},
        {"month": pa.timestamp("us")},
        {"month": pa.timestamp("s")},
        {"month": pa.string()},
        {"residents": pa.float64(), "arrived": pa.float32()},
        {"residents_perKm2": pa.decimal128(12, 9), "residents": pa.decimal128(22, 2)},
        {"residents_perKm2": pa.string(), "residents": pa.string()},
    ],
    ids=lambda types: "-".join(f"{k}:{v}" for k, v in types.items()) or "typed",
)
def test_parquet_of_each_accepted_type_gives_the_csvs_datasets(
    tmp_path: Path, plain: dict[str, Any], types: dict[str, pa.DataType]
) -> None:
    table = residents_table(**types)
    found, [report] = datasets_of(
        manifest_with(tmp_path, "residents.parquet", parquet_bytes(table, tmp_path))
    )
    assert canonical(found) == plain
    assert report.problems == []
    assert (report.rows, report.values, report.missing_cells) == (4, 11, {"null": 1})


def test_parquet_row_groups_and_two_passes_give_the_same_datasets(
    tmp_path: Path, plain: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "CHUNK_ROWS", 1)  # a batch per row, dates read first
    content = parquet_bytes(residents_table(), tmp_path, row_group_size=1)
    found, _ = datasets_of(manifest_with(tmp_path, "residents.parquet", content))
    assert canonical(found) == plain


def test_decimals_are_converted_exactly_and_rounded_half_away_from_zero(tmp_path: Path) -> None:
    """Digits a float cannot carry survive: 2147483646.123456789 has 19 significant digits."""
    values = [Decimal("2147483646.123456789"), Decimal("-0.0000000015"), Decimal("0.0000000005"),
              Decimal("12345.6789012345")]  # fmt: skip
    table = pa.table(
        {
            "month": [date(2021, 1, 1)] * 4,
            "pcod": ["EX01-01", "EX01-02", "EX02-01", "EX03-01"],
            "residents": pa.array(values, pa.decimal128(20, 10)),
        }
    )
    found, _ = datasets_of(
        manifest_with(tmp_path, "residents.parquet", parquet_bytes(table, tmp_path))
    )
    texts = [nanos_to_text(v) for v in found["residents.residents 2021-01-01"].values]
    assert texts == ["2147483646.123456789", "-0.000000002", "0.000000001", "12345.678901235"]


def test_nulls_are_missing_and_spellings_apply_to_text_only(tmp_path: Path) -> None:
    table = pa.table(
        {
            "month": [date(2021, 1, 1)] * 4,
            "pcod": ["EX01-01", "EX01-02", "EX02-01", "EX03-01"],
            "residents": pa.array([-999, None, 3, 4], pa.int64()),  # -999 is a number here
            "arrived": pa.array(["NA", None, "", "2"], pa.string()),  # NA is spelled missing
        }
    )
    manifest = manifest_with(tmp_path, "residents.parquet", parquet_bytes(table, tmp_path))
    manifest.write_text(manifest.read_text() + "missing: ['', NA, '-999']\n")
    found, [report] = datasets_of(manifest)
    assert list(found["residents.residents 2021-01-01"].values) == [-999 * 10**9, 3 * 10**9,
                                                                   4 * 10**9]  # fmt: skip
    assert list(found["residents.arrived 2021-01-01"].values) == [2 * 10**9]
    assert report.missing_cells == {"null": 2, "NA": 1, "": 1}


def test_parquet_problems_are_located_by_row(tmp_path: Path) -> None:
    table = pa.table(
        {
            "month": [date(2021, 1, 1), date(2021, 1, 1), date(2021, 1, 15), date(2021, 2, 1)],
            "pcod": ["EX01-01", "EX01-01", "EX01-02", "XX99"],
            "residents": pa.array(["1", "2", "x", "4"]),
            "arrived": pa.array([1.0, float("nan"), 2.0, 3e12]),
        }
    )
    report = validate(manifest_with(tmp_path, "residents.parquet", parquet_bytes(table, tmp_path)))
    assert [str(p).removeprefix(f"{tmp_path}/") for p in report.errors] == [
        "residents.parquet:row 2: duplicate row for 2021-01-01 EX01-01 (first on row 1)",
        "residents.parquet:row 2: not a number: 'nan' in column 'arrived'",
        "residents.parquet:row 3: date '2021-01-15' (2021-01-15 00:00:00) is not on the Month "
        "grid: expected the first of a month at midnight",
        "residents.parquet:row 3: not a number: 'x' in column 'residents'",
        "residents.parquet:row 4: value '3000000000000.0' in column 'arrived' is out of the "
        "backend's range (|v| <= 2,147,483,647)",
        "residents.parquet:row 4: unknown spatial unit 'XX99' in column 'pcod': not among the "
        "ADM2_PCODE codes of 'District'",
    ]


def test_parquet_columns_of_other_types_are_refused_in_one_line_each(tmp_path: Path) -> None:
    table = pa.table(
        {
            "month": pa.array([datetime(2021, 1, 1)], pa.timestamp("ms", tz="UTC")),
            "pcod": pa.array([101], pa.int64()),
            "residents": pa.array([True]),
        }
    )
    report = validate(manifest_with(tmp_path, "residents.parquet", parquet_bytes(table, tmp_path)))
    assert [str(p).removeprefix(f"{tmp_path}/") for p in report.errors] == [
        "residents.parquet: column 'month' holds timestamp[ms, tz=UTC]: it must hold dates, "
        "time-zone-free timestamps or text",
        "residents.parquet: column 'pcod' holds int64: it must hold text (string or dictionary)",
        "residents.parquet: column 'residents' holds bool: it must hold integers, floats, "
        "decimals or text",
    ]


def test_a_damaged_parquet_file_is_one_problem(tmp_path: Path) -> None:
    content = parquet_bytes(residents_table(), tmp_path)
    report = validate(manifest_with(tmp_path, "residents.parquet", content[: len(content) // 2]))
    [problem] = report.errors
    assert str(problem).startswith(f"{tmp_path}/residents.parquet: cannot read Parquet file: ")


def test_compressed_csv_problems_are_located_in_the_decompressed_text(tmp_path: Path) -> None:
    text = RESIDENTS.replace("2021-02-01,EX01-02,210", "2021-02-01,EX01-02,2x0")
    report = validate(manifest_with(tmp_path, "residents.csv.gz", gzip.compress(text.encode())))
    assert [str(p).removeprefix(f"{tmp_path}/") for p in report.errors] == [
        "residents.csv.gz:5:20: not a number: '2x0' in column 'residents'"
    ]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("residents.csv.gz", b"not gzip at all", "cannot read file: Not a gzipped file"),
        ("residents.csv.gz", gzip.compress(RESIDENTS.encode())[:40], "cannot read file: "),
        ("residents.csv.xz", b"\xfd7zXZ\x00garbage", "cannot read file: "),
        ("residents.csv.bz2", b"BZh9garbage", "cannot read file: "),
        ("residents.csv.zst", b"\x28\xb5\x2f\xfdgarbage", "cannot read file: "),
        ("residents.csv.zip", b"PK not a zip", "cannot read file: not a zip archive"),
    ],
    ids=["not-gzip", "truncated-gzip", "bad-xz", "bad-bz2", "bad-zstd", "bad-zip"],
)
def test_damaged_compressed_files_are_one_problem_each(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    report = validate(manifest_with(tmp_path, name, content))
    [problem] = report.errors
    assert str(problem).startswith(f"{tmp_path}/{name}:1:1: {expected}"), str(problem)


def test_a_zip_of_two_files_is_refused(tmp_path: Path) -> None:
    content = zipped(("a.csv", RESIDENTS.encode()), ("b.csv", RESIDENTS.encode()))
    report = validate(manifest_with(tmp_path, "residents.csv.zip", content))
    assert [str(p).removeprefix(f"{tmp_path}/") for p in report.errors] == [
        "residents.csv.zip:1:1: cannot read file: a zip archive must hold exactly one file "
        "(this one holds 2)"
    ]


def test_the_reader_follows_the_format() -> None:
    assert isinstance(reader_for("a.parquet", "a", FileFormat("parquet")), ParquetReader)
    csv_reader = reader_for("a.csv.gz", "a", FileFormat("csv", "gzip"))
    assert isinstance(csv_reader, CsvReader) and csv_reader.compression == "gzip"
    assert csv_reader.place(0).position(0) == Position("a", 2, 1)
    assert ParquetReader("a", "a").place(0).position(3) == Position("a", row=1)


def test_parquet_without_pyarrow_says_which_extra_to_install(tmp_path: Path) -> None:
    """In an interpreter where pyarrow cannot be imported (as without the extra)."""
    (tmp_path / "residents.parquet").write_bytes(parquet_bytes(residents_table(), tmp_path))
    code = (
        "from loader.readers import ParquetReader\n"
        f"reader = ParquetReader({str(tmp_path / 'residents.parquet')!r}, 'residents.parquet')\n"
        "print(reader.header(), [str(p) for p in reader.problems], reader.failed)\n"
    )
    printed = without_package("pyarrow", code)
    assert printed == (
        'None ["residents.parquet: reading Parquet files needs pyarrow (pip install '
        "'flowkit-loader[parquet]')\"] True\n"
    )


def test_part_files_read_through_a_glob_are_tables_of_their_own(tmp_path: Path) -> None:
    """A folder of Parquet parts, one month each, loads through a glob; a month split over
    two parts is refused at the second, naming the first."""
    table = residents_table()
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 2), tmp_path / "parts" / "part-0.parquet")
    pq.write_table(table.slice(2, 2), tmp_path / "parts" / "part-1.parquet")
    manifest = write_manifest(tmp_path, {"parts/part-0.parquet": ""})
    pq.write_table(table.slice(0, 2), tmp_path / "parts" / "part-0.parquet")  # overwritten
    manifest.write_text(manifest.read_text().replace("parts/part-0.parquet", "parts/*.parquet"))
    found, reports = datasets_of(manifest)
    assert len(found) == 6 and [r.rows for r in reports] == [2, 2]
    pq.write_table(table.slice(1, 3), tmp_path / "parts" / "part-1.parquet")
    assert [str(p).replace(f"{tmp_path}/", "") for p in validate(manifest).errors] == [
        "parts/part-1.parquet:1:1: dataset residents.residents srid=2 trid=2 2021-01-01 "
        "00:00:00 also comes from parts/part-0.parquet (and 1 more): each file is a table of "
        "its own, so the rows of one dataset must all be in one file"
    ]
