"""loader/progress.py: the work each change carries (a request, plus the values a dataset
write sends), and the cost model fitted as an apply runs. Applies are simulated on a clock
of their own (seconds given, never measured): a known cost per request and per value, a
plan whose datasets come before its grants, a server that slows down halfway; the ETA is
checked against the time the simulation actually has left."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loader.model import DatasetKey, DatasetStats, DatasetSummary
from loader.planner import Action, Change, DatasetTarget, GrantTarget, Reason, SetupTarget
from loader.progress import CostModel, Tally, Work, work_of

KEY = DatasetKey("residents", "residents.residents", 2, 2, "2021-01-01 00:00:00")


def dataset_change(values: int, action: Action = Action.CREATE) -> Change:
    stats = DatasetStats(values, values * 10**9, 10**9, 10**9)
    summary = DatasetSummary(KEY, "single_location", "r1", "1:" + "0" * 64, stats, "a.csv")
    return Change(action, Reason.NEW, DatasetTarget(summary))


def grant_change() -> Change:
    return Change(Action.CREATE, Reason.NEW, GrantTarget("read:free_data", KEY))


def test_a_dataset_write_carries_its_values_and_everything_else_one_request() -> None:
    assert work_of(dataset_change(1_500)) == Work(1, 1_500)
    assert work_of(dataset_change(1_500, Action.UPDATE)) == Work(1, 1_500)
    assert work_of(dataset_change(1_500, Action.DELETE)) == Work(1, 0)
    assert work_of(grant_change()) == Work(1, 0)
    setup = Change(Action.UPDATE, Reason.CONTENT_CHANGED, SetupTarget(entities=38))
    assert work_of(setup) == Work(40, 0)
    assert Work(2, 5) + Work(1, 1) - Work(3, 6) == Work()


def simulate(
    works: list[Work], per_request: float, per_value: float, slower_after: int | None = None
) -> Iterator[tuple[Work, float, float]]:
    """Each change's work, the clock when it finished, and the seconds truly left then."""
    costs = []
    for index, work in enumerate(works):
        factor = 2.0 if slower_after is not None and index >= slower_after else 1.0
        costs.append(factor * (per_request * work.requests + per_value * work.values))
    total = sum(costs)
    clock = 0.0
    for work, cost in zip(works, costs, strict=True):
        clock += cost
        yield work, clock, total - clock


def eta_errors(works: list[Work], **costs: float) -> dict[int, float]:
    """The ETA's relative error at 25, 50 and 75% of the simulated apply's time."""
    model = CostModel(sum(works, Work()))
    errors: dict[int, float] = {}
    total_time = None
    for work, clock, truly_left in simulate(works, **costs):
        total_time = total_time or clock + truly_left
        model.add(work, clock)
        for mark in (25, 50, 75):
            if mark not in errors and clock >= total_time * mark / 100:
                left = model.seconds_left()
                assert left is not None
                errors[mark] = abs(left - truly_left) / truly_left
    return errors


# 600 dataset writes of 2,000 values each, then 3,000 grants: counting changes, the grants
# would look like most of the work.
DATASETS_THEN_GRANTS = [Work(1, 2_000)] * 600 + [Work(1, 0)] * 3_000


def test_the_eta_is_within_a_tenth_when_datasets_come_before_grants() -> None:
    errors = eta_errors(DATASETS_THEN_GRANTS, per_request=0.005, per_value=0.00004)
    assert max(errors.values()) < 0.10, errors


def test_counting_changes_would_be_far_off_on_the_same_plan() -> None:
    """The estimate the model replaces: at half time, a ninth of the changes are done."""
    timeline = list(simulate(DATASETS_THEN_GRANTS, per_request=0.005, per_value=0.00004))
    total_time = timeline[-1][1]
    done, (_, clock, truly_left) = next(
        (number, step) for number, step in enumerate(timeline, 1) if step[1] >= total_time / 2
    )
    counted = (len(timeline) - done) / (done / clock)
    assert counted > 5 * truly_left


def test_mixed_sizes_are_fitted_apart() -> None:
    works = [Work(1, values) for values in (100, 5_000, 20, 900) * 200] + [Work(1, 0)] * 500
    errors = eta_errors(works, per_request=0.01, per_value=0.00001)
    assert max(errors.values()) < 0.10, errors


def test_a_server_that_slows_down_is_followed() -> None:
    """Twice as slow from the middle: at three quarters of the changes the ETA follows the
    slower rate (the rate over the whole apply so far would be a third too short)."""
    works = [Work(1, 1_000)] * 2_000
    model = CostModel(sum(works, Work()))
    found = None
    for work, clock, truly_left in simulate(works, 0.002, 0.00002, slower_after=1_000):
        model.add(work, clock)
        if found is None and model.done.requests >= 1_500:
            found = model.seconds_left(), truly_left, 500 / (1_500 / clock)
    assert found is not None
    left, truly, whole_apply_rate = found
    assert abs(left - truly) / truly < 0.25  # the half-life: steadiness against lag
    assert abs(whole_apply_rate - truly) / truly > 0.3


def test_before_any_interval_there_is_no_eta_and_the_share_counts_values() -> None:
    model = CostModel(Work(10, 1_000))
    assert model.seconds_left() is None
    model.add(Work(1, 500), 0.1)  # shorter than an interval: not fitted yet
    assert model.seconds_left() is None
    assert model.share_done() == pytest.approx(501 / 1_010)


def test_only_grants_so_far_split_by_the_prior() -> None:
    model = CostModel(Work(20, 10_000))
    model.add(Work(10, 0), 1.0)  # ten grants took a second
    a, b = model.rates() or (0.0, 0.0)
    assert a == pytest.approx(0.1) and b == pytest.approx(0.1 / 125)
    assert model.seconds_left() == pytest.approx(10 * 0.1 + 10_000 * 0.1 / 125)


def test_the_last_change_closes_the_fit_and_nothing_is_left() -> None:
    model = CostModel(Work(2, 10))
    model.add(Work(1, 5), 0.01)
    model.add(Work(1, 5), 0.02)
    assert model.seconds_left() == 0.0 and model.share_done() == 1.0


def test_a_tally_counts_what_ran_and_times_it_from_its_start() -> None:
    from loader.execute import Outcome, OutcomeStatus

    now = iter([100.0, 102.0, 105.0])
    changes = [dataset_change(10), grant_change(), grant_change()]
    tally = Tally(changes, lambda: next(now))
    assert tally.start == 100.0 and tally.estimate == {"share": 0.0, "left": None}
    assert tally.count(Outcome(changes[0], OutcomeStatus.DONE)) == 2.0
    assert tally.count(Outcome(changes[1], OutcomeStatus.FAILED, "500")) == 5.0
    assert tally.count(Outcome(changes[2], OutcomeStatus.SKIPPED, "interrupted")) is None
    assert (tally.done, tally.failed, tally.total) == (2, 1, 3)
    assert tally.model.done == work_of(changes[0]) + work_of(changes[1])
