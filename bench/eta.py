"""Does apply's ETA tell the truth?

``python bench/eta.py`` applies the upstream manifest (``tests/data/upstream/manifest.yaml``,
149 datasets of 283,530 values and 164 grants, the data read in place) against
``flowkit-loader serve --upstream-quirks --latency`` on loopback, the service's cost per
request and per value charged. Each change's completion is fed to the cost model apply's
progress uses (``loader.progress.CostModel``), as the CLI feeds it; afterwards, with the
apply's real length known, it prints the ETA's error (|estimated - actual time left| /
actual time left) at 25%, 50% and 75% of the apply's time, beside the error of an ETA
that counts changes (what the progress bar showed before). The exit status is non-zero
when the model's error at 50% is above 25%.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import SERVE_SECRET_ENV, fail, served_manifest, serving

from loader.applying import ApplyOptions, apply
from loader.progress import CostModel, work_of

BAR = 0.25
MARKS = (25, 50, 75)
SERVE_OPTIONS = ("--upstream-quirks", "--latency")


class Tracker:
    """A progress callback that keeps, at each completion, both estimates of the time left."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.start = 0.0
        self.total = 0
        self.model: CostModel | None = None
        self.points: list[tuple[float, float | None, float | None]] = []

    def confirm(self, plan: Any) -> bool:
        self.total = len(plan.changes)
        self.model = CostModel.of(plan.changes)
        self.start = time.perf_counter()
        return True

    def __call__(self, outcome: Any) -> None:
        with self.lock:
            assert self.model is not None
            elapsed = time.perf_counter() - self.start
            self.model.add(work_of(outcome.change), elapsed)
            done = len(self.points) + 1
            counted = (self.total - done) / (done / elapsed) if elapsed > 0 else None
            self.points.append((elapsed, self.model.seconds_left(), counted))


def errors(points: list[tuple[float, float | None, float | None]], which: int) -> list[float]:
    """The relative error of estimate `which` (1: the model, 2: counting) at each mark."""
    end = points[-1][0]
    found = []
    for mark in MARKS:
        elapsed, *estimates = next(p for p in points if p[0] >= end * mark / 100)
        estimate = estimates[which - 1]
        actual = end - elapsed
        found.append(float("inf") if estimate is None else abs(estimate - actual) / actual)
    return found


def main() -> int:
    secret = secrets.token_urlsafe(16)
    tracker = Tracker()
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-eta-") as scratch:
        directory = Path(scratch)
        with serving(directory / "serve.db", secret, *SERVE_OPTIONS) as base:
            manifest = served_manifest(directory, base)
            options = ApplyOptions(environ={SERVE_SECRET_ENV: secret}, confirm=tracker.confirm,
                                   progress=tracker)  # fmt: skip
            applied = apply(manifest, options)
    if not applied.result.ok:
        fail(f"the apply did not complete: {applied.result.counts()}")
    seconds = tracker.points[-1][0]
    print(f"apply: {tracker.total} changes in {seconds:.1f} s")
    model, counting = errors(tracker.points, 1), errors(tracker.points, 2)
    print("ETA error at      " + "".join(f"{mark:>8}%" for mark in MARKS))
    print("  cost model      " + "".join(f"{e:>9.0%}" for e in model))
    print("  counting changes" + "".join(f"{e:>9.0%}" for e in counting))
    ok = model[MARKS.index(50)] <= BAR
    print(f"bar: the cost model's error at 50% <= {BAR:.0%}: {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
