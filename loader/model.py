"""The vocabulary every layer shares: frozen dataclasses for the manifest, datasets and
problems, the error family, and exact value arithmetic.

This module sits at the bottom of the pipeline and uses the standard library only.

Values are carried as integers of nano-units ("nanos"): the backend stores every value as
DECIMAL(20,9), so an integer count of 1e-9 is exactly what it keeps, and int64 holds the
whole admissible range (|v| <= 2,147,483,647 gives |nanos| < 2.2e18 < 9.2e18).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import os
import reprlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Literal, Protocol, TypeVar

NANOS_PER_UNIT = 10**9
# The backend keeps each dataset's min and max in INT columns: a value beyond this is a 500.
MAX_ABS_VALUE = 2_147_483_647
DataType = Literal["single_location", "flow"]
DATA_TYPES: tuple[DataType, ...] = ("single_location", "flow")


DIST_INFO = ("flowkit_loader-", ".dist-info")  # an installed wheel's metadata folder


@functools.cache
def loader_version() -> str:
    """This package's version, or 'unknown' in a checkout that was never installed: read
    from the name of its metadata folder on sys.path (`flowkit_loader-VERSION.dist-info`,
    the first one, as importlib.metadata finds it), since importlib.metadata itself, which
    parses every installed package's metadata, costs each plan 20-30 ms (bench/plan.py).
    Anything else (an egg, a zip) is asked of importlib.metadata."""
    prefix, suffix = DIST_INFO
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and name.endswith(suffix):
                return name[len(prefix) : -len(suffix)]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowkit-loader")
    except PackageNotFoundError:
        return "unknown"


class LoaderError(Exception):
    """A problem a user can cause or fix; the CLI prints it on one line, without traceback."""


class ManifestError(LoaderError):
    """The manifest cannot be read or is invalid."""


_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = 60
_EXCERPT.maxlevel = 2

_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", int: "an integer",
               float: "a number", bool: "true or false", type(None): "null"}  # fmt: skip


def excerpt(value: object, limit: int = 60) -> str:
    """A value read from a file, as a one-line message may quote it: short printable
    text as it is, anything else as a repr cut to `limit` characters. A damaged or
    hand-edited file may hold anything, of any length: an error line never echoes it."""
    if isinstance(value, str):
        # Text stays unquoted (messages put it in quotes), its unprintables escaped.
        text = value if value.isprintable() else value.encode("unicode_escape").decode()
    else:
        text = _EXCERPT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 dataset`, `2 datasets`, `1,024 config entities` (`words` when not just `+s`)."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def json_kind(value: object) -> str:
    """What a parsed JSON value is, as a message says it ("an array", "null", ...)."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------
# Problems: what validate reports


@dataclass(frozen=True, order=True)
class Position:
    """A place in a file: 1-based line and column, either may be unknown (0); or, in a
    file of rows without lines (Parquet), the 1-based row."""

    path: str
    line: int = 0
    column: int = 0
    row: int = 0

    def __str__(self) -> str:
        if self.row:
            return f"{self.path}:row {self.row}"
        if self.line and self.column:
            return f"{self.path}:{self.line}:{self.column}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


# Every character str.splitlines() breaks at, and the tab, shown escaped.
_ONE_LINE = {
    ord(c): c.encode("unicode_escape").decode()
    for c in "\n\r\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
}


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    position: Position
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        # One problem, one line: a value quoted from a file may hold line breaks.
        message = self.message.translate(_ONE_LINE)
        return f"{self.position}: {prefix}{message}"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


# ---------------------------------------------------------------------------------------
# Exact values


def canonical_nanos(value: float | str) -> int:
    """The value the backend's DECIMAL(20,9) stores, in nanos: the float's shortest decimal
    text rounded to 9 decimals, half away from zero (-0 becomes 0)."""
    with localcontext() as context:
        context.prec = 400  # any finite float, 1e308 included (the range check is elsewhere)
        exact = Decimal(repr(float(value))) * NANOS_PER_UNIT
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def value_nanos(value: float) -> int:
    """`canonical_nanos` of one finite float, fast: the same rounding done on the digits
    of its shortest text with integer arithmetic (servers convert values one by one)."""
    if value.is_integer() and abs(value) < 2**53:
        return int(value) * NANOS_PER_UNIT  # its shortest text is this very integer
    text = repr(value)
    if "e" in text:
        return canonical_nanos(value)
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    if len(frac) <= 9:
        nanos = int(whole + frac.ljust(9, "0"))
    else:  # half away from zero: the tenth digit decides (any later digit only adds)
        nanos = int(whole + frac[:9]) + (frac[9] >= "5")
    return -nanos if negative else nanos


