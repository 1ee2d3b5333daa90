"""make_plan, table-driven: every action and reason from small desired and actual states
built by hand (the planner is pure: no backend, no files)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest

from loader.model import (
    ConfigEntity,
    DatasetKey,
    DatasetStats,
    DatasetSummary,
    EntityKind,
    LoaderError,
    Role,
)
from loader.planner import (
    Action,
    Change,
    DatasetTarget,
    EntityTarget,
    GrantTarget,
    Plan,
    Reason,
    Selector,
    SetupTarget,
    Subject,
    make_plan,
)
from loader.record import (
    Actual,
    Desired,
    Observed,
    Record,
    RecordedDataset,
    RecordedEntity,
)
from loader.render import note_text
from loader.timegrid import backend_dt

LANG = ConfigEntity(EntityKind.LANGUAGE, 1, "en", {"lid": 1, "code": "en", "name": "English"})
PROVIDER = ConfigEntity(EntityKind.DATA_PROVIDER, 1, "Telco", {"dpid": 1, "name": "Telco"})
CATEGORY = ConfigEntity(
    EntityKind.CATEGORY, "residents", "residents",
    {"category_id": "residents", "type": "single_location", "label": "Res"},
)  # fmt: skip
INDICATOR = ConfigEntity(EntityKind.INDICATOR, "residents.residents", "residents.residents",
                         {"indicator_id": "residents.residents", "category_id": "residents",
                          "label": "Residents"})  # fmt: skip
SPATIAL = ConfigEntity(
    EntityKind.SPATIAL_RESOLUTION, 2, "District", {"srid": 2, "label": "District"}
)
TEMPORAL = ConfigEntity(EntityKind.TEMPORAL_RESOLUTION, 2, "Month",
                        {"trid": 2, "label": "Month", "relativedelta_unit": "months",
                         "relativedelta_num": 1, "date_format": "%Y-%m"})  # fmt: skip
CONFIG = (LANG, PROVIDER, CATEGORY, INDICATOR, SPATIAL, TEMPORAL)


def said(plan: Plan) -> list[str]:
    """The plan's notes as people read them."""
    return [note_text(note) for note in plan.notes]


def key(month: int, indicator: str = "residents.residents") -> DatasetKey:
    return DatasetKey("residents", indicator, 2, 2, f"2021-{month:02d}-01 00:00:00")


def summary(month: int, digest: str = "d", revision: str = "r1", total: int = 10) -> DatasetSummary:
    stats = DatasetStats(2, total * 10**9, 1 * 10**9, (total - 1) * 10**9)
    return DatasetSummary(key(month), "single_location", revision, f"1:{digest}{month}", stats,
                          "residents.csv")  # fmt: skip


def desired(
    months: Iterable[int] = (1, 2, 3),
    scopes: dict[int, set[str]] | None = None,
    config: tuple[ConfigEntity, ...] = CONFIG,
    **changed: DatasetSummary,
) -> Desired:
    summaries = {key(m): changed.get(f"m{m}", summary(m)) for m in months}
    chosen = scopes if scopes is not None else {m: {"read:free_data"} for m in months}
    return Desired(config, summaries, {key(m): frozenset(s) for m, s in chosen.items()})


def applied(want: Desired, mdid_base: int = 100) -> Record:
    """The record an apply of `want` leaves."""
    entities = {RecordedEntity.of(e).ref: RecordedEntity.of(e) for e in want.entities}
    datasets = {
        k: RecordedDataset(s, mdid_base + i, want.scopes.get(k, frozenset()))
        for i, (k, s) in enumerate(sorted(want.datasets.items()))
    }
    return Record(entities, datasets)


def refreshed(**observed: object) -> Observed:
    languages = {"1": dict(LANG.body)}
    providers = {"1": dict(PROVIDER.body)}
    return Observed(refreshed=True, languages=languages, data_providers=providers,
                    scopes_checked=frozenset({"read:free_data"}), **observed)  # type: ignore[arg-type]  # fmt: skip


def plan_of(want: Desired, record: Record, observed: Observed | None = None,
            only: Iterable[Selector] = ()) -> Plan:  # fmt: skip
    return make_plan(want, Actual(record, observed or refreshed()), only)


