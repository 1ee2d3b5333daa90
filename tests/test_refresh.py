"""Unit tests of loader/refresh.py: the desired state of a manifest, the /query ranges of
the temporal grids, what a refresh observes on an embedded backend that matches its
record or was changed behind the loader's back (a dataset deleted, datasets added, a
grant revoked, content that differs), whose are the mdids a record does not know
(other_writers), languages adopted from the server, the content comparison, and import.

The backend is the embedded one (a SQLite file in tmp_path) filled by a real apply of a
small manifest; where the embedded store cannot hold a state (one identity stored twice,
which only two writers racing on the real service make), a small fake written against
the Backend protocol stands in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import loader
from loader.backends.local import LocalBackend
from loader.model import (
    AccessRule,
    Backend,
    ConfigEntity,
    Content,
    Dataset,
    DatasetKey,
    DatasetStats,
    EntityKind,
    Position,
    QueryRange,
    SetupConfig,
    SetupView,
    entity_digest,
    nanos_to_float,
)
from loader.notes import NoSuchResolution
from loader.planner import Action, Reason, Subject, make_plan
from loader.record import (
    Actual,
    Desired,
    Observed,
    Record,
    RecordedDataset,
    RecordedEntity,
)
from loader.refresh import (
    Grids,
    GroupContents,
    ImportReport,
    adopt_languages,
    content_matches,
    desired_state,
    import_record,
    other_writers,
    other_writers_now,
    refresh,
)
from loader.run import Run, open_run
from loader.timegrid import from_backend_dt
from tests.helpers import write_manifest

FREE = "read:free_data"
PREMIUM = "read:premium_data"
# Two indicators on two months with a gap between them (February), so that a dataset
# added there by other means falls inside the dates a refresh reads.
RESIDENTS = (
    "month,pcod,residents,arrived\n"
    "2021-01-01,EX01-01,10,1\n"
    "2021-01-01,EX01-02,20,2\n"
    "2021-03-01,EX01-01,11,3\n"
    "2021-03-01,EX01-02,21.5,4\n"
)
FREE_RESIDENTS = f"access:\n  {FREE}:\n    - indicator: residents.residents\n"


def key(indicator: str, month: int, trid: int = 2) -> DatasetKey:
    """A residents dataset's identity at District (srid 2) on the first of `month` 2021."""
    return DatasetKey(
        "residents", f"residents.{indicator}", 2, trid, f"2021-{month:02d}-01 00:00:00"
    )


JAN, MAR = key("residents", 1), key("residents", 3)
ARRIVED_JAN, ARRIVED_MAR = key("arrived", 1), key("arrived", 3)
ALL_KEYS = {JAN, MAR, ARRIVED_JAN, ARRIVED_MAR}


@dataclass
class Deployment:
    """The manifest applied to its embedded backend, as a run reads it afterwards."""

    run: Run
    backend: LocalBackend
    datasets: dict[DatasetKey, Dataset]

    @property
    def mdids(self) -> dict[DatasetKey, int]:
        return {k: d.mdid for k, d in self.run.record.datasets.items()}

    def other_writer_creates(self, like: DatasetKey, at: DatasetKey) -> int:
        """A dataset written by other means at `at`, with the content of `like`."""
        source = self.datasets[like]
        copy = Dataset(replace(source.summary, key=at), source.unit_columns, source.values)
        return self.backend.create_dataset(copy).mdid


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Deployment]:
    manifest = write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=FREE_RESIDENTS)
    assert loader.apply(manifest).result.ok
    run = open_run(manifest)
    backend = LocalBackend(run.target.local_path)
    datasets = {d.key: d for d in run.datasets(set(run.desired.datasets))}
    assert set(datasets) == ALL_KEYS  # what the fixture is about, checked once
    yield Deployment(run, backend, datasets)
    backend.close()


def observe(deployment: Deployment, record: Record | None = None, **options: Any) -> Observed:
    run = deployment.run
    return refresh(deployment.backend, run.record if record is None else record, run.desired,
                   run.setup, **options)  # fmt: skip


def one_nano_more(dataset: Dataset) -> Dataset:
    """The same dataset with its first value one nano-unit higher (1e-9)."""
    values = list(dataset.values)
    values[0] += 1
    return Dataset(dataset.summary, dataset.unit_columns, values)


