"""The executor (loader/execute.py) on its own: a plan made from a small manifest carried
out against the embedded backend, seen through a connection that fails where a test says
(a fake written against `model.Backend`, delegating to a real `LocalBackend`), with a
journal that keeps every event or refuses one as a full disk would.

What is checked is what the summary reports per change, what the journal was given and
what the backend holds afterwards: a failed change skips what depends on it and nothing
else, a backend that stops answering or a journal that cannot be written stops new
changes, data that moved since the plan is refused, Ctrl-C lets the writes in flight
finish, and ApplyResult says ok only when everything was done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from loader.backends.local import LocalBackend
from loader.execute import (
    UNREACHABLE,
    UNRECORDABLE,
    ApplyResult,
    Executor,
    Outcome,
    OutcomeStatus,
)
from loader.model import (
    Backend,
    BackendError,
    Content,
    Dataset,
    DatasetKey,
    DatasetSummary,
    DatasetWrite,
    EntityKind,
    EntityWrite,
    Identity,
    LoaderError,
    QueryRange,
    Role,
    SetupView,
)
from loader.planner import (
    Action,
    Change,
    DatasetTarget,
    EntityTarget,
    GrantTarget,
    Plan,
    Reason,
    SetupTarget,
    make_plan,
)
from loader.record import (
    Actual,
    DatasetDropped,
    DatasetRecorded,
    EntityDropped,
    Event,
    GrantChanged,
    Record,
    RecordBuilder,
    RecordedDataset,
    RecordedEntity,
    SetupRecorded,
)
from loader.run import Run, open_run
from loader.state import StateError
from tests.helpers import write_manifest

# Two months of the three residents indicators: six datasets, one unit each.
RESIDENTS = (
    "month,pcod,residents,residents_perKm2,arrived\n"
    "2021-01-01,EX01-01,10,1.5,1\n"
    "2021-02-01,EX01-01,20,2.5,2\n"
)
# One day of the two movements indicators: two flow datasets.
MOVEMENTS = (
    "date,pcod_from,pcod_to,travellers,travellers_pctchangewithref\n"
    "2021-03-01,EX01-01,EX01-02,3,1.5\n"
)
FREE = "read:free_data"
EVERY_RESIDENTS_INDICATOR = f"access:\n  {FREE}:\n    - indicator: 'residents.*'\n"


def residents(indicator: str, month: int) -> DatasetKey:
    return DatasetKey("residents", f"residents.{indicator}", 2, 2, f"2021-{month:02d}-01 00:00:00")


JAN = residents("residents", 1)


# ---------------------------------------------------------------------------------------
# Fakes


class Journal:
    """The executor's recorder: keeps every event it is given (the workers call it at
    once), or refuses those `refuse` picks with the error a full disk gives."""

    def __init__(self, refuse: Callable[[Event], bool] | None = None) -> None:
        self.refuse = refuse
        self.events: list[Event] = []
        self.refused: list[Event] = []
        self.dataset_recorded = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self.refuse is not None and self.refuse(event):
                self.refused.append(event)
                raise StateError("record.json.journal: cannot write: No space left on device")
            self.events.append(event)
        if isinstance(event, DatasetRecorded):
            self.dataset_recorded.set()

    def record(self) -> Record:
        """The record the events journaled make of an empty one."""
        builder = RecordBuilder(Record())
        for event in self.events:
            builder.apply(event)
        return builder.build()


# Given a protocol call's first argument: the exception to raise instead, or None.
Fault = Callable[[Any], BaseException | None]


class FaultyBackend(Backend):
    """The embedded backend behind a connection that fails where told: `faults` maps a
    protocol method's name to a Fault; every call is counted by name."""

    def __init__(self, inner: LocalBackend, **faults: Fault) -> None:
        self.inner = inner
        self.faults = faults
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def _through(self, name: str, first: object) -> Any:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
        fault = self.faults.get(name)
        error = None if fault is None else fault(first)
        if error is not None:
            raise error
        return getattr(self.inner, name)

    # -- the connection ---------------------------------------------------------------

    def wait_ready(self, seconds: float) -> str:
        return self.inner.wait_ready(seconds)

    def identities(self, roles: Iterable[Role]) -> dict[Role, Identity | LoaderError]:
        return self.inner.identities(roles)

    def acting_as(self, roles: Iterable[Role]) -> str:
        return self.inner.acting_as(roles)

    def preflight(self, roles: Iterable[Role]) -> None:
        self.inner.preflight(roles)

    def reader(self, scope: str) -> Backend | None:
        return self.inner.reader(scope)

    def close(self) -> None:
        self.inner.close()

    # -- the service ------------------------------------------------------------------

    def read_setup(self) -> SetupView:
        result: SetupView = self._through("read_setup", None)()
        return result

    def replace_setup(self, config: Mapping[str, Any]) -> None:
        self._through("replace_setup", config)(config)

    def create_entity(self, kind: EntityKind, body: Mapping[str, Any]) -> EntityWrite:
        result: EntityWrite = self._through("create_entity", (kind, body))(kind, body)
        return result

    def update_entity(
        self, kind: EntityKind, entity_id: int | str, body: Mapping[str, Any]
    ) -> None:
        self._through("update_entity", (kind, entity_id))(kind, entity_id, body)

    def delete_entity(self, kind: EntityKind, entity_id: int | str) -> None:
        self._through("delete_entity", (kind, entity_id))(kind, entity_id)

    def read_entity(self, kind: EntityKind, entity_id: int | str) -> Mapping[str, Any] | None:
        result: Mapping[str, Any] | None = self._through("read_entity", (kind, entity_id))(
            kind, entity_id
        )
        return result

    def create_dataset(self, dataset: Dataset) -> DatasetWrite:
        result: DatasetWrite = self._through("create_dataset", dataset.key)(dataset)
        return result

    def update_dataset(self, dataset: Dataset) -> int:
        result: int = self._through("update_dataset", dataset.key)(dataset)
        return result

    def delete_dataset(self, summary: DatasetSummary) -> None:
        self._through("delete_dataset", summary.key)(summary)

    def visible_mdids(self, query: QueryRange) -> frozenset[int]:
        result: frozenset[int] = self._through("visible_mdids", query)(query)
        return result

    def dataset_content(self, query: QueryRange) -> Content:
        result: Content = self._through("dataset_content", query)(query)
        return result

    def grant(self, scope: str, mdid: int) -> bool:
        result: bool = self._through("grant", (scope, mdid))(scope, mdid)
        return result

    def revoke(self, scope: str, mdid: int) -> None:
        self._through("revoke", (scope, mdid))(scope, mdid)


