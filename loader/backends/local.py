"""The embedded backend (`local:PATH`): the Backend protocol over the store, in-process.

It answers exactly what the real service answers (the store is shared with `serve`),
checks the caller's scopes per call as the service does, and shows only what the
caller's permissions may see. Datasets go to the store as canonical nanos directly, with
no JSON on the way, which is what makes it fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from loader.backends import oslock
from loader.backends.store import Incoming, InvalidBody, Principal, Reply, Store
from loader.contract import (
    ADMIN,
    CSV_CATEGORIES,
    READ_FREE_DATA,
    ROLE_SCOPES,
    WRITE_DATA,
    entity_write_scope,
)
from loader.model import (
    Backend,
    BackendError,
    Content,
    Dataset,
    DatasetSummary,
    DatasetWrite,
    EntityKind,
    EntityWrite,
    ExactRow,
    Identity,
    LoaderError,
    QueryRange,
    Role,
    ScopeError,
    SetupView,
    content_of,
    exact_rows,
    metadata_of,
    plural,
)

APPLY_LOCK_SUFFIX = ".apply.lock"  # the sidecar beside the database that apply locks


def apply_lock(path: str, who: str | None = None) -> contextlib.AbstractContextManager[None]:
    """One writer per embedded backend: the operating-system lock on the database at
    `path` that an apply holds from before it opens the database until it ends, so that
    two applies with different state records (whose own locks cannot see each other)
    never write one database at once; the second refuses at once, naming the first (see
    oslock.py). The `local:` kind's writer lock (factory.py); a remote backend is its
    server's to guard.

    Only apply takes it. plan, status and validate write nothing. import writes its state
    record only, under that record's lock, and nothing to the backend: what an apply
    writes meanwhile it reads as it finds it, and a dataset rewritten behind it is drift
    that the next plan sees (its recorded mdid vanished) and repairs."""
    return oslock.exclusive(path + APPLY_LOCK_SUFFIX, f"local:{path}", who)


def scope_message(scope: str) -> str:
    return f"Invalid token: Required permissions ['{scope}'] not present"


def entity_path(kind: EntityKind, entity_id: int | str | None = None) -> str:
    return f"/{kind.value}" + ("" if entity_id is None else f"/{entity_id}")


class LocalBackend(Backend):
    """A FlowKit-UI backend in one SQLite file, as seen by one principal."""

    def __init__(
        self,
        path: str | Path,
        principal: Principal | None = None,
        *,
        quirks: bool = False,
        store: Store | None = None,
    ) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.owns_store = store is None  # as_principal's views share their opener's
        self.store = store or Store(str(path), quirks=quirks)
        self.principal = principal or Principal.full()

    def as_principal(self, principal: Principal) -> LocalBackend:
        """The same backend seen by someone else (another token)."""
        return LocalBackend(self.store.path, principal, store=self.store)

    # -- the connection -----------------------------------------------------------------

    def wait_ready(self, seconds: float) -> str:
        view = self.read_setup()
        return (
            f"embedded backend at {self.store.path}: {plural(len(view.languages), 'language')}, "
            f"{plural(len(view.data_providers), 'data provider')}"
        )

    def identities(self, roles: Iterable[Role]) -> dict[Role, Identity | LoaderError]:
        return {}  # no credentials: every call is the principal's

    def acting_as(self, roles: Iterable[Role]) -> str:
        return self.principal.subject

    def preflight(self, roles: Iterable[Role]) -> None:
        for role in roles:
            for scope in ROLE_SCOPES[role]:
                self._need(scope, f"preflight ({role.value})")

    def reader(self, scope: str) -> LocalBackend:
        """As the service would show a token with `read:free_data` and `scope`'s permission."""
        return self.as_principal(
            Principal(frozenset({READ_FREE_DATA}), frozenset({scope}), f"reader:{scope}")
        )

    def close(self) -> None:
        """This thread's connection to the database, if this backend opened the store (the
        executor's threads' connections end with their threads)."""
        if self.owns_store:
            self.store.close()

    # -- plumbing -----------------------------------------------------------------------

    def _need(self, scope: str, call: str) -> None:
        if scope not in self.principal.scopes:
            raise ScopeError(call, 401, scope_message(scope))

    @staticmethod
    def _expect(call: str, reply: Reply, *statuses: int) -> Reply:
        if reply.status not in statuses:
            raise BackendError(call, reply.status, str(reply.body))
        return reply

    # -- config -------------------------------------------------------------------------

    def read_setup(self) -> SetupView:
        body = self._expect("GET /setup", self.store.get_setup(), 200).body
        return SetupView(tuple(body["languages"]), tuple(body["data_providers"]))

    def replace_setup(self, config: Mapping[str, Any]) -> None:
        self._need(ADMIN, "POST /setup")
        self._expect("POST /setup", self.store.post_setup(config), 204)

    def create_entity(self, kind: EntityKind, body: Mapping[str, Any]) -> EntityWrite:
        call = f"POST {entity_path(kind)}"
        self._need(ADMIN, call)
        reply = self._expect(call, self.store.post_entity(kind, body), 201, 303)
        return EntityWrite(reply.status == 201, reply.body)

    def update_entity(
        self, kind: EntityKind, entity_id: int | str, body: Mapping[str, Any]
    ) -> None:
        call = f"PATCH {entity_path(kind, entity_id)}"
        self._need(entity_write_scope(kind, update=True), call)
        self._expect(call, self.store.patch_entity(kind, entity_id, body), 204)

    def delete_entity(self, kind: EntityKind, entity_id: int | str) -> None:
        call = f"DELETE {entity_path(kind, entity_id)}"
        self._need(ADMIN, call)
        self._expect(call, self.store.delete_entity(kind, entity_id), 204)

    def read_entity(self, kind: EntityKind, entity_id: int | str) -> Mapping[str, Any] | None:
        call = f"GET {entity_path(kind, entity_id)}"
        self._need(READ_FREE_DATA, call)
        reply = self._expect(call, self.store.get_entity(kind, entity_id, self.principal), 200, 404)
        return reply.body if reply.status == 200 else None

    def list_entities(self, kind: EntityKind) -> tuple[Mapping[str, Any], ...]:
        call = f"GET {entity_path(kind)}"
        self._need(READ_FREE_DATA, call)
        reply = self._expect(call, self.store.list_entities(kind, self.principal), 200)
        return tuple(reply.body[kind.value])

    def date_range(
        self, category_id: str, indicator_id: str, srid: int, trid: int
    ) -> tuple[str, ...]:
        call = f"GET /timerange/{category_id}/{indicator_id}/{srid}/{trid}"
        self._need(READ_FREE_DATA, call)
        reply = self.store.timerange(category_id, indicator_id, srid, trid, self.principal)
        return tuple(self._expect(call, reply, 200).body["all_dates"] or ())

    # -- datasets -----------------------------------------------------------------------

    @staticmethod
    def _incoming(dataset: Dataset) -> Incoming:
        summary = dataset.summary
        key = summary.key
        columns = dataset.unit_columns
        return Incoming(
            metadata=metadata_of(key, summary.revision),
            data_type=summary.data_type,
            units=list(columns[0]),
            destinations=list(columns[1]) if len(columns) > 1 else [None] * len(columns[0]),
            nanos=list(dataset.values),
        )

    def create_dataset(self, dataset: Dataset) -> DatasetWrite:
        self._need(WRITE_DATA, "POST /data")
        reply = self.store.write_dataset(self._incoming(dataset), replace=False)
        self._expect("POST /data", reply, 201, 303)
        return DatasetWrite(reply.status == 201, int(reply.body))

    def update_dataset(self, dataset: Dataset) -> int:
        self._need(WRITE_DATA, "PATCH /data")
        reply = self.store.write_dataset(self._incoming(dataset), replace=True)
        return int(self._expect("PATCH /data", reply, 201).body)

    def delete_dataset(self, summary: DatasetSummary) -> None:
        self._need(WRITE_DATA, "DELETE /data")
        key = summary.key
        body: dict[str, Any] = {
            "metadata": metadata_of(key, summary.revision),
            "data_type": summary.data_type,
            "data_input": [],
        }
        self._expect("DELETE /data", self.store.delete_dataset(body), 204)

    # -- reads --------------------------------------------------------------------------

    def _query(self, query: QueryRange, mdids_only: bool) -> Reply | None:
        """The /query answer, or None when nothing is visible in the range (404)."""
        self._need(READ_FREE_DATA, "POST /query")
        reply = self.store.query(query.body(mdids_only), self.principal)
        if reply.status == 404:
            return None
        return self._expect("POST /query", reply, 200)

    def visible_mdids(self, query: QueryRange) -> frozenset[int]:
        reply = self._query(query, mdids_only=True)
        return frozenset() if reply is None else frozenset(int(m) for m in reply.body["mdids"])

    def dataset_content(self, query: QueryRange) -> Content:
        reply = self._query(query, mdids_only=False)
        if reply is None:
            return {}
        return content_of(reply.body["data_by_date"])

    def exact_values(self, query: QueryRange) -> tuple[ExactRow, ...] | None:
        if query.category_id not in CSV_CATEGORIES:
            return None
        self._need(READ_FREE_DATA, "POST /csv")
        reply = self._expect("POST /csv", self.store.csv(query.body(False), self.principal), 200)
        return exact_rows(reply.body)

    # -- grants -------------------------------------------------------------------------

    def grant(self, scope: str, mdid: int) -> bool:
        self._need(WRITE_DATA, "POST /scope_mapping")
        reply = self._expect("POST /scope_mapping", self.store.post_mapping(scope, mdid), 201, 303)
        return reply.status == 201

    def revoke(self, scope: str, mdid: int) -> None:
        self._need(WRITE_DATA, "DELETE /scope_mapping")
        self._expect("DELETE /scope_mapping", self.store.delete_mapping(scope, mdid), 204)