def nanos_to_text(nanos: int) -> str:
    """The shortest decimal text of a nanos value: 1500000000 -> '1.5', -1 -> '-0.000000001'."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_UNIT)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


def nanos_to_float(nanos: int) -> float:
    """The float the real backend answers for a stored DECIMAL (it converts the decimal)."""
    return float(nanos_to_text(nanos))


# ---------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True, order=True)
class DatasetKey:
    """A dataset's identity on the backend: one indicator at one resolution on one date.

    `dt` is always the backend's `YYYY-MM-DD HH:MM:SS` text.
    """

    category_id: str
    indicator_id: str
    srid: int
    trid: int
    dt: str

    def __str__(self) -> str:
        return f"{self.indicator_id} srid={self.srid} trid={self.trid} {self.dt}"

    @property
    def order(self) -> tuple[str, str, int, int, str]:
        """The fields as a tuple, in the order keys sort: `sorted(keys, key=by_key)` compares
        tuples in C, several times faster than the dataclass's own comparison."""
        return (self.category_id, self.indicator_id, self.srid, self.trid, self.dt)

    def to_json(self) -> dict[str, Any]:
        """The key as every JSON the loader writes or sends holds it: the record, the
        journal, plan files, the data cache, content digests and /data metadata."""
        return {"category_id": self.category_id, "indicator_id": self.indicator_id,
                "srid": self.srid, "trid": self.trid, "dt": self.dt}  # fmt: skip

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DatasetKey:
        """`to_json`'s output read back, each field's type checked and nothing converted;
        a KeyShapeError names the first field that is missing or not of its type."""
        if type(raw) is dict:  # the fast path: the JSON the loader wrote, every field right
            fields: tuple[Any, ...] = tuple(raw.get(name) for name, _ in _KEY_FIELDS)
            if tuple(map(type, fields)) == _KEY_TYPES:
                return cls(*fields)
        values: list[Any] = []
        for name, kind in _KEY_FIELDS:
            value = raw.get(name) if isinstance(raw, Mapping) else None
            if not isinstance(value, kind) or isinstance(value, bool):
                raise KeyShapeError(name, "a string" if kind is str else "an integer")
            values.append(value)
        return cls(*values)


_KEY_FIELDS = (("category_id", str), ("indicator_id", str), ("srid", int), ("trid", int),
               ("dt", str))  # fmt: skip
_KEY_TYPES = tuple(kind for _, kind in _KEY_FIELDS)


def by_key(item: DatasetKey | tuple[DatasetKey, Any]) -> tuple[str, str, int, int, str]:
    """A sort key for dataset keys, or for (key, value) items: `DatasetKey.order`."""
    return item.order if isinstance(item, DatasetKey) else item[0].order


class KeyShapeError(ValueError):
    """A dataset key's field that is missing or of another type (`name`, and what was
    `expected` there: "a string", "an integer")."""

    def __init__(self, name: str, expected: str) -> None:
        super().__init__(f"{name}: {expected} expected")
        self.name = name
        self.expected = expected


@dataclass(frozen=True)
class DatasetStats:
    """Count, sum, min and max of a dataset's values, in nanos (exact)."""

    count: int
    sum: int
    min: int
    max: int


@dataclass(frozen=True)
class DatasetSummary:
    """Everything plan and state need of a canonical dataset, without its values."""

    key: DatasetKey
    data_type: DataType
    revision: str
    digest: str
    stats: DatasetStats
    source: str  # the CSV it came from, as the manifest names it


DIGEST_VERSION = 1


