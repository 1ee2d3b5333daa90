"""The FlowKit-UI backend's object model and semantics over one SQLite file.

Both the embedded backend (`local.py`, in-process) and `flowkit-loader serve`
(`server.py`, over HTTP) are this store: every operation answers what the real service
answers, as a status code and a body (`Reply`), so that the two cannot drift apart. The
behaviour follows `reference/backend-contract.md` and the observations behind it:

- config entities keep explicit ids; a create answers 201 with the object as stored, or
  303 with the existing one; translations (`label_fr`, ...) are kept only for languages
  that exist; fields outside the service's model are dropped, absent ones read as null;
- a dataset is identified by (category, indicator, srid, trid, dt) and gets an mdid; every
  new dataset is mapped to `admin`; an update is a delete and an insert (new mdid, only the
  `admin` mapping); values are kept as DECIMAL(20,9) keeps them (integer nanos here);
- reads see only datasets mapped to one of the caller's permissions, and config entities
  only when one of their datasets is visible.

With `quirks=True` it also reproduces the upstream hazards a client must survive: a 500
after a successful temporal-resolution create and after every /setup, 500 instead of 4xx
for invalid bodies, duplicate datasets under concurrent creates of one identity,
entities without ids re-created under new ids (one auto-increment counter per kind, as
upstream's tables have), PATCH /setup's wrong id matching, and 201 for a grant on a
missing mdid.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from loader.contract import (
    BACKEND_DT_FORMAT,
    CSV_CATEGORIES,
    CSV_FLOW_CATEGORIES,
    SCOPES,
    SEES_EVERYTHING,
)
from loader.model import (
    DATA_TYPES,
    MAX_ABS_VALUE,
    NANOS_PER_UNIT,
    EntityKind,
    nanos_to_text,
    value_nanos,
)
from loader.timegrid import Grid

INTERNAL_ERROR = "Internal Server Error"

# The service's model fields per kind, in its order (absent fields answer null).
MODEL_FIELDS: dict[EntityKind, tuple[str, ...]] = {
    EntityKind.LANGUAGE: ("lid", "code", "name", "flag", "default"),
    EntityKind.DATA_PROVIDER: ("dpid", "name", "logo", "url"),
    EntityKind.CATEGORY: ("category_id", "type", "order", "flowgeek_url", "label", "description"),
    EntityKind.INDICATOR: (
        "indicator_id", "category_id", "order", "flowgeek_url", "label", "description",
        "method", "scale", "decimals", "min_value", "max_value", "num_bins", "bins",
    ),
    EntityKind.SPATIAL_RESOLUTION: ("srid", "label", "index", "description", "boundaries"),
    EntityKind.TEMPORAL_RESOLUTION: (
        "trid", "label", "index", "relativedelta_unit", "relativedelta_num", "date_format",
        "default_selected", "description",
    ),
}  # fmt: skip
# Indicator fields kept in DECIMAL columns come back as floats.
_DECIMAL_FIELDS = {"min_value", "max_value", "num_bins"}
_REQUIRED: dict[EntityKind, tuple[str, ...]] = {
    EntityKind.LANGUAGE: ("name",),
    EntityKind.DATA_PROVIDER: ("name",),
    EntityKind.CATEGORY: ("category_id", "type"),
    EntityKind.INDICATOR: ("indicator_id", "category_id"),
    EntityKind.SPATIAL_RESOLUTION: ("label", "index"),
    EntityKind.TEMPORAL_RESOLUTION: (
        "label", "index", "relativedelta_unit", "relativedelta_num", "default_selected",
    ),
}  # fmt: skip
_NOT_FOUND = {
    EntityKind.CATEGORY: "Category not found",
    EntityKind.INDICATOR: "Indicator not found",
    EntityKind.SPATIAL_RESOLUTION: "Spatial resolution not found",
    EntityKind.TEMPORAL_RESOLUTION: "Temporal resolution not found",
}
_START_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?)?|w(\d{2}))?$"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entity (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, key TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entity_key ON entity(kind, key);
CREATE TABLE IF NOT EXISTS metadata (
    id INTEGER PRIMARY KEY AUTOINCREMENT, mdid INTEGER, revision TEXT, category_id TEXT,
    indicator_id TEXT, srid INTEGER, trid INTEGER, dt TEXT, date_added TEXT,
    min_value INTEGER, max_value INTEGER, data_type TEXT);
CREATE INDEX IF NOT EXISTS metadata_identity
    ON metadata(category_id, indicator_id, srid, trid, dt);
CREATE INDEX IF NOT EXISTS metadata_mdid ON metadata(mdid);
CREATE TABLE IF NOT EXISTS data (
    row_id INTEGER PRIMARY KEY, count INTEGER NOT NULL, units TEXT NOT NULL,
    destinations TEXT, nanos BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS scope_mapping (
    id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, mdid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS scope_mapping_mdid ON scope_mapping(mdid);
CREATE TABLE IF NOT EXISTS entity_counter (kind TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Reply:
    """What the service answers: a status and a JSON body (None: no body); `plain` marks
    the text/plain bodies of unhandled errors."""

    status: int
    body: Any = None
    plain: bool = False


def failure(message: str) -> Reply:
    """An error the service's handlers raise: a bare JSON string body."""
    return Reply(500, f"Something went wrong: {message}")


