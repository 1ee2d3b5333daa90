"""Both sides of a plan: the desired state from a manifest, and the actual state, which
is the state record refreshed against what the live backend can tell cheaply.

The server cannot list config (only GET /setup is unfiltered) nor grants, and reading
content costs as much as loading it. So a refresh reads GET /setup and, per indicator and
resolution, the set of visible mdids in one /query (mdids_only) over all the dates the
record and the manifest know; content is trusted from the recorded digests unless asked to
verify. A reader credential per scope, when configured, shows which grants still hold.

`import_record` takes over a deployment filled by other means: it reads the content of
the datasets the manifest declares and records those that match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loader.access import grants
from loader.contract import SEES_EVERYTHING
from loader.model import (
    Backend,
    BackendError,
    ConfigEntity,
    Content,
    Dataset,
    DatasetKey,
    DatasetStats,
    DatasetSummary,
    EntityKind,
    Manifest,
    QueryRange,
    SetupConfig,
    entity_digest,
    nanos_to_float,
    stored_matches,
    value_nanos,
)
from loader.notes import NoSuchResolution, Note
from loader.record import (
    DatasetRecorded,
    Desired,
    Observed,
    Record,
    RecordBuilder,
    RecordedDataset,
    RecordedEntity,
    entity_ref,
    group_of,
    groups,
)
from loader.timegrid import Grid, from_backend_dt


def desired_state(
    manifest: Manifest, setup: SetupConfig, summaries: Iterable[DatasetSummary]
) -> Desired:
    datasets = {s.key: s for s in summaries}
    by_scope = grants(manifest.access, datasets, setup)
    scopes: dict[DatasetKey, set[str]] = {}
    for scope, keys in by_scope.items():
        if scope == SEES_EVERYTHING:  # the server maps it itself; never ours to grant
            continue
        for key in keys:
            scopes.setdefault(key, set()).add(scope)
    return Desired(
        entities=setup.entities,
        datasets=datasets,
        scopes={key: frozenset(found) for key, found in scopes.items()},
    )


class Grids:
    """Temporal grids by trid, from the manifest's config."""

    def __init__(self, setup: SetupConfig) -> None:
        self.by_trid = {r.trid: Grid.of(r) for r in setup.temporal.values()}

    def query(self, keys: list[DatasetKey]) -> QueryRange | None:
        """The /query range that covers every one of `keys` (one indicator and
        resolution, sorted by date); None when the resolution is unknown."""
        grid = self.by_trid.get(keys[0].trid)
        if grid is None:
            return None
        first, last = from_backend_dt(keys[0].dt), from_backend_dt(keys[-1].dt)
        key = keys[0]
        return QueryRange(key.category_id, key.indicator_id, key.srid, key.trid,
                          grid.format(first), grid.steps_between(first, last) + 1)  # fmt: skip

    def date(self, key: DatasetKey) -> str:
        """The key's date as /query answers key it (the resolution's format)."""
        return self.by_trid[key.trid].format(from_backend_dt(key.dt))


# Existence reads in flight at once: each is one small /query; the server answers them
# side by side (backend-contract: 23 of them concurrent in ~0.15 s).
READS_IN_FLIGHT = 8

Group = tuple[str, str, int, int]


def _read_all(
    read: Callable[[QueryRange], frozenset[int]], ranges: Mapping[Group, QueryRange]
) -> dict[Group, frozenset[int]]:
    """`read` of every range, READS_IN_FLIGHT at a time; the first error is raised."""
    if len(ranges) <= 1:
        return {group: read(query) for group, query in ranges.items()}
    with ThreadPoolExecutor(READS_IN_FLIGHT, thread_name_prefix="refresh") as pool:
        return dict(zip(ranges, pool.map(read, ranges.values()), strict=True))