def failing_for(keys: Iterable[DatasetKey], error: BaseException) -> Fault:
    """A fault of the dataset calls: `error` for these keys, the real call for others."""
    chosen = set(keys)
    return lambda key: error if key in chosen else None


def in_turn(*errors: BaseException | None) -> Fault:
    """A fault that gives `errors` one per call, in order (None: the real call), then
    lets every further call through."""
    waiting = list(errors)
    lock = threading.Lock()

    def next_error(_: object) -> BaseException | None:
        with lock:
            return waiting.pop(0) if waiting else None

    return next_error


class Source:
    """The executor's dataset source over the manifest's real files: the datasets asked
    for, read afresh, in key order (so that a one-worker apply is deterministic), with
    what it yielded noted; `before(n)` runs before the n-th (0-based) is yielded."""

    def __init__(self, run: Run, before: Callable[[int], None] | None = None) -> None:
        self.run = run
        self.before = before
        self.yielded: list[DatasetKey] = []

    def __call__(self, keys: set[DatasetKey]) -> Iterator[Dataset]:
        for number, dataset in enumerate(sorted(self.run.datasets(keys), key=lambda d: d.key)):
            if self.before is not None:
                self.before(number)
            self.yielded.append(dataset.key)
            yield dataset


# ---------------------------------------------------------------------------------------
# Building a deployment