def shape(plan: Plan) -> list[tuple[str, str, str, str]]:
    """(symbol, subject, what, reason) per change, in order."""
    out = []
    for change in plan.changes:
        match change.target:
            case GrantTarget(scope=scope, key=key):
                what = f"{scope} {key.dt[:7]}"
            case DatasetTarget(key=key):
                what = key.dt[:7]
            case EntityTarget(id=entity_id):
                what = str(entity_id)
            case SetupTarget():
                what = "setup"
        out.append((change.action.value, change.subject.value, what, change.reason.value))
    return out


def mdid(change: Change) -> int | None:
    """The recorded mdid a change acts on, if any."""
    match change.target:
        case DatasetTarget(recorded=recorded):
            return None if recorded is None else recorded.mdid
        case GrantTarget(mdid=found):
            return found
    return None


def keys(plan: Plan, target: type[DatasetTarget | GrantTarget]) -> list[DatasetKey]:
    return [c.target.key for c in plan.changes if isinstance(c.target, target)]


# ---------------------------------------------------------------------------------------


def test_nothing_changed_gives_an_empty_plan() -> None:
    want = desired()
    plan = plan_of(want, applied(want))
    assert plan.changes == () and not plan.has_changes
    assert plan.unchanged == {"entity": 6, "dataset": 3, "grant": 3}
    assert plan.notes == ()
    assert plan.roles() == []


def test_a_fresh_deployment_posts_the_setup_then_creates_every_dataset_with_its_grants() -> None:
    plan = plan_of(desired(months=(1, 2)), Record(), Observed(refreshed=True, languages={},
                                                              data_providers={}))  # fmt: skip
    assert shape(plan) == [
        ("+", "setup", "setup", "new"),
        ("+", "dataset", "2021-01", "new"),
        ("+", "grant", "read:free_data 2021-01", "new"),
        ("+", "dataset", "2021-02", "new"),
        ("+", "grant", "read:free_data 2021-02", "new"),
    ]
    assert "fresh deployment: 1 language, 1 data provider, 1 category, 1 indicator" in (
        plan.changes[0].detail
    )
    assert plan.destructive == ()
    assert plan.roles() == [Role.ADMIN, Role.UPDATER, Role.READER]


def test_one_changed_value_gives_one_update_and_its_regrants() -> None:
    before = desired(scopes={1: {"read:free_data"}, 2: {"read:free_data", "read:premium"},
                             3: set()})  # fmt: skip
    after = replace(before, datasets={**before.datasets,
                                      key(2): summary(2, digest="other", total=11)})  # fmt: skip
    plan = plan_of(after, applied(before))
    assert shape(plan) == [
        ("~", "dataset", "2021-02", "content changed"),
        ("+", "grant", "read:free_data 2021-02", "re-grant after update"),
        ("+", "grant", "read:premium 2021-02", "re-grant after update"),
    ]
    update = plan.changes[0]
    assert isinstance(update.target, DatasetTarget) and update.target.recorded is not None
    before_sum = update.target.recorded.summary.stats.sum
    assert (before_sum, update.target.summary.stats.sum) == (10 * 10**9, 11 * 10**9)
    assert mdid(update) == 101 and not update.destructive
    assert plan.unchanged == {"entity": 6, "dataset": 2, "grant": 1}


def test_a_revision_change_is_shown_as_such() -> None:
    before = desired()
    after = replace(before, datasets={k: replace(s, revision="r2", digest=s.digest + "r2")
                                      for k, s in before.datasets.items()})  # fmt: skip
    plan = plan_of(after, applied(before))
    updates = [c for c in plan.changes if c.subject is Subject.DATASET]
    assert [c.reason for c in updates] == [Reason.REVISION_CHANGED] * 3
    assert updates[0].detail == "revision r1 -> r2"


def test_a_removed_file_gives_destructive_deletes_after_the_writes() -> None:
    before = desired(months=(1, 2, 3))
    after = desired(months=(1,))
    plan = plan_of(after, applied(before))
    assert shape(plan) == [
        ("-", "dataset", "2021-02", "removed from the manifest"),
        ("-", "dataset", "2021-03", "removed from the manifest"),
    ]
    assert all(c.destructive for c in plan.changes)
    assert [mdid(c) for c in plan.changes] == [101, 102]
    first = plan.changes[0].target
    assert isinstance(first, DatasetTarget)
    assert first.summary == before.datasets[key(2)]  # what a delete needs


