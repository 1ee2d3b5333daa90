"""One backend conformance suite: the embedded backend in-process, and the remote client
against `flowkit-loader serve` on loopback, with and without --upstream-quirks, must all
behave as the real service does through the Backend protocol."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from loader.backends.local import LocalBackend
from loader.backends.store import Principal
from loader.model import (
    Backend,
    BackendError,
    Dataset,
    DatasetKey,
    DatasetStats,
    DatasetSummary,
    EntityKind,
    QueryRange,
    Role,
    ScopeError,
    nanos_to_float,
)
from tests.helpers import example
from tests.serving import remote, serving

READER = Principal(frozenset({"read:free_data"}), frozenset({"read:free_data"}), "reader")
UPDATER = Principal(frozenset({"write:data"}), frozenset(), "updater")
DATE_FORMATS = {2: "%Y-%m", 4: "%Y-%m-%d"}


@dataclass
class Deployment:
    admin: Backend
    reader: Backend
    updater: Backend
    datasets: list[Dataset]


@pytest.fixture(params=["local", "serve", "serve-quirks"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    config, datasets = example()
    with ExitStack() as stack:
        if request.param == "local":
            admin: Backend = LocalBackend(tmp_path / "local.db")
            local = admin
            assert isinstance(local, LocalBackend)
            reader: Backend = local.as_principal(READER)
            updater: Backend = local.as_principal(UPDATER)
        else:
            extra = ("--upstream-quirks",) if request.param == "serve-quirks" else ()
            base = stack.enter_context(serving(tmp_path / "serve.db", *extra))
            options = {"date_formats": DATE_FORMATS, "existence_delay": 0.2, "backoff": 0.05}
            all_roles = {Role.ADMIN: "dev-admin", Role.UPDATER: "dev-admin",
                         Role.READER: "dev-admin"}  # fmt: skip
            admin = remote(base, all_roles, **options)
            reader = remote(base, dict.fromkeys(Role, "dev-reader"), **options)
            updater = remote(base, dict.fromkeys(Role, "dev-updater"), **options)
            for backend in (admin, reader, updater):
                stack.callback(backend.close)  # type: ignore[attr-defined]
        admin.replace_setup(config)
        yield Deployment(admin, reader, updater, datasets)


def month_range(indicator: str = "residents.residents", duration: int = 6) -> QueryRange:
    return QueryRange("residents", indicator, 2, 2, "2021-01", duration)


def january(deployment: Deployment) -> Dataset:
    return next(
        d
        for d in deployment.datasets
        if d.key.indicator_id == "residents.residents" and "01-01" in d.key.dt
    )


def test_setup_keeps_explicit_ids(deployment: Deployment) -> None:
    view = deployment.admin.read_setup()
    assert [(lang["lid"], lang["code"]) for lang in view.languages] == [(1, "en"), (2, "fr")]
    assert [p["dpid"] for p in view.data_providers] == [1]
    month = {"trid": 2, "label": "x", "index": 9, "relativedelta_unit": "days",
             "relativedelta_num": 1, "default_selected": 1}  # fmt: skip
    write = deployment.admin.create_entity(EntityKind.TEMPORAL_RESOLUTION, month)
    assert not write.created and write.stored["label"] == "Month"  # 303: the stored object
    assert write.stored["label_fr"] == "Mois"  # translations of existing languages kept


def test_datasets_create_exist_update_and_visibility(deployment: Deployment) -> None:
    admin, reader = deployment.admin, deployment.reader
    dataset = january(deployment)
    first = admin.create_dataset(dataset)
    assert first.created
    again = admin.create_dataset(dataset)
    assert (again.created, again.mdid) == (False, first.mdid)  # 303: content unknown
    assert reader.visible_mdids(month_range()) == frozenset()  # only admin is mapped
    assert admin.grant("read:free_data", first.mdid)
    assert not admin.grant("read:free_data", first.mdid)  # 303
    assert reader.visible_mdids(month_range()) == {first.mdid}
    expected = {
        unit: nanos_to_float(v) for unit, v in zip(dataset.units, dataset.values, strict=True)
    }
    assert reader.dataset_content(month_range()) == {"2021-01": expected}
    new_mdid = admin.update_dataset(dataset)
    assert new_mdid != first.mdid
    assert reader.visible_mdids(month_range()) == frozenset()  # Hazard 4: grants dropped
    assert admin.visible_mdids(month_range()) == {new_mdid}  # admin mapping is automatic
    admin.delete_dataset(dataset.summary)
    assert admin.visible_mdids(month_range()) == frozenset()
    admin.delete_dataset(dataset.summary)  # absent: still fine


def test_flow_content_round_trips(deployment: Deployment) -> None:
    flows = [d for d in deployment.datasets if d.key.indicator_id == "movements.travellers"]
    for dataset in flows[:3]:
        deployment.admin.create_dataset(dataset)
    query = QueryRange("movements", "movements.travellers", 2, 4, "2021-03-01", 3)
    content = deployment.admin.dataset_content(query)
    assert sorted(content) == ["2021-03-01", "2021-03-02", "2021-03-03"]
    assert content["2021-03-02"] == {
        unit: nanos_to_float(v) for unit, v in zip(flows[1].units, flows[1].values, strict=True)
    }


def test_scopes_are_checked(deployment: Deployment) -> None:
    with pytest.raises(ScopeError, match="admin"):
        deployment.updater.create_entity(EntityKind.CATEGORY, {"category_id": "x",
                                                               "type": "flow"})  # fmt: skip
    with pytest.raises(ScopeError, match="write:data"):
        deployment.reader.create_dataset(deployment.datasets[0])
    assert deployment.updater.create_dataset(deployment.datasets[0]).created


def test_exact_values_and_refusals(deployment: Deployment) -> None:
    admin = deployment.admin
    key = DatasetKey("residents", "residents.arrived", 2, 2, "2021-01-01 00:00:00")
    summary = DatasetSummary(key, "single_location", "r", "-", DatasetStats(2, 0, 0, 0), "x")
    admin.create_dataset(Dataset(summary, (["EX01-01", "EX01-02"],), [123456790, -1]))
    content = admin.dataset_content(month_range("residents.arrived", 1))
    assert content == {"2021-01": {("EX01-01",): 0.12345679, ("EX01-02",): -1e-9}}
    other = DatasetSummary(
        DatasetKey("residents", "residents.arrived", 2, 2, "2021-02-01 00:00:00"),
        "single_location", "r", "-", DatasetStats(0, 0, 0, 0), "x",
    )  # fmt: skip
    with pytest.raises(BackendError, match="POST /data: 400 No data to ingest"):
        admin.create_dataset(Dataset(other, ([],), []))