# ---------------------------------------------------------------------------------------
# Fakes: only what the embedded store cannot show. Each answers just the calls of the
# Backend protocol that the code under test makes here; any other call is an
# AttributeError, which fails the test.


class Listing:
    """A service that stores `held` (identity -> the mdids stored under it: the real
    service keeps an identity twice when two writers created it at once) and answers
    /setup (empty) and /query mdids_only, as the admin sees it; it notes each query."""

    def __init__(self, setup: SetupConfig, held: Mapping[DatasetKey, set[int]]) -> None:
        self.grids = Grids(setup)
        self.held = held
        self.queries: list[QueryRange] = []

    def read_setup(self) -> SetupView:
        return SetupView((), ())

    def visible_mdids(self, query: QueryRange) -> frozenset[int]:
        self.queries.append(query)
        grid = self.grids.by_trid[query.trid]
        first = grid.parse_formatted(query.start_date)
        dates = {grid.format(grid.add(first, step)) for step in range(query.duration)}
        found: set[int] = set()
        for held, mdids in self.held.items():
            same = (held.category_id, held.indicator_id, held.srid, held.trid) == (
                query.category_id, query.indicator_id, query.srid, query.trid)  # fmt: skip
            if same and grid.format(from_backend_dt(held.dt)) in dates:
                found |= mdids
        return frozenset(found)


class CannedContent:
    """Answers every /query for content with `content`, counting the reads."""

    def __init__(self, content: Content) -> None:
        self.content = content
        self.reads: list[QueryRange] = []

    def dataset_content(self, query: QueryRange) -> Content:
        self.reads.append(query)
        return self.content


@dataclass
class Parts:
    """The manifest read without a backend: its setup, its desired state, and records
    made of its own summaries."""

    setup: SetupConfig
    desired: Desired

    def record(self, mdids: Mapping[DatasetKey, int]) -> Record:
        """A record of the datasets `mdids` names, each under the mdid it gives."""
        summaries = self.desired.datasets
        return Record(datasets={k: RecordedDataset(summaries[k], m) for k, m in mdids.items()})


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    report = loader.validate(
        write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=FREE_RESIDENTS)
    )
    manifest = report.manifest_or_raise()
    setup = manifest.setup()
    return Parts(setup, desired_state(manifest, setup, report.summaries))


# ---------------------------------------------------------------------------------------
# desired_state and Grids


def test_desired_state_gives_each_dataset_the_union_of_its_rules_scopes(tmp_path: Path) -> None:
    access = (
        f"access:\n  {FREE}:\n    - indicator: residents.residents\n"
        f"  {PREMIUM}:\n"
        "    - {indicator: 'residents.*', temporal_resolution: Month, start: '2021-03'}\n"
    )
    report = loader.validate(write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=access))
    manifest = report.manifest_or_raise()
    desired = desired_state(manifest, manifest.setup(), report.summaries)
    assert set(desired.datasets) == ALL_KEYS
    assert desired.entities == manifest.setup().entities
    # January's arrivals match no rule: no entry at all, not an empty set.
    assert dict(desired.scopes) == {
        JAN: frozenset({FREE}),
        MAR: frozenset({FREE, PREMIUM}),
        ARRIVED_MAR: frozenset({PREMIUM}),
    }


def test_desired_state_never_grants_the_admin_scope(tmp_path: Path) -> None:
    # The schema refuses an `admin` rule; an API caller's manifest may still hold one, and
    # the server maps admin to every dataset by itself: it is never the loader's grant.
    report = loader.validate(
        write_manifest(tmp_path, {"residents.csv": RESIDENTS}, access=FREE_RESIDENTS)
    )
    manifest = report.manifest_or_raise()
    everything = AccessRule("admin", "*", None, None, None, None, None, Position("api"))
    widened = replace(manifest, access=(*manifest.access, everything))
    desired = desired_state(widened, manifest.setup(), report.summaries)
    assert dict(desired.scopes) == {JAN: frozenset({FREE}), MAR: frozenset({FREE})}