class Deployment:
    """A manifest of our own in `directory`, read as apply reads it, and an embedded
    backend of its own beside it."""

    def __init__(self, directory: Path, files: dict[str, str], access: str = "") -> None:
        self.manifest = write_manifest(directory, files, access=access)
        self.run = open_run(self.manifest)
        self.backend = LocalBackend(directory / "backend.db")

    @property
    def csv(self) -> Path:
        return self.manifest.parent / "residents.csv"

    def summary(self, key: DatasetKey) -> DatasetSummary:
        return self.run.desired.datasets[key]

    def config(self) -> dict[str, list[dict[str, Any]]]:
        """The manifest's config as POST /setup takes it."""
        entities = self.run.setup.entities
        return {k.value: [dict(e.body) for e in entities if e.kind is k] for k in EntityKind}

    def configured(self) -> Deployment:
        """The whole config posted to the backend (for plans with no config change)."""
        self.backend.replace_setup(self.config())
        return self

    def fresh_plan(self) -> Plan:
        """The plan against an empty record: the setup, then every dataset and grant."""
        return make_plan(self.run.desired, Actual(Record()))

    def dataset_plan(self) -> Plan:
        """The plan against a record that holds the whole config: datasets and grants."""
        entities = [RecordedEntity.of(e) for e in self.run.setup.entities]
        return make_plan(self.run.desired, Actual(Record(entities={e.ref: e for e in entities})))

    def config_plan(self) -> Plan:
        """The plan against a record (and a backend) that hold the languages alone:
        config entities created one by one, then datasets and grants."""
        languages = [e for e in self.run.setup.entities if e.kind is EntityKind.LANGUAGE]
        setup: dict[str, list[dict[str, Any]]] = {k.value: [] for k in EntityKind}
        setup[EntityKind.LANGUAGE.value] = [dict(e.body) for e in languages]
        self.backend.replace_setup(setup)
        recorded = [RecordedEntity.of(e) for e in languages]
        return make_plan(self.run.desired, Actual(Record(entities={e.ref: e for e in recorded})))

    def executor(
        self,
        backend: Backend | None = None,
        journal: Journal | None = None,
        source: Source | None = None,
        parallelism: int = 4,
        progress: Callable[[Outcome], None] | None = None,
    ) -> Executor:
        return Executor(
            backend or self.backend,
            journal or Journal(),
            source or Source(self.run),
            self.run.setup.entities,
            parallelism=parallelism,
            progress=progress,
        )


@pytest.fixture
def small(tmp_path: Path) -> Deployment:
    """Six residents datasets, every one granted to read:free_data."""
    return Deployment(tmp_path, {"residents.csv": RESIDENTS}, EVERY_RESIDENTS_INDICATOR)


def exact(key: DatasetKey) -> QueryRange:
    """The /query of one dataset alone (Month and Day are the manifest's resolutions)."""
    start = key.dt[:7] if key.trid == 2 else key.dt[:10]
    return QueryRange(key.category_id, key.indicator_id, key.srid, key.trid, start, 1)


def on_server(backend: Backend, key: DatasetKey) -> frozenset[int]:
    return backend.visible_mdids(exact(key))


def statuses(result: ApplyResult) -> dict[str, tuple[str, str]]:
    """Each change (as its description) -> (status, message): the summary, whatever the
    order the workers finished in."""
    found = {o.change.describe(): (o.status.value, o.message) for o in result.outcomes}
    assert len(found) == len(result.outcomes), "a change was reported twice"
    return found


def dataset_line(key: DatasetKey) -> str:
    return f"dataset {key}"


def grant_line(key: DatasetKey, scope: str = FREE) -> str:
    return f"grant {scope} -> {key}"


# ---------------------------------------------------------------------------------------
# ApplyResult


def outcome(status: OutcomeStatus) -> Outcome:
    return Outcome(Change(Action.CREATE, Reason.NEW, SetupTarget()), status)


def test_an_empty_result_is_ok_and_counts_every_status_at_zero() -> None:
    result = ApplyResult()
    assert result.ok
    assert result.counts() == {"done": 0, "failed": 0, "skipped": 0}


def test_counts_are_per_status_and_ok_needs_every_change_done() -> None:
    done = ApplyResult([outcome(OutcomeStatus.DONE), outcome(OutcomeStatus.DONE)])
    assert done.ok and done.counts() == {"done": 2, "failed": 0, "skipped": 0}
    order = (OutcomeStatus.DONE, OutcomeStatus.FAILED, OutcomeStatus.SKIPPED, OutcomeStatus.SKIPPED)
    mixed = ApplyResult([outcome(status) for status in order])
    assert not mixed.ok
    assert mixed.counts() == {"done": 1, "failed": 1, "skipped": 2}
    assert not ApplyResult([outcome(OutcomeStatus.SKIPPED)]).ok


@pytest.mark.parametrize(
    "why",
    [{"interrupted": True}, {"stopped": "the journal could not be written"},
     {"others": "another writer: ..."}],
)  # fmt: skip
def test_an_interrupted_stopped_or_disturbed_apply_is_not_ok_though_all_is_done(
    why: dict[str, Any],
) -> None:
    result = ApplyResult([outcome(OutcomeStatus.DONE)], **why)
    assert not result.ok
    assert result.counts() == {"done": 1, "failed": 0, "skipped": 0}