def dataset_digest(
    key: DatasetKey, revision: str, data_type: str, unit_lines: str, values_le64: bytes
) -> str:
    """The content digest of a canonical dataset, prefixed by its format version.

    It covers the identity, the revision, the data type, the sorted units (one line each,
    origin and destination separated by a tab) and the values as little-endian int64 nanos.
    """
    header = {**key.to_json(), "revision": revision, "data_type": data_type}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    digest.update(b"\0")
    digest.update(unit_lines.encode())
    digest.update(b"\0")
    digest.update(values_le64)
    return f"{DIGEST_VERSION}:{digest.hexdigest()}"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A canonical dataset: rows sorted by unit, values in nanos.

    Units are kept per role, `(units,)` for single-location data and `(origins,
    destinations)` for flows, as parallel sequences: far lighter than a tuple per row.
    """

    summary: DatasetSummary
    unit_columns: tuple[Sequence[str], ...]
    values: Sequence[int]

    @property
    def key(self) -> DatasetKey:
        return self.summary.key

    @property
    def units(self) -> list[tuple[str, ...]]:
        """One tuple per row: (unit,) or (origin, destination)."""
        return list(zip(*self.unit_columns, strict=True))


# ---------------------------------------------------------------------------------------
# The setup config


class EntityKind(enum.Enum):
    """Config entity kinds in dependency order; the value is the config.json list name."""

    LANGUAGE = "languages"
    DATA_PROVIDER = "data_providers"
    CATEGORY = "categories"
    INDICATOR = "indicators"
    SPATIAL_RESOLUTION = "spatial_resolutions"
    TEMPORAL_RESOLUTION = "temporal_resolutions"

    @property
    def id_field(self) -> str:
        return _ID_FIELDS[self]

    @property
    def singular(self) -> str:
        return self.value[:-1].replace("_", " ").replace("categorie", "category")


_ID_FIELDS = {
    EntityKind.LANGUAGE: "lid",
    EntityKind.DATA_PROVIDER: "dpid",
    EntityKind.CATEGORY: "category_id",
    EntityKind.INDICATOR: "indicator_id",
    EntityKind.SPATIAL_RESOLUTION: "srid",
    EntityKind.TEMPORAL_RESOLUTION: "trid",
}


@dataclass(frozen=True, eq=False)
class ConfigEntity:
    """One config object exactly as the backend stores it, its id field included."""

    kind: EntityKind
    id: int | str
    label: str  # how the manifest names it (code, name, label or id)
    body: Mapping[str, Any]

    @functools.cached_property
    def digest(self) -> str:
        """The body's digest, computed once (a spatial resolution's boundaries are
        megabytes of JSON, and a plan compares each entity more than once)."""
        return entity_digest(self.body)

    @property
    def digest_key(self) -> str:
        """What, with the digest of the config text it comes from, determines its body
        (the config's object of this kind and label, given this id): where its digest is
        remembered (checked.py)."""
        return f"{self.kind.value}/{self.label}/{self.id!r}"

    def knowing_digest(self, digest: str) -> ConfigEntity:
        """This entity, its digest remembered from an earlier run on the same config text
        (stored where `cached_property` keeps what it computed; a copy made by `replace`
        computes its own)."""
        self.__dict__["digest"] = digest
        return self


def entity_digest(body: Mapping[str, Any]) -> str:
    """A config body's digest: canonical JSON, so that key order does not matter."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TemporalResolution:
    trid: int
    label: str
    unit: str  # years | months | weeks | days | hours
    step: int
    date_format: str


@dataclass(frozen=True)
class SpatialResolution:
    srid: int
    label: str
    unit_property: str | None  # the boundary property that holds unit codes
    unit_codes: frozenset[str] | None  # None when the config carries no boundaries


@dataclass(frozen=True)
class Category:
    category_id: str
    data_type: DataType
    indicators: tuple[str, ...]


@dataclass(frozen=True)
class SetupConfig:
    """The deployment's config with every id resolved (for one target)."""

    entities: tuple[ConfigEntity, ...]
    categories: Mapping[str, Category]
    spatial: Mapping[str, SpatialResolution]  # by label
    temporal: Mapping[str, TemporalResolution]  # by label
    # (kind, label) of entities left out for a problem already reported (no id, bad type)
    excluded: frozenset[tuple[EntityKind, str]] = frozenset()

    def indicator_category(self, indicator_id: str) -> str | None:
        for category in self.categories.values():
            if indicator_id in category.indicators:
                return category.category_id
        return None

    @property
    def labels(self) -> ResolutionLabels:
        return ResolutionLabels(
            tuple(sorted((s.srid, s.label) for s in self.spatial.values())),
            tuple(sorted((t.trid, t.label) for t in self.temporal.values())),
        )


@dataclass(frozen=True)
class ResolutionLabels:
    """The labels of a setup's resolutions by id, so that people read `srid=2 (District)`
    where the backend speaks of srid 2."""

    spatial: tuple[tuple[int, str], ...] = ()
    temporal: tuple[tuple[int, str], ...] = ()

    def series(self, srid: int, trid: int) -> str:
        """`srid=2 (District) trid=4 (Day)`: an id without a label is shown bare."""
        spatial, temporal = self.label_of("spatial", srid), self.label_of("temporal", trid)
        return (f"srid={srid}{f' ({spatial})' if spatial else ''} "
                f"trid={trid}{f' ({temporal})' if temporal else ''}")  # fmt: skip

    def label_of(self, kind: Literal["spatial", "temporal"], number: int) -> str | None:
        labels = self.spatial if kind == "spatial" else self.temporal
        return next((label for found, label in labels if found == number), None)

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"spatial": {str(i): label for i, label in self.spatial},
                "temporal": {str(i): label for i, label in self.temporal}}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> ResolutionLabels:
        """What a plan file holds (older ones hold none: no labels)."""
        if not isinstance(data, Mapping):
            return cls()

        def pairs(kind: str) -> tuple[tuple[int, str], ...]:
            found = data.get(kind)
            if not isinstance(found, Mapping):
                return ()
            return tuple(sorted((int(i), str(v)) for i, v in found.items() if str(i).isdigit()))

        return cls(pairs("spatial"), pairs("temporal"))


