"""Does folding a journal into a record cost the same per entry at any size?

``python bench/replay.py`` replays journals of 500, 5,000 and 50,000 dataset entries
(JSON lines parsed from text, as a journal is read from disk, outside the timing) onto an
empty record with ``loader.record.replay``, each size five times, median taken. It prints
the marginal cost per entry between 5,000 and 50,000 entries against that between 500 and
5,000: a replay linear in the entries gives 1.0; the one this replaced (a record copied
per entry) gave 20 (22.4 s at 50,000 entries). The exit status is non-zero above 1.5.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loader.contract import BACKEND_DT_FORMAT
from loader.model import DatasetKey, DatasetStats, DatasetSummary
from loader.record import DatasetRecorded, Record, RecordedDataset, event_json, replay

SIZES = (500, 5_000, 50_000)
RUNS = 5
BAR = 1.5
FIRST_DAY = datetime(2020, 1, 1)


def journal(entries: int) -> list[dict[str, object]]:
    """`entries` dataset lines: many indicators and dates, as a national deployment."""
    lines = []
    for n in range(entries):
        day, indicator = divmod(n, 50)
        dt = (FIRST_DAY + timedelta(days=day)).strftime(BACKEND_DT_FORMAT)
        key = DatasetKey("movements", f"movements.i{indicator}", 2, 4, dt)
        stats = DatasetStats(10, 10 * 10**9, 10**9, 10**9)
        summary = DatasetSummary(key, "flow", "v1", f"1:{n:064x}", stats, "movements.csv")
        text = json.dumps(event_json(DatasetRecorded(RecordedDataset(summary, n + 1))))
        lines.append(json.loads(text))
    return lines


def seconds(entries: list[dict[str, object]]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        record = replay(Record(), entries, "bench")
        times.append(time.perf_counter() - start)
        assert len(record.datasets) == len(entries)
    return statistics.median(times)


def main() -> None:
    measured = {size: seconds(journal(size)) for size in SIZES}
    for size, took in measured.items():
        print(f"{size:>7,} entries: {took * 1000:8.1f} ms, {took / size * 1e6:5.1f} us/entry")
    small, middle, large = SIZES
    low = (measured[middle] - measured[small]) / (middle - small)
    high = (measured[large] - measured[middle]) / (large - middle)
    ratio = high / low
    print(
        f"marginal cost per entry, {middle:,}-{large:,} vs {small:,}-{middle:,}: "
        f"{high * 1e6:.1f} us vs {low * 1e6:.1f} us = {ratio:.2f} (bar: <= {BAR})"
    )
    if ratio > BAR:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