@dataclass(frozen=True)
class Principal:
    """Who calls: the token's `scope` (what it may call), `permissions` (what it may read)
    and `sub`."""

    scopes: frozenset[str]
    permissions: frozenset[str]
    subject: str = "local"

    @classmethod
    def full(cls) -> Principal:
        return cls(frozenset(SCOPES), frozenset({SEES_EVERYTHING}), "local-admin")


@dataclass
class Incoming:
    """A dataset as the service receives it, before it is stored."""

    metadata: Mapping[str, Any]
    data_type: str
    units: list[str]
    destinations: list[str | None]
    nanos: list[int]


class InvalidBody(Exception):
    """A request body that fails the service's validation (500 upstream, 422 otherwise)."""


@dataclass
class Store:
    path: str
    quirks: bool = False
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        self.connection().executescript(_SCHEMA)  # idempotent; commits by itself

    # -- connections ------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                 check_same_thread=False)  # fmt: skip
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; it takes the write lock at once, so concurrent writers
        queue up (busy timeout) instead of failing with 'database is locked'."""
        db = self.connection()
        for attempt in range(200):
            try:
                db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                time.sleep(min(0.05 * (attempt + 1), 0.5))
        else:
            db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- config entities --------------------------------------------------------------

    def _languages(self, db: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = db.execute(
            "SELECT body FROM entity WHERE kind = ? ORDER BY id", (EntityKind.LANGUAGE.value,)
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def _shape(
        self, kind: EntityKind, body: Mapping[str, Any], db: sqlite3.Connection
    ) -> dict[str, Any]:
        """The object as the service stores it: model fields (null when absent), then the
        translations of languages that exist (and are not the default)."""
        codes = [
            str(lang.get("code"))
            for lang in self._languages(db)
            if lang.get("code") and not lang.get("default")
        ]
        shaped: dict[str, Any] = {}
        for name in MODEL_FIELDS[kind]:
            value = body.get(name)
            if name in _DECIMAL_FIELDS and kind is EntityKind.INDICATOR and value is not None:
                value = float(value)
            if name == "bins" and kind is EntityKind.INDICATOR and isinstance(value, list):
                value = [_bin(item) for item in value]
            shaped[name] = value
        if kind not in (EntityKind.LANGUAGE,):
            for code in codes:
                for name in MODEL_FIELDS[kind]:
                    translated = body.get(f"{name}_{code}")
                    if translated is not None:
                        shaped[f"{name}_{code}"] = translated
            if len(shaped) == len(MODEL_FIELDS[kind]):
                # Upstream keeps translations in one `translation` column and expands it
                # into `label_fr`, ... only when there are some: otherwise the object
                # answers `"translation": null` (observed on data providers).
                shaped["translation"] = None
        return shaped

    def _check_entity(self, kind: EntityKind, body: Any) -> None:
        if not isinstance(body, Mapping):
            raise InvalidBody(f"{kind.singular} must be an object")
        for name in _REQUIRED[kind]:
            if body.get(name) is None:
                raise InvalidBody(f"{kind.singular}: field required: {name}")
        id_field = kind.id_field
        value = body.get(id_field)
        wanted = str if kind in (EntityKind.CATEGORY, EntityKind.INDICATOR) else int
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            raise InvalidBody(f"{kind.singular}: {id_field} must be {wanted.__name__}")
        if kind is EntityKind.CATEGORY and body.get("type") not in DATA_TYPES:
            raise InvalidBody(f"unknown category type {body.get('type')!r}")

    def _find(
        self, db: sqlite3.Connection, kind: EntityKind, key: Any
    ) -> tuple[int, dict[str, Any]] | None:
        row = db.execute(
            "SELECT id, body FROM entity WHERE kind = ? AND key = ? ORDER BY id LIMIT 1",
            (kind.value, str(key)),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def _insert(
        self, db: sqlite3.Connection, kind: EntityKind, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        shaped = self._shape(kind, body, db)
        cursor = db.execute(
            "INSERT INTO entity(kind, key, body) VALUES (?, ?, ?)",
            (kind.value, None, json.dumps(shaped)),
        )
        row_id = cursor.lastrowid
        auto_id = self._next_auto_id(db, kind)
        if shaped[kind.id_field] is None:
            # Like the service: an entity sent without its id gets its row's id.
            shaped[kind.id_field] = auto_id
        db.execute(
            "UPDATE entity SET key = ?, body = ? WHERE id = ?",
            (str(shaped[kind.id_field]), json.dumps(shaped), row_id),
        )
        return shaped

    @staticmethod
    def _next_auto_id(db: sqlite3.Connection, kind: EntityKind) -> int:
        """The AUTO_INCREMENT `id` of the kind's own table upstream: one counter per kind,
        advanced by every row inserted (explicit ids too) and never reset by a delete. So
        the first setup without ids numbers srids 1, 2, 3 and re-posting it gives 4, 5, 6
        (observed)."""
        db.execute(
            "INSERT OR IGNORE INTO entity_counter(kind, last) "
            "SELECT ?, COALESCE(MAX(id), 0) FROM entity WHERE kind = ? AND key IS NOT NULL",
            (kind.value, kind.value),
        )  # a store written before the counter existed continues past its rows' ids
        db.execute("UPDATE entity_counter SET last = last + 1 WHERE kind = ?", (kind.value,))
        row = db.execute("SELECT last FROM entity_counter WHERE kind = ?", (kind.value,))
        return int(row.fetchone()[0])

    def post_entity(self, kind: EntityKind, body: Any) -> Reply:
        try:
            self._check_entity(kind, body)
        except InvalidBody as error:
            return self.invalid(error)
        with self.transaction() as db:
            key = body.get(kind.id_field)
            if key is None:
                if not self.quirks:
                    return Reply(422, f"{kind.id_field} is required")
                first = db.execute(
                    "SELECT body FROM entity WHERE kind = ? ORDER BY id LIMIT 1", (kind.value,)
                ).fetchone()
                if first:
                    return Reply(303, json.loads(first[0]))
            else:
                found = self._find(db, kind, key)
                if found:
                    return Reply(303, found[1])
            if kind is EntityKind.INDICATOR and not self._find(
                db, EntityKind.CATEGORY, body["category_id"]
            ):
                return Reply(404, f"Category '{body['category_id']}' not found")
            stored = self._insert(db, kind, body)
        if kind is EntityKind.TEMPORAL_RESOLUTION and self.quirks:
            return failure("(1054, \"Unknown column 'id' in 'SET'\")")
        return Reply(201, stored)

    def patch_entity(self, kind: EntityKind, key: Any, body: Any) -> Reply:
        try:
            self._check_entity(kind, body)
        except InvalidBody as error:
            return self.invalid(error)
        if str(body.get(kind.id_field)) != str(key):
            return Reply(
                400,
                f"Resource's `{kind.id_field}` '{body.get(kind.id_field)}' doesn't match "
                f"value {key}",
            )
        with self.transaction() as db:
            found = self._find(db, kind, key)
            if not found:
                return Reply(404, "Could not update resource - not found")
            shaped = self._shape(kind, body, db)
            db.execute(
                "UPDATE entity SET body = ? WHERE kind = ? AND key = ?",
                (json.dumps(shaped), kind.value, str(key)),
            )
        return Reply(204)

    def delete_entity(self, kind: EntityKind, key: Any) -> Reply:
        with self.transaction() as db:
            if kind is EntityKind.INDICATOR and not self._find(db, kind, key):
                return Reply(404, f"Indicator '{key}' not found")
            db.execute("DELETE FROM entity WHERE kind = ? AND key = ?", (kind.value, str(key)))
        return Reply(204)

    # -- setup ------------------------------------------------------------------------

    def get_setup(self) -> Reply:
        db = self.connection()
        lists = {
            kind.value: [
                json.loads(row[0])
                for row in db.execute(
                    "SELECT body FROM entity WHERE kind = ? ORDER BY id", (kind.value,)
                )
            ]
            for kind in (EntityKind.LANGUAGE, EntityKind.DATA_PROVIDER)
        }
        return Reply(
            200,
            {
                "languages": lists["languages"],
                "data_providers": lists["data_providers"],
                "categories": [],
                "indicators": [],
                "temporal_resolutions": [],
                "spatial_resolutions": [],
            },
        )

    def _check_config(self, config: Any, *, ids_required: bool) -> Reply | None:
        """A Config body as the service validates it (None: valid)."""
        try:
            if not isinstance(config, Mapping):
                raise InvalidBody("config must be an object")
            for kind in EntityKind:
                items = config.get(kind.value)
                if not isinstance(items, list):
                    raise InvalidBody(f"config: field required: {kind.value}")
                for item in items:
                    self._check_entity(kind, item)
                    if ids_required and item.get(kind.id_field) is None:
                        raise InvalidBody(f"{kind.singular}: {kind.id_field} is required")
        except InvalidBody as error:
            return self.invalid(error)
        return None

    def post_setup(self, config: Any) -> Reply:
        """Replace all config (datasets and mappings stay)."""
        refused = self._check_config(config, ids_required=not self.quirks)
        if refused:
            return refused
        with self.transaction() as db:
            db.execute("DELETE FROM entity")
            refused = self._insert_config(db, config, indicators_by_post=False)
            if refused:
                return refused  # what was written before stays (not transactional)
        if self.quirks:
            return failure("(1054, \"Unknown column 'id' in 'SET'\")")
        return Reply(204)

    def _insert_config(
        self, db: sqlite3.Connection, config: Mapping[str, Any], *, indicators_by_post: bool
    ) -> Reply | None:
        """Insert every entity of a config in dependency order, temporal resolutions last
        and all at once; with `indicators_by_post`, indicators go through POST /indicators
        as upstream's PATCH /setup sends them (303, skipped, when present; 404 when their
        category is missing). A refusal is returned; what was inserted before it stays."""
        for kind in EntityKind:
            if kind is EntityKind.TEMPORAL_RESOLUTION:
                refused = self._insert_temporal(db, config[kind.value])
                if refused:
                    return refused
                continue
            for item in config[kind.value]:
                if kind is EntityKind.INDICATOR and indicators_by_post:
                    if self._find(db, kind, item["indicator_id"]):
                        continue
                    if not self._find(db, EntityKind.CATEGORY, item["category_id"]):
                        return Reply(404, f"Category '{item['category_id']}' not found")
                self._insert(db, kind, item)
        return None

    def _insert_temporal(
        self, db: sqlite3.Connection, items: Sequence[Mapping[str, Any]]
    ) -> Reply | None:
        """Upstream writes a setup's temporal resolutions with one multi-row INSERT into a
        table keyed by `trid`: a missing trid or one already present fails it whole (no
        row of the list is written) with MySQL's error for the first offending row."""
        seen: set[str] = set()
        for item in items:
            trid = item.get("trid")
            if trid is None:
                return failure("(1048, \"Column 'trid' cannot be null\")")
            if str(trid) in seen or self._find(db, EntityKind.TEMPORAL_RESOLUTION, trid):
                return failure(f"(1062, \"Duplicate entry '{trid}' for key 'PRIMARY'\")")
            seen.add(str(trid))
        for item in items:
            self._insert(db, EntityKind.TEMPORAL_RESOLUTION, item)
        return None

    def patch_setup(self, config: Any) -> Reply:
        """PATCH /setup. Upstream matches ids wrongly (Hazard 2). With quirks it is replayed
        as upstream runs it: first it deletes, per kind, the rows "whose id is given", but
        binds all the ids as ONE string (`IN (%s)` bound to "1', '2"), which MySQL compares
        as a whole: a numeric id column matches only the first id (the string's numeric
        prefix), a text one only when a single id was sent, and a kind sent without ids
        is deleted entirely; indicators alone are deleted one by one. Then it inserts
        everything again (new auto ids; categories end up duplicated) and the temporal
        resolutions last, in one INSERT that a trid still present fails whole: the
        observed 500 "Duplicate entry '2'" after trid 1 alone was deleted, and lost."""
        if not self.quirks:
            return Reply(501, "PATCH /setup is not supported: use POST /setup with ids")
        refused = self._check_config(config, ids_required=False)
        if refused:
            return refused
        with self.transaction() as db:
            for kind in EntityKind:
                items = config[kind.value]
                if kind is EntityKind.INDICATOR:
                    for item in items:
                        db.execute("DELETE FROM entity WHERE kind = ? AND key = ?",
                                   (kind.value, str(item["indicator_id"])))  # fmt: skip
                    continue
                ids = [str(item[kind.id_field]) for item in items if item.get(kind.id_field)]
                if not ids:
                    db.execute("DELETE FROM entity WHERE kind = ?", (kind.value,))
                    continue
                bound = "', '".join(ids)
                if kind is not EntityKind.CATEGORY:
                    prefix = re.match(r"\s*([+-]?\d+)", bound)
                    bound = str(int(prefix.group(1))) if prefix else "0"
                db.execute("DELETE FROM entity WHERE kind = ? AND key = ?", (kind.value, bound))
            refused = self._insert_config(db, config, indicators_by_post=True)
            if refused:
                return refused  # what was written before stays (not transactional)
        return failure("(1054, \"Unknown column 'id' in 'SET'\")")

    def delete_setup(self) -> Reply:
        with self.transaction() as db:
            db.execute("DELETE FROM entity")
        return Reply(204)

    # -- visibility -------------------------------------------------------------------

    @staticmethod
    def _in(values: Sequence[Any]) -> str:
        return ",".join("?" * len(values)) or "NULL"

    def visible_keys(self, column: str, principal: Principal) -> set[Any]:
        perms = sorted(principal.permissions)
        rows = self.connection().execute(
            f"SELECT DISTINCT md.{column} FROM metadata md JOIN scope_mapping sm "
            f"ON sm.mdid = md.mdid WHERE sm.scope IN ({self._in(perms)})",
            perms,
        )
        return {row[0] for row in rows}

    def is_visible(self, column: str, key: Any, principal: Principal) -> bool:
        """Whether a dataset whose `column` is `key` is mapped to one of the principal's
        scopes: the first such row answers (a read per entity, not a scan of them all)."""
        perms = sorted(principal.permissions)
        row = (
            self.connection()
            .execute(
                f"SELECT 1 FROM metadata md WHERE md.{column} = ? AND EXISTS (SELECT 1 FROM "
                f"scope_mapping sm WHERE sm.mdid = md.mdid AND sm.scope IN ({self._in(perms)})) "
                "LIMIT 1",
                [key, *perms],
            )
            .fetchone()
        )
        return row is not None

    def _entities(self, kind: EntityKind) -> list[dict[str, Any]]:
        order = "CAST(key AS INTEGER)" if kind is EntityKind.TEMPORAL_RESOLUTION else "id"
        return [
            json.loads(row[0])
            for row in self.connection().execute(
                f"SELECT body FROM entity WHERE kind = ? ORDER BY {order}", (kind.value,)
            )
        ]

    # The metadata column that makes an entity visible: one of its datasets is.
    VISIBLE_BY: ClassVar[dict[EntityKind, str]] = {
        EntityKind.CATEGORY: "category_id",
        EntityKind.INDICATOR: "indicator_id",
        EntityKind.SPATIAL_RESOLUTION: "srid",
        EntityKind.TEMPORAL_RESOLUTION: "trid",
    }

    def list_entities(self, kind: EntityKind, principal: Principal) -> Reply:
        visible = self.visible_keys(self.VISIBLE_BY[kind], principal)
        found = [e for e in self._entities(kind) if e.get(kind.id_field) in visible]
        if kind is EntityKind.SPATIAL_RESOLUTION:
            found = [{**e, "boundaries": None} for e in found]
        return Reply(200, {kind.value: found})

    def get_entity(self, kind: EntityKind, key: Any, principal: Principal) -> Reply:
        for entity in self._entities(kind):
            identity = entity.get(kind.id_field)
            if str(identity) == str(key):
                if self.is_visible(self.VISIBLE_BY[kind], identity, principal):
                    return Reply(200, entity)
                break
        return Reply(404, _NOT_FOUND[kind])

    def for_category(self, kind: EntityKind, category_id: str, principal: Principal) -> Reply:
        visible = self.is_visible("category_id", category_id, principal)
        if kind is EntityKind.INDICATOR:
            found = [
                e for e in self._entities(kind) if visible and e.get("category_id") == category_id
            ]
            return Reply(200, {kind.value: found})
        column = self.VISIBLE_BY[kind]
        ids = {
            row[0]
            for row in self.connection().execute(
                f"SELECT DISTINCT {column} FROM metadata WHERE category_id = ?", (category_id,)
            )
        }
        found = [e for e in self._entities(kind) if visible and e.get(kind.id_field) in ids]
        if kind is EntityKind.SPATIAL_RESOLUTION:
            found = [{**e, "boundaries": None} for e in found]
        return Reply(200, {kind.value: found})

    # -- datasets ---------------------------------------------------------------------

    def parse_dataset(self, body: Any) -> Incoming:
        """A Dataset body as the service validates it."""
        if not isinstance(body, Mapping):
            raise InvalidBody("dataset must be an object")
        metadata = body.get("metadata")
        if not isinstance(metadata, Mapping):
            raise InvalidBody("dataset: field required: metadata")
        for name in ("revision", "category_id", "indicator_id", "srid", "trid"):
            if metadata.get(name) is None:
                raise InvalidBody(f"metadata: field required: {name}")
        for name in ("srid", "trid"):
            if not isinstance(metadata[name], int) or isinstance(metadata[name], bool):
                raise InvalidBody(f"metadata: {name} must be an integer")
        dt = metadata.get("dt")
        if dt is not None and not _parse_dt(dt):
            raise InvalidBody("metadata: dt must be a datetime 'YYYY-MM-DD HH:MM:SS'")
        inputs = body.get("data_input")
        if not isinstance(inputs, list):
            raise InvalidBody("dataset: field required: data_input")
        units: list[str] = []
        destinations: list[str | None] = []
        nanos: list[int] = []
        # One pass per value (a server cannot vectorise JSON it receives): exact types
        # are tested first because they are what JSON gives; the rest falls through.
        for item in inputs:
            if type(item) is not dict:
                raise InvalidBody("data_input items must be objects")
            ids = item.get("spatial_unit_ids")
            value: Any = item.get("data")
            if type(ids) is not list or not ids:
                raise InvalidBody("data_input: spatial_unit_ids must be a list")
            kind = type(value)
            if kind is int:
                nanos.append(value * NANOS_PER_UNIT)
            elif kind is float and math.isfinite(value):
                nanos.append(value_nanos(value))
            else:
                nanos.append(value_nanos(_number(value)))
            first = ids[0]
            units.append(first if type(first) is str else str(first))
            destinations.append(str(ids[1]) if len(ids) > 1 else None)
        return Incoming(metadata, str(body.get("data_type")), units, destinations, nanos)

    def _identity(self, db: sqlite3.Connection, meta: Mapping[str, Any]) -> list[int]:
        dt = _parse_dt(meta.get("dt"))
        rows = db.execute(
            "SELECT mdid FROM metadata WHERE category_id = ? AND indicator_id = ? AND srid = ? "
            "AND trid = ? AND dt = ? ORDER BY id",
            (meta["category_id"], meta["indicator_id"], meta["srid"], meta["trid"],
             dt.strftime(BACKEND_DT_FORMAT) if dt else None),
        ).fetchall()  # fmt: skip
        return [row[0] for row in rows]

    def _refuse(self, incoming: Incoming) -> Reply | None:
        if not incoming.nanos:
            return Reply(400, "No data to ingest")
        if incoming.data_type not in DATA_TYPES:
            return Reply(400, f'Unknown data type "{incoming.data_type}"')
        if incoming.data_type == "flow" and None in incoming.destinations:
            return failure("list index out of range")
        low, high = _int_round(min(incoming.nanos)), _int_round(max(incoming.nanos))
        for column, value in (("min_value", low), ("max_value", high)):
            if not -MAX_ABS_VALUE - 1 <= value <= MAX_ABS_VALUE:
                return failure(f"(1264, \"Out of range value for column '{column}' at row 1\")")
        return None

    def _insert_dataset(self, db: sqlite3.Connection, incoming: Incoming) -> int:
        meta = incoming.metadata
        dt = _parse_dt(meta.get("dt"))
        cursor = db.execute(
            "INSERT INTO metadata(mdid, revision, category_id, indicator_id, srid, trid, dt, "
            "date_added, min_value, max_value, data_type) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                meta.get("mdid") if self.quirks else None,
                meta["revision"],
                meta["category_id"],
                meta["indicator_id"],
                meta["srid"],
                meta["trid"],
                dt.strftime(BACKEND_DT_FORMAT) if dt else None,
                datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                _int_round(min(incoming.nanos)),
                _int_round(max(incoming.nanos)),
                incoming.data_type,
            ),
        )
        row_id = int(cursor.lastrowid or 0)
        db.execute("UPDATE metadata SET mdid = id WHERE id = ? AND mdid IS NULL", (row_id,))
        # A dataset is read and written whole: its rows are kept packed in one row (the
        # real service gives each dataset a table of its own).
        flows = incoming.data_type == "flow"
        db.execute(
            "INSERT INTO data(row_id, count, units, destinations, nanos) VALUES (?, ?, ?, ?, ?)",
            (
                row_id,
                len(incoming.nanos),
                json.dumps(incoming.units),
                json.dumps(incoming.destinations) if flows else None,
                array("q", incoming.nanos).tobytes(),
            ),
        )
        db.execute(
            "INSERT INTO scope_mapping(scope, mdid) VALUES (?, ?)", (SEES_EVERYTHING, row_id)
        )
        return row_id

    def _delete_dataset(self, db: sqlite3.Connection, mdid: int) -> None:
        rows = [r[0] for r in db.execute("SELECT id FROM metadata WHERE mdid = ?", (mdid,))]
        db.execute(f"DELETE FROM data WHERE row_id IN ({self._in(rows)})", rows)
        db.execute("DELETE FROM metadata WHERE mdid = ?", (mdid,))
        db.execute("DELETE FROM scope_mapping WHERE mdid = ?", (mdid,))

    def write_dataset(self, incoming: Incoming, *, replace: bool) -> Reply:
        """POST /data (replace=False) or PATCH /data (replace=True)."""
        refused = self._refuse(incoming)
        if refused:
            return refused
        if self.quirks and not replace:
            # Upstream checks and inserts in two steps: concurrent creates of one identity
            # all pass the check and all insert (Hazard 5).
            with self.transaction() as db:
                existing = self._identity(db, incoming.metadata)
            if len(existing) > 1:
                return Reply(500, "Ambiguous dataset")
            if existing:
                return Reply(303, existing[0])
            time.sleep(0.02)
            with self.transaction() as db:
                return Reply(201, self._insert_dataset(db, incoming))
        with self.transaction() as db:
            existing = self._identity(db, incoming.metadata)
            if len(existing) > 1:
                return Reply(500, "Ambiguous dataset")
            if existing and not replace:
                return Reply(303, existing[0])
            if existing:
                self._delete_dataset(db, existing[0])
            return Reply(201, self._insert_dataset(db, incoming))

    def delete_dataset(self, body: Any) -> Reply:
        if not isinstance(body, Mapping) or not isinstance(body.get("metadata"), Mapping):
            return self.invalid(InvalidBody("dataset: field required: metadata"))
        with self.transaction() as db:
            existing = self._identity(db, body["metadata"])
            if len(existing) > 1:
                return Reply(500, "Ambiguous dataset")
            if existing:
                self._delete_dataset(db, existing[0])
        return Reply(204)

    # -- scope mappings ---------------------------------------------------------------

    @staticmethod
    def parse_mapping(body: Any) -> tuple[str, int]:
        if not isinstance(body, Mapping) or not isinstance(body.get("scope"), str):
            raise InvalidBody("scope mapping: field required: scope")
        mdid = body.get("mdid")
        if isinstance(mdid, str) and mdid.isdigit():
            mdid = int(mdid)
        if not isinstance(mdid, int) or isinstance(mdid, bool):
            raise InvalidBody("scope mapping: mdid must be an integer")
        return body["scope"], mdid

    def post_mapping(self, scope: str, mdid: int) -> Reply:
        with self.transaction() as db:
            found = db.execute(
                "SELECT id FROM scope_mapping WHERE scope = ? AND mdid = ? ORDER BY id",
                (scope, mdid),
            ).fetchall()
            if len(found) > 1:
                return Reply(500, f"Ambiguous scope mapping for scope='{scope}' mdid={mdid}.")
            if found:
                return Reply(303, found[0][0])
            exists = db.execute("SELECT 1 FROM metadata WHERE mdid = ?", (mdid,)).fetchone()
            if not exists and not self.quirks:
                return Reply(404, "No metadata found")
            cursor = db.execute(
                "INSERT INTO scope_mapping(scope, mdid) VALUES (?, ?)", (scope, mdid)
            )
            return Reply(201, cursor.lastrowid)

    def delete_mapping(self, scope: str, mdid: int) -> Reply:
        with self.transaction() as db:
            db.execute("DELETE FROM scope_mapping WHERE scope = ? AND mdid = ?", (scope, mdid))
        return Reply(204)

    # -- reads ------------------------------------------------------------------------

    def _temporal(self, trid: int, principal: Principal) -> dict[str, Any] | None:
        reply = self.get_entity(EntityKind.TEMPORAL_RESOLUTION, trid, principal)
        return reply.body if reply.status == 200 else None

    def _selected(self, params: Mapping[str, Any], principal: Principal
                  ) -> tuple[Reply | None, list[tuple[int, str]], dict[str, Any]]:  # fmt: skip
        """The (mdid, dt) rows a /query selects, one per matching mapping."""
        if self.get_entity(EntityKind.CATEGORY, params["category_id"], principal).status != 200:
            return Reply(404, "Category not found"), [], {}
        resolution = self._temporal(params["trid"], principal)
        if resolution is None:
            return Reply(404, "Temporal resolution not found"), [], {}
        start = _parse_start(params["start_date"])
        assert start is not None
        grid = Grid(str(resolution.get("relativedelta_unit")),
                    int(resolution.get("relativedelta_num") or 1), "%Y-%m-%d")  # fmt: skip
        end = grid.add(start, int(params["duration"]) - 1)
        perms = sorted(principal.permissions)
        rows = self.connection().execute(
            "SELECT md.mdid, md.dt FROM metadata md JOIN scope_mapping sm ON sm.mdid = md.mdid "
            f"WHERE sm.scope IN ({self._in(perms)}) AND md.category_id = ? "
            "AND md.indicator_id = ? AND md.srid = ? AND md.trid = ? AND md.dt BETWEEN ? AND ? "
            "ORDER BY md.dt, md.id, sm.id",
            [*perms, params["category_id"], params["indicator_id"], params["srid"],
             params["trid"], start.strftime(BACKEND_DT_FORMAT), end.strftime(BACKEND_DT_FORMAT)],
        ).fetchall()  # fmt: skip
        if not rows:
            return Reply(404, "No metadata found"), [], resolution
        return None, [(int(r[0]), str(r[1])) for r in rows], resolution

    def query(self, body: Any, principal: Principal) -> Reply:
        try:
            params = parse_query(body)
        except InvalidBody as error:
            return self.invalid(error)
        refused, rows, resolution = self._selected(params, principal)
        if refused:
            return refused
        if params.get("mdids_only") is True:
            return Reply(
                200,
                {"min": None, "max": None, "data_by_date": None,
                 "mdids": [str(mdid) for mdid, _ in rows]},
            )  # fmt: skip
        fmt = str(resolution.get("date_format") or "%Y-%m-%d")
        by_date: dict[str, dict[str, Any]] = {}
        low = high = None
        for mdid in dict.fromkeys(mdid for mdid, _ in rows):
            for dt, unit, destination, nanos in self._data(mdid):
                value = float(nanos_to_text(nanos))
                key = datetime.strptime(dt, BACKEND_DT_FORMAT).strftime(fmt)
                cell = by_date.setdefault(key, {})
                if destination is None:
                    cell[unit] = value
                else:
                    cell.setdefault(unit, {})[destination] = value
                low = value if low is None or value < low else low
                high = value if high is None or value > high else high
        if not by_date:
            return Reply(404, "No data found")
        ordered = dict(sorted(by_date.items()))
        return Reply(200, {"min": low, "max": high, "data_by_date": ordered, "mdids": None})

    def _data(self, mdid: int) -> list[tuple[str, str, str | None, int]]:
        """A dataset's rows, dated by every metadata row that carries the mdid (upstream
        reads the data stored under the mdid, which a client-supplied mdid can share)."""
        db = self.connection()
        stored = db.execute(
            "SELECT units, destinations, nanos FROM data WHERE row_id = ?", (mdid,)
        ).fetchone()
        if stored is None:
            return []
        units = json.loads(stored[0])
        destinations = json.loads(stored[1]) if stored[1] else [None] * len(units)
        values = array("q")
        values.frombytes(stored[2])
        rows = list(zip(units, destinations, values, strict=True))
        dates = db.execute("SELECT dt FROM metadata WHERE mdid = ? ORDER BY dt", (mdid,)).fetchall()
        return [
            (dt, unit, destination, nanos) for (dt,) in dates for unit, destination, nanos in rows
        ]

    def value_count(self) -> int:
        """How many values the store holds (for tests and benchmarks)."""
        row = self.connection().execute("SELECT COALESCE(SUM(count), 0) FROM data").fetchone()
        return int(row[0])

    def timerange(self, category_id: str, indicator_id: str, srid: int, trid: int,
                  principal: Principal) -> Reply:  # fmt: skip
        resolution = self._temporal(trid, principal)
        if resolution is None:
            return failure("list index out of range")
        perms = sorted(principal.permissions)
        rows = (
            self.connection()
            .execute(
                "SELECT DISTINCT md.dt, md.min_value, md.max_value FROM metadata md "
                f"JOIN scope_mapping sm ON sm.mdid = md.mdid WHERE sm.scope IN ({self._in(perms)}) "
                "AND md.category_id = ? AND md.indicator_id = ? AND md.srid = ? AND md.trid = ? "
                "ORDER BY md.dt",
                [*perms, category_id, indicator_id, srid, trid],
            )
            .fetchall()
        )
        if not rows:
            return Reply(200, dict.fromkeys(
                ("start_date", "end_date", "all_dates", "min_value", "max_value")))  # fmt: skip
        fmt = str(resolution.get("date_format"))
        grid = Grid(str(resolution.get("relativedelta_unit")),
                    int(resolution.get("relativedelta_num") or 1), fmt)  # fmt: skip
        first = datetime.strptime(rows[0][0], BACKEND_DT_FORMAT)
        last = datetime.strptime(rows[-1][0], BACKEND_DT_FORMAT)
        dates: list[str] = []
        moment = first
        while moment <= last:
            dates.append(moment.strftime(fmt))
            moment = grid.add(moment, 1)
        return Reply(200, {
            "start_date": dates[0], "end_date": dates[-1], "all_dates": dates,
            "min_value": min(r[1] for r in rows), "max_value": max(r[2] for r in rows),
        })  # fmt: skip

    def csv(self, body: Any, principal: Principal) -> Reply:
        try:
            params = parse_query(body)
        except InvalidBody as error:
            return self.invalid(error)
        refused, rows, _ = self._selected(params, principal)
        category = str(params["category_id"]).lower()
        if refused or category not in CSV_CATEGORIES:
            return Reply(500, INTERNAL_ERROR, plain=True)
        flow = category in CSV_FLOW_CATEGORIES
        lines = ["date,origin_code,destination_code,value" if flow else "date,area_code,value"]
        for mdid in dict.fromkeys(mdid for mdid, _ in rows):
            for dt, unit, destination, nanos in self._data(mdid):
                units = f"{unit},{destination}" if flow else unit
                lines.append(f"{dt[:10]},{units},{_decimal_text(nanos)}")
        return Reply(200, "".join(f"{line}\r\n" for line in lines), plain=True)

    def latest_date(self) -> Reply:
        row = (
            self.connection()
            .execute(
                "SELECT MAX(md.dt) FROM metadata md JOIN scope_mapping sm ON sm.mdid = md.mdid "
                "WHERE sm.scope = 'read:premium_data'"
            )
            .fetchone()
        )
        if not row or row[0] is None:
            return failure("tuple index out of range")
        return Reply(200, {"latest_date": str(row[0])[:10]})

    # -- errors -----------------------------------------------------------------------

    def invalid(self, error: InvalidBody) -> Reply:
        """Upstream answers 500 text/plain for a body that fails validation (Hazard 7)."""
        if isinstance(error, _NaNValue):
            return failure("nan can not be used with MySQL")
        if self.quirks:
            return Reply(500, INTERNAL_ERROR, plain=True)
        return Reply(422, str(error))