def test_grids_query_spans_the_first_to_the_last_key_in_the_resolutions_format(
    parts: Parts,
) -> None:
    grids = Grids(parts.setup)
    # January to March is three monthly steps, named as the Month format %Y-%m writes.
    assert grids.query([JAN, MAR]) == QueryRange(
        "residents", "residents.residents", 2, 2, "2021-01", 3
    )
    assert grids.query([MAR]) == QueryRange("residents", "residents.residents", 2, 2, "2021-03", 1)
    days = [
        DatasetKey("movements", "movements.travellers", 2, 4, "2021-03-01 00:00:00"),
        DatasetKey("movements", "movements.travellers", 2, 4, "2021-03-14 00:00:00"),
    ]
    assert grids.query(days) == QueryRange(
        "movements", "movements.travellers", 2, 4, "2021-03-01", 14
    )
    assert grids.date(MAR) == "2021-03"
    assert grids.date(days[1]) == "2021-03-14"
    assert grids.query([key("residents", 1, trid=9)]) is None  # no such resolution


# ---------------------------------------------------------------------------------------
# refresh


def test_refresh_of_a_backend_that_matches_the_record_observes_no_drift(
    deployed: Deployment,
) -> None:
    observed = observe(deployed)
    assert observed.refreshed
    assert observed.vanished == frozenset()
    assert observed.unrecorded == {}
    assert observed.duplicated == {} and observed.unexplained == {}
    assert observed.content_differs == frozenset()  # not asked to verify
    assert observed.grants_missing == frozenset() and observed.scopes_checked == frozenset()
    assert observed.notes == ()
    # GET /setup as the example config posted it, by id as text.
    assert observed.languages is not None and observed.data_providers is not None
    assert {lid: e["code"] for lid, e in observed.languages.items()} == {"1": "en", "2": "fr"}
    assert set(observed.data_providers) == {"1"}


def test_a_dataset_deleted_by_other_means_has_vanished(deployed: Deployment) -> None:
    deployed.backend.delete_dataset(deployed.datasets[MAR].summary)
    readers = {FREE: deployed.backend.reader(FREE)}
    observed = observe(deployed, readers=readers)
    assert observed.vanished == frozenset({MAR})
    assert observed.unrecorded == {}
    # Its grant went with it: that is the vanished dataset's repair, not a missing grant.
    assert observed.grants_missing == frozenset()


def test_datasets_added_by_other_means_are_counted_per_indicator_and_resolution(
    deployed: Deployment,
) -> None:
    # February lies between the recorded dates: inside the range a refresh reads.
    deployed.other_writer_creates(JAN, key("residents", 2))
    deployed.other_writer_creates(ARRIVED_JAN, key("arrived", 2))
    observed = observe(deployed)
    assert observed.unrecorded == {("residents.residents", 2, 2): 1, ("residents.arrived", 2, 2): 1}
    assert observed.vanished == frozenset()
    # Not the manifest's identities, each stored once: nobody else's work to report.
    assert observed.duplicated == {} and observed.unexplained == {}


def test_a_dataset_added_beyond_every_known_date_is_not_looked_for(deployed: Deployment) -> None:
    # One /query per indicator and resolution over the dates the record and the manifest
    # know (the module's cost bound): April, after the last of them, is not read.
    deployed.other_writer_creates(JAN, key("residents", 4))
    assert observe(deployed).unrecorded == {}


def test_a_dataset_of_the_manifest_the_record_lacks_is_unexplained_unless_in_doubt(
    deployed: Deployment,
) -> None:
    full = deployed.run.record
    partial = replace(full, datasets={k: d for k, d in full.datasets.items() if k != JAN})
    observed = observe(deployed, partial)
    assert observed.unrecorded == {("residents.residents", 2, 2): 1}
    assert observed.unexplained == {JAN: deployed.mdids[JAN]}
    # An apply of this record set out to write it and never recorded it: its own work.
    doubted = observe(deployed, replace(partial, in_doubt=frozenset({JAN})))
    assert doubted.unrecorded == {("residents.residents", 2, 2): 1}
    assert doubted.unexplained == {}


