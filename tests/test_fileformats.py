"""loader/fileformats.py: a data file's format from its suffix or from the manifest (the
schema's enum and FORMATS agree), and its bytes opened decompressed; a damaged or
unsupported file raises one of READ_ERRORS, never anything else."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from loader.fileformats import (
    FORMATS,
    READ_ERRORS,
    FileFormat,
    compression_of,
    format_of,
    open_bytes,
)
from loader.validation import schema_text
from tests.helpers import without_package, zipped

TEXT = b"month,pcod,residents\n2021-01-01,EX01-01,1\n" * 100


WRITERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "zip": lambda data: zipped(("inner.csv", data)),
}


@pytest.mark.parametrize(
    ("path", "named", "expected"),
    [
        ("a.csv", None, FileFormat("csv")),
        ("a.CSV.GZ", None, FileFormat("csv", "gzip")),
        ("a.csv.bz2", None, FileFormat("csv", "bz2")),
        ("a.csv.xz", None, FileFormat("csv", "xz")),
        ("a.csv.zst", None, FileFormat("csv", "zstd")),
        ("a.csv.zip", None, FileFormat("csv", "zip")),
        ("a.parquet", None, FileFormat("parquet")),
        ("a.pq", None, FileFormat("parquet")),
        ("a.txt", None, FileFormat("csv")),  # as every version read it
        ("suffixless", None, FileFormat("csv")),
        ("a.gz", "parquet", FileFormat("parquet")),  # the manifest wins
        ("a.parquet", "csv", FileFormat("csv")),
        ("a.data", "csv.zst", FileFormat("csv", "zstd")),
    ],
)
def test_the_format_is_the_manifests_else_the_suffixes(
    path: str, named: str | None, expected: FileFormat
) -> None:
    assert format_of(path, named) == expected


def test_each_format_the_manifest_may_name_round_trips_through_its_name() -> None:
    assert [format_of("x", name).name for name in FORMATS] == list(FORMATS)
    schema = json.loads(schema_text())
    assert schema["$defs"]["dataset"]["properties"]["format"]["enum"] == list(FORMATS)


def test_compression_of_a_plain_name_is_none() -> None:
    assert (compression_of("a.csv"), compression_of("a.gzip"), compression_of("gz")) == (
        None, None, None,
    )  # fmt: skip


@pytest.mark.parametrize("compression", list(WRITERS))
def test_open_bytes_gives_the_decompressed_content(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "data"
    path.write_bytes(WRITERS[compression](TEXT))
    with open_bytes(str(path), compression) as handle:
        assert handle.read() == TEXT
    with open_bytes(str(path), compression) as handle:  # in pieces, as the scan reads
        pieces = iter(lambda: handle.read(7), b"")
        assert b"".join(pieces) == TEXT


@pytest.mark.parametrize(
    ("compression", "content"),
    [
        ("gzip", b"not gzip"),
        ("gzip", gzip.compress(TEXT)[:50]),
        ("bz2", b"BZh9 not bz2"),
        ("xz", b"not xz"),
        ("zstd", b"\x28\xb5\x2f\xfd not zstd"),
        ("zip", b"PK not zip"),
        ("zip", zipped()),
        ("zip", zipped(("a.csv", TEXT), ("b.csv", TEXT))),
    ],
    ids=["gzip", "gzip-truncated", "bz2", "xz", "zstd", "zip", "zip-empty", "zip-two"],
)
def test_a_damaged_file_raises_a_read_error_only(
    tmp_path: Path, compression: str, content: bytes
) -> None:
    path = tmp_path / "data"
    path.write_bytes(content)
    with pytest.raises(READ_ERRORS), open_bytes(str(path), compression) as handle:
        handle.read()


def test_a_missing_file_raises_a_read_error(tmp_path: Path) -> None:
    with pytest.raises(READ_ERRORS):
        open_bytes(str(tmp_path / "absent.csv.gz"), "gzip").read()


def test_zstd_without_its_package_says_which_extra_to_install(tmp_path: Path) -> None:
    """In an interpreter where zstandard cannot be imported (as without the extra)."""
    path = tmp_path / "data.csv.zst"
    path.write_bytes(WRITERS["zstd"](TEXT))
    code = (
        "from loader.fileformats import READ_ERRORS, open_bytes\n"
        "try:\n"
        f"    open_bytes({str(path)!r}, 'zstd')\n"
        "except READ_ERRORS as error:\n"
        "    print(error)\n"
    )
    printed = without_package("zstandard", code)
    assert printed == (
        "reading .zst files needs the zstandard package (pip install 'flowkit-loader[zstd]')\n"
    )
