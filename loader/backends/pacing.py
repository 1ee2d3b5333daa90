"""How many requests the remote client keeps in flight under `--parallelism auto`: found
as the apply runs, within a hard ceiling, by watching what the server does with them.

The controller climbs a hill. It counts the requests completed in windows (at least
`WINDOW_MIN` and three per request allowed in flight, so that a window sees the limit at
work), and after each window compares the window's throughput and latency with the last:
- it raises the limit only while latency stays flat (each call's median within
  `LATENCY_TOLERANCE` of the best that call has shown) and the last raise paid for itself
  in throughput (`GAIN` of what the extra requests could have brought); a raise that did
  not is taken back, and another is tried only after `PROBE_AFTER` steady windows (the
  server's capacity can grow, another client may have left);
- it backs off at once on 429, 503 and timeouts (by `BACKOFF`, once per window: one
  overload answers several requests at a time) and by one on rising latency;
- it never raises while a write whose outcome is unknown is being resolved (Hazards 5
  and 7: a timeout or a 500 on a write may be a server still writing; more load would not
  help it finish, and the resolution's reads must not queue behind new writes).

Latency is compared per call (`POST /data` with its values is slower than a grant by
nature), throughput as requests per second over the window's wall time. The clock is
injected so that tests drive the controller with simulated time.
"""

from __future__ import annotations

import enum
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

WINDOW_MIN = 12  # requests completed before a window is judged
LATENCY_TOLERANCE = 1.5  # a call's median up to this times its best is still "flat"
GAIN = 0.3  # a raise must bring this share of what its extra requests could bring
BACKOFF = 0.7  # the limit after an overload, as a share of the limit before it
PROBE_AFTER = 4  # steady windows before trying one more in flight again
START = 2  # requests in flight before anything is known
DEFAULT_CEILING = 16  # the most in flight, unless told (`--max-parallelism`)


SLOWER = "slower"  # how a step down for latency is explained


class Answer(enum.Enum):
    """What became of one request, as far as the pace goes."""

    ANSWERED = "answered"  # any answer but an overload (an error is an answer)
    OVERLOADED = "overloaded"  # 429 or 503: the server asks for less
    TIMED_OUT = "timed out"  # no answer in time, or the connection failed


OVERLOAD_REASONS = {Answer.OVERLOADED.value, Answer.TIMED_OUT.value}


@dataclass
class Window:
    """The requests completed between two judgements, at one limit."""

    limit: int
    started: float
    ended: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    completed: int = 0

    def add(self, call: str, latency: float) -> None:
        self.latencies.setdefault(call, []).append(latency)
        self.completed += 1

    def medians(self) -> dict[str, float]:
        return {call: statistics.median(found) for call, found in self.latencies.items()}

    def work_rate(self, best: dict[str, float]) -> float:
        """Throughput whatever the mix of calls: each request counts the time its call
        takes at best, so the rate is the requests kept in service at full speed."""
        work = sum(best.get(call, 0.0) * len(found) for call, found in self.latencies.items())
        return work / max(self.ended - self.started, 1e-9)


@dataclass(frozen=True)
class Step:
    """One change of the limit, kept for the bench and the tests: when, from, to, why."""

    at: float
    before: int
    after: int
    why: str