# ---------------------------------------------------------------------------------------
# A plan carried out


def test_a_fresh_plan_is_all_done_journaled_and_on_the_backend(small: Deployment) -> None:
    plan = small.fresh_plan()
    # The setup, six datasets and a grant each.
    assert len(plan.changes) == 13
    journal = Journal()
    progressed: list[Outcome] = []
    result = small.executor(journal=journal, progress=progressed.append).run(plan)
    assert result.ok and not result.interrupted and not result.stopped
    assert result.counts() == {"done": 13, "failed": 0, "skipped": 0}
    assert {id(o.change) for o in result.outcomes} == {id(c) for c in plan.changes}
    assert result.outcomes[0].change.target == SetupTarget()  # config before any dataset
    assert sorted(map(id, progressed)) == sorted(map(id, result.outcomes))  # each one, once
    # The journal: the setup first; each grant names the mdid its dataset's write gave.
    assert isinstance(journal.events[0], SetupRecorded)
    assert len(journal.events[0].entities) == 14
    record = journal.record()
    assert sorted(record.datasets) == sorted(small.run.desired.datasets)
    grants = [e for e in journal.events if isinstance(e, GrantChanged)]
    assert len(grants) == 6
    assert all(g.granted and g.mdid == record.datasets[g.key].mdid for g in grants)
    # The backend: each dataset once, under the mdid recorded, and read:free_data sees it.
    reader = small.backend.reader(FREE)
    for key, recorded in record.datasets.items():
        assert recorded.scopes == {FREE}
        assert on_server(small.backend, key) == {recorded.mdid}
        assert reader.visible_mdids(exact(key)) == {recorded.mdid}
    assert len(small.backend.read_setup().languages) == 2


def test_a_parallelism_below_one_is_taken_as_one_worker(small: Deployment) -> None:
    executor = small.executor(parallelism=0)
    assert executor.parallelism == 1
    assert executor.run(small.fresh_plan()).counts() == {"done": 13, "failed": 0, "skipped": 0}


def test_a_failed_setup_skips_everything_after_it(small: Deployment) -> None:
    refused = BackendError("POST /setup", 500, "Internal Server Error")
    backend = FaultyBackend(small.backend, replace_setup=lambda _: refused)
    result = small.executor(backend).run(small.fresh_plan())
    first, *rest = result.outcomes
    assert (first.change.target, first.status, first.message) == (
        SetupTarget(), OutcomeStatus.FAILED, "POST /setup: 500 Internal Server Error"
    )  # fmt: skip
    assert len(rest) == 12
    assert {(o.status, o.message) for o in rest} == {(OutcomeStatus.SKIPPED, "the setup failed")}
    assert "create_dataset" not in backend.calls  # no dataset was even tried


def test_a_failed_category_skips_its_indicators_and_datasets_and_nothing_else(
    tmp_path: Path,
) -> None:
    deployment = Deployment(tmp_path, {"residents.csv": RESIDENTS, "movements.csv": MOVEMENTS},
                            EVERY_RESIDENTS_INDICATOR)  # fmt: skip
    plan = deployment.config_plan()
    refused = BackendError("POST /categories", 500, "Internal Server Error")

    def movements_category(call: tuple[EntityKind, Mapping[str, Any]]) -> BaseException | None:
        kind, body = call
        return (
            refused if kind is EntityKind.CATEGORY and body["category_id"] == "movements" else None
        )

    backend = FaultyBackend(deployment.backend, create_entity=movements_category)
    journal = Journal()
    result = deployment.executor(backend, journal).run(plan)
    found = statuses(result)
    failed = "its category movements failed"
    day = DatasetKey("movements", "movements.travellers", 2, 4, "2021-03-01 00:00:00")
    pct = DatasetKey("movements", "movements.travellers_pctchangewithref", 2, 4, day.dt)
    assert found.pop("category movements") == (
        "failed",
        "POST /categories: 500 Internal Server Error",
    )
    assert found.pop("indicator movements.travellers") == ("skipped", failed)
    assert found.pop("indicator movements.travellers_pctchangewithref") == ("skipped", failed)
    assert found.pop(dataset_line(day)) == ("skipped", failed)
    assert found.pop(dataset_line(pct)) == ("skipped", failed)
    # The residents' config (a provider, a category, 3 indicators, 4 resolutions), their
    # six datasets and six grants: all done.
    assert set(found.values()) == {("done", "")}
    assert len(found) == 9 + 6 + 6
    assert result.counts() == {"done": 21, "failed": 1, "skipped": 4}
    assert backend.calls["create_dataset"] == 6  # the movements ones were never sent
    assert on_server(deployment.backend, day) == frozenset()
    assert {k.category_id for k in journal.record().datasets} == {"residents"}
    assert ("categories", "movements") not in {
        (e.kind.value, str(e.id)) for e in journal.record().entities.values()
    }


