"""loader/contract.py is the one home of the service's contract: no scope or wire format is
written anywhere else in loader/, and the planner, the embedded backend and `serve` all
follow its rule for which scope (and so which role) a write needs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from loader.backends.local import LocalBackend
from loader.backends.store import Principal
from loader.contract import (
    ADMIN,
    BACKEND_DT_FORMAT,
    ROLE_SCOPES,
    SCOPES,
    WRITE_DATA,
    entity_write_scope,
    role_for,
)
from loader.model import ConfigEntity, DatasetKey, EntityKind, KeyShapeError, Role, ScopeError
from loader.planner import Action, Change, EntityTarget, Reason
from tests.conftest import ROOT

CONTRACT_TEXT = {*SCOPES, BACKEND_DT_FORMAT}


def _contract_literals(path: Path) -> list[str]:
    """Where `path` writes one of the contract's strings as a literal of its own (the
    Role enum's member values are names of roles, not scopes)."""
    tree = ast.parse(path.read_text())
    roles = {
        id(node)
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef) and cls.name == "Role"
        for node in ast.walk(cls)
    }
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in CONTRACT_TEXT and id(node) not in roles
    ]


def test_no_module_but_the_contract_spells_a_scope_or_a_wire_format() -> None:
    found = [
        line
        for path in sorted((ROOT / "loader").rglob("*.py"))
        if path.name != "contract.py"
        for line in _contract_literals(path)
    ]
    assert found == []


def test_the_literal_finder_finds_them() -> None:
    assert len(_contract_literals(ROOT / "loader" / "contract.py")) == len(CONTRACT_TEXT)


def test_every_role_sends_with_a_scope_it_holds() -> None:
    assert {role_for(s) for scopes in ROLE_SCOPES.values() for s in scopes} == set(Role)
    for role, scopes in ROLE_SCOPES.items():
        assert all(role_for(scope) is role for scope in scopes)


@pytest.mark.parametrize("kind", list(EntityKind), ids=lambda kind: kind.value)
@pytest.mark.parametrize("action", [Action.CREATE, Action.UPDATE, Action.DELETE])
def test_the_planner_asks_for_the_role_whose_scope_the_write_needs(
    kind: EntityKind, action: Action
) -> None:
    entity = ConfigEntity(kind, 1, "one", {})
    change = Change(action, Reason.NEW, EntityTarget(entity))
    needed = entity_write_scope(kind, update=action is Action.UPDATE)
    assert change.role is role_for(needed)
    # Only a data provider's update is a data writer's.
    data_writers = kind is EntityKind.DATA_PROVIDER and action is Action.UPDATE
    assert needed == (WRITE_DATA if data_writers else ADMIN)


@pytest.mark.parametrize("kind", list(EntityKind), ids=lambda kind: kind.value)
def test_the_embedded_backend_refuses_an_update_without_the_contracts_scope(
    tmp_path: Path, kind: EntityKind
) -> None:
    needed = entity_write_scope(kind, update=True)
    others = frozenset(SCOPES) - {needed}
    backend = LocalBackend(tmp_path / "b.db", Principal(others, frozenset(), "lacking"))
    with pytest.raises(ScopeError, match=needed):
        backend.update_entity(kind, 1, {})


def test_a_dataset_key_reads_back_what_it_writes_and_names_a_wrong_field() -> None:
    key = DatasetKey("residents", "residents.residents", 2, 3, "2021-01-01 00:00:00")
    assert DatasetKey.from_json(key.to_json()) == key
    assert list(key.to_json()) == ["category_id", "indicator_id", "srid", "trid", "dt"]
    for name, value, expected in [
        ("srid", "2", "an integer"),
        ("trid", True, "an integer"),
        ("dt", None, "a string"),
    ]:
        with pytest.raises(KeyShapeError) as raised:
            DatasetKey.from_json({**key.to_json(), name: value})
        assert (raised.value.name, raised.value.expected) == (name, expected)
    with pytest.raises(KeyShapeError, match="category_id: a string expected"):
        DatasetKey.from_json({})