class AdaptiveLimit:
    """A semaphore whose size the controller sets: `slot(call)` holds one request in
    flight and reports how it went; `resolving()` holds back raises while a write of
    unknown outcome is resolved."""

    def __init__(
        self, ceiling: int, *, start: int = START, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ceiling < 1:
            raise ValueError("the ceiling is at least one request in flight")
        self.ceiling = ceiling
        self.clock = clock
        self.limit = min(max(start, 1), ceiling)
        self.in_flight = 0
        self.peak = 0  # the most in flight at once, ever
        self.steps: list[Step] = []
        self.held: list[float] = []  # when a judgement was held by an unknown outcome
        self._cond = threading.Condition()
        self._window = Window(self.limit, clock())
        self._previous: Window | None = None
        self._raised = False  # the current window's limit came from a raise
        self._steady = 0  # windows judged since the last raise was taken back
        self._best: dict[str, float] = {}  # each call's lowest window median
        self._unresolved = 0  # writes of unknown outcome being resolved
        self._cuts = 0  # backoffs so far
        self._thread = threading.local()  # the write this thread is in, if any

    # -- the semaphore --------------------------------------------------------------------

    @contextmanager
    def slot(self, call: str) -> Iterator[Callable[[Answer], None]]:
        """One request in flight: waits for room, yields `done(answer)` to call with how
        it went (a request left without an answer counts as timed out). `call` names the
        kind of request whose latencies compare (method, path, size class)."""
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            cuts = self._cuts
        started = self.clock()
        answers: list[Answer] = []
        try:
            yield answers.append
        finally:
            answer = answers[-1] if answers else Answer.TIMED_OUT
            with self._cond:
                self.in_flight -= 1
                self._observe(call, self.clock() - started, answer, cuts)
                self._cond.notify_all()

    @contextmanager
    def resolving(self) -> Iterator[None]:
        """One write, its resolution included: once `unknown()` was called inside it (on
        this thread), no raise until it is over. Nested writes count as one."""
        depth = getattr(self._thread, "depth", 0)
        self._thread.depth = depth + 1
        try:
            yield
        finally:
            self._thread.depth = depth
            if depth == 0 and getattr(self._thread, "unknown", False):
                self._thread.unknown = False
                with self._cond:
                    self._unresolved -= 1

    def unknown(self) -> None:
        """The current write's outcome is unknown: no raise before it is resolved (the
        end of the enclosing `resolving()`; every write is in one, reads are resolved by
        sending them again and hold nothing)."""
        if getattr(self._thread, "unknown", False):
            return
        self._thread.unknown = getattr(self._thread, "depth", 0) > 0
        with self._cond:
            self._unresolved += 1 if self._thread.unknown else 0

    @property
    def holding(self) -> bool:
        """A write of unknown outcome is being resolved: no raise meanwhile."""
        return self._unresolved > 0

    def describe(self) -> str:
        """The limit's story in one line, for the apply's summary."""
        overloads = sum(1 for step in self.steps if step.why in OVERLOAD_REASONS)
        slower = sum(1 for step in self.steps if step.why.startswith(SLOWER))
        return (f"parallelism auto: {self.limit} in flight at the end, {self.peak} at most "
                f"(ceiling {self.ceiling}); backed off {overloads} time(s) on 429, 503 or "
                f"timeouts and {slower} on rising latency")  # fmt: skip

    def observe(self, call: str, latency: float, answer: Answer) -> None:
        """One request's latency and answer, as `slot` reports them (for callers that
        time their requests themselves, and tests)."""
        with self._cond:
            self._observe(call, latency, answer, self._cuts)

    # -- the controller -------------------------------------------------------------------

    def _observe(self, call: str, latency: float, answer: Answer, cuts: int) -> None:
        now = self.clock()
        if answer is not Answer.ANSWERED:
            # Requests sent before the last cut report the same overload: one cut for it.
            if cuts == self._cuts:
                self._cuts += 1
                self._raised, self._steady = False, 0
                self._set(max(1, int(self.limit * BACKOFF)), now, answer.value)
            return
        self._window.add(call, latency)
        if self._window.completed >= max(WINDOW_MIN, 3 * self._window.limit):
            self._judge(now)

    def _judge(self, now: float) -> None:
        window, previous = self._window, self._previous
        window.ended = now
        medians = window.medians()
        for call, median in medians.items():
            self._best[call] = min(self._best.get(call, median), median)
        slowed = statistics.fmean(m / self._best[c] for c, m in medians.items())
        limit, why = self.limit, ""
        if self._unresolved:
            self.held.append(now)  # a write's outcome is being resolved
        elif slowed > LATENCY_TOLERANCE:
            why, limit = f"{SLOWER}: latency {slowed:.1f}x its best", max(1, limit - 1)
        elif self._raised and previous is not None and not self._paid(previous, window):
            why, limit = "the raise brought no throughput", previous.limit
            self._steady = 0
        elif self._raised or not self.steps or self._steady >= PROBE_AFTER:
            # Doubling while every step so far was a raise, then one at a time.
            climbing = all(step.after > step.before for step in self.steps)
            why = ("latency flat, throughput rising" if self._raised
                   else "starting" if not self.steps else "trying one more")  # fmt: skip
            limit = min(self.ceiling, limit * 2 if climbing else limit + 1)
            self._steady = 0
        else:
            self._steady += 1
        self._previous = window
        self._raised = limit > self.limit
        self._set(limit, now, why)

    def _paid(self, before: Window, after: Window) -> bool:
        """Whether the window after a raise carried enough more than the one before it:
        `GAIN` of the growth its extra requests in flight could have brought."""
        gained = after.work_rate(self._best) / max(before.work_rate(self._best), 1e-9)
        possible = after.limit / before.limit
        return gained >= 1 + GAIN * (possible - 1)

    def _set(self, limit: int, now: float, why: str) -> None:
        if limit != self.limit:
            self.steps.append(Step(now, self.limit, limit, why))
            self.limit = limit
            self._cond.notify_all()
        self._window = Window(self.limit, now)