# ---------------------------------------------------------------------------------------
# The manifest


class Role(enum.Enum):
    """Who does what on the backend: each may have its own credential."""

    ADMIN = "admin"  # config
    UPDATER = "updater"  # data and grants
    READER = "reader"  # refresh reads


@dataclass(frozen=True)
class Credential:
    """How to obtain a bearer token. Secrets are held as the names of environment variables,
    never as values, so that no manifest object can leak one."""

    kind: Literal["client_credentials", "token"]
    secret_env: str  # client_secret for client credentials, the token itself otherwise
    client_id: str | None = None
    token_url: str | None = None
    audience: str | None = None


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # local:/absolute/path.db or http(s)://host/v1
    state: str  # a path (absolute) or a URL
    credentials: Mapping[Role, Credential] = field(default_factory=dict)
    scope_readers: Mapping[str, Credential] = field(default_factory=dict)
    ca_bundle: str | None = None

    @property
    def is_local(self) -> bool:
        return self.url.startswith("local:")

    @property
    def local_path(self) -> str:
        return self.url.removeprefix("local:")


DEFAULT_MISSING = ("", "NA", "NaN", "N/A", "null")


@dataclass(frozen=True)
class DatasetSpec:
    """One `datasets` entry: a file or glob and how its columns map to datasets."""

    index: int  # position in the manifest's list
    pattern: str  # as written
    files: tuple[str, ...]  # absolute paths, sorted
    category_id: str
    data_type: DataType
    spatial_resolution: str  # label
    temporal_resolution: str  # label
    date_column: str
    unit_columns: tuple[str, ...]  # (unit,) or (origin, destination)
    indicator_columns: Mapping[str, str]  # explicit column -> indicator id
    exclude: frozenset[str]
    revision: str
    date_format: str | None
    position: Position
    # Spellings of a missing value in indicator columns (skipped, never sent); unit and
    # date columns know only the empty cell: a unit code `NA` is Namibia.
    missing: tuple[str, ...] = DEFAULT_MISSING
    format: str | None = None  # as the manifest names it (fileformats.FORMATS); else by suffix


@dataclass(frozen=True)
class AccessRule:
    """Which datasets one scope may read: indicators by id or glob, resolutions, dates.

    Dates follow the backend's /query: `start` in the resolution's format and `duration`
    steps (start, start + 1 step, ..., start + (duration - 1) steps); without `duration`
    the range is open (from `start`, or from the beginning, up to `until` if given).
    """

    scope: str
    indicator: str
    spatial_resolutions: tuple[str, ...] | None  # labels; None: all
    temporal_resolutions: tuple[str, ...] | None
    start: str | None
    duration: int | None
    until: str | None
    position: Position