class _NaNValue(InvalidBody):
    pass


_NaN = _NaNValue("data_input: NaN")


def parse_query(body: Any) -> dict[str, Any]:
    """QueryParameters as the service validates them."""
    if not isinstance(body, Mapping):
        raise InvalidBody("query must be an object")
    for name in ("category_id", "indicator_id", "srid", "trid", "start_date", "duration"):
        if body.get(name) is None:
            raise InvalidBody(f"query: field required: {name}")
    for name in ("srid", "trid", "duration"):
        value = body[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidBody(f"query: {name} must be a positive integer")
    if not isinstance(body["start_date"], str) or _parse_start(body["start_date"]) is None:
        raise InvalidBody("query: start_date does not match the expected format")
    return dict(body)


def _number(value: Any) -> float:
    """A `data` value that is not a plain JSON number, as pydantic would take it."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidBody("data_input: data must be a number") from None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidBody("data_input: data must be a number")
    number = float(value)
    if math.isnan(number):
        raise _NaN
    if math.isinf(number):
        raise InvalidBody("data_input: data must be finite")
    return number


def _parse_start(text: str) -> datetime | None:
    """A /query start date: ISO 8601 (`2020`, `2020-02`, `2020-02-01`, ...) or an ISO week
    (`2020w05`: its Monday)."""
    match = _START_DATE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, week = match.groups()
    try:
        if week:
            return datetime.strptime(f"{year}-W{week}-1", "%G-W%V-%u")
        return datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                        int(minute or 0), int(second or 0))  # fmt: skip
    except ValueError:
        return None


def _parse_dt(value: Any) -> datetime | None:
    """A dataset's `dt` as pydantic reads a datetime: a date and a time are both needed."""
    if not isinstance(value, str):
        return None
    text = value.strip().replace("T", " ")
    for fmt in (BACKEND_DT_FORMAT, "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(text[:26], fmt)
        except ValueError:
            continue
    return None


def _bin(item: Any) -> Any:
    """An indicator's bin as the service's Bin model gives it back: `min` and `max` are
    floats (numbers), `width` a string; other fields are dropped."""
    if not isinstance(item, Mapping):
        return item
    bounds = {k: None if item.get(k) is None else float(item[k]) for k in ("min", "max")}
    return {**bounds, "width": item.get("width")}


def _int_round(nanos: int) -> int:
    """What an INT column keeps of a decimal: rounded half away from zero."""
    whole, rest = divmod(abs(nanos), NANOS_PER_UNIT)
    rounded = whole + (1 if rest * 2 >= NANOS_PER_UNIT else 0)
    return -rounded if nanos < 0 else rounded


def _decimal_text(nanos: int) -> str:
    """DECIMAL(20,9) as MySQL prints it: 9 decimals always; zero is `0E-9`."""
    if nanos == 0:
        return "0E-9"
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_UNIT)
    return f"{sign}{whole}.{frac:09d}"


__all__ = ["INTERNAL_ERROR", "Incoming", "InvalidBody", "Principal", "Reply", "Store"]