def refresh(
    backend: Backend,
    record: Record,
    desired: Desired,
    setup: SetupConfig,
    *,
    readers: Mapping[str, Backend] | None = None,
    verify: Iterable[Dataset] | None = None,
) -> Observed:
    """What the live server says about the record: missing mdids, unknown ones, grants
    that a scope's reader no longer sees, and (with `verify`, the manifest's datasets)
    content that differs."""
    view = backend.read_setup()
    languages = {str(e.get("lid")): e for e in view.languages}
    providers = {str(e.get("dpid")): e for e in view.data_providers}
    grids = Grids(setup)
    vanished: set[DatasetKey] = set()
    missing: set[tuple[str, DatasetKey]] = set()
    unrecorded: dict[tuple[str, int, int], int] = {}
    seen: dict[str, Any] = {}
    notes: list[Note] = []
    ranges: dict[tuple[str, str, int, int], QueryRange] = {}
    unknown: list[list[DatasetKey]] = []  # the groups where the server shows mdids we do not
    grouped = groups({*record.datasets, *desired.datasets})
    for group, keys in grouped.items():
        query = grids.query(keys)
        if query is None:
            notes.append(NoSuchResolution(keys[0].indicator_id, keys[0].trid))
        else:
            ranges[group] = query
    visible_in = _read_all(backend.visible_mdids, ranges)
    sees = {
        scope: _read_all(reader.visible_mdids, ranges) for scope, reader in (readers or {}).items()
    }
    for group, query in ranges.items():
        keys = grouped[group]
        visible = visible_in[group]
        seen["/".join(map(str, group))] = sorted(visible)
        mine = {k: record.datasets[k] for k in keys if k in record.datasets}
        vanished.update(k for k, d in mine.items() if d.mdid not in visible)
        extra = visible - {d.mdid for d in mine.values()}
        if extra:
            unrecorded[(query.indicator_id, query.srid, query.trid)] = len(extra)
            unknown.append(keys)
        for scope, found in sees.items():
            reader_sees = found[group]
            seen[f"{scope}:" + "/".join(map(str, group))] = sorted(reader_sees)
            missing.update(
                (scope, k)
                for k, d in mine.items()
                if scope in d.scopes and k not in vanished and d.mdid not in reader_sees
            )
    differs: set[DatasetKey] = set()
    if verify is not None:
        differs = _differing(backend, verify, ranges, grids, desired.datasets)
    duplicated, unexplained = other_writers(backend, record, desired.datasets, grids, unknown)
    view_digest = hashlib.sha256(
        json.dumps(
            [languages, providers, seen, sorted(map(str, differs))], sort_keys=True, default=str
        ).encode()
    ).hexdigest()
    return Observed(
        refreshed=True,
        languages=languages,
        data_providers=providers,
        vanished=frozenset(vanished),
        content_differs=frozenset(differs),
        grants_missing=frozenset(missing),
        scopes_checked=frozenset(readers or {}),
        unrecorded=unrecorded,
        duplicated=duplicated,
        unexplained=unexplained,
        view_digest=view_digest,
        notes=tuple(notes),
    )


def other_writers(
    backend: Backend,
    record: Record,
    wanted: Iterable[DatasetKey],
    grids: Grids,
    unknown: Iterable[list[DatasetKey]],
) -> tuple[dict[DatasetKey, frozenset[int]], dict[DatasetKey, int]]:
    """Whose are the mdids the record does not know? Read date by date, only in the
    groups (`unknown`) where the server shows some: the identities that exist more than
    once (two writers created them at once; every later write of them fails on the real
    service), and the identities of the manifest (`wanted`) that exist once, unrecorded,
    while no apply of this record set out to write them (someone else wrote them: another
    state record, or other means). A recorded identity whose mdid changed is drift (it
    was rewritten behind the loader's back), which a plan repairs: neither."""
    wanted = set(wanted)
    explained = {*record.datasets, *record.in_doubt}
    duplicated: dict[DatasetKey, frozenset[int]] = {}
    unexplained: dict[DatasetKey, int] = {}
    for keys in unknown:
        for key in keys:
            query = grids.query([key])
            if query is None:
                continue
            found = backend.visible_mdids(query)
            if len(found) > 1:
                duplicated[key] = found
            elif found and key in wanted and key not in explained:
                unexplained[key] = next(iter(found))
    return duplicated, unexplained


def other_writers_now(
    backend: Backend, record: Record, wanted: Iterable[DatasetKey], setup: SetupConfig
) -> tuple[dict[DatasetKey, frozenset[int]], dict[DatasetKey, int]]:
    """`other_writers` as the server stands now (after an apply): the visible mdids of
    each indicator and resolution first, date by date only where the record lacks some."""
    grids = Grids(setup)
    wanted = list(wanted)
    grouped = groups({*record.datasets, *wanted})
    ranges = {g: q for g, keys in grouped.items() if (q := grids.query(keys)) is not None}
    visible = _read_all(backend.visible_mdids, ranges)
    unknown = []
    for group in ranges:
        keys = grouped[group]
        known = {record.datasets[k].mdid for k in keys if k in record.datasets}
        if visible[group] - known:
            unknown.append(keys)
    return other_writers(backend, record, wanted, grids, unknown)


