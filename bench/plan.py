"""How much does a plan cost next to the apply it describes?

Against ``flowkit-loader serve --upstream-quirks --latency`` on loopback (the cost model
of the real service: per request and per value), in one session on a fresh database:

* a full apply of the upstream synthetic manifest (``tests/data/upstream/manifest.yaml``,
  data read in place from ``../shared/reference/upstream-data``): setup, 149 datasets,
  their grants;
* then a plan of the same manifest, which finds nothing to change, five times.

Both go through the loader's Python API, data preparation included (with no cache), so
that each is what a user waits for. Prints both times and the ratio (plan / apply); the
exit status is non-zero when the plan changes anything or the ratio is above 0.1.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import SERVE_SECRET_ENV, fail, served_manifest, serving

import loader

RUNS = 5
MAX_RATIO = 0.1


def main() -> int:
    secret = secrets.token_urlsafe(16)
    environ = {SERVE_SECRET_ENV: secret}
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-plan-") as scratch:
        directory = Path(scratch)
        with serving(directory / "serve.db", secret, "--upstream-quirks", "--latency") as base:
            manifest = served_manifest(directory, base)
            start = time.perf_counter()
            applied = loader.apply(manifest, environ=environ)
            apply_seconds = time.perf_counter() - start
            if not applied.result.ok:
                fail(f"the apply did not complete: {applied.result.counts()}")
            plans = []
            for _ in range(RUNS):
                start = time.perf_counter()
                made = loader.plan(manifest, environ=environ)
                plans.append(time.perf_counter() - start)
                if made.has_changes:
                    fail(f"the plan after the apply is not empty: {made.counts()}")
    plan_seconds = statistics.median(plans)
    ratio = plan_seconds / apply_seconds
    print(f"full apply (149 datasets, setup, grants): {apply_seconds:.2f} s "
          f"({applied.result.counts()['done']} changes)")  # fmt: skip
    print(f"no-change plan, median of {RUNS}: {plan_seconds:.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in plans)})")  # fmt: skip
    print(f"ratio plan / apply: {ratio:.3f} (must be at most {MAX_RATIO})")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
