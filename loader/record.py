"""The two sides the planner compares: what the manifest wants (`Desired`) and what the
loader knows of the target (`Actual`: its state record, refreshed against the server).

The state record's content lives here with its JSON form; `state.py` stores and locks the
document that carries it. Standard library and `model` only, like the planner.

What a record keeps, per target:

* config entities as applied: kind, id, label and a digest of the body (the bodies with
  their boundaries weigh a megabyte and are in the manifest's config anyway);
* datasets: full metadata and data type (enough to delete them), the mdid the server
  gave, the content digest, revision, count, sum, min and max, and the scopes granted;
* an apply history: when, who (the token's subject), git commit, loader version, plan.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from loader.model import (
    DATA_TYPES,
    ConfigEntity,
    DatasetKey,
    DatasetStats,
    DatasetSummary,
    DataType,
    EntityKind,
    KeyShapeError,
    LoaderError,
    by_key,
    excerpt,
    json_kind,
)
from loader.notes import Note


class RecordError(LoaderError):
    """A state record whose content cannot be understood."""


class _Shape(Exception):
    """A value of a record or a journal entry that is not what it must be; the message
    starts with the value's path inside the JSON (`datasets[3].srid`)."""


_PLAIN_KEY = re.compile(r"[\w.:-]{1,40}")