def adopt_languages(record: Record, desired: Desired, observed: Observed) -> Record:
    """Record the languages the server already holds as the manifest wants them (a
    setup posted by a run that died before journaling it): only a setup post writes
    languages, so a plan never lists them for creation once they are there."""
    for entity in desired.entities:
        if entity.kind is not EntityKind.LANGUAGE:
            continue
        stored = (observed.languages or {}).get(str(entity.id))
        ref = entity_ref(entity.kind, entity.id)
        fits = stored is not None and stored_matches(entity.body, stored)
        if fits and ref not in record.entities:
            record = record.with_entity(RecordedEntity.of(entity))
    return record


def _differing(
    backend: Backend,
    datasets: Iterable[Dataset],
    ranges: Mapping[tuple[str, str, int, int], QueryRange],
    grids: Grids,
    expected: Iterable[DatasetKey],
) -> set[DatasetKey]:
    """The datasets whose content on the server is not theirs (read group by group)."""
    contents = GroupContents(backend, ranges, expected)
    differs = set()
    for dataset in datasets:
        cells = contents.take(dataset.key, grids.date(dataset.key))
        if cells is not None and not content_matches(dataset, cells):
            differs.add(dataset.key)
    return differs


class GroupContents:
    """The server's content per indicator and resolution, read once with one /query and
    dropped once every dataset expected of it has been compared."""

    def __init__(
        self,
        backend: Backend,
        ranges: Mapping[tuple[str, str, int, int], QueryRange],
        expected: Iterable[DatasetKey],
    ) -> None:
        self.backend = backend
        self.ranges = ranges
        self.left: dict[tuple[str, str, int, int], int] = {}
        for key in expected:
            self.left[group_of(key)] = self.left.get(group_of(key), 0) + 1
        self.contents: dict[tuple[str, str, int, int], Content] = {}

    def take(self, key: DatasetKey, date: str) -> Mapping[tuple[str, ...], float] | None:
        group = group_of(key)
        if group not in self.contents:
            self.contents[group] = self.backend.dataset_content(self.ranges[group])
        cells = self.contents[group].get(date)
        self.left[group] = self.left.get(group, 1) - 1
        if self.left[group] <= 0:
            del self.contents[group]
        return cells


def content_matches(dataset: Dataset, cells: Mapping[tuple[str, ...], float]) -> bool:
    """Whether the server's answer for one date is exactly the dataset (values compared
    as the floats the server converts its decimals to)."""
    if len(cells) != len(dataset.values):
        return False
    for unit, nanos in zip(zip(*dataset.unit_columns, strict=True), dataset.values, strict=True):
        if cells.get(unit) != nanos_to_float(nanos):
            return False
    return True


# ---------------------------------------------------------------------------------------
# Import


@dataclass
class ImportReport:
    """What `import` found, per thing the manifest declares."""

    record: Record
    matched: list[DatasetKey] = field(default_factory=list)
    differs: list[DatasetKey] = field(default_factory=list)
    absent: list[DatasetKey] = field(default_factory=list)
    ambiguous: list[DatasetKey] = field(default_factory=list)
    # Config entities of the manifest, by what the server showed of them.
    entities_matched: list[ConfigEntity] = field(default_factory=list)
    entities_differ: list[ConfigEntity] = field(default_factory=list)
    entities_unseen: list[ConfigEntity] = field(default_factory=list)
    entities_assumed: list[ConfigEntity] = field(default_factory=list)
    grants_verified: dict[str, int] = field(default_factory=dict)
    grants_missing: dict[str, int] = field(default_factory=dict)
    grants_unverified: dict[str, int] = field(default_factory=dict)
    already: int = 0  # datasets of the manifest the record held before