@dataclass(frozen=True)
class Manifest:
    path: str
    version: int
    targets: Mapping[str, Target]
    default_target: str | None
    setups: Mapping[str, SetupConfig]  # by target name: each target may keep its own ids
    datasets: tuple[DatasetSpec, ...]
    access: tuple[AccessRule, ...]
    revision: str

    def setup(self, target: str | None = None) -> SetupConfig:
        return self.setups[self.target(target).name]

    def target(self, name: str | None = None) -> Target:
        chosen = name or self.default_target
        if chosen is None:
            names = ", ".join(sorted(self.targets))
            raise ManifestError(f"{self.path}: several targets ({names}); choose one with --target")
        if chosen not in self.targets:
            names = ", ".join(sorted(self.targets))
            raise ManifestError(f"{self.path}: no target named '{chosen}' (targets: {names})")
        return self.targets[chosen]


# ---------------------------------------------------------------------------------------
# The Backend protocol: what the real FlowKit-UI backend can answer, and nothing more.
# No grant listing and no full config read: the real service has neither.


class BackendError(LoaderError):
    """The backend refused or failed a request: names the call, the status and its text."""

    def __init__(self, call: str, status: int, text: str) -> None:
        super().__init__(f"{call}: {status} {text}")
        self.call = call
        self.status = status
        self.text = text


class ScopeError(BackendError):
    """The credential lacks the scope a call needs (the real service answers 401)."""


@dataclass(frozen=True)
class EntityWrite:
    """A config create: `created` (201), or existed (303) with the object as stored."""

    created: bool
    stored: Mapping[str, Any]


@dataclass(frozen=True)
class DatasetWrite:
    """A dataset create: `created` (201) or the identity existed (303), with its mdid.

    303 says nothing about the content (Hazard 9): it is not proof that it is ours.
    """

    created: bool
    mdid: int


@dataclass(frozen=True)
class SetupView:
    """What GET /setup shows: languages and data providers only (unfiltered)."""

    languages: tuple[Mapping[str, Any], ...]
    data_providers: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class QueryRange:
    """A /query selection: one indicator at one resolution over a range of dates, with
    `start_date` in the temporal resolution's format and `duration` in its steps."""

    category_id: str
    indicator_id: str
    srid: int
    trid: int
    start_date: str
    duration: int

    def body(self, mdids_only: bool) -> dict[str, Any]:
        """The /query (and /csv) request body."""
        return {
            "category_id": self.category_id,
            "indicator_id": self.indicator_id,
            "srid": self.srid,
            "trid": self.trid,
            "start_date": self.start_date,
            "duration": self.duration,
            "mdids_only": mdids_only,
        }


# date (in the resolution's format) -> unit tuple -> value as the server answers it
Content = Mapping[str, Mapping[tuple[str, ...], float]]
# One /csv row: the dataset's day (YYYY-MM-DD), its unit tuple, the stored DECIMAL's text
ExactRow = tuple[str, tuple[str, ...], str]


def content_of(data_by_date: Mapping[str, Mapping[str, Any]]) -> Content:
    """A /query `data_by_date` as dates -> unit tuples -> values (flows come nested)."""
    content: dict[str, dict[tuple[str, ...], float]] = {}
    for date, cells in data_by_date.items():
        flat: dict[tuple[str, ...], float] = {}
        for unit, value in cells.items():
            if isinstance(value, Mapping):
                flat.update({(unit, destination): v for destination, v in value.items()})
            else:
                flat[(unit,)] = value
        content[date] = flat
    return content


def exact_rows(text: str) -> tuple[ExactRow, ...]:
    """A /csv answer (CRLF lines `date,area_code,value` or `date,origin_code,
    destination_code,value`; codes never hold commas: they are boundary codes) as rows."""
    rows = []
    for line in text.split("\r\n")[1:]:
        if line:
            date, _, rest = line.partition(",")
            units, _, value = rest.rpartition(",")
            rows.append((date, tuple(units.split(",")), value))
    return tuple(rows)


def metadata_of(key: DatasetKey, revision: str) -> dict[str, Any]:
    """A dataset's metadata as the service wants it: never an mdid (Hazard 6), `dt` as
    `YYYY-MM-DD HH:MM:SS`."""
    return {"revision": revision, **key.to_json()}