def test_a_revoked_grant_shows_only_to_a_reader_of_its_scope(deployed: Deployment) -> None:
    deployed.backend.revoke(FREE, deployed.mdids[JAN])
    # The admin sees every dataset whatever its grants: nothing to see without a reader.
    blind = observe(deployed)
    assert blind.grants_missing == frozenset() and blind.scopes_checked == frozenset()
    observed = observe(deployed, readers={FREE: deployed.backend.reader(FREE)})
    assert observed.grants_missing == frozenset({(FREE, JAN)})
    assert observed.scopes_checked == frozenset({FREE})
    assert observed.vanished == frozenset()


def test_verify_reads_the_content_back_and_finds_one_nano_of_difference(
    deployed: Deployment,
) -> None:
    changed = one_nano_more(deployed.datasets[ARRIVED_MAR])
    verify = [*(d for k, d in deployed.datasets.items() if k != ARRIVED_MAR), changed]
    observed = observe(deployed, verify=verify)
    assert observed.content_differs == frozenset({ARRIVED_MAR})
    assert observed.vanished == frozenset()
    assert observe(deployed, verify=deployed.datasets.values()).content_differs == frozenset()


def test_a_recorded_resolution_the_config_lacks_is_a_note_not_a_query(
    deployed: Deployment,
) -> None:
    record = deployed.run.record
    orphan = RecordedDataset(replace(record.datasets[JAN].summary, key=key("residents", 1, 9)), 99)
    with_orphan = replace(record, datasets={**record.datasets, orphan.key: orphan})
    observed = observe(deployed, with_orphan)
    assert observed.notes == (NoSuchResolution("residents.residents", 9),)
    assert observed.vanished == frozenset()  # never asked for, so never taken for gone


def test_the_view_digest_is_stable_and_moves_with_what_the_server_shows(
    deployed: Deployment,
) -> None:
    before = observe(deployed).view_digest
    assert observe(deployed).view_digest == before
    deployed.backend.delete_dataset(deployed.datasets[ARRIVED_JAN].summary)
    assert observe(deployed).view_digest != before


# ---------------------------------------------------------------------------------------
# other_writers and other_writers_now


def test_an_identity_stored_twice_is_duplicated(parts: Parts) -> None:
    setup = parts.setup
    record = parts.record({JAN: 1, MAR: 3})
    server = Listing(setup, {JAN: {1, 7}, MAR: {3}})
    duplicated, unexplained = other_writers(server, record, [JAN, MAR], Grids(setup), [[JAN, MAR]])
    assert duplicated == {JAN: frozenset({1, 7})}
    assert unexplained == {}
    # Read date by date: one query per key of the group, one date each.
    assert [(q.start_date, q.duration) for q in server.queries] == [("2021-01", 1), ("2021-03", 1)]


def test_other_writers_reads_only_the_groups_it_is_given(parts: Parts) -> None:
    setup = parts.setup
    record = parts.record({JAN: 1})
    server = Listing(setup, {JAN: {1, 7}})
    assert other_writers(server, record, [JAN], Grids(setup), []) == ({}, {})
    assert server.queries == []


def test_a_recorded_identity_under_a_new_mdid_is_drift_not_another_writer(parts: Parts) -> None:
    # Rewritten behind the loader's back (a PATCH gives a new mdid): the plan repairs it.
    setup = parts.setup
    record = parts.record({JAN: 1})
    server = Listing(setup, {JAN: {9}})
    assert other_writers(server, record, [JAN], Grids(setup), [[JAN]]) == ({}, {})


def test_other_writers_now_reads_date_by_date_only_where_the_record_lacks_mdids(
    parts: Parts,
) -> None:
    setup = parts.setup
    record = parts.record({JAN: 1, MAR: 3, ARRIVED_JAN: 4})
    server = Listing(setup, {JAN: {1}, MAR: {3}, ARRIVED_JAN: {4}, ARRIVED_MAR: {8}})
    duplicated, unexplained = other_writers_now(server, record, ALL_KEYS, setup)
    assert duplicated == {}
    assert unexplained == {ARRIVED_MAR: 8}  # the manifest's, and no apply of ours wrote it
    # One range per indicator; date by date only for `arrived`, where mdid 8 is unknown.
    # (A set: the order and any repeat of the per-date reads are not what this checks.)
    assert {(q.indicator_id, q.start_date, q.duration) for q in server.queries} == {
        ("residents.arrived", "2021-01", 3),
        ("residents.residents", "2021-01", 3),
        ("residents.arrived", "2021-01", 1),
        ("residents.arrived", "2021-03", 1),
    }