def test_a_narrowed_access_rule_gives_grant_deletions() -> None:
    before = desired(scopes={1: {"read:free_data"}, 2: {"read:free_data"}, 3: {"read:free_data"}})
    after = desired(scopes={1: {"read:free_data"}})
    plan = plan_of(after, applied(before))
    assert shape(plan) == [
        ("-", "grant", "read:free_data 2021-02", "removed from the manifest"),
        ("-", "grant", "read:free_data 2021-03", "removed from the manifest"),
    ]
    assert mdid(plan.changes[0]) == 101 and plan.changes[0].destructive


def test_a_widened_access_rule_gives_grants_on_the_recorded_mdids() -> None:
    before = desired(scopes={1: {"read:free_data"}})
    after = desired(scopes={1: {"read:free_data", "read:premium"}, 2: {"read:premium"}})
    plan = plan_of(after, applied(before))
    assert shape(plan) == [
        ("+", "grant", "read:premium 2021-01", "new"),
        ("+", "grant", "read:premium 2021-02", "new"),
    ]
    assert [mdid(c) for c in plan.changes] == [100, 101]


def test_a_changed_label_gives_one_entity_update() -> None:
    before = desired()
    relabelled = ConfigEntity(EntityKind.INDICATOR, INDICATOR.id, INDICATOR.label,
                              {**INDICATOR.body, "label": "Residents (count)"})  # fmt: skip
    after = replace(before, entities=tuple(relabelled if e is INDICATOR else e for e in CONFIG))
    plan = plan_of(after, applied(before))
    assert shape(plan) == [("~", "entity", "residents.residents", "content changed")]
    assert plan.changes[0].target == EntityTarget(relabelled)
    assert plan.changes[0].target.entity is relabelled and plan.changes[0].role is Role.ADMIN
    assert plan.changes[0].detail == "label 'Residents' -> 'Residents (count)'"


def test_config_creates_in_dependency_order_and_deletes_in_reverse() -> None:
    before = desired(months=())
    other_category = ConfigEntity(EntityKind.CATEGORY, "presence", "presence",
                                  {"category_id": "presence", "type": "flow"})  # fmt: skip
    other_res = ConfigEntity(EntityKind.TEMPORAL_RESOLUTION, 4, "Day", {"trid": 4})
    record = applied(replace(before, entities=(*CONFIG, other_category, other_res)))
    new_indicator = ConfigEntity(EntityKind.INDICATOR, "residents.arrived", "residents.arrived",
                                 {"indicator_id": "residents.arrived"})  # fmt: skip
    new_spatial = ConfigEntity(EntityKind.SPATIAL_RESOLUTION, 3, "Ward", {"srid": 3})
    after = replace(before, entities=(*CONFIG, new_spatial, new_indicator))
    plan = plan_of(after, record)
    assert shape(plan) == [
        ("+", "entity", "residents.arrived", "new"),
        ("+", "entity", "3", "new"),
        ("-", "entity", "4", "removed from the manifest"),
        ("-", "entity", "presence", "removed from the manifest"),
    ]


def test_no_config_entity_is_deleted_while_a_remaining_dataset_uses_it() -> None:
    before = desired(months=(1,))
    record = applied(before)
    # The indicator leaves the config, but its dataset is kept by --only.
    after = desired(months=(), config=(LANG, PROVIDER, CATEGORY, SPATIAL, TEMPORAL))
    plan = plan_of(after, record, only=[Selector.parse("dates=2022-01..")])
    assert plan.changes == ()
    assert any("1 config change(s) left out by --only" in n for n in said(plan))
    # Without --only the dataset goes first, then its indicator.
    plan = plan_of(after, record)
    assert shape(plan) == [
        ("-", "dataset", "2021-01", "removed from the manifest"),
        ("-", "entity", "residents.residents", "removed from the manifest"),
    ]