def test_a_failed_dataset_write_skips_its_grants_and_not_the_other_datasets(
    small: Deployment,
) -> None:
    refused = BackendError("POST /data", 500, "Internal Server Error")
    backend = FaultyBackend(small.backend, create_dataset=failing_for([JAN], refused))
    journal = Journal()
    result = small.configured().executor(backend, journal).run(small.dataset_plan())
    found = statuses(result)
    assert found.pop(dataset_line(JAN)) == ("failed", "POST /data: 500 Internal Server Error")
    assert found.pop(grant_line(JAN)) == ("skipped", "its dataset write failed")
    assert set(found.values()) == {("done", "")} and len(found) == 10  # five datasets, grants
    assert not result.ok and result.counts() == {"done": 10, "failed": 1, "skipped": 1}
    # Nothing of it on the backend or in the record; the others with their grants.
    assert on_server(small.backend, JAN) == frozenset()
    record = journal.record()
    assert JAN not in record.datasets and len(record.datasets) == 5
    february = residents("residents", 2)
    assert small.backend.reader(FREE).visible_mdids(exact(february)) == {
        record.datasets[february].mdid
    }


def test_an_unexpected_error_in_a_worker_is_reported_as_a_bug_and_skips_its_grants(
    small: Deployment,
) -> None:
    backend = FaultyBackend(small.backend, create_dataset=failing_for([JAN], RuntimeError("boom")))
    result = small.configured().executor(backend).run(small.dataset_plan())
    found = statuses(result)
    assert found[dataset_line(JAN)] == (
        "failed", "unexpected RuntimeError: boom (a bug: please report it)"
    )  # fmt: skip
    assert found[grant_line(JAN)] == ("skipped", "its dataset write failed")
    assert result.counts() == {"done": 10, "failed": 1, "skipped": 1}


def test_three_unanswered_failures_in_a_row_stop_new_changes(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, {"residents.csv": RESIDENTS}).configured()  # no grants
    silent = BackendError("POST /data", 0, "connection refused")
    backend = FaultyBackend(deployment.backend, create_dataset=lambda _: silent)
    source = Source(deployment.run)
    # One worker: the blocks go in the order the source gives them.
    result = deployment.executor(backend, source=source, parallelism=1).run(
        deployment.dataset_plan()
    )
    found = statuses(result)
    assert len(source.yielded) == 6
    for key in source.yielded[:3]:
        assert found[dataset_line(key)] == ("failed", "POST /data: 0 connection refused")
    for key in source.yielded[3:]:
        assert found[dataset_line(key)] == ("skipped", UNREACHABLE)
    assert backend.calls["create_dataset"] == 3  # the fourth was never sent


def test_a_backend_silent_through_three_config_writes_gets_no_more_changes(
    tmp_path: Path,
) -> None:
    deployment = Deployment(tmp_path, {"residents.csv": RESIDENTS})
    plan = deployment.config_plan()
    silent = BackendError("POST /config", 0, "connection refused")
    backend = FaultyBackend(deployment.backend, create_entity=lambda _: silent)
    result = deployment.executor(backend).run(plan)
    # Config goes one change at a time: the data provider and both categories failed,
    # then nothing else was started, datasets included.
    assert [(o.change.describe(), o.status) for o in result.outcomes[:3]] == [
        ("data provider Examplia Mobile (fictional operator)", OutcomeStatus.FAILED),
        ("category movements", OutcomeStatus.FAILED),
        ("category residents", OutcomeStatus.FAILED),
    ]
    rest = result.outcomes[3:]
    assert len(rest) == len(plan.changes) - 3
    assert {(o.status, o.message) for o in rest} == {(OutcomeStatus.SKIPPED, UNREACHABLE)}
    assert backend.calls["create_entity"] == 3 and "create_dataset" not in backend.calls


