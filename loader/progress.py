"""How far an apply has come and how long it has left, by the work its changes carry.

Changes are not alike: a dataset write sends its values (tens of thousands, for a
national resolution), a grant or a config entity none. Counting changes, a plan that
writes its datasets first and its grants after shows an ETA several times too short for
most of its length. Here each change weighs what it sends: one request, plus its values
(`work_of`), and the time an apply takes is modelled as `a` seconds per request plus `b`
per value, fitted as it runs: least squares over the intervals between progress reports,
older intervals weighing less (a half-life of a fifth of the time run so far) so that a
server that slows down is seen. Until both kinds of work have been timed, a prior splits
the one rate measured. Standard library only: no import cost for the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loader.planner import Action, Change, DatasetTarget, SetupTarget

if TYPE_CHECKING:
    from loader.execute import Outcome

# How long ago an interval must be to count half: a fifth of the time the apply has run
# (the recent part of a long apply tells its speed now), never under MIN_HALF_LIFE (enough
# intervals to average the spread of parallel writes).
HALF_LIFE_SHARE = 0.2
MIN_HALF_LIFE_SECONDS = 10.0
# An interval closes when this much time has passed: shorter ones are mostly noise of
# parallel completions arriving together.
MIN_INTERVAL_SECONDS = 0.25
# Until requests with and without values have both been timed, a request's own cost is
# taken as that of sending this many values: the ratio of serve's cost model of upstream's
# service (5 ms a request, 40 us a value).
PRIOR_VALUES_PER_REQUEST = 125.0


@dataclass(frozen=True)
class Work:
    """What a change, or a part of a plan, sends: requests and values."""

    requests: int = 0
    values: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(self.requests + other.requests, self.values + other.values)

    def __sub__(self, other: Work) -> Work:
        return Work(self.requests - other.requests, self.values - other.values)


def work_of(change: Change) -> Work:
    """One request per change; a dataset written (created, updated, replaced) also sends
    each of its values; the setup, its POST and GET and a check of each entity posted."""
    match change.target:
        case DatasetTarget(summary=summary) if change.action is not Action.DELETE:
            return Work(1, summary.stats.count)
        case SetupTarget(entities=entities):
            return Work(2 + entities, 0)
        case _:
            return Work(1, 0)


class CostModel:
    """seconds ~= a * requests + b * values, fitted online; `seconds_left` for the rest."""

    @classmethod
    def of(cls, changes: Iterable[Change]) -> CostModel:
        """The model of an apply of these changes, nothing done yet."""
        return cls(sum((work_of(c) for c in changes), Work()))

    def __init__(self, total: Work) -> None:
        self.total = total
        self.done = Work()
        self._closed = Work()  # the work up to the last closed interval
        self._closed_at = 0.0
        # Decayed sums of the normal equations: x = (requests, values), y = seconds.
        self._rr = self._vv = self._rv = self._rt = self._vt = 0.0
        self._weight_at = 0.0  # when the sums were last decayed

    def add(self, work: Work, elapsed: float) -> None:
        """`work` finished; `elapsed` seconds since the apply started."""
        self.done = self.done + work
        span = elapsed - self._closed_at
        if span < MIN_INTERVAL_SECONDS and self.done != self.total:
            return
        step = self.done - self._closed
        self._decay(elapsed)
        # Each interval weighs inversely to its length (an interval's time varies in
        # proportion to it): plain least squares would let the intervals that happened to
        # hold most work decide the rates.
        r, v = float(step.requests), float(step.values)
        w = 1.0 / max(span, 1e-9)
        self._rr += w * r * r
        self._vv += w * v * v
        self._rv += w * r * v
        self._rt += r  # w * r * span
        self._vt += v  # w * v * span
        self._closed, self._closed_at = self.done, elapsed

    def _decay(self, now: float) -> None:
        half_life = max(MIN_HALF_LIFE_SECONDS, HALF_LIFE_SHARE * now)
        factor = 0.5 ** ((now - self._weight_at) / half_life)
        self._rr *= factor
        self._vv *= factor
        self._rv *= factor
        self._rt *= factor
        self._vt *= factor
        self._weight_at = now

    def rates(self) -> tuple[float, float] | None:
        """(seconds per request, seconds per value), or None before any interval."""
        if self._rr == 0.0:
            return None
        determinant = self._rr * self._vv - self._rv * self._rv
        if determinant > 1e-6 * self._rr * self._vv:
            a = (self._rt * self._vv - self._vt * self._rv) / determinant
            b = (self._vt * self._rr - self._rt * self._rv) / determinant
            if a >= 0 and b >= 0:
                return a, b
        # One mix of work so far (only grants, or datasets of one size) or a fit that would
        # make work take negative time: the seconds per request of that mix, split between
        # the request and its values by the prior until the mix changes.
        per_request = self._rt / self._rr if not self._vv else (
            (self._rt + self._vt) / (self._rr + self._rv)
        )  # fmt: skip
        values = self._rv / self._rr  # values a request carried, on average
        b = per_request / (PRIOR_VALUES_PER_REQUEST + values)
        return PRIOR_VALUES_PER_REQUEST * b, b

    def seconds_left(self) -> float | None:
        fitted = self.rates()
        if fitted is None:
            return None
        a, b = fitted
        left = self.total - self.done
        seconds = a * left.requests + b * left.values
        return seconds if math.isfinite(seconds) else None

    def share_done(self) -> float:
        """How much of the work is done, requests and values weighed by the fitted rates
        (by values alone, plus requests, before there is a fit)."""
        fitted = self.rates() or (1.0, 1.0)
        a, b = fitted
        total = a * self.total.requests + b * self.total.values
        if total <= 0:
            return 1.0 if self.done == self.total else 0.0
        return min(1.0, (a * self.done.requests + b * self.done.values) / total)


class Tally:
    """An apply's progress as its outcomes arrive, for whatever draws it (the CLI's bar and
    log lines, a notebook's bar): changes done and failed, and the cost model fitted to
    the time each took from `start`."""

    def __init__(self, changes: Sequence[Change], clock: Callable[[], float]) -> None:
        self.model = CostModel.of(changes)
        self.total, self.done, self.failed = len(changes), 0, 0
        self.clock = clock
        self.start = clock()

    def count(self, outcome: Outcome) -> float | None:
        """Count one outcome: the seconds since the start, or None for a change that was
        never started (skipped as interrupted: no progress)."""
        if outcome.status.value == "skipped" and outcome.message == "interrupted":
            return None
        elapsed = self.clock() - self.start
        self.done += 1
        self.failed += outcome.status.value == "failed"
        self.model.add(work_of(outcome.change), elapsed)
        return elapsed

    @property
    def estimate(self) -> dict[str, float | None]:
        """The share of the work done and the seconds left (None before a fit)."""
        return {"share": self.model.share_done(), "left": self.model.seconds_left()}


__all__ = ["CostModel", "Tally", "Work", "work_of"]
