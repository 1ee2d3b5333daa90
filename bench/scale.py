"""Does every step cost time and memory in proportion to the number of datasets?

``python bench/scale.py`` generates deployments of 1,000, 10,000 and 50,000 datasets (50
indicators of one daily category over 20, 200 and 1,000 days, three units each, one CSV
per month, one access rule over ten indicators: many dates and indicators, few units, so
that the embedded backend is not what is measured) in a temporary folder. For each size,
five times (three at 50,000; in rounds of all sizes in turn), each step runs in a fresh
process of its own, timed inside it (interpreter start and imports left out), its memory
the peak resident size minus the size after its imports:

  validate     every file read and checked (no cache)
  plan         a fresh plan against the empty backend (files in the cache, as after
               validate); `markdown` the same plan as a pull-request comment
  only         a fresh plan narrowed by --only to one indicator
  apply        the whole deployment written to a fresh embedded backend (the backend's
               own writes included), its journal and record
  noop         a plan once applied: nothing to change
  status       what is loaded
  month        a plan after one new month's file
  import       the applied deployment taken over into an empty record

For each step it prints the median seconds and MB per size, then the marginal cost per
dataset between 10,000 and 50,000 against that between 1,000 and 10,000 (1.0 is linear;
the bar is 1.5), for time and for memory; at 50,000 the cost of the month plan against a
fresh plan, the record's size and the Markdown plan's size against GitHub's comment limit.
The exit status is non-zero when a ratio is above its bar or the Markdown plan is over the
limit. Budget: about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "manifests" / "example" / "config.json"
INDICATORS = 50
UNITS = ("EX01-01", "EX01-02", "EX02-01")
SIZES = {1_000: 20, 10_000: 200, 50_000: 1_000}  # datasets: days
# Runs per size, medians taken: more of the small sizes, whose seconds the machine's
# noise moves most, at little cost.
RUNS = {1_000: 5, 10_000: 5, 50_000: 3}
BAR = 1.5
COMMENT_LIMIT = 65_536  # characters in a GitHub comment
FIRST_DAY = date(2020, 1, 1)
STEPS = ("validate", "plan", "markdown", "only", "apply", "noop", "status", "month", "import")
STATE = "state/record.json"


# -- the deployment ----------------------------------------------------------------------


def write_deployment(directory: Path, days: int) -> Path:
    """A config of one daily category of INDICATORS indicators, one CSV per month of
    `days` days, a manifest over them with a local target; the manifest's path."""
    config = json.loads(EXAMPLE_CONFIG.read_text())
    config["categories"] = [{**config["categories"][0], "category_id": "presence",
                             "type": "single_location", "label": "Presence"}]  # fmt: skip
    template = config["indicators"][0]
    config["indicators"] = [
        {**template, "category_id": "presence", "indicator_id": f"presence.i{n:02d}",
         "label": f"Indicator {n}", "order": n}
        for n in range(INDICATORS)
    ]  # fmt: skip
    (directory / "data").mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    by_month: dict[str, list[date]] = {}
    for offset in range(days):
        day = FIRST_DAY + timedelta(days=offset)
        by_month.setdefault(day.strftime("%Y-%m"), []).append(day)
    for month, month_days in by_month.items():
        write_month(directory / "data" / f"presence_{month}.csv", month_days)
    manifest = directory / "manifest.yaml"
    manifest.write_text(
        "version: 1\n"
        "targets:\n"
        f"  local: {{url: 'local:db/scale.db', state: {STATE}}}\n"
        "setup: config.json\n"
        "ids:\n"
        "  spatial_resolutions: {Region: 1, District: 2}\n"
        "  temporal_resolutions: {Month: 2, Day: 4}\n"
        "revision: r1\n"
        "datasets:\n"
        "  - file: data/presence_*.csv\n"
        "    category: presence\n"
        "    spatial_resolution: District\n"
        "    temporal_resolution: Day\n"
        "    columns: {date: date, spatial_unit: pcod}\n"
        "access:\n"
        "  read:free_data:\n"
        "    - {indicator: 'presence.i0*', spatial_resolution: District, "
        "temporal_resolution: Day}\n"
    )
    return manifest


def write_month(path: Path, days: list[date]) -> None:
    header = "date,pcod," + ",".join(f"i{n:02d}" for n in range(INDICATORS))
    lines = [header]
    for day_number, day in enumerate(days):
        for unit_number, unit in enumerate(UNITS):
            base = day_number * 7 + unit_number
            values = ",".join(f"{base + n}.{n:02d}" for n in range(INDICATORS))
            lines.append(f"{day.isoformat()},{unit},{values}")
    path.write_text("\n".join(lines) + "\n")


def next_month_file(directory: Path, days: int) -> tuple[Path, list[date]]:
    last = FIRST_DAY + timedelta(days=days - 1)
    first = (last.replace(day=1) + timedelta(days=32)).replace(day=1)
    month_days = [first + timedelta(days=n) for n in range(31)
                  if (first + timedelta(days=n)).month == first.month]  # fmt: skip
    return directory / "data" / f"presence_{first.strftime('%Y-%m')}.csv", month_days


