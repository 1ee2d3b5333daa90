"""One scenario per observation of the real service: the state it needs and the call
that replays it, against a `Caller` (over HTTP or in-process).

Scenarios run in groups, each on a fresh database, in the order the observations were
made where they form a sequence (the `data` and `scope_mapping` sections share one
database, as the mdids they recorded show). State is built with calls, as a client
would: the upstream config.json with the ids the notebook assumed (languages en 1 fr 2
ht 3, data provider 1, srids Department 1 / Commune 2 / Communal section 3, trids Year 1 /
Month 2 / Week 3 / Day 4), or without them where the observation is about ids assigned
by the service; and the notebook's datasets, cut to their first cells except for the
indicators whose recorded answers depend on all of them.

A '(DB / derived)' row records database state; its scenario reads what the API can show
of it, and `project` turns the recorded value into exactly that part, compared by value:
what a projection leaves out (row ids, tables, dates added, row counts) the API cannot
show. Scope mappings cannot be listed: they are read as which development token sees
the dataset (`visible_to`).
"""

from __future__ import annotations

import copy
import csv
import gzip
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from tests.conftest import UPSTREAM_DATA

# -- the interface ---------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What a call answered: status, Content-Type, the body (JSON value, text, or None
    when empty) and its raw text; a derived row has status "" and a computed body."""

    status: int | str
    content_type: str
    body: Any
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Caller(Protocol):
    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = "admin",
        gzip: bool = False,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        root: bool = False,
    ) -> Observed:
        """`path` is under the API's base (/v1) unless `root`; `token` names a development
        client (admin, updater, reader, premium), a forged token (garbage, foreign,
        unknown-kid, hs256) or None; `raw` is sent as the body as it is."""
        ...


@dataclass
class Context:
    """A group's run: the answers so far, by observation name, and scratch values."""

    results: dict[str, Observed] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)

    def body(self, name: str) -> Any:
        return self.results[name].body


Run = Callable[[Caller, Context], Observed]


@dataclass(frozen=True)
class Relation:
    """A relation the recording shows between this body and another observation's (or
    a constant's, when `other` is None) that the replay must show too."""

    other: str | None
    holds: Callable[[Any, Any], bool]
    text: str


@dataclass(frozen=True)
class Scenario:
    section: str
    name: str
    run: Run
    http_only: bool = False  # about the transport: auth headers, tokens, bodies, routes
    exact: bool | frozenset[str] = False  # values matter (all, or under these keys)
    sized: bool = False  # list lengths matter
    full_length: bool = False  # a cut body's recorded length must match the whole answer
    project: Callable[[Any], Any] | None = None  # derived rows: the recorded part checked
    relation: Relation | None = None

    @property
    def key(self) -> str:
        return f"{self.section} / {self.name}"


@dataclass(frozen=True)
class Prep:
    """State a group's next scenarios need (not an observation); must not fail."""

    label: str
    run: Callable[[Caller, Context], None]


@dataclass(frozen=True)
class Group:
    name: str
    steps: tuple[Scenario | Prep, ...]

    @property
    def scenarios(self) -> list[Scenario]:
        return [s for s in self.steps if isinstance(s, Scenario)]


class PrepError(AssertionError):
    pass


def expect(observed: Observed, *statuses: int, what: str) -> Observed:
    if observed.status not in statuses:
        raise PrepError(f"{what}: {observed.status} {observed.text!r:.300}")
    return observed


# -- reference data --------------------------------------------------------------------

SENT_FRACTIONS = (0.123456789012, -0.68, 0.5, -0.5, 1e-10, 2.5, 1.5, 123456.12345678912, -1.49)
# Indicators whose recorded answers (min, max, unit counts, whole CSVs) need every cell.
FULL_INDICATORS: Mapping[str, frozenset[str] | None] = {
    "residents.residents": None,
    "residents.abnormality": None,
    "presence.presence": None,
    "relocations.relocations": frozenset({"2020-02-01", "2020-03-01"}),
}
CELLS_PER_DATASET = 15  # the others: their first cells (the recorded prefixes show ~13)
NOTEBOOK_FILES = (
    ("residents_admin3_monthly_small", "residents", 3, 2),
    ("relocations_admin3_monthly_small", "relocations", 3, 2),
    ("presence_admin3_daily_small", "presence", 3, 4),
    ("movements_admin3_daily_small", "movements", 3, 4),
)
# The notebook's data_access: which scope may read which query's datasets.
DATA_ACCESS = {
    "read:free_data": [("residents", "residents.residents", "2020-02", 3)],
    "read:premium_data": [
        ("residents", "residents.residents", "2020-02", 6),
        ("residents", "residents.residents_perKm2", "2020-02", 6),
    ],
}
TOKEN_SCOPES = (("admin", "admin"), ("reader", "read:free_data"), ("premium", "read:premium_data"))


# The configs are built once and shared: callers send them, never change them.


@cache
def upstream_config() -> dict[str, Any]:
    """config.json as upstream ships it: no lid, dpid, srid or trid."""
    config: dict[str, Any] = json.loads((UPSTREAM_DATA / "config.json").read_text("utf-8"))
    return config


@cache
def config_with_trids() -> dict[str, Any]:
    """What the observer posted: config.json with trid 1..4 added (the service cannot
    assign trids), lid, dpid and srid left to the service."""
    config = copy.deepcopy(upstream_config())
    for trid, resolution in enumerate(config["temporal_resolutions"], start=1):
        resolution["trid"] = trid
    return config


@cache
def config_with_ids() -> dict[str, Any]:
    """config.json with the ids the notebook assumed, every one explicit."""
    config = copy.deepcopy(config_with_trids())
    for lid, language in enumerate(config["languages"], start=1):
        language["lid"] = lid
    for dpid, provider in enumerate(config["data_providers"], start=1):
        provider["dpid"] = dpid
    for srid, resolution in enumerate(config["spatial_resolutions"], start=1):
        resolution["srid"] = srid
    assert [r["label"] for r in config["spatial_resolutions"]] == [
        "Department", "Commune", "Communal section"]  # fmt: skip
    assert [r["label"] for r in config["temporal_resolutions"]] == [
        "Year", "Month", "Week", "Day"]  # fmt: skip
    return config