class _Object:
    """One JSON object of a record or a journal entry, read field by field with each
    type checked: a damaged or hand-edited file says what is wrong and where, instead of
    becoming wrong data (`str()` of a list) or a TypeError. No value is ever converted."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise _Shape(f"{path or 'content'}: an object expected, found {json_kind(value)}")
        self.raw: dict[str, Any] = value
        self.path = path

    def at(self, name: str | int) -> str:
        if isinstance(name, int):
            return f"{self.path}[{name}]"
        shown = name if _PLAIN_KEY.fullmatch(name) else excerpt(name, 40)
        return f"{self.path}.{shown}" if self.path else shown

    def _wrong(self, name: str, expected: str) -> _Shape:
        if name not in self.raw:
            return _Shape(f"{self.at(name)}: missing")
        return _Shape(f"{self.at(name)}: {expected} expected, found {json_kind(self.raw[name])}")

    def text(self, name: str) -> str:
        value = self.raw.get(name)
        if not isinstance(value, str):
            raise self._wrong(name, "a string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is not None and not isinstance(value, str):
            raise self._wrong(name, "a string or null")
        return value

    def integer(self, name: str) -> int:
        value = self.raw.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong(name, "an integer")
        return value

    def ident(self, name: str) -> int | str:
        value = self.raw.get(name)
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            raise self._wrong(name, "an integer or a string")
        return value

    def kind(self, name: str) -> EntityKind:
        return _entity_kind(self.text(name), self.at(name))

    def objects(self, name: str) -> list[_Object]:
        """An array of objects; absent is empty."""
        value = self.raw.get(name, [])
        if not isinstance(value, list):
            raise self._wrong(name, "an array")
        return [_Object(item, f"{self.at(name)}[{i}]") for i, item in enumerate(value)]

    def mapping(self, name: str) -> _Object:
        """An object; absent is empty."""
        if name not in self.raw:
            return _Object({}, self.at(name))
        return _Object(self.raw[name], self.at(name))

    def texts(self, name: str) -> list[str]:
        value = self.raw.get(name)
        if not isinstance(value, list):
            raise self._wrong(name, "an array")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _Shape(f"{self.at(name)}[{i}]: a string expected, found {json_kind(item)}")
        return value

    def counts(self, name: str) -> dict[str, int]:
        """An object of integers; absent is empty."""
        found = self.mapping(name)
        return {key: found.integer(key) for key in found.raw}


def _entity_kind(name: str, path: str) -> EntityKind:
    try:
        return EntityKind(name)
    except ValueError:
        raise _Shape(f"{path}: {excerpt(name, 40)} is not a config kind") from None


EntityRef = tuple[EntityKind, str]  # (kind, id as text): ids are ints or strings


def entity_ref(kind: EntityKind, entity_id: int | str) -> EntityRef:
    return (kind, str(entity_id))


@dataclass(frozen=True)
class RecordedEntity:
    kind: EntityKind
    id: int | str
    label: str  # how the manifest names it
    digest: str
    # The body's own `label` field, to say what a change renamed; "title" in the record's
    # JSON, as earlier versions wrote it.
    body_label: str | None = None

    @classmethod
    def of(cls, entity: ConfigEntity) -> RecordedEntity:
        body_label = entity.body.get("label")
        return cls(entity.kind, entity.id, entity.label, entity.digest,
                   body_label if isinstance(body_label, str) else None)  # fmt: skip

    @property
    def ref(self) -> EntityRef:
        return entity_ref(self.kind, self.id)


@dataclass(frozen=True)
class RecordedDataset:
    summary: DatasetSummary
    mdid: int
    scopes: frozenset[str] = frozenset()  # granted besides the automatic admin mapping
    # The apply that last wrote it: its number in the history, from 1 (a write of a killed
    # apply counts as the one that folded it in); 0 in records of format 1, which kept none.
    written: int = 0

    @property
    def key(self) -> DatasetKey:
        return self.summary.key


@dataclass(frozen=True)
class ApplyEntry:
    """One apply in the audit trail."""

    when: str  # ISO 8601, UTC
    who: str  # the token subject(s) that wrote
    commit: str | None  # git commit of the manifest's repository, when there is one
    loader_version: str
    plan_fingerprint: str
    outcome: str  # complete | partial | interrupted
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """What the loader applied to one target."""

    entities: Mapping[EntityRef, RecordedEntity] = field(default_factory=dict)
    datasets: Mapping[DatasetKey, RecordedDataset] = field(default_factory=dict)
    history: tuple[ApplyEntry, ...] = ()
    target_url: str | None = None
    # Dataset identities an apply set out to write and never recorded as written: a
    # dataset found on the server for one of them may be that apply's (killed, or its
    # write's outcome unknown), not another writer's.
    in_doubt: frozenset[DatasetKey] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.entities and not self.datasets

    def with_entity(self, entity: RecordedEntity) -> Record:
        return replace(self, entities={**self.entities, entity.ref: entity})

    # -- JSON -----------------------------------------------------------------------------

    def to_content(self) -> dict[str, Any]:
        config: dict[str, dict[str, Any]] = {}
        for entity in sorted(self.entities.values(), key=lambda e: (e.kind.value, str(e.id))):
            config.setdefault(entity.kind.value, {})[str(entity.id)] = {
                "id": entity.id,
                "label": entity.label,
                "digest": entity.digest,
                "title": entity.body_label,
            }
        return {
            "target_url": self.target_url,
            "config": config,
            "datasets": [_dataset_json(d) for _, d in sorted(self.datasets.items(), key=by_key)],
            "in_doubt": [k.to_json() for k in sorted(self.in_doubt)],
            "history": [entry_json(e) for e in self.history],
        }

    @classmethod
    def from_content(cls, content: Mapping[str, Any], where: str) -> Record:
        """The record a stored document's content holds; a value of the wrong type, a
        field missing or an unknown kind is a RecordError naming the file and the path
        of the value (`datasets[3].srid: an integer expected, found a string`)."""
        if not content:
            return cls()
        try:
            raw = _Object(dict(content), "")
            entities = {}
            config = raw.mapping("config")
            for kind_name in config.raw:
                kind = _entity_kind(kind_name, config.at(kind_name))
                items = config.mapping(kind_name)
                for name in items.raw:
                    entity = _entity_from_json(items.mapping(name), kind)
                    entities[entity.ref] = entity
            datasets = {}
            for found in raw.objects("datasets"):
                dataset = _dataset_from_json(found)
                datasets[dataset.key] = dataset
            history = tuple(_entry_from_json(entry) for entry in raw.objects("history"))
            target_url = raw.optional_text("target_url")
            in_doubt = frozenset(_key_from_json(key) for key in raw.objects("in_doubt"))
        except _Shape as error:
            raise RecordError(f"{where}: {error}") from None
        return cls(entities, datasets, history, target_url, in_doubt)


def _dataset_json(dataset: RecordedDataset) -> dict[str, Any]:
    summary = dataset.summary
    key = summary.key
    return {
        **key.to_json(),
        "data_type": summary.data_type,
        "revision": summary.revision,
        "digest": summary.digest,
        "source": summary.source,
        "count": summary.stats.count,
        "sum": summary.stats.sum,
        "min": summary.stats.min,
        "max": summary.stats.max,
        "mdid": dataset.mdid,
        "scopes": sorted(dataset.scopes),
        # Absent when unknown: a record of format 1 keeps its content, and its digest.
        **({"written": dataset.written} if dataset.written else {}),
    }


_DATA_TYPES: dict[str, DataType] = {name: name for name in DATA_TYPES}


def _entity_from_json(raw: _Object, kind: EntityKind) -> RecordedEntity:
    return RecordedEntity(kind, raw.ident("id"), raw.text("label"), raw.text("digest"),
                          raw.optional_text("title"))  # fmt: skip


def _dataset_from_json(raw: _Object) -> RecordedDataset:
    key = _key_from_json(raw)
    stats = DatasetStats(raw.integer("count"), raw.integer("sum"), raw.integer("min"),
                         raw.integer("max"))  # fmt: skip
    data_type = raw.text("data_type")
    checked = _DATA_TYPES.get(data_type)
    if checked is None:
        raise _Shape(f"{raw.at('data_type')}: one of {', '.join(DATA_TYPES)} expected, found "
                     f"{excerpt(data_type, 40)}")  # fmt: skip
    summary = DatasetSummary(key, checked, raw.text("revision"), raw.text("digest"), stats,
                             raw.text("source"))  # fmt: skip
    written = raw.integer("written") if "written" in raw.raw else 0
    return RecordedDataset(summary, raw.integer("mdid"), frozenset(raw.texts("scopes")), written)


def entry_json(entry: ApplyEntry) -> dict[str, Any]:
    return {
        "when": entry.when,
        "who": entry.who,
        "commit": entry.commit,
        "loader_version": entry.loader_version,
        "plan_fingerprint": entry.plan_fingerprint,
        "outcome": entry.outcome,
        "counts": dict(entry.counts),
    }


def _entry_from_json(raw: _Object) -> ApplyEntry:
    return ApplyEntry(
        raw.text("when"), raw.text("who"), raw.optional_text("commit"),
        raw.text("loader_version"), raw.text("plan_fingerprint"), raw.text("outcome"),
        raw.counts("counts"),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# The two sides of a plan


@dataclass(frozen=True)
class Desired:
    """What the manifest wants on one target: config, canonical datasets, and per dataset
    the scopes its access rules give it."""

    entities: tuple[ConfigEntity, ...]
    datasets: Mapping[DatasetKey, DatasetSummary]
    scopes: Mapping[DatasetKey, frozenset[str]]


@dataclass(frozen=True)
class Observed:
    """What refreshing against the live server found; all empty when planning offline."""

    refreshed: bool = False
    # GET /setup: languages and data providers by id (the only unfiltered config read)
    languages: Mapping[str, Mapping[str, Any]] | None = None
    data_providers: Mapping[str, Mapping[str, Any]] | None = None
    # recorded datasets whose mdid the server no longer shows (PATCHed or deleted)
    vanished: frozenset[DatasetKey] = frozenset()
    # --verify: datasets whose content on the server differs from the manifest's
    content_differs: frozenset[DatasetKey] = frozenset()
    # (scope, key) recorded as granted that a reader of that scope cannot see
    grants_missing: frozenset[tuple[str, DatasetKey]] = frozenset()
    scopes_checked: frozenset[str] = frozenset()
    # visible mdids the record does not know, per (indicator, srid, trid)
    unrecorded: Mapping[tuple[str, int, int], int] = field(default_factory=dict)
    # Another writer's work, read date by date where the record does not know an mdid:
    # identities on the server more than once, and identities of the manifest on the
    # server that no apply of this record wrote or set out to write.
    duplicated: Mapping[DatasetKey, frozenset[int]] = field(default_factory=dict)
    unexplained: Mapping[DatasetKey, int] = field(default_factory=dict)
    # a digest of everything read, for the plan's fingerprint
    view_digest: str = ""
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Actual:
    record: Record
    observed: Observed = Observed()


def used_ids(key: DatasetKey) -> dict[EntityKind, str]:
    """The config entities a dataset points at, as ids in text."""
    return {
        EntityKind.CATEGORY: key.category_id,
        EntityKind.INDICATOR: key.indicator_id,
        EntityKind.SPATIAL_RESOLUTION: str(key.srid),
        EntityKind.TEMPORAL_RESOLUTION: str(key.trid),
    }


def group_of(key: DatasetKey) -> tuple[str, str, int, int]:
    """The /query unit: one indicator at one resolution (all its dates)."""
    return (key.category_id, key.indicator_id, key.srid, key.trid)


def groups(keys: Iterable[DatasetKey]) -> dict[tuple[str, str, int, int], list[DatasetKey]]:
    found: dict[tuple[str, str, int, int], list[DatasetKey]] = {}
    for key in sorted(keys, key=by_key):
        found.setdefault(group_of(key), []).append(key)
    return found


def _key_from_json(raw: _Object) -> DatasetKey:
    try:
        return DatasetKey.from_json(raw.raw)
    except KeyShapeError as error:
        raise raw._wrong(error.name, error.expected) from None


# ---------------------------------------------------------------------------------------
# Events: one completed change each. An apply applies them to a RecordBuilder as they
# happen and writes them to the journal as JSON; a later run reads the journal back into
# events and applies them to the record it amends. Either way, in linear time.


@dataclass(frozen=True)
class EntityRecorded:
    entity: RecordedEntity


@dataclass(frozen=True)
class EntityDropped:
    kind: EntityKind
    id: int | str


@dataclass(frozen=True)
class SetupRecorded:
    """The whole config was posted: these entities, and no others."""

    entities: tuple[RecordedEntity, ...]


@dataclass(frozen=True)
class DatasetRecorded:
    dataset: RecordedDataset


@dataclass(frozen=True)
class DatasetDropped:
    key: DatasetKey


@dataclass(frozen=True)
class WritingDatasets:
    """An apply is about to write these datasets (journaled before the first of them)."""

    keys: tuple[DatasetKey, ...]


@dataclass(frozen=True)
class GrantChanged:
    key: DatasetKey
    scope: str
    mdid: int
    granted: bool  # False: revoked


Event = (
    EntityRecorded | EntityDropped | SetupRecorded | DatasetRecorded | DatasetDropped
    | WritingDatasets | GrantChanged
)  # fmt: skip


def _entity_json(entity: RecordedEntity) -> dict[str, Any]:
    return {"op": "entity", "kind": entity.kind.value, "id": entity.id,
            "label": entity.label, "digest": entity.digest, "title": entity.body_label}  # fmt: skip


def event_json(event: Event) -> dict[str, Any]:
    """The journal line of `event` (the format journals have always had)."""
    match event:
        case EntityRecorded(entity):
            return _entity_json(entity)
        case EntityDropped(kind, entity_id):
            return {"op": "drop_entity", "kind": kind.value, "id": entity_id}
        case SetupRecorded(entities):
            return {"op": "setup", "entities": [_entity_json(e) for e in entities]}
        case DatasetRecorded(dataset):
            return {"op": "dataset", **_dataset_json(dataset)}
        case DatasetDropped(key):
            return {"op": "drop_dataset", **key.to_json()}
        case WritingDatasets(keys):
            return {"op": "writing", "keys": [k.to_json() for k in sorted(keys, key=by_key)]}
        case GrantChanged(key, scope, mdid, granted):
            return {"op": "grant" if granted else "revoke", "scope": scope, "mdid": mdid,
                    **key.to_json()}  # fmt: skip


def _event_from_json(entry: _Object) -> Event:
    op = entry.text("op")
    if op == "entity":
        return EntityRecorded(_entity_from_json(entry, entry.kind("kind")))
    if op == "drop_entity":
        return EntityDropped(entry.kind("kind"), entry.ident("id"))
    if op == "setup":
        entities = entry.objects("entities")
        return SetupRecorded(tuple(_entity_from_json(e, e.kind("kind")) for e in entities))
    if op == "dataset":
        return DatasetRecorded(_dataset_from_json(entry))
    if op == "drop_dataset":
        return DatasetDropped(_key_from_json(entry))
    if op == "writing":
        return WritingDatasets(tuple(_key_from_json(key) for key in entry.objects("keys")))
    if op in ("grant", "revoke"):
        return GrantChanged(_key_from_json(entry), entry.text("scope"), entry.integer("mdid"),
                            op == "grant")  # fmt: skip
    raise _Shape(f"op: unknown journal operation {excerpt(op, 40)}")


class RecordBuilder:
    """A record being amended event by event, each in constant time (a Record copies
    its mappings on every change); `build` gives the Record. `writer`: the number the
    apply whose writes it records takes in the history (an apply, or its journal replayed),
    stamped on each dataset it records; 0 for what no apply wrote (import's findings)."""

    def __init__(self, record: Record, writer: int = 0) -> None:
        self.base = record
        self.writer = writer
        self.entities = dict(record.entities)
        self.datasets = dict(record.datasets)
        self.in_doubt = set(record.in_doubt)

    def apply(self, event: Event) -> None:
        match event:
            case EntityRecorded(entity):
                self.entities[entity.ref] = entity
            case EntityDropped(kind, entity_id):
                self.entities.pop(entity_ref(kind, entity_id), None)
            case SetupRecorded(entities):
                self.entities = {e.ref: e for e in entities}
            case DatasetRecorded(dataset):
                written = replace(dataset, written=self.writer) if self.writer else dataset
                self.datasets[dataset.key] = written
                self.in_doubt.discard(dataset.key)
            case DatasetDropped(key):
                self.datasets.pop(key, None)
                self.in_doubt.discard(key)
            case WritingDatasets(keys):
                self.in_doubt.update(keys)
            case GrantChanged(key, scope, mdid, granted):
                found = self.datasets.get(key)
                if found is None or found.mdid != mdid:
                    return  # the dataset was rewritten since: its grants went with it
                scopes = found.scopes | {scope} if granted else found.scopes - {scope}
                self.datasets[key] = replace(found, scopes=scopes)

    def build(self) -> Record:
        return replace(self.base, entities=dict(self.entities), datasets=dict(self.datasets),
                       in_doubt=frozenset(self.in_doubt))  # fmt: skip


def next_apply(record: Record) -> int:
    """The number an apply of `record` takes in its history, from 1."""
    return len(record.history) + 1


def replay(
    record: Record,
    entries: Iterable[Mapping[str, Any]],
    where: str,
    lines: Sequence[int] = (),
) -> Record:
    """The record as it stands after the journaled changes. An entry that is not one (a
    field missing or of the wrong type, an unknown operation) is a RecordError at its
    line of the journal (`lines`, the entries' line numbers, when known)."""
    # A journal left behind is an apply's that no history entry names yet: its writes
    # count as the next apply's, which folds them in.
    builder = RecordBuilder(record, writer=next_apply(record))
    with _no_cycle_collection():
        for number, entry in enumerate(entries):
            try:
                builder.apply(_event_from_json(_Object(entry, "")))
            except _Shape as error:
                at = f":{lines[number]}" if number < len(lines) else f" (entry {number + 1})"
                raise RecordError(f"{where}{at}: unreadable journal entry: {error}") from None
    return builder.build()


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector runs every so many allocations and walks every live
    object each time it reaches the oldest generation: over a bulk build of acyclic
    objects (a replay) that makes the cost per entry grow with the size (bench/replay.py:
    14 us at 50,000 entries against 8 at 5,000). What is built here holds no cycles, so
    nothing is left for it to find; it is switched back on as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