__all__ = ["InvalidBody", "LocalBackend", "apply_lock"]


class AbsentBackend(Backend):
    """An embedded backend whose file does not exist yet, for commands that only read
    (plan, status, import, check): it answers as an empty service would, and creates
    nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def wait_ready(self, seconds: float) -> str:
        # Opening it would create it: that is left to apply.
        return f"embedded backend at {self.path}: no database yet (the first apply creates it)"

    def identities(self, roles: Iterable[Role]) -> dict[Role, Identity | LoaderError]:
        return {}

    def acting_as(self, roles: Iterable[Role]) -> str:
        return Principal.full().subject

    def preflight(self, roles: Iterable[Role]) -> None:
        """Nothing to check: every write is refused in any case (read-only here)."""

    def reader(self, scope: str) -> AbsentBackend:
        return self  # empty to everyone

    def close(self) -> None:
        """Nothing was opened."""

    def _refuse(self, call: str) -> BackendError:
        return BackendError(call, 0, f"local:{self.path} does not exist yet (read-only here)")

    def read_setup(self) -> SetupView:
        return SetupView((), ())

    def read_entity(self, kind: EntityKind, entity_id: int | str) -> Mapping[str, Any] | None:
        return None

    def list_entities(self, kind: EntityKind) -> tuple[Mapping[str, Any], ...]:
        return ()

    def date_range(
        self, category_id: str, indicator_id: str, srid: int, trid: int
    ) -> tuple[str, ...]:
        return ()

    def exact_values(self, query: QueryRange) -> tuple[ExactRow, ...] | None:
        raise self._refuse("POST /csv")  # no range of an empty service holds a dataset

    def visible_mdids(self, query: QueryRange) -> frozenset[int]:
        return frozenset()

    def dataset_content(self, query: QueryRange) -> Content:
        return {}

    def replace_setup(self, config: Mapping[str, Any]) -> None:
        raise self._refuse("POST /setup")

    def create_entity(self, kind: EntityKind, body: Mapping[str, Any]) -> EntityWrite:
        raise self._refuse(f"POST {entity_path(kind)}")

    def update_entity(
        self, kind: EntityKind, entity_id: int | str, body: Mapping[str, Any]
    ) -> None:
        raise self._refuse(f"PATCH {entity_path(kind, entity_id)}")

    def delete_entity(self, kind: EntityKind, entity_id: int | str) -> None:
        raise self._refuse(f"DELETE {entity_path(kind, entity_id)}")

    def create_dataset(self, dataset: Dataset) -> DatasetWrite:
        raise self._refuse("POST /data")

    def update_dataset(self, dataset: Dataset) -> int:
        raise self._refuse("PATCH /data")

    def delete_dataset(self, summary: DatasetSummary) -> None:
        raise self._refuse("DELETE /data")

    def grant(self, scope: str, mdid: int) -> bool:
        raise self._refuse("POST /scope_mapping")

    def revoke(self, scope: str, mdid: int) -> None:
        raise self._refuse("DELETE /scope_mapping")