def import_record(
    backend: Backend,
    record: Record,
    desired: Desired,
    setup: SetupConfig,
    datasets: Iterable[Dataset],
    *,
    readers: Mapping[str, Backend] | None = None,
) -> ImportReport:
    """Record what the server already holds of the manifest: config that matches, and
    datasets whose content matches (with their mdid); a dataset that differs is recorded
    with the server's statistics and a digest that matches nothing, so the next plan
    updates it. Nothing is written to the server."""
    report = ImportReport(record)
    _import_config(backend, desired, report)
    grids = Grids(setup)
    ranges = {}
    unrecorded = [k for k in desired.datasets if k not in record.datasets]
    report.already = len(desired.datasets) - len(unrecorded)
    for group, keys in groups(unrecorded).items():
        query = grids.query(keys)
        if query is not None:
            ranges[group] = query
    contents = GroupContents(backend, ranges, (k for k in unrecorded if group_of(k) in ranges))
    reader_sees: dict[tuple[str, tuple[str, str, int, int]], frozenset[int]] = {}
    taken = RecordBuilder(report.record)  # one copy of the record, however many datasets
    for dataset in datasets:
        key = dataset.key
        group = group_of(key)
        if group not in ranges or key in record.datasets:
            continue  # recorded already, or no grid
        cells = contents.take(key, grids.date(key))
        if cells is None:
            report.absent.append(key)
            continue
        exact = QueryRange(*group, grids.date(key), 1)
        mdids = backend.visible_mdids(exact)
        if len(mdids) != 1:
            report.ambiguous.append(key)
            continue
        mdid = next(iter(mdids))
        summary = dataset.summary
        if not content_matches(dataset, cells):
            report.differs.append(key)
            summary = _server_summary(summary, cells)
        else:
            report.matched.append(key)
        scopes = set()
        for scope in sorted(desired.scopes.get(key, frozenset())):
            reader = (readers or {}).get(scope)
            if reader is None:  # left out: the next apply grants it (303 if it exists)
                report.grants_unverified[scope] = report.grants_unverified.get(scope, 0) + 1
                continue
            if (scope, group) not in reader_sees:
                reader_sees[(scope, group)] = reader.visible_mdids(ranges[group])
            if mdid in reader_sees[(scope, group)]:
                report.grants_verified[scope] = report.grants_verified.get(scope, 0) + 1
                scopes.add(scope)
            else:
                report.grants_missing[scope] = report.grants_missing.get(scope, 0) + 1
        taken.apply(DatasetRecorded(RecordedDataset(summary, mdid, frozenset(scopes))))
    report.record = taken.build()
    return report


def _server_summary(
    summary: DatasetSummary, cells: Mapping[tuple[str, ...], float]
) -> DatasetSummary:
    """What the server holds at a dataset's identity, as far as a summary can say: its
    statistics, and a digest no manifest content has."""
    nanos = [value_nanos(v) for v in cells.values()] or [0]
    stats = DatasetStats(len(cells), sum(nanos), min(nanos), max(nanos))
    return DatasetSummary(summary.key, summary.data_type, summary.revision,
                          "0:differs-on-server", stats, summary.source)  # fmt: skip


def _import_config(backend: Backend, desired: Desired, report: ImportReport) -> None:
    view = backend.read_setup()
    listed = {
        EntityKind.LANGUAGE: {str(e.get("lid")): e for e in view.languages},
        EntityKind.DATA_PROVIDER: {str(e.get("dpid")): e for e in view.data_providers},
    }
    unseen = []
    for entity in desired.entities:
        if entity_ref(entity.kind, entity.id) in report.record.entities:
            continue
        if entity.kind in listed:
            stored = listed[entity.kind].get(str(entity.id))
        else:
            try:
                stored = backend.read_entity(entity.kind, entity.id)
            except BackendError:
                stored = None
        if stored is None:
            unseen.append(entity)
            continue
        if stored_matches(entity.body, stored):
            report.entities_matched.append(entity)
            recorded = RecordedEntity.of(entity)
        else:
            report.entities_differ.append(entity)
            recorded = RecordedEntity(entity.kind, entity.id, entity.label, entity_digest(stored),
                                      stored.get("label"))  # fmt: skip
        report.record = report.record.with_entity(recorded)
    # The server shows a category, indicator or resolution only when one of its datasets
    # is visible. When the languages and everything visible match, the config was posted
    # whole (the notebook's way): the rest is taken as posted with it, and said so.
    matched = {entity_ref(e.kind, e.id) for e in report.entities_matched}
    languages_match = all(
        entity_ref(e.kind, e.id) in matched
        for e in desired.entities
        if e.kind is EntityKind.LANGUAGE
    )
    if unseen and languages_match and report.entities_matched and not report.entities_differ:
        for entity in unseen:
            report.entities_assumed.append(entity)
            report.record = report.record.with_entity(RecordedEntity.of(entity))
    else:
        report.entities_unseen += unseen


__all__ = [
    "Grids",
    "ImportReport",
    "adopt_languages",
    "content_matches",
    "desired_state",
    "import_record",
    "refresh",
]
