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
from loader.planner import (
    Action,
    Change,
    DatasetTarget,
    EntityTarget,
    GrantTarget,
    Plan,
    SetupTarget,
)
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
        config = [c for c in plan.changes if isinstance(c.target, SetupTarget | EntityTarget)]
        head = [c for c in config if c.action is not Action.DELETE]
        tail = [c for c in config if c.action is Action.DELETE]
        blocks = _blocks(plan.changes)
        try:
            for change in head:
                if self._halted():
                    return self._skip_rest(plan, self._halted())
                parent = self._failed_parent(change)
                if parent:  # skipped, and what needs it is skipped in turn
                    self._report(change, OutcomeStatus.SKIPPED, parent)
                    continue
                if not self._config_change(change) and isinstance(change.target, SetupTarget):
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
            match change.target:
                case SetupTarget():
                    self._post_setup()
                case EntityTarget(entity=ConfigEntity() as entity):
                    self._write_entity(change.action, entity)
                case _:
                    raise ApplyError(f"{change.describe()}: not a config write")
        except LoaderError as error:
            if isinstance(change.target, EntityTarget):
                self.failed_refs.add(change.target.ref)
            self._failed(change, error)
            return False
        self._report(change, OutcomeStatus.DONE)
        return True

    def _failed_parent(self, change: Change) -> str:
        """An indicator waits for its category: why it cannot go, or ''."""
        match change.target:
            case EntityTarget(entity=ConfigEntity(kind=EntityKind.INDICATOR) as entity):
                category = str(entity.body.get("category_id"))
            case _:
                return ""
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

    def _write_entity(self, action: Action, entity: ConfigEntity) -> None:
        if action is Action.CREATE:
            write = self.backend.create_entity(entity.kind, entity.body)
            if not write.created and not stored_matches(entity.body, write.stored):
                self.backend.update_entity(entity.kind, entity.id, entity.body)
        else:
            self.backend.update_entity(entity.kind, entity.id, entity.body)
        self._record(EntityRecorded(RecordedEntity.of(entity)))

    def _entity_delete(self, change: Change) -> None:
        if not isinstance(change.target, EntityTarget):
            self._failed(change, ApplyError(f"{change.describe()}: not a config delete"))
            return
        kind, entity_id = change.target.kind, change.target.id
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

    def _datasets(self, blocks: Mapping[DatasetKey, _Block]) -> None:
        needs_data = {key for key, block in blocks.items() if block.writes_data}
        waiting = dict(blocks)
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="apply") as pool:
            running: set[Future[None]] = set()

            def submit(key: DatasetKey, dataset: Dataset | None) -> None:
                block = waiting.pop(key)
                blocked = self._blocked(block)
                if blocked:
                    self._skip_all(block.changes, blocked)
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
                    first, *rest = waiting.pop(key).changes
                    self._report(first, OutcomeStatus.FAILED,
                                 "not in its data file any more: plan again")  # fmt: skip
                    self._skip_all(rest, "its dataset was not written")
            except BaseException:
                for future in running:
                    future.cancel()
                raise
            finally:
                _drain(running)

    def _blocked(self, block: _Block) -> str:
        """Why a dataset write cannot go (a config entity it points at failed), or ''.
        Deletes, grants and revokes depend on no config."""
        if not block.writes_data:
            return ""
        for kind, entity_id in used_ids(block.key).items():
            if (kind, entity_id) in self.failed_refs:
                return f"its {kind.singular} {entity_id} failed"
        return ""

    def _block(self, block: _Block, dataset: Dataset | None) -> None:
        if self._halted():
            self._skip_all(block.changes, self._halted())
            return
        written: int | None = None  # the mdid this block's write gives its grants
        if block.head is not None:
            change, target = block.head
            try:
                written = self._dataset_change(change, target, dataset)
            except Exception as error:  # a worker's failure must reach the summary
                self.failed_keys.add(target.key)
                self._failed(change, error)
                self._skip_all([c for c, _ in block.grants], "its dataset write failed")
                return
            self._report(change, OutcomeStatus.DONE)
        for index, (change, grant) in enumerate(block.grants):
            if self._halted():
                self._skip_all([c for c, _ in block.grants[index:]], self._halted())
                return
            mdid = written if written is not None else grant.mdid
            try:
                if mdid is None:  # a grant of a dataset neither written here nor recorded
                    raise ApplyError(f"{change.describe()}: no dataset to grant: plan again")
                if change.action is Action.DELETE:
                    self.backend.revoke(grant.scope, mdid)
                else:
                    self.backend.grant(grant.scope, mdid)
            except Exception as error:
                self._failed(change, error)
                continue
            granted = change.action is not Action.DELETE
            self._record(GrantChanged(grant.key, grant.scope, mdid, granted))
            self._report(change, OutcomeStatus.DONE)

    def _dataset_change(
        self, change: Change, target: DatasetTarget, dataset: Dataset | None
    ) -> int | None:
        """Write or delete one dataset: the mdid written, or None for a delete."""
        if change.action is Action.DELETE:
            self.backend.delete_dataset(target.summary)
            self._record(DatasetDropped(target.key))
            return None
        if dataset is None or dataset.summary.digest != target.summary.digest:
            raise ApplyError(f"{target.key}: its data changed since the plan: plan again")
        if change.action is Action.CREATE:
            write = self.backend.create_dataset(dataset)
            # 303: the identity exists with whatever content it has (Hazard 9): replace it.
            mdid = write.mdid if write.created else self.backend.update_dataset(dataset)
        else:
            mdid = self.backend.update_dataset(dataset)
        self._record(DatasetRecorded(RecordedDataset(dataset.summary, mdid)))
        return mdid


@dataclass
class _Block:
    """One dataset identity's changes: its write or delete (if any) first, then its
    grants; run as one unit by one worker."""

    key: DatasetKey
    head: tuple[Change, DatasetTarget] | None = None
    grants: list[tuple[Change, GrantTarget]] = field(default_factory=list)

    @property
    def changes(self) -> list[Change]:
        head = [] if self.head is None else [self.head[0]]
        return head + [change for change, _ in self.grants]

    @property
    def writes_data(self) -> bool:
        return self.head is not None and self.head[0].action is not Action.DELETE


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


def _blocks(changes: Iterable[Change]) -> dict[DatasetKey, _Block]:
    """The dataset and grant changes per dataset identity, in plan order."""
    blocks: dict[DatasetKey, _Block] = {}
    for change in changes:
        match change.target:
            case DatasetTarget() as target:
                blocks.setdefault(target.key, _Block(target.key)).head = (change, target)
            case GrantTarget() as target:
                blocks.setdefault(target.key, _Block(target.key)).grants.append((change, target))
    return blocks