def test_refresh_reports_what_other_writers_found(parts: Parts) -> None:
    setup = parts.setup
    record = parts.record({JAN: 1, MAR: 3})
    desired = parts.desired
    server = Listing(setup, {JAN: {1, 7}, MAR: {3}, ARRIVED_JAN: {5}, ARRIVED_MAR: {6}})
    observed = refresh(server, record, desired, setup)
    assert observed.duplicated == {JAN: frozenset({1, 7})}
    assert observed.unexplained == {ARRIVED_JAN: 5, ARRIVED_MAR: 6}
    # Counted mdids: 7 of residents.residents; 5 and 6 of residents.arrived.
    assert observed.unrecorded == {("residents.residents", 2, 2): 1, ("residents.arrived", 2, 2): 2}
    assert observed.vanished == frozenset()


# ---------------------------------------------------------------------------------------
# adopt_languages


def language(desired_entities: Iterable[ConfigEntity], lid: int) -> ConfigEntity:
    return next(e for e in desired_entities if e.kind is EntityKind.LANGUAGE and e.id == lid)


def test_languages_the_server_holds_as_wanted_are_adopted(deployed: Deployment) -> None:
    desired = deployed.run.desired
    adopted = adopt_languages(Record(), desired, observe(deployed))
    languages = [language(desired.entities, 1), language(desired.entities, 2)]
    # Only the languages: the rest of the config is the plan's to compare.
    assert dict(adopted.entities) == {
        (EntityKind.LANGUAGE, "1"): RecordedEntity.of(languages[0]),
        (EntityKind.LANGUAGE, "2"): RecordedEntity.of(languages[1]),
    }
    assert adopted.datasets == {}


def test_a_language_that_differs_or_is_absent_on_the_server_is_not_adopted(
    deployed: Deployment,
) -> None:
    desired = deployed.run.desired
    english = dict(language(desired.entities, 1).body)
    observed = Observed(refreshed=True, languages={"1": {**english, "name": "Anglais"}})
    assert adopt_languages(Record(), desired, observed).entities == {}
    assert adopt_languages(Record(), desired, Observed()).entities == {}  # offline


def test_a_recorded_language_is_kept_as_recorded(deployed: Deployment) -> None:
    desired = deployed.run.desired
    old = RecordedEntity(EntityKind.LANGUAGE, 1, "en", "an-older-digest")
    adopted = adopt_languages(Record().with_entity(old), desired, observe(deployed))
    assert adopted.entities[(EntityKind.LANGUAGE, "1")] == old
    assert adopted.entities[(EntityKind.LANGUAGE, "2")] == RecordedEntity.of(
        language(desired.entities, 2)
    )


# ---------------------------------------------------------------------------------------
# GroupContents and content_matches


def server_cells(deployed: Deployment, at: DatasetKey) -> Mapping[tuple[str, ...], float]:
    grids = Grids(deployed.run.setup)
    query = grids.query([at])
    assert query is not None
    return deployed.backend.dataset_content(query)[grids.date(at)]


def test_content_matches_the_servers_answer_for_the_same_dataset(deployed: Deployment) -> None:
    for at in ALL_KEYS:  # 21.5 included: the server answers floats of its decimals
        assert content_matches(deployed.datasets[at], server_cells(deployed, at)), at


def test_content_differs_by_one_nano(deployed: Deployment) -> None:
    dataset = deployed.datasets[MAR]
    cells = server_cells(deployed, MAR)
    assert not content_matches(one_nano_more(dataset), cells)
    # ... and the other way round: the server's value one nano off.
    first = dataset.units[0]
    off = {**cells, first: nanos_to_float(dataset.values[0] - 1)}
    assert not content_matches(dataset, off)