@cache
def _csv_rows(name: str) -> tuple[tuple[str, ...], ...]:
    with (UPSTREAM_DATA / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
        return tuple(tuple(row) for row in csv.reader(handle))


def dataset(
    category: str,
    indicator: str,
    dt: str,
    cells: Sequence[tuple[str | tuple[str, str], Any]],
    *,
    srid: int = 3,
    trid: int = 2,
    data_type: str = "single_location",
    date_added: bool = True,
    **metadata: Any,
) -> dict[str, Any]:
    """A Dataset body as the notebook builds it (`dt` as str(datetime))."""
    meta: dict[str, Any] = {"revision": "v0.1-demo"}
    if date_added:
        meta["date_added"] = "2023-03-17T15:23:46"
    meta |= {"category_id": category, "indicator_id": indicator, "srid": srid, "trid": trid,
             "dt": dt, **metadata}  # fmt: skip
    return {
        "metadata": meta,
        "data_type": data_type,
        "data_input": [
            {"spatial_unit_ids": [unit] if isinstance(unit, str) else list(unit), "data": v}
            for unit, v in cells
        ],
    }


@cache
def notebook_datasets(only: frozenset[str] | None = None, full: bool = True) -> tuple[Any, ...]:
    """The notebook's datasets from the upstream CSVs (one per indicator and date, values
    as the CSV's strings, empty and NaN cells skipped), each cut to its first cells but
    for FULL_INDICATORS (when `full`); `only`: these indicators."""
    config = upstream_config()
    indicators = {i["indicator_id"] for i in config["indicators"]}
    types = {c["category_id"]: c["type"] for c in config["categories"]}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, category, srid, trid in NOTEBOOK_FILES:
        rows = _csv_rows(name)
        header, flow = rows[0], types[category] == "flow"
        for row in rows[1:]:
            for column, value in zip(header, row, strict=True):
                indicator = f"{category}.{column}"
                if indicator not in indicators or (only and indicator not in only):
                    continue
                if value in ("NaN", "Inf", "-Inf", ""):
                    continue
                date = row[0]
                item = found.get((indicator, date))
                if item is None:
                    item = found[indicator, date] = dataset(
                        category, indicator, f"{date} 00:00:00", [], srid=srid, trid=trid,
                        data_type=types[category])  # fmt: skip
                dates = FULL_INDICATORS.get(indicator, frozenset())
                whole = full and indicator in FULL_INDICATORS and (dates is None or date in dates)
                if not whole and len(item["data_input"]) >= CELLS_PER_DATASET:
                    continue
                units = [row[1], row[2]] if flow else [row[1]]
                item["data_input"].append({"spatial_unit_ids": units, "data": value})
    return tuple(found.values())


def query(
    category: str,
    indicator: str,
    start: str,
    duration: int,
    *,
    srid: int = 3,
    trid: int = 2,
    mdids_only: bool = False,
) -> dict[str, Any]:
    return {"category_id": category, "indicator_id": indicator, "srid": srid, "trid": trid,
            "start_date": start, "duration": duration, "mdids_only": mdids_only}  # fmt: skip


# -- building state --------------------------------------------------------------------


def post_setup(config: Callable[[], dict[str, Any]]) -> Prep:
    def run(c: Caller, ctx: Context) -> None:
        # Upstream answers 500 (Unknown column 'id') after writing everything (Hazard 1).
        expect(c.call("POST", "/setup", config(), gzip=True), 204, 500, what="POST /setup")
        languages = c.call("GET", "/setup", token=None).body["languages"]
        if len(languages) != 3:
            raise PrepError(f"setup did not take: {languages}")

    return Prep("POST /setup", run)


def load_notebook(only: frozenset[str] | None = None, full: bool = True) -> Prep:
    """The notebook's ingestion and its scope mappings (mdids found by admin queries)."""

    def run(c: Caller, ctx: Context) -> None:
        def post(item: Any) -> None:
            expect(c.call("POST", "/data", item, gzip=True), 201, what="POST /data")

        with ThreadPoolExecutor(8) as pool:  # the notebook posts 50 at a time
            list(pool.map(post, notebook_datasets(only, full)))
        for scope, queries in DATA_ACCESS.items():
            for category, indicator, start, duration in queries:
                found = c.call("POST", "/query", query(category, indicator, start, duration,
                                                       mdids_only=True), gzip=True)  # fmt: skip
                for mdid in expect(found, 200, what="mdids").body["mdids"]:
                    mapping = {"scope": scope, "mdid": mdid}
                    expect(c.call("POST", "/scope_mapping", mapping, gzip=True), 201, 303,
                           what="POST /scope_mapping")  # fmt: skip

    return Prep("the notebook's datasets and scope mappings", run)


def census(c: Caller) -> dict[str, Any]:
    """What the API shows of the config: languages and data providers from GET /setup;
    categories, indicators and resolutions only through visible datasets, so a probe
    dataset is posted for every config.json indicator (srids 1..23, trids 1..6 between
    them), the lists read, and the probes deleted again. (PATCH /data creates them: a
    POST waits inside the store's race window for concurrent creates.)"""
    probes = []
    config = upstream_config()
    types = {c["category_id"]: c["type"] for c in config["categories"]}
    for index, indicator in enumerate(config["indicators"]):
        category = indicator["category_id"]
        flow = types[category] == "flow"
        cell: tuple[str | tuple[str, str], Any] = (("PROBE", "PROBE2") if flow else "PROBE", 1)
        probes.append(dataset(category, indicator["indicator_id"], "1999-01-01 00:00:00",
                              [cell], srid=index + 1, trid=index % 6 + 1,
                              data_type=types[category]))  # fmt: skip
    for probe in probes:
        expect(c.call("PATCH", "/data", probe), 201, what="probe")
    try:
        setup = c.call("GET", "/setup", token=None).body
        lists = {kind: c.call("GET", f"/{kind}").body[kind] for kind in (
            "categories", "indicators", "spatial_resolutions", "temporal_resolutions")}  # fmt: skip
    finally:
        for probe in probes:
            expect(c.call("DELETE", "/data", probe), 204, what="probe deleted")
    return {
        "counts": {
            "language": len(setup["languages"]),
            "data_provider": len(setup["data_providers"]),
            "category": len(lists["categories"]),
            "indicator": len(lists["indicators"]),
            "spatial_resolution": len(lists["spatial_resolutions"]),
            "temporal_resolution": len(lists["temporal_resolutions"]),
        },
        "lid": [language["lid"] for language in setup["languages"]],
        "dpid": [provider["dpid"] for provider in setup["data_providers"]],
        "srid(label)": [f"{r['srid']}({r['label']})" for r in lists["spatial_resolutions"]],
        "trid(label)": [f"{r['trid']}({r['label']})" for r in lists["temporal_resolutions"]],
    }


DB_INTERNAL_COUNTS = ("metadata", "scope_mapping", "data_tables")


def census_part(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded census without what the API cannot count: metadata rows, scope mappings
    (they cannot be listed) and data tables."""
    part = dict(recorded)
    part["counts"] = {k: v for k, v in recorded["counts"].items() if k not in DB_INTERNAL_COUNTS}
    return part


def mdids(c: Caller, body: Mapping[str, Any], token: str = "admin") -> list[int]:
    """The mdids a token sees for a query (once per mapping), [] when it sees none."""
    answer = c.call("POST", "/query", {**body, "mdids_only": True}, token=token)
    if answer.status == 404:
        return []
    return [int(m) for m in expect(answer, 200, what="mdids").body["mdids"]]


def visible_to(c: Caller, body: Mapping[str, Any], mdid: int) -> list[list[str]]:
    """Which of the development tokens' permissions see this mdid: the API's view of the
    mdid's scope mappings, as rows of one `scope` column."""
    return [[scope] for token, scope in TOKEN_SCOPES if mdid in mdids(c, body, token)]


def csv_rows(c: Caller, body: Mapping[str, Any]) -> list[list[str]]:
    """[unit(s)..., stored DECIMAL text] per CSV line (POST /csv, built-in categories)."""
    answer = expect(c.call("POST", "/csv", dict(body)), 200, what="POST /csv")
    lines = str(answer.body).split("\r\n")[1:-1]
    return [line.split(",")[1:] for line in lines]


# -- scenario builders -----------------------------------------------------------------


def call(method: str, path: str, body: Any = None, **options: Any) -> Run:
    """A call; `body` may be a function of the context (ids answered earlier)."""

    def run(c: Caller, ctx: Context) -> Observed:
        sent = body(ctx) if callable(body) else body
        return c.call(method, path, sent, **options)

    return run


def derived(compute: Callable[[Caller, Context], Any]) -> Run:
    def run(c: Caller, ctx: Context) -> Observed:
        return Observed("", "", compute(c, ctx))

    return run


def same_as(name: str) -> Relation:
    return Relation(name, lambda mine, theirs: mine == theirs, f"the same body as {name!r}")


def scenarios(section: str, *items: tuple[Any, ...]) -> list[Scenario]:
    """(name, run, options...) tuples of one section."""
    built = []
    for name, run, *options in items:
        built.append(Scenario(section, name, run, **(options[0] if options else {})))
    return built


HTTP: dict[str, Any] = {"http_only": True}
EXACT: dict[str, Any] = {"exact": True}


# -- auth ------------------------------------------------------------------------------

READ_CATEGORIES = call("GET", "/categories")
ANY_DATASET = dataset("residents", "residents.residents", "2020-02-01 00:00:00",
                      [("HT0111-01", 1)])  # fmt: skip

AUTH = Group("auth, routes", tuple(scenarios(
    "auth",
    ("garbage bearer token", call("GET", "/categories", token="garbage"), HTTP),
    ("valid admin token", READ_CATEGORIES),
    ("signed with a foreign key (same kid)", call("GET", "/categories", token="foreign"), HTTP),
    ("unknown kid", call("GET", "/categories", token="unknown-kid"), HTTP),
    ("HS256 token", call("GET", "/categories", token="hs256"), HTTP),
    ("updater token (no read:free_data) on GET /categories",
     call("GET", "/categories", token="updater")),
    ("reader token (no write:data) on POST /data",
     call("POST", "/data", ANY_DATASET, token="reader")),
    ("updater token (no admin) on POST /setup",
     lambda c, ctx: c.call("POST", "/setup", config_with_ids(), token="updater", gzip=True)),
    ("admin token on /heartbeat (no auth needed)", call("GET", "/heartbeat"), HTTP),
    ("GET /heartbeat without version prefix",
     call("GET", "/heartbeat", token=None, root=True), HTTP),
    ("mock: token with wrong secret", call("POST", "/oauth/token", {
        "client_id": "dev-admin", "client_secret": "not the secret",
        "audience": "https://flowkit-ui-backend.local", "grant_type": "client_credentials",
    }, token=None, root=True), HTTP),
    ("mock: token for unknown audience", lambda c, ctx: c.call("POST", "/oauth/token", {
        "client_id": "dev-admin", "client_secret": ctx.scratch["secret"],
        "audience": "https://unknown/", "grant_type": "client_credentials",
    }, token=None, root=True), HTTP),
) + scenarios(
    "openapi",
    ("GET /openapi.json", call("GET", "/openapi.json", token=None, root=True), HTTP),
    ("GET /v1/openapi.json", call("GET", "/v1/openapi.json", token=None, root=True), HTTP),
)))  # fmt: skip


# -- setup -----------------------------------------------------------------------------


def census_row(c: Caller, ctx: Context) -> Any:
    return census(c)


SETUP = Group("setup", tuple(scenarios(
    "setup",
    ("GET /setup on empty schema (no auth)", call("GET", "/setup", token=None), EXACT),
    ("GET /data_providers (no auth)", call("GET", "/data_providers", token=None), EXACT),
    ("admin GET /categories before setup", READ_CATEGORIES, EXACT),
    ("admin GET /indicators before setup", call("GET", "/indicators"), EXACT),
    ("admin GET /spatial_resolutions before setup",
     call("GET", "/spatial_resolutions"), EXACT),
    ("admin GET /temporal_resolutions before setup",
     call("GET", "/temporal_resolutions"), EXACT),
    ("POST /setup with config + trid 1..4 (gzip)",
     lambda c, ctx: c.call("POST", "/setup", config_with_trids(), gzip=True)),
    ("DB after POST /setup (trid-fixed config) on fresh schema", derived(census_row),
     {"project": census_part}),
    ("GET /setup after setup", call("GET", "/setup", token=None),
     {"exact": True, "full_length": True}),
    ("admin GET /categories after setup, no data", READ_CATEGORIES, EXACT),
    ("admin GET /indicators after setup, no data", call("GET", "/indicators"), EXACT),
    ("admin GET /spatial_resolutions after setup, no data",
     call("GET", "/spatial_resolutions"), EXACT),
    ("admin GET /temporal_resolutions after setup, no data",
     call("GET", "/temporal_resolutions"), EXACT),
    ("admin GET /indicators_for_category/residents after setup, no data",
     call("GET", "/indicators_for_category/residents"), EXACT),
    ("admin GET /categories/residents after setup, no data",
     call("GET", "/categories/residents")),
    ("admin GET /temporal_resolutions/2 after setup, no data",
     call("GET", "/temporal_resolutions/2")),
    ("admin GET /spatial_resolutions/3 after setup, no data",
     call("GET", "/spatial_resolutions/3")),
    ("POST /setup 2nd time (plain JSON, no gzip)",
     lambda c, ctx: c.call("POST", "/setup", config_with_trids())),
    ("DB after 2nd POST /setup", derived(census_row), {"project": census_part}),
    ("PATCH /setup with the same config",
     lambda c, ctx: c.call("PATCH", "/setup", config_with_trids(), gzip=True)),
    ("DB after PATCH /setup", derived(census_row), {"project": census_part}),
    ("DELETE /setup", call("DELETE", "/setup")),
    ("DB after DELETE /setup", derived(census_row), {"project": census_part}),
    ("GET /setup after DELETE /setup", call("GET", "/setup", token=None), EXACT),
)))  # fmt: skip

# The raw config.json (no trid) on a fresh schema: the insert stops at the temporal
# resolutions, everything before them stays.
SETUP_RAW = Group("setup (raw config.json)", tuple(scenarios(
    "setup",
    ("POST /setup with upstream config.json (no trid)",
     lambda c, ctx: c.call("POST", "/setup", upstream_config(), gzip=True)),
    ("DB after POST /setup (raw config)", derived(census_row), {"project": census_part}),
)))  # fmt: skip


# -- request bodies --------------------------------------------------------------------

MAPPING_TEXT = b'{"scope": "read:free_data", "mdid": 1}'
JSON_TYPE = {"Content-Type": "application/json"}


REQUEST_BODIES = Group("request bodies", tuple(scenarios(
    "request bodies",
    ("malformed JSON (plain)", call("POST", "/scope_mapping", raw=b'{"scope": "read:free_',
                                    headers=JSON_TYPE), HTTP),
    ("malformed JSON (gzip)", call("POST", "/scope_mapping", raw=gzip.compress(b'{"scope": "read:'),
                                   headers={**JSON_TYPE, "Content-Encoding": "gzip"}), HTTP),
    ("Content-Encoding: gzip but body not gzip",
     call("POST", "/scope_mapping", raw=MAPPING_TEXT,
          headers={**JSON_TYPE, "Content-Encoding": "gzip"}), HTTP),
    ("valid JSON, schema mismatch (mdid missing)",
     call("POST", "/scope_mapping", {"scope": "read:free_data"})),
    ("valid JSON, wrong type (mdid='abc')",
     call("POST", "/scope_mapping", {"scope": "read:free_data", "mdid": "abc"})),
    ("empty body", call("POST", "/scope_mapping", raw=b"", headers=JSON_TYPE), HTTP),
    ("Content-Type text/plain with JSON body",
     call("POST", "/scope_mapping", raw=MAPPING_TEXT, headers={"Content-Type": "text/plain"}),
     HTTP),
    ("POST /data with data='abc'", call("POST", "/data", dataset(
        "residents", "residents.residents", "2020-02-01 00:00:00", [("HT0111-01", "abc")]))),
    ("POST /query malformed start_date",
     call("POST", "/query", query("residents", "residents.residents", "Feb 2020", 1))),
)))  # fmt: skip


# -- data and scope_mapping (one database: the recorded mdids run on) ------------------

NEW_FRACTIONS = "POST /data new dataset (fractional values)"
SMALL_FRACTIONS = "POST /data all values in (-0.5, 0.5) (min=max=0 after rounding)"
RESIDENTS_NEW = "POST /data residents.residents 2020-02 (new)"
PATCHED = "PATCH /data (overwrite)"
BURST = "5 concurrent POST /data with the SAME dataset key"
NEW_PAIR = "POST /scope_mapping new pair"
FLOW_POSTED = "POST /data flow dataset (relocations)"
DT_STRING = "POST /data with dt as '2020-02-01 00:00:00' (notebook's str(datetime))"

ABNORMALITY = query("residents", "residents.abnormality", "2020-02", 1)
RESIDENTS = query("residents", "residents.residents", "2020-02", 1)
UNITS = list("ABCDEFGHI")
PATCHED_CELLS = [("HT0111-01", 11), ("HT0111-02", 22), ("HT0111-03", 33)]
MISSING_DATASET = dataset("residents", "residents.arrived", "2020-05-01 00:00:00",
                          [("HT0111-01", 5)])  # fmt: skip


def residents_at(dt: str, cells: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    return dataset("residents", "residents.residents", dt, cells)


def _stored_fractions(c: Caller, ctx: Context) -> Any:
    stored = [row[-1] for row in csv_rows(c, ABNORMALITY)]
    timerange = c.call("GET", "/timerange/residents/residents.abnormality/3/2").body
    mdid = int(ctx.body(NEW_FRACTIONS))
    return {"sent": list(SENT_FRACTIONS), "stored": stored,
            "metadata(min_value,max_value)": [timerange["min_value"], timerange["max_value"]],
            "scope_mapping": visible_to(c, ABNORMALITY, mdid)}  # fmt: skip


def _without(*keys: str) -> Callable[[Any], Any]:
    def project(recorded: Any) -> Any:
        return {k: v for k, v in recorded.items() if k not in keys}

    return project


def _small_min_max(c: Caller, ctx: Context) -> Any:
    """The INT min/max of one dataset: /timerange shows them for what a token sees, so
    the dataset is shown to premium alone for a moment."""
    mapping = {"scope": "read:premium_data", "mdid": int(ctx.body(SMALL_FRACTIONS))}
    expect(c.call("POST", "/scope_mapping", mapping), 201, what="temporary mapping")
    try:
        path = "/timerange/residents/residents.abnormality/3/2"
        timerange = c.call("GET", path, token="premium").body
    finally:
        expect(c.call("DELETE", "/scope_mapping", mapping), 204, what="mapping deleted")
    return [timerange["min_value"], timerange["max_value"]]


def _key_rows(body: Mapping[str, Any]) -> Callable[[Caller, Context], Any]:
    def compute(c: Caller, ctx: Context) -> Any:
        return mdids(c, body)

    return compute


def _after_patch(c: Caller, ctx: Context) -> Any:
    old, new = int(ctx.body(RESIDENTS_NEW)), int(ctx.body(PATCHED))
    timerange = c.call("GET", "/timerange/residents/residents.residents/3/2").body
    rows = [[m == new, timerange["min_value"], timerange["max_value"]]
            for m in mdids(c, RESIDENTS)]  # fmt: skip
    return {"new mdid differs": new != old, "metadata rows for key": rows,
            "new values": csv_rows(c, RESIDENTS),
            "scope mappings for new mdid": visible_to(c, RESIDENTS, new)}  # fmt: skip


def _after_patch_part(recorded: Any) -> Any:
    """Row ids, the date added, tables and the old mdid's mappings are DB-internal; the
    row's mdid is compared as 'is the new one'."""
    return {
        "new mdid differs": recorded["new_mdid"] != recorded["old_mdid"],
        "metadata rows for key": [[row[0] == recorded["new_mdid"], row[1], row[2]]
                                  for row in recorded["metadata rows for key"]],
        "new values": recorded["new values"],
        "scope mappings for new mdid": recorded["scope mappings for new mdid"],
    }  # fmt: skip


def _burst(c: Caller, ctx: Context) -> Observed:
    """Five POSTs of one new identity at once. The store's check-then-insert race makes
    them all 201 when they overlap; on a loaded machine they may not, so the burst is
    tried again with another date (the observation is about a race it did win)."""
    for month in range(4, 10):
        item = dataset("residents", "residents.departed", f"2020-{month:02d}-01 00:00:00",
                       [("HT0111-01", month)])  # fmt: skip
        answers: list[Observed | None] = [None] * 5

        def post(index: int, item: dict[str, Any] = item, answers: list[Any] = answers) -> None:
            answers[index] = c.call("POST", "/data", item)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        done = [a for a in answers if a is not None]
        ctx.scratch["burst"] = item
        if len(done) == 5 and all(a.status == 201 for a in done):
            break
    ctx.scratch["burst mdids"] = [a.body for a in done]
    statuses = ",".join(str(a.status) for a in done)
    return Observed(statuses, "", {"distinct mdids": len({a.body for a in done})})


def _burst_part(recorded: Any) -> Any:
    """The five answers' mdids ("14,11,15,13,12"): five distinct ones."""
    return {"distinct mdids": len(set(str(recorded).split(",")))}


def _burst_rows(c: Caller, ctx: Context) -> Any:
    meta = ctx.scratch["burst"]["metadata"]
    found = mdids(c, query("residents", meta["indicator_id"], meta["dt"][:7], 1))
    return {
        "rows": len(found),
        "the burst's mdids": sorted(found) == sorted(ctx.scratch["burst mdids"]),
    }


def _client_mdid_rows(c: Caller, ctx: Context) -> Any:
    rows = []
    for month in ("2020-02", "2020-06"):
        for mdid in mdids(c, query("residents", "residents.abnormality", month, 1)):
            rows.append([mdid, f"{month}-01 00:00:00"])
    return rows


def _dt_string_mdid(ctx: Context) -> int:
    return int(ctx.body(DT_STRING))


DATA = Group("data", (
    post_setup(config_with_ids),
    *scenarios(
        "data",
        (NEW_FRACTIONS, call("POST", "/data", dataset(
            "residents", "residents.abnormality", "2020-02-01 00:00:00",
            list(zip(UNITS, SENT_FRACTIONS, strict=True))), gzip=True)),
        ("stored values (DECIMAL(20,9)) + metadata min/max (INT)", derived(_stored_fractions),
         {"project": _without("data_table_ddl")}),
        (SMALL_FRACTIONS, call("POST", "/data", dataset(
            "residents", "residents.abnormality", "2020-03-01 00:00:00",
            [("A", 0.49), ("B", -0.49), ("C", 0.01)]))),
        ("metadata min/max for values 0.49/-0.49/0.01", derived(_small_min_max),
         {"project": lambda recorded: recorded}),
        ("POST /query on that dataset (values as returned)", call("POST", "/query", query(
            "residents", "residents.abnormality", "2020-02", 2)), EXACT),
        ("GET /timerange on that dataset (min/max from INT columns)",
         call("GET", "/timerange/residents/residents.abnormality/3/2"), EXACT),
        ("POST /data value 12345678901.5 (fits DECIMAL(20,9), not INT)",
         call("POST", "/data", dataset("residents", "residents.residents_diffwithref",
                                       "2020-02-01 00:00:00",
                                       [("A", 1), ("B", 12345678901.5)]))),
        ("metadata rows for residents.residents_diffwithref",
         derived(_key_rows(query("residents", "residents.residents_diffwithref", "2020-02", 6))),
         {"project": lambda recorded: recorded}),
        ("POST /data value out of DECIMAL(20,9) range (1e12)",
         call("POST", "/data", dataset("residents", "residents.residents_pctchangewithref",
                                       "2020-02-01 00:00:00", [("A", 1), ("B", 1e12)]))),
        ("stored value for 1e12", derived(_key_rows(query(
            "residents", "residents.residents_pctchangewithref", "2020-02", 6))),
         {"project": lambda recorded: recorded}),
        ("POST /data value > INT range for min/max (3e9)",
         call("POST", "/data", dataset("residents", "residents.departed",
                                       "2020-02-01 00:00:00", [("A", 3e9)]))),
        ("metadata rows for residents.departed after 3e9",
         derived(_key_rows(query("residents", "residents.departed", "2020-02", 6))),
         {"project": lambda recorded: recorded}),
        ("POST /data value NaN", call("POST", "/data", dataset(
            "residents", "residents.delta_arrived", "2020-02-01 00:00:00",
            [("A", float("nan"))]))),
        ("metadata rows for residents.delta_arrived after NaN",
         derived(_key_rows(query("residents", "residents.delta_arrived", "2020-02", 6))),
         {"project": lambda recorded: recorded}),
        (RESIDENTS_NEW, call("POST", "/data", residents_at(
            "2020-02-01 00:00:00", [("HT0111-01", 10), ("HT0111-02", 20)]), gzip=True)),
        ("POST /data same dataset again", call("POST", "/data", residents_at(
            "2020-02-01 00:00:00", [("HT0111-01", 10), ("HT0111-02", 20)]), gzip=True),
         {"relation": same_as(RESIDENTS_NEW)}),
        ("POST /data same key, different values", call("POST", "/data", residents_at(
            "2020-02-01 00:00:00", [("HT0111-01", 15), ("HT0111-02", 25)])),
         {"relation": same_as(RESIDENTS_NEW)}),
        ("values after 2nd POST with different values",
         derived(lambda c, ctx: csv_rows(c, RESIDENTS)), {"project": lambda recorded: recorded}),
        ("POST /scope_mapping read:free_data for it", call(
            "POST", "/scope_mapping",
            lambda ctx: {"scope": "read:free_data", "mdid": ctx.body(RESIDENTS_NEW)})),
        ("reader POST /query before PATCH", call("POST", "/query", RESIDENTS, token="reader"),
         EXACT),
        (PATCHED, call("PATCH", "/data", residents_at("2020-02-01 00:00:00", PATCHED_CELLS),
                       gzip=True),
         {"relation": Relation(RESIDENTS_NEW, lambda mine, old: mine != old, "a new mdid")}),
        ("after PATCH /data", derived(_after_patch), {"project": _after_patch_part}),
        ("reader POST /query after PATCH", call("POST", "/query", RESIDENTS, token="reader")),
        ("PATCH /data for a dataset that does not exist",
         call("PATCH", "/data", MISSING_DATASET)),
        ("DELETE /data (body = dataset)", call("DELETE", "/data", MISSING_DATASET)),
        ("after DELETE /data", derived(lambda c, ctx: {"metadata rows": mdids(
            c, query("residents", "residents.arrived", "2020-05", 1))}),
         {"project": _without("table exists", "scope mappings")}),
        ("DELETE /data again (nothing to delete)", call("DELETE", "/data", MISSING_DATASET)),
        ("DELETE /data with only metadata (data_input empty)",
         call("DELETE", "/data", {**MISSING_DATASET, "data_input": []})),
        ("POST /data empty data_input", call("POST", "/data", dataset(
            "residents", "residents.arrived", "2020-06-01 00:00:00", []))),
        ("POST /data unknown data_type", call("POST", "/data", dataset(
            "residents", "residents.arrived", "2020-06-01 00:00:00", [("A", 1)],
            data_type="grid"))),
        ("POST /data unknown category/indicator (not in config)", call("POST", "/data", dataset(
            "nope", "nope.nope", "2020-02-01 00:00:00", [("A", 1)]))),
        ("POST /data with srid/trid that do not exist (99/99)", call("POST", "/data", dataset(
            "residents", "residents.arrived", "2020-02-01 00:00:00", [("A", 1)],
            srid=99, trid=99))),
        (FLOW_POSTED, call("POST", "/data", dataset(
            "relocations", "relocations.relocations", "2020-02-01 00:00:00",
            [(("HT0111-01", "HT0111-02"), 6040), (("HT0111-01", "HT0111-03"), 8720)],
            data_type="flow"))),
        ("POST /data with dt as '2020-02' (month string)", call("POST", "/data", dataset(
            "residents", "residents.arrived", "2020-02", [("A", 1)]))),
        ("POST /data with dt as '2020-02-01' (date only)", call("POST", "/data", dataset(
            "residents", "residents.arrived", "2020-02-01", [("A", 1)]))),
        (DT_STRING, call("POST", "/data", dataset(
            "residents", "residents.arrived", "2020-02-01 00:00:00", [("A", 1)]))),
        ("POST /data without metadata.date_added", call("POST", "/data", dataset(
            "residents", "residents.arrived", "2020-03-01 00:00:00", [("A", 1)],
            date_added=False))),
        (BURST, _burst, {"project": _burst_part}),
        ("metadata rows for that key after the burst", derived(_burst_rows),
         {"project": lambda recorded: {"rows": len(recorded), "the burst's mdids": True}}),
        ("POST /data same key after the burst",
         lambda c, ctx: c.call("POST", "/data", ctx.scratch["burst"])),
        ("POST /query mdids_only after duplicate-key race", lambda c, ctx: c.call(
            "POST", "/query", query("residents", "residents.departed",
                                    ctx.scratch["burst"]["metadata"]["dt"][:7], 1,
                                    mdids_only=True)), {"sized": True}),
        ("POST /data with client-supplied metadata.mdid=1 (already used)",
         call("POST", "/data", dataset(
             "residents", "residents.abnormality", "2020-06-01 00:00:00",
             [("Z", 99)], mdid=1)),
         {"relation": Relation(None, lambda mine, _: mine != 1,
                               "the row id, not the mdid the client sent")}),
        ("metadata rows with that mdid", derived(_client_mdid_rows),
         {"project": lambda recorded: [row[1:] for row in recorded]}),
        ("POST /query for the 2020-06 dataset (which table is read?)", call(
            "POST", "/query", query("residents", "residents.abnormality", "2020-06", 1)), EXACT),
    ),
    *scenarios(
        "scope_mapping",
        (NEW_PAIR, call("POST", "/scope_mapping", lambda ctx: {
            "scope": "read:premium_data", "mdid": ctx.body(FLOW_POSTED)}, gzip=True)),
        ("POST /scope_mapping same pair again", call("POST", "/scope_mapping", lambda ctx: {
            "scope": "read:premium_data", "mdid": ctx.body(FLOW_POSTED)}, gzip=True),
         {"relation": same_as(NEW_PAIR)}),
        ("POST /scope_mapping with mdid as string", call("POST", "/scope_mapping", lambda ctx: {
            "scope": "read:premium_data", "mdid": str(ctx.body(FLOW_POSTED))}),
         {"relation": same_as(NEW_PAIR)}),
        ("POST /scope_mapping for non-existent mdid",
         call("POST", "/scope_mapping", {"scope": "read:premium_data", "mdid": 99999})),
        ("POST /scope_mapping reader token", call("POST", "/scope_mapping", lambda ctx: {
            "scope": "read:free_data", "mdid": ctx.body(FLOW_POSTED)}, token="reader")),
        ("DELETE /scope_mapping existing pair", call("DELETE", "/scope_mapping", lambda ctx: {
            "scope": "read:premium_data", "mdid": ctx.body(FLOW_POSTED)})),
        ("DELETE /scope_mapping again (absent)", call("DELETE", "/scope_mapping", lambda ctx: {
            "scope": "read:premium_data", "mdid": ctx.body(FLOW_POSTED)})),
        ("DELETE /scope_mapping the automatic 'admin' mapping", call(
            "DELETE", "/scope_mapping",
            lambda ctx: {"scope": "admin", "mdid": _dt_string_mdid(ctx)})),
        ("scope mappings of that mdid now", derived(lambda c, ctx: visible_to(
            c, query("residents", "residents.arrived", "2020-02", 1), _dt_string_mdid(ctx))),
         {"project": lambda recorded: recorded}),
    ),
))  # fmt: skip


# -- visibility and queries (after the notebook's flow) --------------------------------


def _query_shape(name: str) -> Callable[[Caller, Context], Any]:
    def compute(c: Caller, ctx: Context) -> Any:
        body = ctx.body(name)
        dates = body["data_by_date"]
        first = next(iter(dates.values()))
        return {"keys": list(body), "dates": list(dates),
                "units_per_date": [len(units) for units in dates.values()],
                "sample": dict(list(first.items())[:3]),
                "min": body["min"], "max": body["max"], "mdids": body["mdids"]}  # fmt: skip

    return compute


def _flow_shape(c: Caller, ctx: Context) -> Any:
    dates = ctx.body("admin POST /query flow (relocations)")["data_by_date"]
    origin, destinations = next(iter(next(iter(dates.values())).items()))
    return {"dates": list(dates), "origins_per_date": [len(o) for o in dates.values()],
            "sample": {origin: dict(list(destinations.items())[:3])}}  # fmt: skip


def _ids(name: str, kind: str, field_name: str) -> Callable[[Caller, Context], Any]:
    def compute(c: Caller, ctx: Context) -> Any:
        return [item[field_name] for item in ctx.body(name)[kind]]

    return compute


def _gzipped_answer(c: Caller, ctx: Context) -> Observed:
    body = query("residents", "residents.residents", "2020-02", 6)
    answer = c.call("POST", "/query", body, headers={"Accept-Encoding": "gzip"})
    if answer.headers.get("content-encoding") != "gzip":
        raise AssertionError(f"not compressed: {dict(answer.headers)}")
    return answer


RESIDENTS_6 = query("residents", "residents.residents", "2020-02", 6)
FULL_BODY: dict[str, Any] = {"exact": True, "full_length": True}
SHAPE_LENGTH: dict[str, Any] = {"full_length": True}

NOTEBOOK = Group("notebook (visibility, queries)", (
    *scenarios(
        "visibility (after notebook_flow.py)",
        ("admin GET /categories on empty schema", READ_CATEGORIES, EXACT),
        ("admin GET /indicators on empty schema", call("GET", "/indicators"), EXACT),
        ("admin GET /spatial_resolutions on empty schema",
         call("GET", "/spatial_resolutions"), EXACT),
        ("admin GET /temporal_resolutions on empty schema",
         call("GET", "/temporal_resolutions"), EXACT),
        ("GET /latest_date before any data (no auth)", call("GET", "/latest_date", token=None)),
    ),
    post_setup(config_with_ids),
    load_notebook(),
    *scenarios(
        "visibility (after notebook_flow.py)",
        ("admin GET /categories", READ_CATEGORIES, FULL_BODY),
        ("admin /categories ids", derived(_ids("admin GET /categories", "categories",
                                               "category_id")), {"project": lambda r: r}),
        ("admin GET /indicators", call("GET", "/indicators"), FULL_BODY),
        ("admin /indicators ids", derived(_ids("admin GET /indicators", "indicators",
                                               "indicator_id")), {"project": lambda r: r}),
        ("admin GET /spatial_resolutions", call("GET", "/spatial_resolutions"), FULL_BODY),
        ("admin /spatial_resolutions ids", derived(_ids(
            "admin GET /spatial_resolutions", "spatial_resolutions", "srid")),
         {"project": lambda r: r}),
        ("admin GET /temporal_resolutions", call("GET", "/temporal_resolutions"), FULL_BODY),
        ("admin /temporal_resolutions ids", derived(_ids(
            "admin GET /temporal_resolutions", "temporal_resolutions", "trid")),
         {"project": lambda r: r}),
        ("admin GET /indicators_for_category/residents",
         call("GET", "/indicators_for_category/residents"), FULL_BODY),
        ("admin GET /spatial_resolutions_for_category/residents",
         call("GET", "/spatial_resolutions_for_category/residents"), FULL_BODY),
        ("admin GET /temporal_resolutions_for_category/residents",
         call("GET", "/temporal_resolutions_for_category/residents"), FULL_BODY),
        ("admin GET /temporal_resolutions_for_category/presence",
         call("GET", "/temporal_resolutions_for_category/presence"), FULL_BODY),
        ("admin GET /categories/movements", call("GET", "/categories/movements"), FULL_BODY),
        ("admin GET /indicators/residents.residents_perKm2",
         call("GET", "/indicators/residents.residents_perKm2"), FULL_BODY),
        ("admin GET /temporal_resolutions/4", call("GET", "/temporal_resolutions/4"), FULL_BODY),
        ("admin GET /spatial_resolutions/3", call("GET", "/spatial_resolutions/3"), FULL_BODY),
        ("reader GET /categories", call("GET", "/categories", token="reader"), FULL_BODY),
        ("reader /categories ids", derived(_ids("reader GET /categories", "categories",
                                                "category_id")), {"project": lambda r: r}),
        ("reader GET /indicators", call("GET", "/indicators", token="reader"), FULL_BODY),
        ("reader /indicators ids", derived(_ids("reader GET /indicators", "indicators",
                                                "indicator_id")), {"project": lambda r: r}),
        ("reader GET /spatial_resolutions", call("GET", "/spatial_resolutions", token="reader"),
         FULL_BODY),
        ("reader /spatial_resolutions ids", derived(_ids(
            "reader GET /spatial_resolutions", "spatial_resolutions", "srid")),
         {"project": lambda r: r}),
        ("reader GET /temporal_resolutions",
         call("GET", "/temporal_resolutions", token="reader"), FULL_BODY),
        ("reader /temporal_resolutions ids", derived(_ids(
            "reader GET /temporal_resolutions", "temporal_resolutions", "trid")),
         {"project": lambda r: r}),
        ("reader GET /indicators_for_category/residents",
         call("GET", "/indicators_for_category/residents", token="reader"), FULL_BODY),
        ("reader GET /spatial_resolutions_for_category/residents",
         call("GET", "/spatial_resolutions_for_category/residents", token="reader"), FULL_BODY),
        ("reader GET /temporal_resolutions_for_category/residents",
         call("GET", "/temporal_resolutions_for_category/residents", token="reader"),
         FULL_BODY),
        ("reader GET /temporal_resolutions_for_category/presence",
         call("GET", "/temporal_resolutions_for_category/presence", token="reader"), FULL_BODY),
        ("reader GET /categories/movements", call("GET", "/categories/movements",
                                                  token="reader")),
        ("reader GET /indicators/residents.residents_perKm2",
         call("GET", "/indicators/residents.residents_perKm2", token="reader")),
        ("reader GET /temporal_resolutions/4", call("GET", "/temporal_resolutions/4",
                                                    token="reader")),
        ("reader GET /spatial_resolutions/3", call("GET", "/spatial_resolutions/3",
                                                   token="reader"), FULL_BODY),
        ("GET /latest_date after mapping read:premium_data (no auth)",
         call("GET", "/latest_date", token=None), EXACT),
    ),
    *scenarios(
        "queries",
        ("admin GET /timerange residents.residents 3/2",
         call("GET", "/timerange/residents/residents.residents/3/2"), EXACT),
        ("reader GET /timerange residents.residents 3/2",
         call("GET", "/timerange/residents/residents.residents/3/2", token="reader"), EXACT),
        ("admin GET /timerange residents.abnormality 3/2",
         call("GET", "/timerange/residents/residents.abnormality/3/2"), EXACT),
        ("admin GET /timerange presence.presence 3/4",
         call("GET", "/timerange/presence/presence.presence/3/4"), EXACT),
        ("reader GET /timerange presence.presence 3/4 (trid 4 invisible)",
         call("GET", "/timerange/presence/presence.presence/3/4", token="reader")),
        ("admin GET /timerange unknown indicator",
         call("GET", "/timerange/residents/residents.nope/3/2"), EXACT),
        ("admin POST /query mdids_only",
         call("POST", "/query", {**RESIDENTS_6, "mdids_only": True}, gzip=True)),
        ("admin POST /query full (gzip)", call("POST", "/query", RESIDENTS_6, gzip=True),
         FULL_BODY),
        ("query shape single_location", derived(_query_shape("admin POST /query full (gzip)")),
         {"project": lambda r: r}),
        ("admin POST /query full (plain JSON)", call("POST", "/query", RESIDENTS_6), FULL_BODY),
        ("gzip and plain /query bodies give identical results", derived(
            lambda c, ctx: ctx.body("admin POST /query full (gzip)")
            == ctx.body("admin POST /query full (plain JSON)")), {"project": lambda r: r}),
        ("admin POST /query response with Accept-Encoding: gzip", _gzipped_answer,
         {**FULL_BODY, **HTTP}),
        ("admin POST /query flow (relocations)", call("POST", "/query", query(
            "relocations", "relocations.relocations", "2020-02", 2)), FULL_BODY),
        ("query shape flow", derived(_flow_shape), {"project": lambda r: r}),
        ("admin POST /query abnormality (fractional values)", call("POST", "/query", query(
            "residents", "residents.abnormality", "2020-02", 1)), FULL_BODY),
        ("admin POST /query daily presence, start 2020-02-01 dur 3", call("POST", "/query", query(
            "presence", "presence.presence", "2020-02-01", 3, trid=4)), FULL_BODY),
        ("admin POST /query monthly with start_date YYYY-MM-DD", call("POST", "/query", query(
            "residents", "residents.residents", "2020-02-01", 1, mdids_only=True))),
        ("reader POST /query free data (asks 6 months)",
         call("POST", "/query", RESIDENTS_6, token="reader"), FULL_BODY),
        ("reader POST /query mdids_only",
         call("POST", "/query", {**RESIDENTS_6, "mdids_only": True}, token="reader"),
         {"sized": True}),
        ("reader POST /query premium indicator", call("POST", "/query", query(
            "residents", "residents.residents_perKm2", "2020-02", 6), token="reader")),
        ("reader POST /query other category", call("POST", "/query", query(
            "relocations", "relocations.relocations", "2020-02", 6), token="reader")),
        ("admin POST /query no data in range", call("POST", "/query", query(
            "residents", "residents.residents", "2021-01", 3))),
        ("admin POST /csv residents", call("POST", "/csv", RESIDENTS), SHAPE_LENGTH),
        ("admin POST /csv relocations", call("POST", "/csv", query(
            "relocations", "relocations.relocations", "2020-02", 1)), SHAPE_LENGTH),
        ("admin POST /csv presence (pre-batched)", call("POST", "/csv", query(
            "presence", "presence.presence", "2020-02-01", 2, trid=4)), SHAPE_LENGTH),
        ("reader POST /csv premium indicator", call("POST", "/csv", query(
            "residents", "residents.residents_perKm2", "2020-02", 6), token="reader")),
        ("admin POST /csv no data in range", call("POST", "/csv", query(
            "residents", "residents.residents", "2021-01", 3))),
    ),
))  # fmt: skip


# -- setup vs existing data ------------------------------------------------------------

RESIDENTS_ONLY = frozenset({"residents.residents", "residents.residents_perKm2"})


def _holdings(c: Caller) -> dict[str, Any]:
    """The config census, and the mdids each token sees (datasets and mappings)."""
    seen = {token: sorted(mdids(c, RESIDENTS_6, token)) for token, _ in TOKEN_SCOPES}
    return {"census": census(c), "seen": seen}


def _before(c: Caller, ctx: Context) -> None:
    ctx.scratch["before"] = _holdings(c)


def _before_after(c: Caller, ctx: Context) -> Any:
    before, after = ctx.scratch["before"], _holdings(c)
    survive = before["seen"] == after["seen"] and all(after["seen"].values())
    return {"before": before["census"]["counts"], "after": after["census"]["counts"],
            "lid": after["census"]["lid"], "datasets and mappings survive": survive}  # fmt: skip


def _before_after_part(recorded: Any) -> Any:
    """Config counts and ids; metadata rows, mappings and tables are counted only as
    'they survive' (the API shows them through what each token sees)."""
    part = {"before": {k: v for k, v in recorded["before"].items()
                       if k not in DB_INTERNAL_COUNTS},
            "after": {k: v for k, v in recorded["after"].items()
                      if k not in DB_INTERNAL_COUNTS},
            "lid": recorded["lid"]}  # fmt: skip
    survive = all(recorded["before"][k] == recorded["after"][k] for k in DB_INTERNAL_COUNTS)
    return part | {"datasets and mappings survive": survive}


def _config_counts_part(recorded: Any) -> Any:
    return {k: v for k, v in recorded.items() if k not in DB_INTERNAL_COUNTS}


def _after_delete(c: Caller, ctx: Context) -> Any:
    return census(c)["counts"]


SETUP_VS_DATA = Group("setup vs existing data", (
    post_setup(config_with_trids),
    load_notebook(RESIDENTS_ONLY, full=False),
    Prep("census before", _before),
    *scenarios(
        "setup vs existing data",
        ("POST /setup again with data present",
         lambda c, ctx: c.call("POST", "/setup", config_with_trids(), gzip=True)),
        ("DB before/after 2nd POST /setup with data", derived(_before_after),
         {"project": _before_after_part}),
        ("admin GET /spatial_resolutions after re-setup", call("GET", "/spatial_resolutions"),
         EXACT),
        ("admin GET /spatial_resolutions/3 after re-setup", call("GET", "/spatial_resolutions/3")),
        ("admin POST /query srid 3 after re-setup",
         call("POST", "/query", {**RESIDENTS_6, "mdids_only": True})),
        ("DELETE /setup with data present", call("DELETE", "/setup")),
        ("DB after DELETE /setup with data", derived(_after_delete),
         {"project": _config_counts_part}),
        ("admin GET /categories after DELETE /setup", READ_CATEGORIES, EXACT),
        ("admin POST /query after DELETE /setup", call("POST", "/query", RESIDENTS_6)),
    ),
))  # fmt: skip


GROUPS: tuple[Group, ...] = (AUTH, SETUP, SETUP_RAW, REQUEST_BODIES, DATA, NOTEBOOK,
                             SETUP_VS_DATA)  # fmt: skip


def all_scenarios() -> dict[str, tuple[Group, Scenario]]:
    found: dict[str, tuple[Group, Scenario]] = {}
    for group in GROUPS:
        for scenario in group.scenarios:
            assert scenario.key not in found, f"two scenarios for {scenario.key}"
            found[scenario.key] = (group, scenario)
    return found


def run_group(
    group: Group, caller: Caller, *, http: bool, scratch: Mapping[str, Any] | None = None
) -> tuple[Context, dict[str, Any]]:
    """Run a group's steps in order: {observation key: Observed, or the exception its
    replay raised}; an HTTP-only scenario is left out when not `http`."""
    ctx = Context(scratch=dict(scratch or {}))
    outcomes: dict[str, Any] = {}
    steps = list(group.steps)
    for index, step in enumerate(steps):
        if isinstance(step, Prep):
            try:
                step.run(caller, ctx)
            except Exception as error:
                failed = PrepError(f"preparing {step.label!r} failed: {error!r}")
                for later in steps[index:]:
                    if isinstance(later, Scenario):
                        outcomes[later.key] = failed
                break
            continue
        if step.http_only and not http:
            continue
        try:
            observed = step.run(caller, ctx)
        except Exception as error:
            outcomes[step.key] = error
            continue
        ctx.results[step.name] = observed
        outcomes[step.key] = observed
    return ctx, outcomes


__all__ = ["GROUPS", "Caller", "Context", "Group", "Observed", "Scenario", "run_group"]
