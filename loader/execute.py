"""Plan -> backend: carry out each change in the plan's order, journaling each one the
moment it succeeds, so that an interrupted apply resumes by planning again.

Config goes first and one change at a time (a handful of requests). Datasets then go in
parallel, each as a block: its write and at once its grants (a PATCH drops a dataset's
grants, so users lose access for one write at most), never two blocks for one identity
(the plan holds each identity once). A failed change skips what depends on it and
nothing else; a Ctrl-C lets the writes in flight finish and starts no new one.

Every change is safe to send again after a crash between its success and its journal
line: a create that meets an existing dataset (303: content unknown, Hazard 9) replaces
it with a PATCH, grants and deletes are idempotent on the server.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from loader.model import (
    Backend,
    BackendError,
    ConfigEntity,
    Dataset,
    DatasetKey,
    EntityKind,
    LoaderError,
    stored_matches,
)
from loader.planner import Action, Change, Plan, Subject
from loader.record import (
    DatasetDropped,
    DatasetRecorded,
    EntityDropped,
    EntityRecorded,
    Event,
    GrantChanged,
    RecordedDataset,
    RecordedEntity,
    SetupRecorded,
    entity_ref,
    used_ids,
)

DEFAULT_PARALLELISM = 4
UNREACHABLE_AFTER = 3
UNREACHABLE = "not started: the backend stopped answering"
UNRECORDABLE = "not started: a change before it could not be recorded"


class OutcomeStatus(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
    change: Change
    status: OutcomeStatus
    message: str = ""


@dataclass
class ApplyResult:
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    stopped: str = ""  # why no new change was started (the journal could not be written)
    others: str = ""  # what another writer did meanwhile, found after the last change

    @property
    def ok(self) -> bool:
        return (
            not self.interrupted
            and not self.stopped
            and not self.others
            and all(o.status is OutcomeStatus.DONE for o in self.outcomes)
        )

    def counts(self) -> dict[str, int]:
        found = {status.value: 0 for status in OutcomeStatus}
        for outcome in self.outcomes:
            found[outcome.status.value] += 1
        return found


# A source of the datasets to write: the keys wanted -> their canonical datasets.
DatasetSource = Callable[[set[DatasetKey]], Iterator[Dataset]]
Recorder = Callable[[Event], None]  # is given each completed change, journals it
Progress = Callable[[Outcome], None]


class ApplyError(LoaderError):
    """A planned change that cannot be carried out as planned (its data changed since)."""


class Executor:
    def __init__(
        self,
        backend: Backend,
        recorder: Recorder,
        datasets: DatasetSource,
        entities: Iterable[ConfigEntity],
        *,
        parallelism: int = DEFAULT_PARALLELISM,
        progress: Progress | None = None,
    ) -> None:
        self.backend = backend
        self.recorder = recorder
        self.datasets = datasets
        self.entities = tuple(entities)
        self.parallelism = max(1, parallelism)
        self.progress = progress
        self.result = ApplyResult()
        self._lock = threading.Lock()
        self.failed_refs: set[tuple[EntityKind, str]] = set()
        self.failed_keys: set[DatasetKey] = set()
        self.unanswered = 0  # failures in a row without any answer from the backend

    # -- the journal --------------------------------------------------------------------------

    def _record(self, event: Event) -> None:
        """Journal a change the backend has carried out. If the journal cannot be written
        (a full or read-only disk, a store that refuses the upload), the change is still
        done: it is reported so, and no new change starts, since none could be recorded
        either (the caller still holds every entry for the record it writes at the end)."""
        try:
            self.recorder(event)
        except LoaderError as error:
            with self._lock:
                if not self.result.stopped:
                    self.result.stopped = f"the journal could not be written: {error}"

    # -- bookkeeping ------------------------------------------------------------------------

    def _report(self, change: Change, status: OutcomeStatus, message: str = "") -> None:
        outcome = Outcome(change, status, message)
        with self._lock:
            self.result.outcomes.append(outcome)
            if status is OutcomeStatus.DONE:
                self.unanswered = 0
        if self.progress is not None:
            self.progress(outcome)

    def _failed(self, change: Change, error: Exception) -> None:
        """Report a failure; count it when the backend did not answer at all."""
        with self._lock:
            silent = isinstance(error, BackendError) and error.status == 0
            self.unanswered = self.unanswered + 1 if silent else 0
        self._report(change, OutcomeStatus.FAILED, _failure(error))

    @property
    def unreachable(self) -> bool:
        """Several changes in a row got no answer: start no more (each would wait through
        its own retries first)."""
        return self.unanswered >= UNREACHABLE_AFTER

    def _halted(self) -> str:
        """Why no new change may start, or ''."""
        if self.result.stopped:
            return UNRECORDABLE
        return UNREACHABLE if self.unreachable else ""

    def _skip_all(self, changes: Iterable[Change], why: str) -> None:
        for change in changes:
            self._report(change, OutcomeStatus.SKIPPED, why)

    # -- the walk ---------------------------------------------------------------------------

    def run(self, plan: Plan) -> ApplyResult:
        config = [c for c in plan.changes if c.subject in (Subject.SETUP, Subject.ENTITY)]
        head = [c for c in config if c.action is not Action.DELETE]
        tail = [c for c in config if c.action is Action.DELETE]
        blocks = _blocks(c for c in plan.changes if c.subject in (Subject.DATASET, Subject.GRANT))
        try:
            for change in head:
                if self._halted():
                    return self._skip_rest(plan, self._halted())
                parent = self._failed_parent(change)
                if parent:  # skipped, and what needs it is skipped in turn
                    self._report(change, OutcomeStatus.SKIPPED, parent)
                    continue
                if not self._config_change(change) and change.subject is Subject.SETUP:
                    return self._skip_rest(plan, "the setup failed")
            self._datasets(blocks)
            for change in tail:
                if self._halted():
                    return self._skip_rest(plan, self._halted())
                self._entity_delete(change)
        except KeyboardInterrupt:
            self.result.interrupted = True
            return self._skip_rest(plan, "interrupted")
        return self.result

    def _skip_rest(self, plan: Plan, why: str) -> ApplyResult:
        """Every change not reported yet, skipped for one reason."""
        done = {id(o.change) for o in self.result.outcomes}
        self._skip_all([c for c in plan.changes if id(c) not in done], why)
        return self.result

    # -- config -----------------------------------------------------------------------------

    def _config_change(self, change: Change) -> bool:
        try:
            if change.subject is Subject.SETUP:
                self._post_setup()
            else:
                self._write_entity(change)
        except LoaderError as error:
            if change.entity_kind is not None:
                self.failed_refs.add(entity_ref(change.entity_kind, str(change.entity_id)))
            self._failed(change, error)
            return False
        self._report(change, OutcomeStatus.DONE)
        return True

    def _failed_parent(self, change: Change) -> str:
        """An indicator waits for its category: why it cannot go, or ''."""
        entity = change.entity
        if entity is None or entity.kind is not EntityKind.INDICATOR:
            return ""
        category = str(entity.body.get("category_id"))
        if (EntityKind.CATEGORY, category) not in self.failed_refs:
            return ""
        self.failed_refs.add(entity_ref(entity.kind, str(entity.id)))
        return f"its category {category} failed"

    def _post_setup(self) -> None:
        config: dict[str, list[Mapping[str, Any]]] = {kind.value: [] for kind in EntityKind}
        for entity in self.entities:
            config[entity.kind.value].append(entity.body)
        self.backend.replace_setup(config)
        self._record(SetupRecorded(tuple(RecordedEntity.of(e) for e in self.entities)))

    def _write_entity(self, change: Change) -> None:
        entity = change.entity
        assert entity is not None
        if change.action is Action.CREATE:
            write = self.backend.create_entity(entity.kind, entity.body)
            if not write.created and not stored_matches(entity.body, write.stored):
                self.backend.update_entity(entity.kind, entity.id, entity.body)
        else:
            self.backend.update_entity(entity.kind, entity.id, entity.body)
        self._record(EntityRecorded(RecordedEntity.of(entity)))

    def _entity_delete(self, change: Change) -> None:
        assert change.entity_kind is not None and change.entity_id is not None
        kind, entity_id = change.entity_kind, change.entity_id
        users = [k for k in self.failed_keys if used_ids(k).get(kind) == str(entity_id)]
        if users:
            self._report(
                change, OutcomeStatus.SKIPPED, f"still used by {users[0]} (its delete failed)"
            )
            return
        try:
            self.backend.delete_entity(kind, entity_id)
        except BackendError as error:
            if error.status != 404:  # indicators answer 404 when already gone
                self._failed(change, error)
                return
        except LoaderError as error:
            self._failed(change, error)
            return
        self._record(EntityDropped(kind, entity_id))
        self._report(change, OutcomeStatus.DONE)

    # -- datasets ---------------------------------------------------------------------------

    def _datasets(self, blocks: Mapping[DatasetKey, list[Change]]) -> None:
        needs_data = {
            key for key, block in blocks.items()
            if block[0].subject is Subject.DATASET and block[0].action is not Action.DELETE
        }  # fmt: skip
        waiting = dict(blocks)
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="apply") as pool:
            running: set[Future[None]] = set()

            def submit(key: DatasetKey, dataset: Dataset | None) -> None:
                block = waiting.pop(key)
                blocked = self._blocked(block)
                if blocked:
                    self._skip_all(block, blocked)
                    return
                while len(running) >= 2 * self.parallelism:  # bounded memory
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    running.difference_update(done)
                running.add(pool.submit(self._block, block, dataset))

            try:
                for key in [k for k in blocks if k not in needs_data]:
                    submit(key, None)
                for dataset in self.datasets(needs_data):
                    if dataset.key in waiting and dataset.key in needs_data:
                        submit(dataset.key, dataset)
                for key in list(waiting):  # planned, but its file no longer has it
                    self._report(waiting[key][0], OutcomeStatus.FAILED,
                                 "not in its data file any more: plan again")  # fmt: skip
                    self._skip_all(waiting.pop(key)[1:], "its dataset was not written")
            except BaseException:
                for future in running:
                    future.cancel()
                raise
            finally:
                _drain(running)

    def _blocked(self, block: list[Change]) -> str:
        """Why a dataset write cannot go (a config entity it points at failed), or ''.
        Deletes, grants and revokes depend on no config."""
        head = block[0]
        if head.subject is not Subject.DATASET or head.action is Action.DELETE:
            return ""
        key = head.key
        assert key is not None
        for kind, entity_id in used_ids(key).items():
            if (kind, entity_id) in self.failed_refs:
                return f"its {kind.singular} {entity_id} failed"
        return ""

    def _block(self, block: list[Change], dataset: Dataset | None) -> None:
        if self._halted():
            self._skip_all(block, self._halted())
            return
        first = block[0]
        mdid = first.mdid
        grants = block
        if first.subject is Subject.DATASET:
            grants = block[1:]
            try:
                mdid = self._dataset_change(first, dataset)
            except Exception as error:  # a worker's failure must reach the summary
                if first.key is not None:
                    self.failed_keys.add(first.key)
                self._failed(first, error)
                self._skip_all(grants, "its dataset write failed")
                return
            self._report(first, OutcomeStatus.DONE)
        for index, change in enumerate(grants):
            assert change.key is not None and change.scope is not None and mdid is not None
            if self._halted():
                self._skip_all(grants[index:], self._halted())
                return
            try:
                if change.action is Action.DELETE:
                    self.backend.revoke(change.scope, mdid)
                else:
                    self.backend.grant(change.scope, mdid)
            except Exception as error:
                self._failed(change, error)
                continue
            granted = change.action is not Action.DELETE
            self._record(GrantChanged(change.key, change.scope, mdid, granted))
            self._report(change, OutcomeStatus.DONE)

    def _dataset_change(self, change: Change, dataset: Dataset | None) -> int | None:
        if change.action is Action.DELETE:
            assert change.summary is not None
            self.backend.delete_dataset(change.summary)
            self._record(DatasetDropped(change.summary.key))
            return None
        assert dataset is not None and change.summary is not None
        if dataset.summary.digest != change.summary.digest:
            raise ApplyError(f"{dataset.key}: its data changed since the plan: plan again")
        if change.action is Action.CREATE:
            write = self.backend.create_dataset(dataset)
            # 303: the identity exists with whatever content it has (Hazard 9): replace it.
            mdid = write.mdid if write.created else self.backend.update_dataset(dataset)
        else:
            mdid = self.backend.update_dataset(dataset)
        self._record(DatasetRecorded(RecordedDataset(dataset.summary, mdid)))
        return mdid


def _failure(error: Exception) -> str:
    """A failure as the summary shows it; anything but a LoaderError is a bug, said so."""
    if isinstance(error, LoaderError):
        return str(error)
    return f"unexpected {type(error).__name__}: {error} (a bug: please report it)"


def _drain(running: set[Future[None]]) -> None:
    """Wait for the writes in flight to finish, whatever else happens: a second Ctrl-C
    must not leave a worker writing after the record is saved."""
    while True:
        try:
            wait(running)
            return
        except KeyboardInterrupt:
            continue


def _blocks(changes: Iterable[Change]) -> dict[DatasetKey, list[Change]]:
    """Per dataset identity: its write or delete (if any) first, then its grants."""
    blocks: dict[DatasetKey, list[Change]] = {}
    for change in changes:
        assert change.key is not None
        blocks.setdefault(change.key, []).append(change)
    for block in blocks.values():
        block.sort(key=lambda c: c.subject is not Subject.DATASET)
    return blocks
