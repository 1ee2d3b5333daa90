"""The adaptive limit of `--parallelism auto`, driven with simulated time: a server of a
known capacity answers each request; the limit must find it, stay within its ceiling,
back off when told to, and hold while a write's outcome is unknown."""

from __future__ import annotations

import itertools
import threading

import pytest

from loader.backends.pacing import (
    BACKOFF,
    LATENCY_TOLERANCE,
    PROBE_AFTER,
    AdaptiveLimit,
    Answer,
)

CALL = "POST /v1/data 10"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A server that serves `capacity` requests at once, each in `base` seconds; more
    wait their turn: with n in flight, requests take base * max(1, n / capacity) and
    min(n, capacity) / base complete per second."""

    def __init__(self, limit: AdaptiveLimit, clock: Clock, capacity: int, base: float = 0.02):
        self.limit, self.clock, self.capacity, self.base = limit, clock, capacity, base
        self.seen: list[int] = []  # the limit at each request

    def serve(self, requests: int, call: str = CALL) -> None:
        for _ in range(requests):
            n = self.limit.limit
            self.seen.append(n)
            self.clock.now += self.base / min(n, self.capacity)
            self.limit.observe(call, self.base * max(1.0, n / self.capacity), Answer.ANSWERED)


def limit_and_clock(ceiling: int = 32, start: int = 2) -> tuple[AdaptiveLimit, Clock]:
    clock = Clock()
    return AdaptiveLimit(ceiling, start=start, clock=clock), clock


@pytest.mark.parametrize("capacity", [3, 6, 12])
def test_it_climbs_to_the_servers_capacity_and_settles_near_it(capacity: int) -> None:
    limit, clock = limit_and_clock()
    server = Server(limit, clock, capacity)
    server.serve(3000)
    settled = server.seen[-1000:]
    assert min(settled) >= capacity - 1
    # Past the capacity latency rises: it does not stay far beyond.
    assert max(settled) <= capacity * LATENCY_TOLERANCE + 1
    assert statistics_mean(settled) >= capacity


def statistics_mean(values: list[int]) -> float:
    return sum(values) / len(values)


def test_it_never_exceeds_its_ceiling_even_when_more_would_pay() -> None:
    limit, clock = limit_and_clock(ceiling=5)
    server = Server(limit, clock, capacity=40)
    server.serve(2000)
    assert max(server.seen) == 5
    assert all(step.after <= 5 for step in limit.steps)


def test_a_raise_that_brings_no_throughput_is_taken_back() -> None:
    # Latency stays flat, but throughput stops at what four in flight bring (a bottleneck
    # elsewhere): raising further would only add requests waiting somewhere.
    limit, clock = limit_and_clock(start=4)
    for _ in range(400):
        clock.now += 0.02 / 4
        limit.observe(CALL, 0.02, Answer.ANSWERED)
    reverts = [s for s in limit.steps if s.why == "the raise brought no throughput"]
    assert reverts
    assert (reverts[0].before, reverts[0].after) == (8, 4)  # the first climb's doubling
    assert all(s.after == 4 for s in reverts)  # later probes, taken back alike
    assert limit.limit in (4, 5)  # back where it paid, or trying one more


@pytest.mark.parametrize("answer", [Answer.OVERLOADED, Answer.TIMED_OUT])
def test_an_overload_or_a_timeout_backs_off_at_once(answer: Answer) -> None:
    limit, _ = limit_and_clock(start=10)
    limit.observe(CALL, 0.02, answer)
    assert limit.limit == int(10 * BACKOFF)
    assert limit.steps[-1].why == answer.value


def test_one_overload_answering_several_requests_cuts_once() -> None:
    limit, _ = limit_and_clock(start=10)
    with limit.slot(CALL) as first, limit.slot(CALL) as second, limit.slot(CALL) as third:
        first(Answer.OVERLOADED)
        second(Answer.OVERLOADED)
        third(Answer.OVERLOADED)
    assert [(s.before, s.after) for s in limit.steps] == [(10, 7)]


def test_a_request_sent_after_a_cut_that_is_refused_again_cuts_again() -> None:
    limit, _ = limit_and_clock(start=10)
    with limit.slot(CALL) as answered:
        answered(Answer.OVERLOADED)
    with limit.slot(CALL) as answered:
        answered(Answer.OVERLOADED)
    assert [(s.before, s.after) for s in limit.steps] == [(10, 7), (7, 4)]


def test_a_request_left_by_an_exception_counts_as_timed_out() -> None:
    limit, _ = limit_and_clock(start=10)
    with pytest.raises(ConnectionError), limit.slot(CALL):
        raise ConnectionError("reset")
    assert limit.limit == 7
    assert limit.in_flight == 0


def test_rising_latency_steps_down() -> None:
    limit, clock = limit_and_clock(start=8)
    for _ in range(24):  # a window at its best
        clock.now += 0.01
        limit.observe(CALL, 0.02, Answer.ANSWERED)
    before = limit.limit
    for _ in range(3 * limit.limit + 12):  # the next: twice as slow, the same throughput
        clock.now += 0.01
        limit.observe(CALL, 0.04, Answer.ANSWERED)
    assert limit.limit < before
    assert limit.steps[-1].why == "slower: latency 2.0x its best"


def test_latency_is_compared_per_call_so_a_mix_of_calls_is_not_a_slowdown() -> None:
    limit, clock = limit_and_clock(start=4)
    server = Server(limit, clock, capacity=64)
    for _ in range(20):  # grants are fast, dataset writes slow: neither slows down
        server.serve(10, call="POST /v1/scope_mapping 6")
        server.base = 0.2
        server.serve(10, call="POST /v1/data 14")
        server.base = 0.02
    assert all(step.after > step.before for step in limit.steps)


def test_no_raise_while_a_write_of_unknown_outcome_is_resolved() -> None:
    limit, clock = limit_and_clock(start=2)
    server = Server(limit, clock, capacity=32)
    resolving, resolved = threading.Event(), threading.Event()

    def write() -> None:  # a write whose answer was lost, then its resolution by reads
        with limit.resolving():
            limit.unknown()
            limit.unknown()  # counted once
            resolving.set()
            resolved.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        resolving.wait(10)
        assert limit.holding
        server.serve(500)  # windows that would each raise, were nothing unknown
        assert limit.limit == 2
        assert limit.steps == []
    finally:
        resolved.set()
        writer.join(10)
    assert not limit.holding
    server.serve(100)
    assert limit.limit > 2


def test_an_unknown_outside_a_write_holds_nothing() -> None:
    limit, _ = limit_and_clock()
    limit.unknown()
    assert not limit.holding


def test_steady_windows_lead_to_a_probe() -> None:
    limit, clock = limit_and_clock(start=4)
    server = Server(limit, clock, capacity=4)
    server.serve(2000)
    probes = [s for s in limit.steps if s.why == "trying one more"]
    assert len(probes) >= 2  # the capacity is tried again from time to time
    windows = 12 * (PROBE_AFTER + 2)  # requests between two probes, at least
    gaps = [b.at - a.at for a, b in itertools.pairwise(probes)]
    assert all(gap >= windows * 0.02 / 4 for gap in gaps)


def test_threads_never_have_more_in_flight_than_the_limit() -> None:
    limit = AdaptiveLimit(3, start=3)
    in_flight, most = 0, 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal in_flight, most
        for _ in range(50):
            with limit.slot(CALL) as answered:
                with lock:
                    in_flight += 1
                    most = max(most, in_flight)
                with lock:
                    in_flight -= 1
                answered(Answer.ANSWERED)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most <= 3
    assert limit.peak <= 3
    assert limit.in_flight == 0


def test_describe_tells_where_it_ended_and_why_it_stepped_down() -> None:
    limit, _ = limit_and_clock(ceiling=16, start=10)
    limit.observe(CALL, 0.02, Answer.OVERLOADED)
    assert limit.describe() == (
        "parallelism auto: 7 in flight at the end, 0 at most (ceiling 16); backed off "
        "1 time(s) on 429, 503 or timeouts and 0 on rising latency"
    )


def test_a_ceiling_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AdaptiveLimit(0)