def test_an_entity_still_used_by_a_kept_dataset_is_kept_with_a_note() -> None:
    before = desired(months=(1,))
    kept_dataset = applied(before)
    after = replace(desired(months=(1,)), entities=(LANG, PROVIDER, CATEGORY, SPATIAL, TEMPORAL))
    plan = plan_of(after, kept_dataset)
    assert plan.changes == ()
    assert any("indicator residents.residents is removed from the manifest but kept" in n
               for n in said(plan))  # fmt: skip


def test_a_vanished_mdid_is_drift_repaired_by_a_rewrite_and_its_grants() -> None:
    want = desired()
    plan = plan_of(want, applied(want), refreshed(vanished=frozenset({key(3)})))
    assert shape(plan) == [
        ("~", "dataset", "2021-03", "drifted"),
        ("+", "grant", "read:free_data 2021-03", "re-grant after update"),
    ]
    assert "mdid 102 no longer on the server" in plan.changes[0].detail


def test_content_that_differs_on_the_server_is_drift() -> None:
    want = desired()
    plan = plan_of(want, applied(want), refreshed(content_differs=frozenset({key(1)})))
    assert shape(plan)[0] == ("~", "dataset", "2021-01", "drifted")


def test_a_grant_a_reader_cannot_see_is_drift_and_is_granted_again() -> None:
    want = desired()
    missing = frozenset({("read:free_data", key(2))})
    plan = plan_of(want, applied(want), refreshed(grants_missing=missing))
    assert shape(plan) == [("+", "grant", "read:free_data 2021-02", "drifted")]
    assert mdid(plan.changes[0]) == 101


def test_unchecked_scopes_and_unrecorded_datasets_are_said() -> None:
    want = desired(scopes={1: {"read:free_data", "read:premium"}})
    observed = replace(refreshed(), scopes_checked=frozenset(),
                       unrecorded={("residents.residents", 2, 2): 4})  # fmt: skip
    plan = plan_of(want, applied(want), observed)
    assert plan.changes == ()
    assert any("read:free_data, read:premium (configure a reader credential" in n
               for n in said(plan))  # fmt: skip
    assert any("4 dataset(s) of residents.residents srid=2 trid=2 on the server are not in "
               "the state record" in n for n in said(plan))  # fmt: skip


def test_an_offline_plan_says_it_was_not_refreshed() -> None:
    want = desired()
    plan = make_plan(want, Actual(applied(want)))
    assert plan.changes == () and not plan.refreshed
    assert said(plan) == ["not refreshed: planned against the state record alone (--offline)"]


def test_a_changed_language_replaces_the_setup_destructively() -> None:
    want = desired()
    record = applied(want)
    french = ConfigEntity(EntityKind.LANGUAGE, 1, "en", {"lid": 1, "code": "en", "name": "Anglais"})
    after = replace(want, entities=(french, *CONFIG[1:]))
    plan = plan_of(after, record)
    assert shape(plan) == [("-/+", "setup", "setup", "content changed")]
    assert plan.changes[0].destructive and plan.changes[0].role is Role.ADMIN


def test_a_language_missing_on_the_server_is_drift() -> None:
    want = desired()
    plan = plan_of(want, applied(want), replace(refreshed(), languages={}))
    assert shape(plan) == [("-/+", "setup", "setup", "drifted")]


def test_a_data_provider_missing_or_changed_on_the_server_is_drift() -> None:
    want = desired()
    plan = plan_of(want, applied(want), replace(refreshed(), data_providers={}))
    assert shape(plan) == [("+", "entity", "1", "drifted")]
    changed = {"1": {"dpid": 1, "name": "Someone else"}}
    plan = plan_of(want, applied(want), replace(refreshed(), data_providers=changed))
    assert shape(plan) == [("~", "entity", "1", "drifted")]
    assert plan.changes[0].role is Role.UPDATER  # PATCH /data_providers needs write:data


def test_the_admin_mapping_is_never_granted_nor_revoked() -> None:
    want = desired(scopes={1: {"admin", "read:free_data"}})
    plan = plan_of(want, Record(), Observed(refreshed=True, languages={}, data_providers={}))
    assert [c.target.scope for c in plan.changes if isinstance(c.target, GrantTarget)] == [
        "read:free_data"
    ]


