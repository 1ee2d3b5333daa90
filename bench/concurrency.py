"""Does `--parallelism auto` find what the server can take?

``python bench/concurrency.py`` applies one deployment (bench/scale.py's: 50 indicators of
one daily category over DAYS days, three units each, one access rule over ten indicators:
many small requests, so that the cost per request is what counts) against
``flowkit-loader serve --capacity C --request-cost REQUEST_COST --value-cost 0`` on
loopback, a fresh database each time: the server serves C requests at once, lets as many
again wait their turn and answers 429 past that. For each of two capacities it applies
with each fixed parallelism of FIXED and with ``auto`` (ceiling CEILING), in rounds of
all settings in turn, ROUNDS times, and compares throughput (changes per second from the
confirmation to the end of the apply, medians): auto must reach at least BAR of the best
fixed setting's. It prints each setting's throughput, where auto's limit ended and how
often it backed off, and, last, auto / best fixed per capacity. The exit status is
non-zero when a ratio is below the bar or an apply did not complete.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SERVE_SECRET_ENV, aimed_at, fail, serving
from scale import write_deployment

from loader.applying import apply

DAYS = 12  # 600 datasets, 120 grants
CAPACITIES = (2, 6)
FIXED = (2, 4, 8, 16)  # one in flight is never the best against a capacity of 2 or more
CEILING = 16
REQUEST_COST = "0.03"  # seconds per request, served CAPACITY at once
ROUNDS = 2
BAR = 0.9


def one_apply(directory: Path, secret: str, capacity: int, setting: int | str, run: str) -> Any:
    """One apply of the deployment to a fresh `serve`: its throughput and its pacing."""
    serve_options = ("--capacity", str(capacity), "--request-cost", REQUEST_COST,
                     "--value-cost", "0")  # fmt: skip
    with serving(directory / f"{run}.db", secret, *serve_options) as base:
        manifest = directory / f"{run}.yaml"
        source = (directory / "manifest.yaml").read_text()
        manifest.write_text(aimed_at(source, base, directory / f"{run}.state.json"))
        started: list[float] = []

        def confirm(plan: Any) -> bool:
            started.append(time.perf_counter())
            return True

        applied = apply(manifest, environ={SERVE_SECRET_ENV: secret}, parallelism=setting,
                        max_parallelism=CEILING, confirm=confirm)  # fmt: skip
        seconds = time.perf_counter() - started[0]
    if not applied.result.ok:
        fail(f"{run}: the apply did not complete: {applied.result.counts()}")
    return len(applied.result.outcomes) / seconds, applied.pacing


def main() -> int:
    secret = secrets.token_urlsafe(16)
    settings: tuple[int | str, ...] = (*FIXED, "auto")
    rates: dict[tuple[int, int | str], list[float]] = {}
    paces: dict[int, list[str]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-concurrency-") as scratch:
        directory = Path(scratch)
        write_deployment(directory, DAYS)
        for number in range(ROUNDS):
            for capacity in CAPACITIES:
                for setting in settings:
                    run = f"c{capacity}-{setting}-{number}"
                    rate, pacing = one_apply(directory, secret, capacity, setting, run)
                    rates.setdefault((capacity, setting), []).append(rate)
                    if pacing is not None:
                        paces.setdefault(capacity, []).append(pacing.describe())
            print(f"round {number + 1}: done in {time.perf_counter() - began:.0f} s", flush=True)
    ratios = {}
    for capacity in CAPACITIES:
        medians = {s: statistics.median(rates[(capacity, s)]) for s in settings}
        line = ", ".join(f"{s}: {medians[s]:.1f}" for s in settings)
        print(f"capacity {capacity}: changes per second: {line}")
        for described in paces[capacity]:
            print(f"  {described}")
        best = max(FIXED, key=lambda s: medians[s])
        ratios[capacity] = (medians["auto"] / medians[best], best)
    print(f"in all {time.perf_counter() - began:.0f} s")
    for capacity, (ratio, best) in ratios.items():
        print(f"capacity {capacity}: auto / best fixed ({best} in flight): {ratio:.2f} "
              f"(must be at least {BAR:.2f})")  # fmt: skip
    return 0 if all(round(r, 2) >= BAR for r, _ in ratios.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
