"""apply and import_state (loader/applying.py) through the Python API, on a `local:` target
(an embedded backend in a SQLite file of the test's own): a first apply writes everything
and a second plan is empty; a plan that destroys is refused unless allowed, and capped by
max_destroy; a declined confirmation writes nothing; a held state lock refuses before the
backend is touched; a deployment loaded by other means is refused by apply and taken over
by import_state. And the wording of the errors applying raises (another writer, changes
the record could not keep).

Expected values come from the manifest: two months of the three residents indicators are
six datasets, and the access rule grants residents.residents alone, so two grants.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import loader
from loader.applying import (
    AnotherWriter,
    ApplyOptions,
    UnrecordedChanges,
    another_writer_message,
)
from loader.backends.local import LocalBackend
from loader.execute import DEFAULT_PARALLELISM, ApplyResult, Outcome, OutcomeStatus
from loader.model import DatasetKey, EntityKind, QueryRange
from loader.planfile import PlanRefused
from loader.planner import Action, Change, Plan, Reason, SetupTarget
from loader.run import open_run
from loader.state import StateError, StateStore
from tests.helpers import write_manifest

RESIDENTS = (
    "month,pcod,residents,residents_perKm2,arrived\n"
    "2021-01-01,EX01-01,10,1.5,1\n"
    "2021-02-01,EX01-01,20,2.5,2\n"
)
FREE = "read:free_data"
ACCESS = f"access:\n  {FREE}:\n    - indicator: residents.residents\n"
INDICATORS = ("arrived", "residents", "residents_perKm2")  # in key order
# The example config: 2 languages, 1 data provider, 2 categories, 5 indicators and
# 2 resolutions of each kind.
CONFIG_ENTITIES = 14


def residents(indicator: str, month: int) -> DatasetKey:
    return DatasetKey("residents", f"residents.{indicator}", 2, 2, f"2021-{month:02d}-01 00:00:00")


KEYS = sorted(residents(i, m) for i in INDICATORS for m in (1, 2))
GRANTED = [residents("residents", 1), residents("residents", 2)]


class Deployment:
    """Our manifest in `directory` with its `local:` target (state/test.db beside it) and
    its state record where apply keeps it by default."""

    def __init__(self, directory: Path) -> None:
        self.manifest = write_manifest(directory, {"residents.csv": RESIDENTS}, access=ACCESS)
        self.database = directory / "state" / "test.db"
        self.state = directory / "manifest.local.state.json"

    @property
    def csv(self) -> Path:
        return self.manifest.parent / "residents.csv"

    def backend(self) -> LocalBackend:
        return LocalBackend(self.database)

    def on_server(self, key: DatasetKey, scope: str | None = None) -> frozenset[int]:
        """The mdids at one identity, as the admin (or `scope`'s reader) sees them."""
        backend = self.backend()
        try:
            seen = backend if scope is None else backend.reader(scope)
            return seen.visible_mdids(QueryRange(key.category_id, key.indicator_id, key.srid,
                                                 key.trid, key.dt[:7], 1))  # fmt: skip
        finally:
            backend.close()

    def record(self) -> dict[str, Any]:
        """The stored record, as JSON (its content beside its lineage and serial)."""
        document: dict[str, Any] = json.loads(self.state.read_text())
        return document

    def load_by_other_means(self) -> dict[DatasetKey, int]:
        """What the notebook does: the whole config posted, every dataset created and
        the free grants made, straight through the backend (no state record); the mdids."""
        run = open_run(self.manifest)
        entities = run.setup.entities
        backend = self.backend()
        try:
            backend.replace_setup(
                {k.value: [dict(e.body) for e in entities if e.kind is k] for k in EntityKind}
            )
            mdids = {d.key: backend.create_dataset(d).mdid for d in run.datasets(set(KEYS))}
            for key in GRANTED:
                backend.grant(FREE, mdids[key])
        finally:
            backend.close()
        return mdids


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


# ---------------------------------------------------------------------------------------
# apply


def test_a_first_apply_writes_everything_and_a_second_plan_is_empty(
    deployment: Deployment,
) -> None:
    seen: list[Outcome] = []
    applied = loader.apply(deployment.manifest, progress=seen.append)
    # The setup, six datasets and two grants, all done, each reported to progress.
    assert applied.result.ok
    assert applied.result.counts() == {"done": 9, "failed": 0, "skipped": 0}
    assert len(applied.plan.changes) == 9 and len(seen) == 9
    assert {o.status for o in seen} == {OutcomeStatus.DONE}
    # The record returned is the one stored: every dataset with its mdid on the server.
    assert sorted(applied.record.datasets) == KEYS
    for key, recorded in applied.record.datasets.items():
        assert deployment.on_server(key) == {recorded.mdid}
        assert recorded.scopes == ({FREE} if key in GRANTED else set())
        assert deployment.on_server(key, FREE) == ({recorded.mdid} if key in GRANTED else set())
    stored = deployment.record()
    assert len(stored["datasets"]) == 6
    assert stored["target_url"] == "local:state/test.db"  # relative to the record beside it
    (entry,) = stored["history"]
    assert entry["outcome"] == "complete" and entry["who"] == "local-admin"
    assert entry["counts"] == {"done": 9, "failed": 0, "skipped": 0}
    assert entry["plan_fingerprint"] == applied.plan.fingerprint != ""
    # The journal was folded into the record and removed; the lock released.
    assert not Path(f"{deployment.state}.journal").exists()
    assert not Path(f"{deployment.state}.lock").exists()
    again = loader.plan(deployment.manifest)
    assert again.changes == ()
    assert dict(again.unchanged) == {"entity": CONFIG_ENTITIES, "dataset": 6, "grant": 2}


def test_an_apply_with_nothing_to_change_asks_nothing_and_records_no_history(
    deployment: Deployment,
) -> None:
    loader.apply(deployment.manifest)
    before = deployment.state.read_bytes()
    asked: list[Plan] = []

    def accept(plan: Plan) -> bool:
        asked.append(plan)
        return True

    applied = loader.apply(deployment.manifest, show=asked.append, confirm=accept)
    assert asked == []  # neither shown nor confirmed: there is nothing to say yes to
    assert applied.result.outcomes == [] and applied.result.ok
    assert deployment.state.read_bytes() == before  # not even a history entry


def test_a_declined_confirmation_writes_nothing(deployment: Deployment) -> None:
    asked: list[Plan] = []

    def decline(plan: Plan) -> bool:
        asked.append(plan)
        return False

    applied = loader.apply(deployment.manifest, confirm=decline)
    (plan,) = asked
    assert plan is applied.plan and len(plan.changes) == 9
    assert applied.result.outcomes == [] and applied.record.empty
    assert not deployment.state.exists()  # no record, no history
    assert not Path(f"{deployment.state}.journal").exists()
    # The database connecting made is empty: no config, no dataset.
    backend = deployment.backend()
    try:
        assert backend.read_setup().languages == ()
    finally:
        backend.close()
    assert all(deployment.on_server(key) == frozenset() for key in KEYS)
    assert len(loader.plan(deployment.manifest).changes) == 9  # still all to do


def test_a_plan_that_destroys_is_refused_without_allow_destroy(deployment: Deployment) -> None:
    first = loader.apply(deployment.manifest).record
    deployment.csv.write_text(RESIDENTS.rsplit("2021-02-01", 1)[0])  # February is gone
    before = deployment.state.read_bytes()
    shown: list[Plan] = []
    with pytest.raises(PlanRefused) as refused:
        loader.apply(deployment.manifest, show=shown.append)
    february = [k for k in KEYS if k.dt.startswith("2021-02")]
    listed = "; ".join(f"- dataset {k}" for k in february)
    assert str(refused.value) == (
        f"the plan destroys 3 thing(s) ({listed}); apply again with --allow-destroy to proceed"
    )
    assert len(shown) == 1 and len(shown[0].destructive) == 3  # shown before the refusal
    # Nothing was deleted, nothing recorded.
    assert deployment.state.read_bytes() == before
    for key in february:
        assert deployment.on_server(key) == {first.datasets[key].mdid}


def test_max_destroy_caps_an_allowed_destroy_and_a_plan_within_it_goes(
    deployment: Deployment,
) -> None:
    loader.apply(deployment.manifest)
    deployment.csv.write_text(RESIDENTS.rsplit("2021-02-01", 1)[0])
    february = [k for k in KEYS if k.dt.startswith("2021-02")]
    with pytest.raises(PlanRefused, match=r"^the plan destroys 3 thing\(s\), more than "
                                          r"--max-destroy 2 \(- dataset "):  # fmt: skip
        loader.apply(deployment.manifest, allow_destroy=True, max_destroy=2)
    assert all(len(deployment.on_server(key)) == 1 for key in february)
    applied = loader.apply(deployment.manifest, allow_destroy=True, max_destroy=3)
    assert applied.result.counts() == {"done": 3, "failed": 0, "skipped": 0}
    assert {c.action for c in applied.plan.changes} == {Action.DELETE}
    assert all(deployment.on_server(key) == frozenset() for key in february)
    assert sorted(applied.record.datasets) == [k for k in KEYS if k not in february]
    assert loader.plan(deployment.manifest).changes == ()


def test_only_narrows_what_apply_writes(deployment: Deployment) -> None:
    applied = loader.apply(deployment.manifest, only=["indicator=residents.residents"])
    # The setup (the fresh deployment needs it) and the two residents datasets, granted.
    assert applied.result.counts() == {"done": 5, "failed": 0, "skipped": 0}
    assert sorted(applied.record.datasets) == GRANTED
    rest = loader.plan(deployment.manifest)
    assert [(c.action, c.describe()) for c in rest.changes] == [
        (Action.CREATE, f"dataset {k}") for k in KEYS if k not in GRANTED
    ]


def test_a_held_state_lock_refuses_before_the_backend_is_touched(
    deployment: Deployment,
) -> None:
    # Another machine's run holds it (a lock of this machine's dead process is taken over).
    StateStore(str(deployment.state)).acquire("ci@elsewhere.example:4242#0001")
    with pytest.raises(StateError) as refused:
        loader.apply(deployment.manifest)
    assert str(refused.value).startswith(
        f"{deployment.state}: state is locked, held by ci@elsewhere.example:4242#0001 ("
    )
    assert not deployment.database.exists()  # connecting would have created it
    assert not deployment.state.exists()


def test_apply_options_default_to_a_plain_apply_and_cannot_be_changed() -> None:
    options = ApplyOptions()
    # Where it writes: the manifest's default target, its state, no waiting, no plan file.
    assert (options.target, options.state, options.wait_ready, options.holder) == (
        None, None, 0, None
    )  # fmt: skip
    assert (options.environ, options.reviewed) == (None, None)
    # What it does: everything planned, nothing destroyed, nobody asked, 4 at a time.
    assert (options.only, options.verify, options.allow_destroy, options.max_destroy) == (
        (), False, False, None
    )  # fmt: skip
    assert (options.show, options.confirm, options.progress) == (None, None, None)
    assert options.parallelism == DEFAULT_PARALLELISM == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.allow_destroy = True  # type: ignore[misc]


def test_an_unknown_keyword_is_refused_before_anything_is_written(
    deployment: Deployment,
) -> None:
    with pytest.raises(TypeError, match="allow_destruction"):
        loader.apply(deployment.manifest, allow_destruction=True)
    assert not deployment.database.exists() and not deployment.state.exists()


# ---------------------------------------------------------------------------------------
# Another writer, and import_state


def test_apply_refuses_a_deployment_loaded_by_other_means_and_writes_nothing(
    deployment: Deployment,
) -> None:
    mdids = deployment.load_by_other_means()
    with pytest.raises(AnotherWriter) as refused:
        loader.apply(deployment.manifest)
    first = KEYS[0]
    assert str(refused.value) == (
        f"another writer: 6 datasets of the manifest on the server that no apply of this "
        f"record wrote ({first}: mdid {mdids[first]}, and 5 more; `import` takes over data "
        f"loaded by other means). If another apply uses a state record other than "
        f"{deployment.state}, give every apply of this target the same one; nothing was written"
    )
    assert not deployment.state.exists()
    assert all(deployment.on_server(key) == {mdids[key]} for key in KEYS)


def test_import_state_takes_over_a_deployment_loaded_by_other_means(
    deployment: Deployment,
) -> None:
    mdids = deployment.load_by_other_means()
    report = loader.import_state(deployment.manifest)
    assert sorted(report.matched) == KEYS
    assert (report.differs, report.absent, report.ambiguous, report.already) == ([], [], [], 0)
    # A local target looks as each scope's reader: both free grants are seen.
    assert (report.grants_verified, report.grants_missing) == ({FREE: 2}, {})
    recorded = {key: d.mdid for key, d in report.record.datasets.items()}
    assert recorded == mdids
    stored = deployment.record()
    assert {(d["indicator_id"], d["dt"]): d["mdid"] for d in stored["datasets"]} == {
        (k.indicator_id, k.dt): m for k, m in mdids.items()
    }
    assert stored["history"] == []  # an import is no apply
    assert stored["target_url"] == "local:state/test.db"  # whose record it is, as apply says
    # Nothing was written to the server, and nothing is left to do.
    assert all(deployment.on_server(key) == {mdids[key]} for key in KEYS)
    assert loader.plan(deployment.manifest).changes == ()
    applied = loader.apply(deployment.manifest)
    assert applied.result.outcomes == [] and applied.record.datasets == report.record.datasets
    # Again: everything was recorded already.
    assert loader.import_state(deployment.manifest).already == 6


def test_import_state_records_a_differing_dataset_for_the_next_apply_to_rewrite(
    deployment: Deployment,
) -> None:
    mdids = deployment.load_by_other_means()
    january = residents("residents", 1)
    # The manifest now says 11 where the server holds 10.
    deployment.csv.write_text(RESIDENTS.replace("EX01-01,10,", "EX01-01,11,"))
    report = loader.import_state(deployment.manifest)
    assert report.differs == [january]
    assert sorted(report.matched) == [k for k in KEYS if k != january]
    plan = loader.plan(deployment.manifest)
    # Rewritten, then granted again (a rewrite drops the dataset's grants).
    assert [(c.action, c.reason, c.describe()) for c in plan.changes] == [
        (Action.UPDATE, Reason.CONTENT_CHANGED, f"dataset {january}"),
        (Action.CREATE, Reason.REGRANT, f"grant {FREE} -> {january}"),
    ]
    applied = loader.apply(deployment.manifest)
    assert applied.result.counts() == {"done": 2, "failed": 0, "skipped": 0}
    new = applied.record.datasets[january].mdid
    assert new != mdids[january] and deployment.on_server(january, FREE) == {new}
    backend = deployment.backend()
    try:
        content = backend.dataset_content(QueryRange("residents", "residents.residents", 2, 2,
                                                     "2021-01", 1))  # fmt: skip
    finally:
        backend.close()
    assert content == {"2021-01": {("EX01-01",): 11.0}}
    assert loader.plan(deployment.manifest).changes == ()


# ---------------------------------------------------------------------------------------
# The messages


A = DatasetKey("residents", "residents.arrived", 2, 2, "2021-01-01 00:00:00")
B = DatasetKey("residents", "residents.residents", 2, 2, "2021-01-01 00:00:00")
WHERE = "/ci/prod.state.json"
ADVICE = f". If another apply uses a state record other than {WHERE}, give every apply of this "
ADVICE += "target the same one"


def test_another_writer_names_one_duplicated_identity_and_its_mdids_in_order() -> None:
    assert another_writer_message({A: frozenset({9, 3})}, {}, WHERE) == (
        f"another writer: 1 identity is on the server more than once ({A}: mdids 3, 9; only "
        "database access can remove all but one)" + ADVICE
    )


def test_another_writer_names_the_first_of_several_and_counts_the_others() -> None:
    message = another_writer_message(
        {B: frozenset({5, 6}), A: frozenset({1, 2})}, {B: 7, A: 8}, WHERE
    )
    assert message == (
        f"another writer: 2 identities are on the server more than once ({A}: mdids 1, 2, and "
        "1 more; only database access can remove all but one); 2 datasets of the manifest on "
        f"the server that no apply of this record wrote ({A}: mdid 8, and 1 more; `import` "
        "takes over data loaded by other means)" + ADVICE
    )


def test_another_writer_of_one_unexplained_dataset_says_dataset_once() -> None:
    assert another_writer_message({}, {B: 12}, WHERE) == (
        f"another writer: 1 dataset of the manifest on the server that no apply of this record "
        f"wrote ({B}: mdid 12; `import` takes over data loaded by other means)" + ADVICE
    )


def test_the_another_writer_error_adds_that_nothing_was_written() -> None:
    error = AnotherWriter({}, {B: 12}, WHERE)
    assert str(error) == another_writer_message({}, {B: 12}, WHERE) + "; nothing was written"
    assert isinstance(error, loader.LoaderError)


def result_of(*statuses: OutcomeStatus) -> ApplyResult:
    change = Change(Action.CREATE, Reason.NEW, SetupTarget())
    return ApplyResult([Outcome(change, status) for status in statuses])


def test_unrecorded_changes_all_in_the_journal_says_the_next_apply_folds_it() -> None:
    result = result_of(OutcomeStatus.DONE, OutcomeStatus.DONE, OutcomeStatus.FAILED,
                       OutcomeStatus.SKIPPED)  # fmt: skip
    error = UnrecordedChanges(result, 0, StateError(f"{WHERE}: cannot write: disk full"))
    assert str(error) == (
        f"{WHERE}: cannot write: disk full: 2 changes reached the backend and the journal "
        "holds them all (the next apply folds it into the record); 1 failed, 1 skipped. "
        "Apply again once the state record can be written"
    )
    assert error.result is result and error.lost == 0


def test_unrecorded_changes_some_lost_says_the_next_apply_plans_them_again() -> None:
    error = UnrecordedChanges(result_of(OutcomeStatus.DONE), 1, StateError("upload refused"))
    assert str(error) == (
        "upload refused: 1 change reached the backend and 1 of them could not be recorded "
        "(the next apply plans them again: what it finds on the server it writes once more); "
        "0 failed, 0 skipped. Apply again once the state record can be written"
    )
    assert error.lost == 1 and isinstance(error, loader.LoaderError)