def stored_matches(desired: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether a config object as the server stores it holds every value the desired one
    gives (the server adds fields and answers numbers as it likes)."""
    for name, value in desired.items():
        if value is None or name not in stored:
            continue
        have = stored[name]
        if isinstance(value, int | float) and isinstance(have, int | float):
            if float(value) != float(have):
                return False
        elif have != value:
            return False
    return True


_Opened = TypeVar("_Opened", bound="Backend")


@dataclass(frozen=True)
class Identity:
    """Who a backend calls as for one role, as the server sees the caller: the subject its
    history names, the scopes it may call with, the permissions that decide what it sees."""

    subject: str
    scopes: frozenset[str]
    permissions: frozenset[str]


class Backend(Protocol):
    """The operations of a FlowKit-UI backend that a loader may use, and the connection
    they go over. Every kind implements all of it (a kind that cannot do something says
    so by value: no identities, no reader), so that no caller has to ask which kind it
    holds; `loader/backends/factory.py` opens one by its target's URL scheme.

    Opened backends are context managers: `with open_backend(...) as backend:` closes
    it, and every reader it opened, on the way out.
    """

    # -- the connection -----------------------------------------------------------------

    def wait_ready(self, seconds: float) -> str:
        """Wait up to `seconds` (0: ask once) for the backend to answer, and say in one
        line what answered; a LoaderError when it does not answer in time, or answers
        with an API this loader does not know."""
        ...

    def identities(self, roles: Iterable[Role]) -> dict[Role, Identity | LoaderError]:
        """Each of `roles` that has a credential of its own, as its token shows it (or why
        none could be had). One credential for several roles is asked once. Empty for a
        backend without credentials (the embedded one: one principal answers for all)."""
        ...

    def acting_as(self, roles: Iterable[Role]) -> str:
        """Who the apply history names for work done with `roles`."""
        ...

    def preflight(self, roles: Iterable[Role]) -> None:
        """Before anything is written: every role holds the scopes its work needs
        (`contract.ROLE_SCOPES`); a ScopeError naming the first one missing."""
        ...

    def reader(self, scope: str) -> Backend | None:
        """This backend as `scope`'s readers see it, to check grants (which the server
        cannot list); None when it has no way to look as them. Closed with this one."""
        ...

    def close(self) -> None: ...

    def __enter__(self: _Opened) -> _Opened:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the service --------------------------------------------------------------------

    def read_setup(self) -> SetupView: ...

    def replace_setup(self, config: Mapping[str, Any]) -> None: ...

    def create_entity(self, kind: EntityKind, body: Mapping[str, Any]) -> EntityWrite: ...

    def update_entity(
        self, kind: EntityKind, entity_id: int | str, body: Mapping[str, Any]
    ) -> None: ...

    def delete_entity(self, kind: EntityKind, entity_id: int | str) -> None: ...

    def read_entity(self, kind: EntityKind, entity_id: int | str) -> Mapping[str, Any] | None:
        """One category, indicator or resolution, or None: the server shows only those
        with a dataset the caller may see (languages and providers: `read_setup`)."""
        ...

    def create_dataset(self, dataset: Dataset) -> DatasetWrite: ...

    def update_dataset(self, dataset: Dataset) -> int: ...

    def delete_dataset(self, summary: DatasetSummary) -> None: ...

    def list_entities(self, kind: EntityKind) -> tuple[Mapping[str, Any], ...]:
        """Every category, indicator or resolution with a dataset the caller may see
        (spatial resolutions without their boundaries: `read_entity` has them)."""
        ...

    def date_range(
        self, category_id: str, indicator_id: str, srid: int, trid: int
    ) -> tuple[str, ...]:
        """The dates from the first visible dataset of a series to its last, in the
        temporal resolution's format, gaps filled (/timerange); () when none is visible."""
        ...

    def visible_mdids(self, query: QueryRange) -> frozenset[int]: ...

    def dataset_content(self, query: QueryRange) -> Content: ...

    def exact_values(self, query: QueryRange) -> tuple[ExactRow, ...] | None:
        """The values of a range as stored, digit for digit (/csv); None for a category
        the service cannot give so (`contract.CSV_CATEGORIES` only). The range must hold
        a visible dataset: the service cannot tell an empty range from a failure."""
        ...

    def grant(self, scope: str, mdid: int) -> bool: ...

    def revoke(self, scope: str, mdid: int) -> None: ...
