"""desired + actual -> Plan: every change the target needs, in the order apply takes them,
each with its reason. Pure: no I/O, no clock; the same inputs give the same plan.

Order: the setup (languages can only be written by posting the whole config, so a
fresh deployment or a language change posts it all), then config entities in dependency
order, then per dataset its write and at once its grants, then dataset deletes, then
config deletes in reverse dependency order. Only what the record says the loader applied
is ever deleted; the automatic `admin` mapping is never touched.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from fnmatch import fnmatchcase
from typing import Any, ClassVar

from loader.contract import ADMIN, SEES_EVERYTHING, WRITE_DATA, entity_write_scope, role_for
from loader.model import (
    ConfigEntity,
    DatasetKey,
    DatasetSummary,
    EntityKind,
    LoaderError,
    ResolutionLabels,
    Role,
    by_key,
    stored_matches,
)
from loader.notes import (
    ConfigLeftOut,
    Duplicated,
    GrantsDroppedByUpdate,
    GrantsUnchecked,
    KeptInUse,
    Note,
    NotRefreshed,
    Unexplained,
    Unrecorded,
)
from loader.record import (
    Actual,
    Desired,
    EntityRef,
    RecordedDataset,
    RecordedEntity,
    entity_ref,
    used_ids,
)
from loader.timegrid import Span


class Action(enum.Enum):
    """What happens to one thing; the value is its display symbol."""

    CREATE = "+"
    UPDATE = "~"
    DELETE = "-"
    REPLACE = "-/+"

    @property
    def word(self) -> str:
        return self.name.lower()


class Reason(enum.Enum):
    NEW = "new"
    CONTENT_CHANGED = "content changed"
    REVISION_CHANGED = "revision changed"
    REMOVED = "removed from the manifest"
    DRIFTED = "drifted"
    REGRANT = "re-grant after update"


class Subject(enum.Enum):
    SETUP = "setup"
    ENTITY = "entity"
    DATASET = "dataset"
    GRANT = "grant"


@dataclass(frozen=True)
class SetupTarget:
    """The whole config, languages included: the only way to write languages. `entities`
    is how many it posts (each is checked after, one request each: loader/progress.py
    weighs the change by them); a measure of the work, not part of what the change is."""

    entities: int = field(default=0, compare=False)
    subject: ClassVar[Subject] = Subject.SETUP

    def describe(self) -> str:
        return "setup (the whole config, languages included)"


@dataclass(frozen=True)
class EntityTarget:
    """A config entity: the desired one, to create or update, or the recorded one, to
    delete (its body is gone from the manifest)."""

    entity: ConfigEntity | RecordedEntity
    subject: ClassVar[Subject] = Subject.ENTITY

    @property
    def kind(self) -> EntityKind:
        return self.entity.kind

    @property
    def id(self) -> int | str:
        return self.entity.id

    @property
    def ref(self) -> tuple[EntityKind, str]:
        return (self.entity.kind, str(self.entity.id))

    def describe(self) -> str:
        return f"{self.kind.singular} {self.entity.label or self.id}"


@dataclass(frozen=True)
class DatasetTarget:
    """A dataset: the summary to write (desired), or to delete (recorded), and what the
    record holds of it (an update or a delete)."""

    summary: DatasetSummary
    recorded: RecordedDataset | None = None
    subject: ClassVar[Subject] = Subject.DATASET

    @property
    def key(self) -> DatasetKey:
        return self.summary.key

    def describe(self) -> str:
        return f"dataset {self.key}"


@dataclass(frozen=True)
class GrantTarget:
    """One scope's mapping to one dataset. `mdid` is the recorded one of a dataset the
    plan keeps; None when the dataset is written in the same apply (its write gives it)."""

    scope: str
    key: DatasetKey
    mdid: int | None = None
    subject: ClassVar[Subject] = Subject.GRANT

    def describe(self) -> str:
        return f"grant {self.scope} -> {self.key}"


Target = SetupTarget | EntityTarget | DatasetTarget | GrantTarget


@dataclass(frozen=True)
class Change:
    """One action on one target, with its reason (and, for people, a detail)."""

    action: Action
    reason: Reason
    target: Target
    detail: str = ""

    @property
    def subject(self) -> Subject:
        return self.target.subject

    @property
    def destructive(self) -> bool:
        return self.action in (Action.DELETE, Action.REPLACE)

    @property
    def role(self) -> Role:
        """The credential the change is written with."""
        match self.target:
            case DatasetTarget() | GrantTarget():
                return role_for(WRITE_DATA)
            case EntityTarget(entity=entity):
                update = self.action is Action.UPDATE
                return role_for(entity_write_scope(entity.kind, update=update))
            case SetupTarget():
                return role_for(ADMIN)

    def describe(self) -> str:
        """The thing changed, in words: `dataset residents.residents srid=2 ...`."""
        return self.target.describe()


@dataclass(frozen=True)
class Selector:
    """`--only`: narrows a plan to some datasets (their grants with them).

    indicator=GLOB, category=ID, dates=FROM..UNTIL (ISO dates or months; either end may
    be left open; UNTIL's whole day, month or year included). Several selectors must all
    hold."""

    indicator: str | None = None
    category: str | None = None
    dates: Span | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Selector:
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise LoaderError(f"--only {text!r}: expected indicator=GLOB, category=ID or "
                              "dates=FROM..UNTIL")  # fmt: skip
        if name == "indicator":
            return cls(indicator=value, text=text)
        if name == "category":
            return cls(category=value, text=text)
        if name == "dates":
            start, dots, end = value.partition("..")
            if not dots:
                start = end = value
            span = Span(first=_bound(start, text, False), end=_bound(end, text, True))
            return cls(dates=span, text=text)
        raise LoaderError(f"--only {text!r}: unknown selector {name!r} "
                          "(indicator, category or dates)")  # fmt: skip

    def selects(self, key: DatasetKey) -> bool:
        if self.indicator is not None and not fnmatchcase(key.indicator_id, self.indicator):
            return False
        if self.category is not None and key.category_id != self.category:
            return False
        return self.dates is None or self.dates.holds(key.dt)


def _bound(text: str, selector: str, upper: bool) -> datetime | None:
    """An ISO date (YYYY-MM-DD), month (YYYY-MM) or year as a moment; an upper bound is
    the start of the period after it (exclusive)."""
    text = text.strip()
    if not text:
        return None
    parts = text.split("-")
    try:
        numbers = [int(p) for p in parts]
        if len(numbers) == 3:
            day = date(*numbers)
            if upper:
                day = date.fromordinal(day.toordinal() + 1)
        elif len(numbers) == 2:
            year, month = numbers
            day = date(year, month, 1)
            if upper:
                day = date(year + month // 12, month % 12 + 1, 1)
        elif len(numbers) == 1:
            day = date(numbers[0] + (1 if upper else 0), 1, 1)
        else:
            raise ValueError(text)
    except ValueError:
        raise LoaderError(f"--only {selector!r}: {text!r} is not a date (YYYY-MM-DD, YYYY-MM "
                          "or YYYY)") from None  # fmt: skip
    return datetime(day.year, day.month, day.day)


def selected(selectors: Iterable[Selector], key: DatasetKey) -> bool:
    return all(s.selects(key) for s in selectors)


@dataclass(frozen=True)
class Origin:
    """What a plan was made from, as its file records it: the target (name and URL), the
    manifest (as shown, and where it is), whether data was verified, and the fingerprint
    of every input (loader/planfile.py), without which a saved plan does not apply."""

    target: str
    url: str
    manifest: str  # relative to the working directory, for people
    manifest_path: str  # absolute, to find it again beside a saved plan
    verify: bool
    fingerprint: str
    labels: ResolutionLabels = field(default_factory=ResolutionLabels)  # `srid=2 (District)`


NO_ORIGIN = Origin("", "", "", "", False, "")  # a plan made by make_plan alone


@dataclass(frozen=True)
class Plan:
    """The changes in apply order (no-ops are only counted)."""

    changes: tuple[Change, ...]
    unchanged: Mapping[str, int]  # per subject value: entity, dataset, grant
    notes: tuple[Note, ...] = ()  # worded by render.note_text
    refreshed: bool = False
    only: tuple[str, ...] = ()
    origin: Origin = NO_ORIGIN  # set by the run that made it

    def made_from(self, origin: Origin) -> Plan:
        return replace(self, origin=origin)

    # In a notebook (loader/notebook.py, imported only there).
    def _repr_html_(self) -> str:
        from loader.notebook import plan_html

        return plan_html(self)

    def to_frame(self) -> Any:
        """A pandas DataFrame: one row per change."""
        from loader.notebook import plan_frame

        return plan_frame(self)

    # The Python API's names from before `origin`.
    @property
    def fingerprint(self) -> str:
        return self.origin.fingerprint

    @property
    def target(self) -> str:
        return self.origin.target

    @property
    def manifest(self) -> str:
        return self.origin.manifest

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.destructive)

    def counts(self) -> dict[str, int]:
        """Changes per action word."""
        found = {action.word: 0 for action in Action}
        for change in self.changes:
            found[change.action.word] += 1
        return found

    def roles(self) -> list[Role]:
        """The credentials an apply of this plan needs (a refresh always reads)."""
        needed = {c.role for c in self.changes}
        if self.changes:
            needed.add(Role.READER)
        return [role for role in Role if role in needed]


# ---------------------------------------------------------------------------------------
# The diff


def make_plan(desired: Desired, actual: Actual, only: Iterable[Selector] = ()) -> Plan:
    selectors = tuple(only)
    builder = _PlanBuilder(desired, actual, selectors)
    return builder.build()


class _PlanBuilder:
    def __init__(self, desired: Desired, actual: Actual, selectors: tuple[Selector, ...]):
        self.desired = desired
        self.actual = actual
        self.record = actual.record
        self.observed = actual.observed
        self.selectors = selectors
        self.unchanged = {s.value: 0 for s in (Subject.ENTITY, Subject.DATASET, Subject.GRANT)}
        self.notes: list[Note] = []

    def build(self) -> Plan:
        setup = self.setup_change()
        head: list[Change] = []
        tail: list[Change] = []
        if setup is not None:
            head.append(setup)
        else:
            head, tail = self.entity_changes()
        datasets, deletes = self.dataset_changes()
        used = self.used_after(deletes)
        if setup is None:
            tail = self.keep_used(tail, used)
        else:
            head = [self.checked_setup(setup, used)]
        self.add_notes()
        return Plan(
            changes=tuple(head + datasets + deletes + tail),
            unchanged=self.unchanged,
            notes=tuple(self.notes),
            refreshed=self.observed.refreshed,
            only=tuple(s.text for s in self.selectors),
        )

    # -- config -----------------------------------------------------------------------------

    def setup_change(self) -> Change | None:
        """The whole-config post, when languages must be written (the only way to)."""
        languages = [e for e in self.desired.entities if e.kind is EntityKind.LANGUAGE]
        recorded = {
            ref: e for ref, e in self.record.entities.items() if e.kind is EntityKind.LANGUAGE
        }
        wanted = {entity_ref(e.kind, e.id): e for e in languages}
        server = self.observed.languages
        reasons = []
        for ref, entity in wanted.items():
            if ref not in recorded:
                stored = None if server is None else server.get(ref[1])
                if stored is None or not stored_matches(entity.body, stored):
                    reasons.append(f"language {entity.label} new")
            elif recorded[ref].digest != entity.digest:
                reasons.append(f"language {entity.label} changed")
            elif server is not None and ref[1] not in server:
                reasons.append(f"language {entity.label} missing on the server")
            elif server is not None and not stored_matches(entity.body, server[ref[1]]):
                reasons.append(f"language {entity.label} differs on the server")
        reasons += [
            f"language {e.label} removed" for ref, e in recorded.items() if ref not in wanted
        ]
        if not reasons:
            return None
        # Fresh: nothing recorded and nothing on the server (no config, no dataset).
        fresh = self.record.empty and not (
            server or self.observed.data_providers or self.observed.unrecorded
        )
        counts = _entity_counts(self.desired.entities)
        if fresh:
            setup = SetupTarget(len(self.desired.entities))
            return Change(Action.CREATE, Reason.NEW, setup, f"fresh deployment: {counts}")
        drift = server is not None and any("server" in r for r in reasons)
        reason = Reason.DRIFTED if drift else Reason.CONTENT_CHANGED
        return Change(
            Action.REPLACE, reason, SetupTarget(len(self.desired.entities)),
            f"{'; '.join(reasons)}; posts {counts}",
        )  # fmt: skip

    def entity_changes(self) -> tuple[list[Change], list[Change]]:
        """Creates and updates in dependency order, and deletes in reverse."""
        writes: list[Change] = []
        wanted: set[EntityRef] = set()
        providers = self.observed.data_providers
        for entity in sorted(self.desired.entities, key=_dependency_order):
            ref = entity_ref(entity.kind, entity.id)
            wanted.add(ref)
            if entity.kind is EntityKind.LANGUAGE:
                self.unchanged[Subject.ENTITY.value] += 1  # handled by the setup
                continue
            recorded = self.record.entities.get(ref)
            target = EntityTarget(entity)
            change = None
            if recorded is None:
                change = Change(Action.CREATE, Reason.NEW, target)
            elif recorded.digest != entity.digest:
                change = Change(Action.UPDATE, Reason.CONTENT_CHANGED, target,
                                _label_change(recorded, entity))  # fmt: skip
            elif entity.kind is EntityKind.DATA_PROVIDER and providers is not None:
                stored = providers.get(ref[1])
                if stored is None:
                    change = Change(Action.CREATE, Reason.DRIFTED, target, "missing on the server")
                elif not stored_matches(entity.body, stored):
                    change = Change(Action.UPDATE, Reason.DRIFTED, target, "differs on the server")
            if change is None:
                self.unchanged[Subject.ENTITY.value] += 1
                continue
            writes.append(change)
        deletes = [
            Change(Action.DELETE, Reason.REMOVED, EntityTarget(recorded))
            for ref, recorded in sorted(
                self.record.entities.items(),
                key=lambda item: _dependency_order(item[1]),
                reverse=True,
            )
            if ref not in wanted and recorded.kind is not EntityKind.LANGUAGE
        ]
        if self.selectors:
            # Only the config the selected datasets point at (what their writes need).
            needed = {
                (kind, entity_id)
                for key in self.desired.datasets
                if selected(self.selectors, key)
                for kind, entity_id in used_ids(key).items()
            }
            kept = [w for w in writes if _entity_ref(w) in needed]
            left = len(writes) - len(kept) + len(deletes)
            if left:
                self.notes.append(ConfigLeftOut(left))
            writes, deletes = kept, []
        return writes, deletes

    def used_after(self, dataset_deletes: list[Change]) -> set[tuple[EntityKind, str]]:
        """The config entities datasets still use once this plan is applied: recorded
        ones it does not delete, desired ones, and those on the server it does not know."""
        going = {c.target.key for c in dataset_deletes if isinstance(c.target, DatasetTarget)}
        remaining = [k for k in self.record.datasets if k not in going]
        remaining += list(self.desired.datasets)
        used = {(kind, entity_id) for key in remaining for kind, entity_id in used_ids(key).items()}
        for indicator, srid, trid in self.observed.unrecorded:
            used |= {(EntityKind.INDICATOR, indicator), (EntityKind.SPATIAL_RESOLUTION, str(srid)),
                     (EntityKind.TEMPORAL_RESOLUTION, str(trid))}  # fmt: skip
        return used

    def checked_setup(self, setup: Change, used: set[tuple[EntityKind, str]]) -> Change:
        """A whole-config post also removes every entity the manifest dropped: say which,
        and refuse while a remaining dataset uses one (it would vanish from the UI)."""
        wanted = {entity_ref(e.kind, e.id) for e in self.desired.entities}
        recorded = sorted(self.record.entities.values(), key=_dependency_order)
        dropped = [e for e in recorded if e.ref not in wanted]
        if not dropped:
            return setup
        still = [e for e in dropped if (e.kind, str(e.id)) in used]
        if still:
            names = ", ".join(f"{e.kind.singular} {e.label}" for e in still)
            raise LoaderError(
                f"the setup must be posted whole ({setup.detail.split(';')[0]}), which would "
                f"remove {names}, still used by datasets: delete those datasets in the same "
                "plan (no --only), or keep them in the config"
            )
        names = ", ".join(f"{e.kind.singular} {e.label}" for e in dropped)
        return replace(setup, detail=f"{setup.detail}; removes {names}")

    def keep_used(self, deletes: list[Change], used: set[tuple[EntityKind, str]]) -> list[Change]:
        """No config entity is deleted while a remaining dataset uses it."""
        kept = []
        for change in deletes:
            match change.target:
                case EntityTarget(entity=entity) if _entity_ref(change) in used:
                    self.notes.append(KeptInUse(entity.kind, entity.label or str(entity.id)))
                case _:
                    kept.append(change)
        return kept

    # -- datasets and grants --------------------------------------------------------------

    def dataset_changes(self) -> tuple[list[Change], list[Change]]:
        writes: list[Change] = []
        observed = self.observed
        for key, summary in sorted(self.desired.datasets.items(), key=by_key):
            if not selected(self.selectors, key):
                continue
            recorded = self.record.datasets.get(key)
            scopes = self.desired.scopes.get(key, frozenset()) - {SEES_EVERYTHING}
            if recorded is None:
                writes.append(Change(Action.CREATE, Reason.NEW, DatasetTarget(summary)))
            elif (update := self.dataset_update(summary, recorded)) is not None:
                writes.append(update)
            else:
                self.unchanged[Subject.DATASET.value] += 1
                writes += self.grant_changes(key, recorded, scopes)
                continue
            for scope in sorted(scopes):
                # New to the record (rules widened, or an earlier grant never made it),
                # else granted again because the write drops it.
                fresh = recorded is None or scope not in recorded.scopes
                reason = Reason.NEW if fresh else Reason.REGRANT
                writes.append(Change(Action.CREATE, reason, GrantTarget(scope, key)))
            if recorded is not None:
                dropped = recorded.scopes - scopes
                if dropped and key not in observed.vanished:
                    # PATCH drops every non-admin mapping: nothing to revoke, but say so.
                    self.notes.append(GrantsDroppedByUpdate(key, tuple(sorted(dropped))))
        deletes = [
            Change(
                Action.DELETE,
                Reason.REMOVED,
                DatasetTarget(recorded.summary, recorded),
                f"{recorded.summary.stats.count:,} values; grants to "
                f"{', '.join(sorted(recorded.scopes)) or 'admin only'} go with it",
            )
            for key, recorded in sorted(self.record.datasets.items(), key=by_key)
            if key not in self.desired.datasets and selected(self.selectors, key)
        ]
        return writes, deletes

    def dataset_update(self, summary: DatasetSummary, recorded: RecordedDataset) -> Change | None:
        """The update a recorded dataset needs, with its reason, or None."""
        key = summary.key
        before = recorded.summary
        if key in self.observed.vanished:
            reason = Reason.DRIFTED
            detail = (
                f"mdid {recorded.mdid} no longer on the server (updated or deleted by other means)"
            )
        elif before.digest != summary.digest and before.revision != summary.revision:
            reason, detail = (
                Reason.REVISION_CHANGED,
                f"revision {before.revision} -> {summary.revision}",
            )
        elif before.digest != summary.digest:
            reason, detail = Reason.CONTENT_CHANGED, ""
        elif key in self.observed.content_differs:
            reason, detail = Reason.DRIFTED, "content on the server differs from the manifest's"
        else:
            return None
        return Change(Action.UPDATE, reason, DatasetTarget(summary, recorded), detail)

    def grant_changes(
        self, key: DatasetKey, recorded: RecordedDataset, scopes: frozenset[str]
    ) -> list[Change]:
        changes = []
        for scope in sorted(scopes | recorded.scopes):
            mdid = recorded.mdid
            target = GrantTarget(scope, key, mdid)
            if scope not in recorded.scopes:
                changes.append(Change(Action.CREATE, Reason.NEW, target))
            elif scope not in scopes:
                changes.append(Change(Action.DELETE, Reason.REMOVED, target))
            elif (scope, key) in self.observed.grants_missing:
                changes.append(Change(Action.CREATE, Reason.DRIFTED, target,
                                      f"a {scope} reader cannot see mdid {mdid}"))  # fmt: skip
            else:
                self.unchanged[Subject.GRANT.value] += 1
        return changes

    # -- notes ------------------------------------------------------------------------------

    def add_notes(self) -> None:
        observed = self.observed
        self.notes += observed.notes
        if not observed.refreshed:
            self.notes.append(NotRefreshed())
            return
        scopes = {s for d in self.record.datasets.values() for s in d.scopes}
        scopes |= {s for v in self.desired.scopes.values() for s in v} - {SEES_EVERYTHING}
        unchecked = sorted(scopes - observed.scopes_checked)
        if unchecked:
            self.notes.append(GrantsUnchecked(tuple(unchecked)))
        if observed.duplicated:
            key, mdids = min(observed.duplicated.items())
            self.notes.append(Duplicated(len(observed.duplicated), key, tuple(sorted(mdids))))
        if observed.unexplained:
            key, mdid = min(observed.unexplained.items())
            self.notes.append(Unexplained(len(observed.unexplained), key, mdid))
        for (indicator, srid, trid), count in sorted(observed.unrecorded.items()):
            self.notes.append(Unrecorded(indicator, srid, trid, count))


_KIND_ORDER = {kind: index for index, kind in enumerate(EntityKind)}


def _dependency_order(entity: ConfigEntity | RecordedEntity) -> tuple[int, str]:
    return (_KIND_ORDER[entity.kind], str(entity.id))


def _entity_ref(change: Change) -> tuple[EntityKind, str] | None:
    return change.target.ref if isinstance(change.target, EntityTarget) else None


def _label_change(recorded: RecordedEntity, entity: ConfigEntity) -> str:
    body_label = entity.body.get("label")
    renamed = recorded.body_label is not None and recorded.body_label != body_label
    if renamed and isinstance(body_label, str):
        return f"label {recorded.body_label!r} -> {body_label!r}"
    return "definition changed"


def _entity_counts(entities: Iterable[ConfigEntity]) -> str:
    counts: dict[EntityKind, int] = {}
    for entity in entities:
        counts[entity.kind] = counts.get(entity.kind, 0) + 1
    return ", ".join(
        f"{n} {kind.singular if n == 1 else kind.value.replace('_', ' ')}" for kind, n in sorted(
            counts.items(), key=lambda item: _KIND_ORDER[item[0]])
    )  # fmt: skip


__all__ = [
    "Action",
    "Change",
    "DatasetTarget",
    "EntityTarget",
    "GrantTarget",
    "Plan",
    "Reason",
    "Selector",
    "SetupTarget",
    "Subject",
    "Target",
    "make_plan",
]