def test_content_differs_when_the_units_differ(deployed: Deployment) -> None:
    dataset = deployed.datasets[JAN]
    cells = dict(server_cells(deployed, JAN))
    assert not content_matches(dataset, {**cells, ("EX02-01",): 1.0})  # one unit more
    fewer = dict(cells)
    del fewer[("EX01-02",)]
    assert not content_matches(dataset, fewer)
    # As many cells, but one unit named otherwise.
    renamed = {("EX01-01",): cells[("EX01-01",)], ("EX02-01",): cells[("EX01-02",)]}
    assert not content_matches(dataset, renamed)


def test_group_contents_reads_a_group_once_and_drops_it_after_its_last_dataset(
    parts: Parts,
) -> None:
    setup = parts.setup
    grids = Grids(setup)
    group = ("residents", "residents.residents", 2, 2)
    query = grids.query([JAN, MAR])
    assert query is not None
    server = CannedContent({"2021-01": {("EX01-01",): 10.0}, "2021-03": {("EX01-01",): 11.0}})
    contents = GroupContents(server, {group: query}, [JAN, MAR])
    assert contents.take(JAN, "2021-01") == {("EX01-01",): 10.0}
    assert contents.take(MAR, "2021-03") == {("EX01-01",): 11.0}
    assert server.reads == [query]  # one /query for both
    assert contents.contents == {}  # nothing held once every expected dataset was taken


def test_group_contents_answers_none_for_a_date_the_server_does_not_have(parts: Parts) -> None:
    grids = Grids(parts.setup)
    group = ("residents", "residents.residents", 2, 2)
    query = grids.query([JAN, MAR])
    assert query is not None
    contents = GroupContents(CannedContent({"2021-01": {}}), {group: query}, [JAN, MAR])
    assert contents.take(MAR, "2021-03") is None


# ---------------------------------------------------------------------------------------
# import_record


def import_of(
    deployed: Deployment,
    record: Record | None = None,
    datasets: Iterable[Dataset] | None = None,
    readers: Mapping[str, Backend] | None = None,
) -> ImportReport:
    run = deployed.run
    return import_record(
        deployed.backend, Record() if record is None else record, run.desired, run.setup,
        deployed.datasets.values() if datasets is None else datasets, readers=readers,
    )  # fmt: skip


def test_import_records_what_matches_with_the_servers_mdids_and_verified_grants(
    deployed: Deployment,
) -> None:
    report = import_of(deployed, readers={FREE: deployed.backend.reader(FREE)})
    assert sorted(report.matched) == sorted(ALL_KEYS)
    assert (report.differs, report.absent, report.ambiguous, report.already) == ([], [], [], 0)
    # The record the apply wrote, rebuilt from the server alone.
    applied = deployed.run.record.datasets
    assert {k: (d.mdid, d.scopes, d.summary) for k, d in report.record.datasets.items()} == {
        k: (d.mdid, d.scopes, d.summary) for k, d in applied.items()
    }
    assert report.grants_verified == {FREE: 2}
    assert report.grants_missing == {} and report.grants_unverified == {}


def test_import_takes_the_unseen_config_as_posted_with_the_matching_languages(
    deployed: Deployment,
) -> None:
    report = import_of(deployed)
    shown = {(e.kind, e.label) for e in report.entities_matched}
    # GET /setup shows languages and providers; the rest shows through a visible dataset.
    assert shown == {
        (EntityKind.LANGUAGE, "en"), (EntityKind.LANGUAGE, "fr"),
        (EntityKind.DATA_PROVIDER, "Examplia Mobile (fictional operator)"),
        (EntityKind.CATEGORY, "residents"), (EntityKind.INDICATOR, "residents.residents"),
        (EntityKind.INDICATOR, "residents.arrived"),
        (EntityKind.SPATIAL_RESOLUTION, "District"), (EntityKind.TEMPORAL_RESOLUTION, "Month"),
    }  # fmt: skip
    # Everything without a dataset of its own: taken as posted with the rest, and said so.
    assert {e.label for e in report.entities_assumed} == {
        "movements", "residents.residents_perKm2", "movements.travellers",
        "movements.travellers_pctchangewithref", "Region", "Day",
    }  # fmt: skip
    assert report.entities_differ == [] and report.entities_unseen == []
    entities = deployed.run.desired.entities
    assert dict(report.record.entities) == {
        (e.kind, str(e.id)): RecordedEntity.of(e) for e in entities
    }