# -- one step, in a process of its own --------------------------------------------------


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def run_step(step: str, manifest: Path) -> dict[str, float]:
    """Run one step here (the CLI as a user runs it); its seconds and memory."""
    sys.path.insert(0, str(ROOT))
    import loader.applying
    import loader.data
    import loader.inventory  # noqa: F401
    from loader.cli import cli

    args = {
        "validate": ["validate", str(manifest)],
        "plan": ["plan", str(manifest)],
        "markdown": ["plan", str(manifest), "--format", "markdown"],
        "only": ["plan", str(manifest), "--only", "indicator=presence.i01"],
        "apply": ["apply", str(manifest), "--yes", "-q"],
        "noop": ["plan", str(manifest), "--detailed-exitcode"],
        "status": ["status", str(manifest)],
        "month": ["plan", str(manifest)],
        "import": ["import", str(manifest)],
    }[step]
    base = rss_bytes()
    output = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(output):
        try:
            cli.main(args, prog_name="flowkit-loader")
        except SystemExit as done:
            code = done.code
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if code not in (0, None):  # the no-change plan exits 2 if anything is left to change
        raise SystemExit(f"{step} exited {code}: {output.getvalue()[-2000:]}")
    return {"seconds": seconds, "memory": max(0, peak - base), "output": len(output.getvalue())}


def measure(step: str, manifest: Path, cache: Path) -> dict[str, float]:
    env = {**os.environ, "FLOWKIT_LOADER_CACHE_DIR": str(cache)}
    if step == "validate":
        env["FLOWKIT_LOADER_NO_CACHE"] = "1"  # every file read and checked
    done = subprocess.run(
        [sys.executable, __file__, "--step", step, str(manifest)],
        env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def one_run(directory: Path, days: int) -> dict[str, dict[str, float]]:
    """Every step once, in order, on a fresh backend; what each cost."""
    manifest = directory / "manifest.yaml"
    cache = directory / "cache"
    for stale in (directory / "db", directory / "state"):
        shutil.rmtree(stale, ignore_errors=True)
    found: dict[str, dict[str, float]] = {}
    for step in STEPS:
        if step == "month":
            month, month_days = next_month_file(directory, days)
            write_month(month, month_days)
            try:
                found[step] = measure(step, manifest, cache)
            finally:
                month.unlink()
            continue
        if step == "import":
            shutil.rmtree(directory / "state")  # the deployment without its record
        found[step] = measure(step, manifest, cache)
    found["record"] = {"bytes": float((directory / STATE).stat().st_size)}
    return found


# -- the report --------------------------------------------------------------------------


def marginal_ratio(values: dict[int, float]) -> float:
    small, middle, large = sorted(values)
    first = (values[middle] - values[small]) / (middle - small)
    second = (values[large] - values[middle]) / (large - middle)
    return second / first if first > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("manifest", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated sizes, three of those known")  # fmt: skip
    options = parser.parse_args()
    if options.step:
        print(json.dumps(run_step(options.step, Path(options.manifest))))
        return
    sizes = [int(s) for s in options.sizes.split(",")]
    started = time.perf_counter()
    runs: dict[int, list[dict[str, dict[str, float]]]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="flowkit-scale-") as folder:
        for size in sizes:
            write_deployment(Path(folder) / str(size), SIZES[size])
        time.sleep(2.5)  # files older than the cache's racy window, as a user's are
        for size in sizes:  # the cache filled, as validate (with it) leaves it for plans
            directory = Path(folder) / str(size)
            measure("plan", directory / "manifest.yaml", directory / "cache")
        # Rounds of every size in turn: a machine that is busier for a while slows all
        # sizes alike, not one of them (the ratios compare sizes).
        for number in range(max(RUNS.values())):
            for size in sizes:
                if number < RUNS[size]:
                    runs[size].append(one_run(Path(folder) / str(size), SIZES[size]))
            print(f"round {number + 1}: done in {time.perf_counter() - started:.0f} s",
                  flush=True)  # fmt: skip
    medians: dict[str, dict[int, dict[str, float]]] = {}
    for step in (*STEPS, "record"):
        for size in sizes:
            keys = runs[size][0][step]
            medians.setdefault(step, {})[size] = {
                key: statistics.median(r[step][key] for r in runs[size]) for key in keys
            }
    failed = False
    print(f"\n{'step':<9}" + "".join(f"{s:>16,}" for s in sizes) + "   time ratio  memory ratio")
    for step in STEPS:
        by_size = medians[step]
        cells = "".join(
            f"{by_size[s]['seconds']:>8.2f}s {by_size[s]['memory'] / 2**20:>5.0f}MB" for s in sizes
        )
        time_ratio = marginal_ratio({s: by_size[s]["seconds"] for s in sizes})
        memory_ratio = marginal_ratio({s: by_size[s]["memory"] for s in sizes})
        flags = " <- over the bar" if max(time_ratio, memory_ratio) > BAR else ""
        failed |= bool(flags)
        print(f"{step:<9}{cells}   {time_ratio:>10.2f}  {memory_ratio:>12.2f}{flags}")
    large = sizes[-1]
    month = medians["month"][large]["seconds"] / medians["plan"][large]["seconds"]
    record = medians["record"][large]["bytes"]
    markdown = medians["markdown"][large]["output"]
    print(f"\nat {large:,}: month plan / fresh plan {month:.2f}; record {record / 2**20:.1f} MB "
          f"({record / large:.0f} bytes a dataset); Markdown plan {markdown:,.0f} characters "
          f"(limit {COMMENT_LIMIT:,})")  # fmt: skip
    failed |= markdown > COMMENT_LIMIT
    print(
        f"bars: marginal per-dataset cost ratios <= {BAR}; Markdown within the limit; "
        f"{'FAIL' if failed else 'ok'} ({time.perf_counter() - started:.0f} s in all)"
    )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
