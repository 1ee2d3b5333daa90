"""How a data file is stored: its format (CSV or Parquet) and compression, chosen by the
file's suffix or named in the manifest (`format: csv.gz`), and opening it as the bytes
it holds, decompressed on the fly. Standard library only: a plan that finds every file
in the cache knows each one's format without pandas or pyarrow.

Every reading of a CSV file (its header, the check of its shape, pandas' parse, the
location of a problem) goes through `open_bytes`, so each sees the same decompressed
text and a problem's line is a line of that text. The compression is the file's suffix
(`.csv.gz`) or is named in the manifest (`format: csv.gz`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

# Suffix -> compression, as pandas names them.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}

# What `format:` may name, and the suffixes that choose a format by themselves.
FORMATS = ("csv", *(f"csv{suffix}" for suffix in COMPRESSIONS), "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class FileFormat:
    """How a file is read: `csv` with its compression (None: plain), or `parquet`."""

    kind: str
    compression: str | None = None

    @property
    def name(self) -> str:
        """As the manifest names it (and as the cache keys it)."""
        if self.kind == "csv" and self.compression is not None:
            suffix = next(s for s, name in COMPRESSIONS.items() if name == self.compression)
            return f"csv{suffix}"
        return self.kind


def format_of(path: str, named: str | None = None) -> FileFormat:
    """The format the manifest names, else the one the file's suffix says; CSV by
    default (a `.txt` or suffix-less file is read as CSV, as it always was)."""
    if named is not None:
        if named == "parquet":
            return FileFormat("parquet")
        return FileFormat("csv", compression_of("x." + named.removeprefix("csv")))
    if path.lower().endswith(PARQUET_SUFFIXES):
        return FileFormat("parquet")
    return FileFormat("csv", compression_of(path))


class CompressionError(Exception):
    """A compressed file that cannot be opened as one (the message says why)."""


# What reading a damaged compressed file raises (gzip's BadGzipFile is an OSError, a
# truncated stream an EOFError; zstandard's errors are raised as OSError).
READ_ERRORS: tuple[type[Exception], ...] = (
    OSError, EOFError, lzma.LZMAError, zlib.error, CompressionError,
)  # fmt: skip


def compression_of(path: str) -> str | None:
    """The compression its suffix names, or None for a plain file."""
    for suffix, name in COMPRESSIONS.items():
        if path.lower().endswith(suffix):
            return name
    return None


def open_bytes(path: str, compression: str | None) -> io.BufferedIOBase:
    """The file's content (decompressed); OSError when it cannot be opened, and
    CompressionError for a zip archive that does not hold exactly one file or for zstd
    without its package."""
    if compression is None:
        return open(path, "rb")
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bz2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    if compression == "zstd":
        try:
            import zstandard  # an optional extra: flowkit-loader[zstd]
        except ImportError:
            raise CompressionError(
                "reading .zst files needs the zstandard package "
                "(pip install 'flowkit-loader[zstd]')"
            ) from None
        raw = open(path, "rb")  # noqa: SIM115 (closed with the stream)
        stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return _Wrapped(stream, zstandard.ZstdError)
    if compression == "zip":
        return _zip_member(path)
    raise CompressionError(f"unknown compression {compression!r}")


def _zip_member(path: str) -> io.BufferedIOBase:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise CompressionError(f"not a zip archive: {error}") from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) != 1:
        archive.close()
        raise CompressionError(
            f"a zip archive must hold exactly one file (this one holds {len(members)})"
        )
    return _Wrapped(archive.open(members[0]), zipfile.BadZipFile, archive)


class _Wrapped(io.BufferedIOBase):
    """A decompressing stream as a buffered binary file: its own errors raised as OSError
    (one kind of failure for every caller), and `also` closed with it (a zip archive)."""

    def __init__(
        self, stream: Any, errors: type[Exception], also: zipfile.ZipFile | None = None
    ) -> None:
        self._stream = stream
        self._errors = errors
        self._also = also

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._stream.read(-1 if size is None else size)
        except self._errors as error:
            raise OSError(f"damaged compressed data: {error}") from None
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            if self._also is not None:
                self._also.close()
            super().close()


__all__ = [
    "COMPRESSIONS", "FORMATS", "READ_ERRORS", "CompressionError", "FileFormat", "compression_of",
    "format_of", "open_bytes",
]  # fmt: skip
