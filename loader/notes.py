"""What a plan or a status says beside its changes, as data: one frozen type per kind of
note, made by the planner and the refresh, worded for people by `render.note_text` (and
so only there). Standard library and `model` only, like the planner.
"""

from __future__ import annotations

from dataclasses import dataclass

from loader.model import DatasetKey, EntityKind


@dataclass(frozen=True)
class NotRefreshed:
    """Planned against the state record alone (--offline)."""


@dataclass(frozen=True)
class ConfigLeftOut:
    """Config changes that --only leaves out (no selected dataset uses them)."""

    count: int


@dataclass(frozen=True)
class KeptInUse:
    """A config entity removed from the manifest, kept while datasets use it."""

    kind: EntityKind
    name: str  # its label, or its id


@dataclass(frozen=True)
class GrantsDroppedByUpdate:
    """An update drops every mapping but admin's: these grants go without a revoke."""

    key: DatasetKey
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class GrantsUnchecked:
    """Scopes whose grants no reader credential can check."""

    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Duplicated:
    """Identities on the server more than once (the first by key, and its mdids)."""

    count: int
    key: DatasetKey
    mdids: tuple[int, ...]


@dataclass(frozen=True)
class Unexplained:
    """Datasets of the manifest on the server that no apply of this record wrote."""

    count: int
    key: DatasetKey
    mdid: int


@dataclass(frozen=True)
class Unrecorded:
    """Datasets of one indicator at one resolution on the server, not in the record."""

    indicator_id: str
    srid: int
    trid: int
    count: int


@dataclass(frozen=True)
class NoSuchResolution:
    """Recorded or desired datasets whose temporal resolution the config lacks."""

    indicator_id: str
    trid: int


Note = (
    NotRefreshed | ConfigLeftOut | KeptInUse | GrantsDroppedByUpdate | GrantsUnchecked
    | Duplicated | Unexplained | Unrecorded | NoSuchResolution
)  # fmt: skip