def test_import_of_config_that_differs_records_the_servers_and_assumes_nothing(
    deployed: Deployment,
) -> None:
    desired = deployed.run.desired
    english = language(desired.entities, 1)
    renamed = ConfigEntity(english.kind, english.id, english.label,
                           {**english.body, "name": "Anglais"})  # fmt: skip
    entities = tuple(renamed if e is english else e for e in desired.entities)
    changed = replace(desired, entities=entities)
    report = import_record(deployed.backend, Record(), changed, deployed.run.setup, [])
    assert report.entities_differ == [renamed]
    # The record holds what the server holds, so that the next plan updates it.
    server = observe(deployed).languages
    assert server is not None
    stored = report.record.entities[(EntityKind.LANGUAGE, "1")]
    assert stored.digest == entity_digest(server["1"]) != RecordedEntity.of(renamed).digest
    # One language differs: the config was not posted whole as the manifest has it.
    assert report.entities_assumed == []
    assert len(report.entities_unseen) == 6


def test_import_records_content_that_differs_so_that_the_next_plan_updates_it(
    deployed: Deployment,
) -> None:
    datasets = [one_nano_more(d) if k == JAN else d for k, d in deployed.datasets.items()]
    report = import_of(deployed, datasets=datasets)
    assert report.differs == [JAN]
    assert sorted(report.matched) == sorted(ALL_KEYS - {JAN})
    taken = report.record.datasets[JAN]
    assert taken.mdid == deployed.mdids[JAN]
    # The server's statistics (10 and 20 in nanos), and a digest no content has.
    assert taken.summary.stats == DatasetStats(2, 30 * 10**9, 10 * 10**9, 20 * 10**9)
    assert taken.summary.digest == "0:differs-on-server"
    plan = make_plan(deployed.run.desired, Actual(report.record))
    dataset_changes = [(c.action, c.reason, c.target.key) for c in plan.changes
                       if c.subject is Subject.DATASET]  # fmt: skip
    assert dataset_changes == [(Action.UPDATE, Reason.CONTENT_CHANGED, JAN)]


def test_import_reports_a_dataset_the_server_lacks_as_absent(deployed: Deployment) -> None:
    deployed.backend.delete_dataset(deployed.datasets[ARRIVED_MAR].summary)
    report = import_of(deployed)
    assert report.absent == [ARRIVED_MAR]
    assert ARRIVED_MAR not in report.record.datasets
    assert sorted(report.matched) == sorted(ALL_KEYS - {ARRIVED_MAR})


def test_import_counts_what_the_record_held_already_and_leaves_it(deployed: Deployment) -> None:
    held = deployed.run.record.datasets[MAR]
    stale = replace(held, mdid=12345)  # as recorded, whatever the server says now
    report = import_of(deployed, Record(datasets={MAR: stale}))
    assert report.already == 1
    assert MAR not in report.matched
    assert report.record.datasets[MAR] == stale


def test_import_leaves_out_a_grant_its_scopes_reader_cannot_see(deployed: Deployment) -> None:
    deployed.backend.revoke(FREE, deployed.mdids[MAR])
    report = import_of(deployed, readers={FREE: deployed.backend.reader(FREE)})
    assert report.grants_verified == {FREE: 1} and report.grants_missing == {FREE: 1}
    assert report.record.datasets[JAN].scopes == frozenset({FREE})
    assert report.record.datasets[MAR].scopes == frozenset()  # the next apply grants it


def test_import_without_a_reader_records_no_grant_and_counts_them_unverified(
    deployed: Deployment,
) -> None:
    report = import_of(deployed)
    assert report.grants_unverified == {FREE: 2}
    assert report.grants_verified == {} and report.grants_missing == {}
    assert all(d.scopes == frozenset() for d in report.record.datasets.values())


def test_import_writes_nothing_to_the_server(deployed: Deployment) -> None:
    readers = {FREE: deployed.backend.reader(FREE)}
    before = observe(deployed, readers=readers).view_digest
    import_of(deployed, readers=readers)
    assert observe(deployed, readers=readers).view_digest == before