@pytest.mark.parametrize(
    "between",
    [BackendError("POST /data", 500, "Internal Server Error"), None],
    ids=["an answered failure", "a success"],
)
def test_an_answer_between_silent_failures_starts_the_count_again(
    tmp_path: Path, between: BackendError | None
) -> None:
    deployment = Deployment(tmp_path, {"residents.csv": RESIDENTS}).configured()
    silent = BackendError("POST /data", 0, "connection refused")
    # Two silent, an answer, two silent, then the last goes through: never three in a row.
    fault = in_turn(silent, silent, between, silent, silent, None)
    backend = FaultyBackend(deployment.backend, create_dataset=fault)
    result = deployment.executor(backend, parallelism=1).run(deployment.dataset_plan())
    assert backend.calls["create_dataset"] == 6  # every dataset was sent
    expected_done = 1 if between is not None else 2
    assert result.counts() == {"done": expected_done, "failed": 6 - expected_done, "skipped": 0}


def test_a_journal_that_cannot_be_written_stops_new_changes_but_the_write_is_done(
    small: Deployment,
) -> None:
    # The first dataset recorded is refused by the journal; the setup before it is not.
    journal = Journal(refuse=lambda event: isinstance(event, DatasetRecorded))
    source = Source(small.run)
    result = small.executor(journal=journal, source=source, parallelism=1).run(small.fresh_plan())
    first = source.yielded[0]  # the only dataset whose block started
    assert source.yielded[0] == residents("arrived", 1)  # key order: arrived < residents
    found = statuses(result)
    assert found.pop("setup (the whole config, languages included)") == ("done", "")
    # Its write reached the backend: done, though unrecorded; then nothing new starts,
    # not even its own grant.
    assert found.pop(dataset_line(first)) == ("done", "")
    assert found.pop(grant_line(first)) == ("skipped", UNRECORDABLE)
    assert set(found.values()) == {("skipped", UNRECORDABLE)} and len(found) == 10
    assert result.stopped == (
        "the journal could not be written: record.json.journal: cannot write: "
        "No space left on device"
    )
    assert not result.ok
    assert len(journal.refused) == 1 and isinstance(journal.refused[0], DatasetRecorded)
    assert journal.refused[0].dataset.key == first
    assert len(on_server(small.backend, first)) == 1
    assert on_server(small.backend, JAN) == frozenset()


def test_data_changed_since_the_plan_fails_that_dataset_with_plan_again(
    small: Deployment,
) -> None:
    plan = small.configured().dataset_plan()
    # January's residents value goes from 10 to 11 after planning (same length, same
    # keys): only that dataset's digest differs from the plan's.
    small.csv.write_text(RESIDENTS.replace("EX01-01,10,", "EX01-01,11,"))
    result = small.executor().run(plan)
    found = statuses(result)
    assert found.pop(dataset_line(JAN)) == (
        "failed", f"{JAN}: its data changed since the plan: plan again"
    )  # fmt: skip
    assert found.pop(grant_line(JAN)) == ("skipped", "its dataset write failed")
    assert set(found.values()) == {("done", "")} and len(found) == 10
    assert on_server(small.backend, JAN) == frozenset()  # nothing written that was not planned


def test_a_planned_dataset_no_longer_in_its_file_fails_and_skips_its_grants(
    small: Deployment,
) -> None:
    plan = small.configured().dataset_plan()
    small.csv.write_text(RESIDENTS.rsplit("2021-02-01", 1)[0])  # February's row is gone
    result = small.executor().run(plan)
    found = statuses(result)
    for indicator in ("residents", "residents_perKm2", "arrived"):
        gone = residents(indicator, 2)
        assert found.pop(dataset_line(gone)) == (
            "failed", "not in its data file any more: plan again"
        )  # fmt: skip
        assert found.pop(grant_line(gone)) == ("skipped", "its dataset was not written")
    assert set(found.values()) == {("done", "")} and len(found) == 6  # January's, granted
    assert result.counts() == {"done": 6, "failed": 3, "skipped": 3}