def test_only_narrows_datasets_and_their_grants() -> None:
    want = desired(months=(1, 2, 3))
    arrived = replace(summary(2), key=key(2, "residents.arrived"))
    want = replace(want, datasets={**want.datasets, arrived.key: arrived})
    record = Record({RecordedEntity.of(e).ref: RecordedEntity.of(e) for e in CONFIG})
    plan = plan_of(want, record, only=[Selector.parse("indicator=*.residents"),
                                       Selector.parse("dates=2021-02..2021-03")])  # fmt: skip
    assert keys(plan, DatasetTarget) == [key(2), key(3)]
    assert plan.only == ("indicator=*.residents", "dates=2021-02..2021-03")
    plan = plan_of(want, record, only=[Selector.parse("category=presence")])
    assert plan.changes == ()


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("dates=2021-02..2021-03", "2021-02-01 00:00:00", "2021-04-01 00:00:00"),
        ("dates=2021-12", "2021-12-01 00:00:00", "2022-01-01 00:00:00"),
        ("dates=2021-03-05..", "2021-03-05 00:00:00", None),
        ("dates=..2021", None, "2022-01-01 00:00:00"),
        ("dates=2020-02-29", "2020-02-29 00:00:00", "2020-03-01 00:00:00"),
    ],
)
def test_date_selectors(text: str, first: str | None, last: str | None) -> None:
    dates = Selector.parse(text).dates
    assert dates is not None and dates.last is None  # the end is exclusive
    shown = tuple(
        None if bound is None else backend_dt(bound) for bound in (dates.first, dates.end)
    )
    assert shown == (first, last)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("residents", "expected indicator=GLOB, category=ID or dates=FROM..UNTIL"),
        ("srid=3", "unknown selector 'srid'"),
        ("dates=2021-13", "'2021-13' is not a date"),
        ("dates=yesterday..", "'yesterday' is not a date"),
    ],
)
def test_bad_selectors_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(LoaderError, match=message):
        Selector.parse(text)


def test_every_action_has_a_symbol_and_deletes_and_replaces_are_destructive() -> None:
    assert [a.value for a in Action] == ["+", "~", "-", "-/+"]
    want = desired(months=(1,))
    gone = desired(months=())
    plan = plan_of(gone, applied(want))
    assert all(c.destructive for c in plan.changes)
    assert plan.counts() == {"create": 0, "update": 0, "delete": 1, "replace": 0}


def test_a_setup_replace_says_what_it_removes_and_refuses_to_orphan_datasets() -> None:
    french = ConfigEntity(EntityKind.LANGUAGE, 1, "en", {"lid": 1, "code": "en", "name": "Anglais"})
    before = desired(months=(1,))
    other = ConfigEntity(EntityKind.CATEGORY, "presence", "presence", {"category_id": "presence"})
    record = applied(replace(before, entities=(*CONFIG, other)))
    after = replace(before, entities=(french, *CONFIG[1:]))
    plan = plan_of(after, record)
    assert shape(plan) == [("-/+", "setup", "setup", "content changed")]
    assert plan.changes[0].detail.endswith("; removes category presence")
    # The indicator leaves the config while its dataset stays (kept out by --only): refused.
    without_indicator = replace(desired(months=()), entities=(french, *CONFIG[1:3], *CONFIG[4:]))
    with pytest.raises(LoaderError, match=r"which would remove indicator residents.residents, "
                       r"still used by datasets"):  # fmt: skip
        plan_of(without_indicator, applied(before), only=[Selector.parse("dates=2030")])


def test_only_keeps_the_config_its_datasets_need_and_leaves_the_rest_out() -> None:
    want = desired(months=(1,))
    record = Record({RecordedEntity.of(e).ref: RecordedEntity.of(e) for e in (LANG, PROVIDER)})
    plan = plan_of(want, record, only=[Selector.parse("category=residents")])
    assert [c.target.id for c in plan.changes if isinstance(c.target, EntityTarget)] == [
        "residents", "residents.residents", 2, 2,
    ]  # fmt: skip
    relabelled = ConfigEntity(EntityKind.DATA_PROVIDER, 1, "Telco", {"dpid": 1, "name": "T2"})
    plan = plan_of(replace(want, entities=(LANG, relabelled, *CONFIG[2:])), applied(want),
                   only=[Selector.parse("category=residents")])  # fmt: skip
    assert plan.changes == ()
    assert "1 config change(s) left out by --only" in said(plan)
