"""A new kind of backend gets every feature through the protocol alone: a test kind,
registered under its own URL scheme (`memory:NAME`) and written only against
`model.Backend`, runs validate, plan, apply, status, check and a second, empty plan end to
end through the CLI, with the identities, history subject, readiness line and readers it
reports itself, and every backend it opened closed again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from loader.backends import factory
from loader.backends.local import LocalBackend
from loader.cli import cli
from loader.contract import ROLE_SCOPES, SEES_EVERYTHING
from loader.model import (
    Backend,
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
    SetupConfig,
    SetupView,
    Target,
)
from tests.conftest import DATA

COMPAT = DATA / "compat" / "plans"  # a small deployment
SUBJECT = "memory-tester"


class MemoryBackend(Backend):
    """A service (any Backend: here an embedded one) behind a connection of its own: its
    own identities, readiness, scope check, readers and history subject. Only the
    protocol is used, of the service and by the loader."""

    def __init__(self, name: str, service: Backend, opened: list[MemoryBackend]) -> None:
        self.name = name
        self.service = service
        self.opened = opened
        self.closed = False
        self.calls: list[str] = []
        self.readers: list[MemoryBackend] = []
        opened.append(self)

    # -- the connection --------------------------------------------------------------------

    def wait_ready(self, seconds: float) -> str:
        view = self.service.read_setup()
        return f"memory backend {self.name}: {len(view.languages)} language(s)"

    def identities(self, roles: Iterable[Role]) -> dict[Role, Identity | LoaderError]:
        return {
            role: Identity(SUBJECT, frozenset(ROLE_SCOPES[role]), frozenset({SEES_EVERYTHING}))
            for role in roles
        }

    def acting_as(self, roles: Iterable[Role]) -> str:
        return SUBJECT

    def preflight(self, roles: Iterable[Role]) -> None:
        for role, identity in self.identities(roles).items():
            assert isinstance(identity, Identity)
            if not set(ROLE_SCOPES[role]) <= identity.scopes:
                raise ScopeError(f"preflight ({role.value})", 403, "scope missing")

    def reader(self, scope: str) -> Backend | None:
        seen = self.service.reader(scope)
        if seen is None:
            return None
        self.readers.append(MemoryBackend(f"{self.name}:{scope}", seen, self.opened))
        return self.readers[-1]

    def close(self) -> None:  # its readers with it, as the protocol says
        for reader in self.readers:
            reader.close()
        self.closed = True

    # -- the service -----------------------------------------------------------------------

    def _call(self, name: str) -> Backend:
        self.calls.append(name)
        return self.service

    def read_setup(self) -> SetupView:
        return self._call("read_setup").read_setup()

    def replace_setup(self, config: Mapping[str, Any]) -> None:
        self._call("replace_setup").replace_setup(config)

    def create_entity(self, kind: EntityKind, body: Mapping[str, Any]) -> EntityWrite:
        return self._call("create_entity").create_entity(kind, body)

    def update_entity(
        self, kind: EntityKind, entity_id: int | str, body: Mapping[str, Any]
    ) -> None:
        self._call("update_entity").update_entity(kind, entity_id, body)

    def delete_entity(self, kind: EntityKind, entity_id: int | str) -> None:
        self._call("delete_entity").delete_entity(kind, entity_id)

    def read_entity(self, kind: EntityKind, entity_id: int | str) -> Mapping[str, Any] | None:
        return self._call("read_entity").read_entity(kind, entity_id)

    def create_dataset(self, dataset: Dataset) -> DatasetWrite:
        return self._call("create_dataset").create_dataset(dataset)

    def update_dataset(self, dataset: Dataset) -> int:
        return self._call("update_dataset").update_dataset(dataset)

    def delete_dataset(self, summary: DatasetSummary) -> None:
        self._call("delete_dataset").delete_dataset(summary)

    def list_entities(self, kind: EntityKind) -> tuple[Mapping[str, Any], ...]:
        return self._call("list_entities").list_entities(kind)

    def date_range(
        self, category_id: str, indicator_id: str, srid: int, trid: int
    ) -> tuple[str, ...]:
        return self._call("date_range").date_range(category_id, indicator_id, srid, trid)

    def visible_mdids(self, query: QueryRange) -> frozenset[int]:
        return self._call("visible_mdids").visible_mdids(query)

    def exact_values(self, query: QueryRange) -> tuple[ExactRow, ...] | None:
        return self._call("exact_values").exact_values(query)

    def dataset_content(self, query: QueryRange) -> Content:
        return self._call("dataset_content").dataset_content(query)

    def grant(self, scope: str, mdid: int) -> bool:
        return self._call("grant").grant(scope, mdid)

    def revoke(self, scope: str, mdid: int) -> None:
        self._call("revoke").revoke(scope, mdid)


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[MemoryBackend]:
    """The `memory:` kind registered for one test (its services in tmp_path), and a
    manifest targeting `memory:deploy` as the working directory's deploy.yaml; the list of
    every backend the kind opened."""
    opened: list[MemoryBackend] = []

    def open_memory(target: Target, setup: SetupConfig, opening: factory.Opening) -> Backend:
        name = target.url.removeprefix("memory:")
        return MemoryBackend(name, LocalBackend(tmp_path / f"{name}.db"), opened)

    kind = factory.BackendKind("memory:NAME", r"memory:\w+", open_memory, needs_credentials=False)
    monkeypatch.setitem(factory.KINDS, "memory", kind)
    for name in ("config.json", "movements_daily.csv", "residents_monthly.csv"):
        shutil.copy(COMPAT / name, tmp_path / name)
    text = (COMPAT / "compat.yaml").read_text()
    (tmp_path / "deploy.yaml").write_text(
        text.replace("local:\n    url: local:compat.db", "memory:\n    url: memory:deploy")
    )
    monkeypatch.chdir(tmp_path)
    return opened


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_a_kind_registered_by_scheme_runs_every_command_through_the_protocol(
    memory: list[MemoryBackend],
) -> None:
    assert run("validate", "--no-data", "deploy.yaml")[0] == 0
    code, output = run("plan", "deploy.yaml")
    assert code == 0
    assert output.splitlines()[0] == (
        "Plan for deploy.yaml on target memory (refreshed against the server)"
    )
    assert "Plan: 9 to create, 0 to update, 0 to delete" in output
    assert run("apply", "deploy.yaml", "--yes", "-q") == (
        0,
        "Apply complete: 9 done, 0 failed, 0 skipped\n",
    )
    writes = {call for backend in memory for call in backend.calls}
    assert {"replace_setup", "create_dataset", "grant", "visible_mdids"} <= writes
    # The history names who the kind says it acts as.
    record = json.loads(Path("state/record.json").read_text())
    assert record["history"][-1]["who"] == SUBJECT
    code, output = run("status", "deploy.yaml")
    assert code == 0
    assert (
        "residents.residents srid=2 (District) trid=2 (Month): 2021-01..2021-02, 2 datasets, "
        "4 values" in output
    )
    assert f"by {SUBJECT} (complete" in output
    code, output = run("check", "deploy.yaml")
    shown = f"{SUBJECT}, scopes {{}}, sees admin"
    assert (code, output.splitlines()[:4]) == (
        0,
        [
            "memory: memory backend deploy: 1 language(s)",
            "  admin: " + shown.format("admin"),
            "  updater: " + shown.format("write:data"),
            "  reader: " + shown.format("read:free_data"),
        ],
    )
    assert run("plan", "deploy.yaml", "--detailed-exitcode")[0] == 0  # nothing left to do
    assert memory and all(backend.closed for backend in memory)


def test_an_unknown_scheme_is_refused_where_the_url_is_written(
    memory: list[MemoryBackend],
) -> None:
    text = Path("deploy.yaml").read_text()
    Path("deploy.yaml").write_text(text.replace("memory:deploy", "nosuch:deploy"))
    code, output = run("validate", "--no-data", "deploy.yaml")
    assert (code, output.splitlines()[0]) == (
        1,
        "deploy.yaml:5:10: target url must be local:PATH or http(s)://host/v1 or "
        'memory:NAME, not "nosuch:deploy"',
    )
    assert memory == []