def test_ctrl_c_while_datasets_go_lets_the_write_in_flight_finish_and_skips_the_rest(
    small: Deployment,
) -> None:
    journal = Journal()

    def interrupt(number: int) -> None:
        # Ctrl-C once the first dataset's write has landed, before the second is handed
        # over: the first block is in flight (its grant may still be going).
        if number == 1:
            assert journal.dataset_recorded.wait(30), "the first dataset was never written"
            raise KeyboardInterrupt

    source = Source(small.run, before=interrupt)
    result = (
        small.configured()
        .executor(journal=journal, source=source, parallelism=1)
        .run(small.dataset_plan())
    )
    assert result.interrupted and not result.ok
    first = source.yielded[0]
    found = statuses(result)
    assert found.pop(dataset_line(first)) == ("done", "")
    assert found.pop(grant_line(first)) == ("done", "")  # the block in flight finished
    assert set(found.values()) == {("skipped", "interrupted")} and len(found) == 10
    mdid = journal.record().datasets[first].mdid
    assert small.backend.reader(FREE).visible_mdids(exact(first)) == {mdid}
    assert on_server(small.backend, JAN) == frozenset()


def test_ctrl_c_during_config_skips_the_change_it_hit_and_all_after(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, {"residents.csv": RESIDENTS})
    plan = deployment.config_plan()

    def at_the_categories(call: tuple[EntityKind, Mapping[str, Any]]) -> BaseException | None:
        return KeyboardInterrupt() if call[0] is EntityKind.CATEGORY else None

    backend = FaultyBackend(deployment.backend, create_entity=at_the_categories)
    result = deployment.executor(backend).run(plan)
    assert result.interrupted
    # The data provider comes first in dependency order and was done; the category the
    # interrupt hit, and everything after it, was not.
    first, *rest = result.outcomes
    assert (first.change.describe(), first.status) == (
        "data provider Examplia Mobile (fictional operator)", OutcomeStatus.DONE
    )  # fmt: skip
    assert rest[0].change.describe() == "category movements"
    assert len(rest) == len(plan.changes) - 1
    assert {(o.status, o.message) for o in rest} == {(OutcomeStatus.SKIPPED, "interrupted")}
    assert "create_dataset" not in backend.calls


# ---------------------------------------------------------------------------------------
# Blocks: creates that meet a dataset, grants of kept datasets, deletes


def test_a_create_that_meets_an_existing_identity_replaces_its_content(
    small: Deployment,
) -> None:
    small.configured()
    summary = small.summary(JAN)
    # Another content at January's identity (a killed apply's, or unknown): a 303.
    old = small.backend.create_dataset(Dataset(summary, (["EX01-01"],), [999 * 10**9])).mdid
    backend = FaultyBackend(small.backend)
    journal = Journal()
    plan = small.dataset_plan()
    result = small.executor(backend, journal).run(plan)
    assert result.ok and result.counts()["done"] == 12
    assert backend.calls["update_dataset"] == 1  # the 303 alone was replaced
    recorded = journal.record().datasets[JAN]
    assert on_server(small.backend, JAN) == {recorded.mdid} and recorded.mdid != old
    assert small.backend.dataset_content(exact(JAN)) == {"2021-01": {("EX01-01",): 10.0}}
    assert small.backend.reader(FREE).visible_mdids(exact(JAN)) == {recorded.mdid}


def test_grants_after_a_write_go_to_the_mdid_the_write_gave(small: Deployment) -> None:
    small.configured()
    summary = small.summary(JAN)
    old = small.backend.create_dataset(Dataset(summary, (["EX01-01"],), [999 * 10**9])).mdid
    recorded = RecordedDataset(summary, old, frozenset({FREE}))
    # An update rewrites the dataset (a new mdid): the grant after it, even one that
    # names the recorded mdid, must go to the new one.
    plan = Plan(
        (
            Change(Action.UPDATE, Reason.CONTENT_CHANGED, DatasetTarget(summary, recorded)),
            Change(Action.CREATE, Reason.REGRANT, GrantTarget(FREE, JAN, old)),
        ),
        {},
    )
    journal = Journal()
    assert small.executor(journal=journal).run(plan).ok
    new = next(e.dataset.mdid for e in journal.events if isinstance(e, DatasetRecorded))
    assert new != old and on_server(small.backend, JAN) == {new}
    assert journal.record().datasets == {JAN: RecordedDataset(summary, new, frozenset({FREE}))}
    assert small.backend.reader(FREE).visible_mdids(exact(JAN)) == {new}
    assert journal.events[-1] == GrantChanged(JAN, FREE, new, True)


def test_grants_of_a_kept_dataset_go_to_its_recorded_mdid(small: Deployment) -> None:
    small.configured()
    mdid = small.backend.create_dataset(next(Source(small.run)({JAN}))).mdid
    journal = Journal()
    grant = Plan((Change(Action.CREATE, Reason.NEW, GrantTarget(FREE, JAN, mdid)),), {})
    assert small.executor(journal=journal).run(grant).ok
    reader = small.backend.reader(FREE)
    assert reader.visible_mdids(exact(JAN)) == {mdid}
    revoke = Plan((Change(Action.DELETE, Reason.REMOVED, GrantTarget(FREE, JAN, mdid)),), {})
    assert small.executor(journal=journal).run(revoke).ok
    assert reader.visible_mdids(exact(JAN)) == frozenset()
    assert journal.events == [GrantChanged(JAN, FREE, mdid, True),
                              GrantChanged(JAN, FREE, mdid, False)]  # fmt: skip


def test_a_grant_of_a_dataset_neither_written_nor_recorded_fails_with_plan_again(
    small: Deployment,
) -> None:
    backend = FaultyBackend(small.backend)
    plan = Plan((Change(Action.CREATE, Reason.NEW, GrantTarget(FREE, JAN)),), {})
    result = small.executor(backend).run(plan)
    assert statuses(result) == {
        grant_line(JAN): ("failed", f"grant {FREE} -> {JAN}: no dataset to grant: plan again")
    }
    assert "grant" not in backend.calls


def recorded_indicator_delete(deployment: Deployment) -> Change:
    """The delete of the residents.residents indicator, as a plan has it once the
    manifest dropped it (the record's entity, its body gone)."""
    entity = next(e for e in deployment.run.setup.entities
                  if e.kind is EntityKind.INDICATOR and e.id == "residents.residents")  # fmt: skip
    return Change(Action.DELETE, Reason.REMOVED, EntityTarget(RecordedEntity.of(entity)))


def test_a_config_delete_is_skipped_while_a_dataset_using_it_failed_to_go(
    small: Deployment,
) -> None:
    summary = small.summary(JAN)
    refused = BackendError("DELETE /data", 500, "Internal Server Error")
    backend = FaultyBackend(small.backend, delete_dataset=failing_for([JAN], refused))
    drop = Change(
        Action.DELETE, Reason.REMOVED, DatasetTarget(summary, RecordedDataset(summary, 7))
    )
    plan = Plan((drop, recorded_indicator_delete(small)), {})
    journal = Journal()
    result = small.executor(backend, journal).run(plan)
    assert statuses(result) == {
        dataset_line(JAN): ("failed", "DELETE /data: 500 Internal Server Error"),
        "indicator residents.residents": ("skipped", f"still used by {JAN} (its delete failed)"),
    }
    assert "delete_entity" not in backend.calls and journal.events == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, ("done", "")), (500, ("failed", "DELETE /indicators/residents.residents: 500 oops"))],
)
def test_an_indicator_already_gone_counts_as_deleted_and_other_refusals_fail(
    small: Deployment, status: int, expected: tuple[str, str]
) -> None:
    call = "DELETE /indicators/residents.residents"
    refused = BackendError(call, status, "Not Found" if status == 404 else "oops")
    backend = FaultyBackend(small.backend, delete_entity=lambda _: refused)
    journal = Journal()
    result = small.executor(backend, journal).run(Plan((recorded_indicator_delete(small),), {}))
    assert statuses(result) == {"indicator residents.residents": expected}
    dropped = [EntityDropped(EntityKind.INDICATOR, "residents.residents")]
    assert journal.events == (dropped if status == 404 else [])


def test_a_recorded_dataset_deleted_is_gone_from_the_backend_and_the_record(
    small: Deployment,
) -> None:
    small.configured()
    mdid = small.backend.create_dataset(next(Source(small.run)({JAN}))).mdid
    summary = small.summary(JAN)
    drop = Change(Action.DELETE, Reason.REMOVED,
                  DatasetTarget(summary, RecordedDataset(summary, mdid)))  # fmt: skip
    journal = Journal()
    assert small.executor(journal=journal).run(Plan((drop,), {})).ok
    assert on_server(small.backend, JAN) == frozenset()
    assert journal.events == [DatasetDropped(JAN)]
