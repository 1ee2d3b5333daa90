"""How fast does flowkit-loader prepare canonical datasets, compared with upstream's notebook?

Default mode (``python bench/prepare.py``) measures, in one process, the time to turn
upstream's four synthetic CSV files (read in place from ``../shared/reference/upstream-data``)
into datasets, one per indicator per date:

* ours: ``loader.data.read_datasets`` for every file of the upstream manifest
  (``tests/data/upstream/manifest.yaml``, loaded once, outside the timing), every Dataset
  materialised into a list;
* the notebook's: a faithful copy of upstream's ``populate-database`` notebook, its
  "Data cleaning" cell (pandas read_csv / to_csv of a preprocessed CSV, here in a temporary
  directory) followed by the preparation part of its "Data ingestion" cell (csv.reader,
  dateutil ``parser.parse`` per cell, the ``datasets[indicator_id][date_string]`` dicts).

Each is run once untimed (the warm-up, whose output is kept for the comparison), then five
times alternately; the medians and their ratio (notebook / ours) are printed. Both outputs
are compared exactly (same keys, same sorted units, same values in nanos) and must hold
149 datasets and 283,530 values. The exit status is non-zero when the outputs differ or
when ours is less than 20x faster.

Large mode (``python bench/prepare.py --large MANIFEST_OR_CSV``, see bench/gen_large.py)
prepares a big file with our code in a fresh subprocess (so that its peak resident memory
belongs to the preparation alone), dropping each dataset as soon as it is produced, and
prints rows/s, values/s, MB/s and the peak RSS beside the file's size on disk. The exit
status is non-zero when the peak memory is not below the file's size.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from dateutil import parser

RUNS = 5
MIN_RATIO = 20.0
EXPECTED_DATASETS = 149
EXPECTED_VALUES = 283_530

# (category_id, indicator_id, srid, trid, dt) -> (sorted units, nanos)
Key = tuple[str, str, int, int, str]
Comparable = dict[Key, tuple[list[tuple[str, ...]], list[int]]]


from common import UPSTREAM_DATA, UPSTREAM_MANIFEST, fail, load_manifest, prepare  # noqa: E402

from loader.data import read_datasets  # noqa: E402
from loader.model import Dataset, canonical_nanos  # noqa: E402

# ---------------------------------------------------------------------------------------
# Ours


def ours_comparable(datasets: list[Dataset]) -> Comparable:
    result: Comparable = {}
    for dataset in datasets:
        k = dataset.summary.key
        key = (k.category_id, k.indicator_id, k.srid, k.trid, k.dt)
        if key in result:
            fail(f"ours produced {key} twice")
        result[key] = (list(dataset.units), list(dataset.values))
    return result


# ---------------------------------------------------------------------------------------
# The notebook's preparation, copied from populate-database-notebook.txt (cells 6 and 8).
#
# Changes, and only these:
# * `categories` (cell 5, GET /categories) and the indicators of a category (cell 8,
#   GET /indicators_for_category/{category_id}) come from upstream's config.json, which
#   the notebook had just POSTed to /setup; they are loaded once, outside the timing;
# * the data directory is the shared reference folder and the preprocessed CSVs go to a
#   temporary directory instead of /tmp;
# * `ingest_data` stops where the notebook prints "Prepared requests in ...s" and returns
#   `datasets` (the HTTP part after it is not preparation); it is a plain function since
#   nothing before that point awaits;
# * the notebook's prints go to a buffer (run_notebook redirects stdout).
#
# Quirks kept as they are:
# * cell 6 tests `file_name in ["residents", "presence"]`, but the synthetic files are
#   named e.g. "residents_admin3_monthly_small": neither branch runs, so the synthetic
#   data is neither cleaned (dropna) nor sorted nor renamed, only read and written back
#   by pandas (integer columns with empty cells come back as floats: "544650.0");
# * its rename maps df.columns[1] twice (origin is never named "origin");
# * cell 8 calls columns.index(col) and parser.parse(date_string) for every cell, and
#   datetime.utcnow() whenever a dataset is created (evaluated for every cell, as
#   setdefault's default argument is built before the call).


def notebook_cleaning(files: dict[str, dict[str, Any]], data_dir: str, tmp_dir: str) -> None:
    """Cell 6, "Data cleaning" (the loop; `files` is the synthetic_files dict)."""
    for file_name in files.keys():  # noqa: SIM118 - as in the notebook
        file_path = f"{data_dir}/{file_name}.csv"
        preprocessed_path = f"{tmp_dir}/{file_name}_preprocessed.csv"
        df = pd.read_csv(file_path)

        # make sure only rows with data are kept
        # then sort by date, and spatial unit(s) if applicable
        # finally rename columns
        if file_name in ["residents", "presence"]:
            # min columns: date, spatial unit, one data column
            df = df.dropna(thresh=3)
            df = df.sort_values(by=[df.columns[0], df.columns[1]])
            df = df.rename(columns={df.columns[0]: "date", df.columns[1]: "spatial_unit"})
        elif file_name in ["relocations", "movements"]:
            # min columns: date, 2 spatial units, one data column
            df = df.dropna(thresh=4)
            df = df.sort_values(by=[df.columns[0], df.columns[1], df.columns[2]])
            df = df.rename(
                columns={
                    df.columns[0]: "date",
                    df.columns[1]: "origin",
                    df.columns[1]: "destination",  # sic: df.columns[1] again
                }
            )

        df.to_csv(preprocessed_path, index=False)
        print(f"Saved CSV to {preprocessed_path}")


def notebook_ingest_data(
    file_name: str,
    files: dict[str, dict[str, Any]],
    categories: list[dict[str, Any]],
    config: dict[str, Any],
    tmp_dir: str,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Cell 8, `ingest_data`, up to "Prepared requests in ...s"."""
    start_time = time.monotonic()

    print(f"Processing file {file_name}.csv")
    f = files[file_name]

    # get the category object
    category_id = f["category_id"]
    category = [c for c in categories if c["category_id"] == category_id][0]  # noqa: RUF015
    # get all indicators for that category
    # (was: httpx.get(f"{BASE_URL}/indicators_for_category/{category_id}") -> "indicators")
    indicators = [i for i in config["indicators"] if i["category_id"] == category_id]
    print(f"Found {len(indicators)} indicators for category {category_id}")

    # get column names and order from csv
    columns = []
    column_to_indicator_id = {}

    with open(f"{tmp_dir}/{file_name}_preprocessed.csv") as csv_file:
        csv_reader = csv.reader(csv_file, delimiter=",")
        for row in csv_reader:
            columns = row
            break

        for col in columns:
            column_to_indicator_id[col] = f"{category_id}.{col}"

        # sort data by ID for easier processing
        indicators_by_id = {i["indicator_id"]: i for i in indicators}

        # collect all datasets in a dict by indicator ID and date - that way it doesn't
        # matter whether the CSV file is ordered
        datasets: dict[str, dict[str, dict[str, Any]]] = {}
        total_num = 0
        # we already consumed the first row so can continue here with the same reader
        for row in csv_reader:
            # check each column in each row
            for col in columns:
                if (
                    col in column_to_indicator_id
                    and column_to_indicator_id[col] in indicators_by_id
                ):
                    value = row[columns.index(col)]
                    # skip "None" values
                    if value in ["NaN", "Inf", "-Inf", ""]:
                        continue

                    # make sure to use the correct row for the date and the correct datetime
                    # format
                    date_string = row[0]
                    dt = parser.parse(date_string)

                    # not one per indicator but one per indicator per date
                    indicator = indicators_by_id[column_to_indicator_id[col]]
                    indicator_id = indicator["indicator_id"]
                    datasets.setdefault(indicator_id, {})

                    if date_string not in datasets[indicator_id]:
                        total_num += 1

                    datasets[indicator_id].setdefault(
                        date_string,
                        {
                            "metadata": {
                                "revision": "v0.1-demo",
                                # adding a date here which will be overwritten later when it
                                # is actually added to the db
                                # this is to avoid a fastapi.exceptions.RequestValidationError
                                # for checking the length of a "None" type
                                "date_added": datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S"),
                                "category_id": category_id,
                                "indicator_id": indicator_id,
                                "srid": f["srid"],
                                "trid": f["trid"],
                                "dt": dt,
                            },
                            "data_type": category["type"],
                            "data_input": [],
                        },
                    )

                    datasets[indicator_id][date_string]["data_input"].append(
                        {
                            "spatial_unit_ids": [row[1]]
                            if category["type"] == "single_location"
                            else [row[1], row[2]],
                            "data": value,
                        }
                    )

    print(f"Prepared requests in {round(time.monotonic() - start_time, 2)}s")
    return datasets


SYNTHETIC_FILES: dict[str, dict[str, Any]] = {  # cell 6, synthetic_files
    "residents_admin3_monthly_small": {"category_id": "residents", "srid": 3, "trid": 2},
    "relocations_admin3_monthly_small": {"category_id": "relocations", "srid": 3, "trid": 2},
    "presence_admin3_daily_small": {"category_id": "presence", "srid": 3, "trid": 4},
    "movements_admin3_daily_small": {"category_id": "movements", "srid": 3, "trid": 4},
}


def notebook(config: dict[str, Any]) -> list[dict[str, dict[str, dict[str, Any]]]]:
    """Cells 6 and 8 over the four synthetic files; one `datasets` dict per file."""
    files = SYNTHETIC_FILES
    categories = config["categories"]  # cell 5: GET /categories after POST /setup
    with tempfile.TemporaryDirectory(prefix="notebook-") as tmp_dir:
        notebook_cleaning(files, str(UPSTREAM_DATA), tmp_dir)
        return [
            notebook_ingest_data(file_name, files, categories, config, tmp_dir)
            for file_name in files.keys()  # noqa: SIM118 - as in the notebook's doit()
        ]


def run_notebook(config: dict[str, Any]) -> list[dict[str, dict[str, dict[str, Any]]]]:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # datetime.utcnow on 3.12+
        return notebook(config)


def notebook_comparable(per_file: list[dict[str, dict[str, dict[str, Any]]]]) -> Comparable:
    result: Comparable = {}
    for datasets in per_file:
        for by_date in datasets.values():
            for dataset in by_date.values():
                meta = dataset["metadata"]
                key = (
                    meta["category_id"],
                    meta["indicator_id"],
                    meta["srid"],
                    meta["trid"],
                    meta["dt"].strftime("%Y-%m-%d %H:%M:%S"),
                )
                if key in result:
                    fail(f"the notebook produced {key} twice")
                pairs = sorted(
                    (tuple(item["spatial_unit_ids"]), canonical_nanos(item["data"]))
                    for item in dataset["data_input"]
                )
                result[key] = ([u for u, _ in pairs], [v for _, v in pairs])
    return result


def compare(mine: Comparable, theirs: Comparable) -> list[str]:
    """Differences between the two outputs, one line each (at most a few)."""
    differences: list[str] = []
    for key in sorted(mine.keys() - theirs.keys())[:3]:
        differences.append(f"only ours: {key}")
    for key in sorted(theirs.keys() - mine.keys())[:3]:
        differences.append(f"only the notebook's: {key}")
    for key in sorted(mine.keys() & theirs.keys()):
        (units, values), (their_units, their_values) = mine[key], theirs[key]
        if units != their_units:
            differences.append(f"{key}: units differ ({len(units)} vs {len(their_units)})")
        elif values != their_values:
            index = next(
                i for i, (a, b) in enumerate(zip(values, their_values, strict=True)) if a != b
            )
            differences.append(
                f"{key}: value of {units[index]} is {values[index]} nanos in ours, "
                f"{their_values[index]} in the notebook's"
            )
        if len(differences) >= 6:
            break
    return differences


# ---------------------------------------------------------------------------------------
# Default mode


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare_with_notebook() -> int:
    if not UPSTREAM_DATA.is_dir():
        fail(f"upstream reference data not found at {UPSTREAM_DATA}")
    manifest = load_manifest(UPSTREAM_MANIFEST)
    config = json.loads((UPSTREAM_DATA / "config.json").read_text(encoding="utf-8"))

    # Warm-up (untimed): its outputs are the ones compared.
    mine = ours_comparable(prepare(manifest))
    theirs = notebook_comparable(run_notebook(config))

    our_times: list[float] = []
    notebook_times: list[float] = []
    for _ in range(RUNS):  # alternate, so that noise on the machine hits both alike
        our_times.append(timed(lambda: prepare(manifest)))
        notebook_times.append(timed(lambda: run_notebook(config)))
    our_median = statistics.median(our_times)
    notebook_median = statistics.median(notebook_times)
    ratio = notebook_median / our_median

    values = sum(len(v) for _, v in mine.values())
    differences = compare(mine, theirs)
    print(f"{'':10} {'median':>9} {'min':>9} {'max':>9}  ({RUNS} runs, {values:,} values)")
    for name, times in (("notebook", notebook_times), ("ours", our_times)):
        print(f"{name:10} {statistics.median(times):8.3f}s {min(times):8.3f}s {max(times):8.3f}s")
    print(f"ratio notebook/ours: {ratio:.1f}x (required: >= {MIN_RATIO:.0f}x)")
    status = 0
    if len(mine) != EXPECTED_DATASETS or values != EXPECTED_VALUES:
        print(
            f"FAIL: expected {EXPECTED_DATASETS} datasets and {EXPECTED_VALUES:,} values, "
            f"got {len(mine)} and {values:,}"
        )
        status = 1
    if differences:
        print("FAIL: outputs differ:\n  " + "\n  ".join(differences))
        status = 1
    else:
        print(f"outputs identical: {len(mine)} datasets, same keys, units and nanos")
    if ratio < MIN_RATIO:
        print(f"FAIL: ours is only {ratio:.1f}x faster (< {MIN_RATIO:.0f}x)")
        status = 1
    return status


# ---------------------------------------------------------------------------------------
# Large mode


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def find_manifest(given: Path) -> Path:
    """The manifest itself, or the one gen_large.py wrote beside a CSV."""
    if given.suffix in {".yaml", ".yml"}:
        return given
    candidate = given.with_suffix(".manifest.yaml")
    if not candidate.is_file():
        fail(f"no manifest beside {given} (expected {candidate}; see bench/gen_large.py)")
    return candidate


def value_count(dataset: Dataset) -> int:
    return len(dataset.values)


def prepare_large(manifest_path: Path) -> dict[str, Any]:
    """Runs in the child: prepare every file, dropping each dataset once counted."""
    manifest = load_manifest(manifest_path)
    setup = manifest.setup()
    baseline = current_rss_bytes()
    files: list[str] = []
    rows = values = datasets = 0
    problems: list[str] = []
    start = time.perf_counter()
    for spec in manifest.datasets:
        for path in spec.files:
            files.append(path)
            iterator, file_report = read_datasets(spec, path, setup)
            # map() holds each dataset only while counting it: nothing is kept.
            for count in map(value_count, iterator):
                datasets += 1
                values += count
            rows += file_report.rows
            problems += [str(p) for p in file_report.problems[:3]]
    seconds = time.perf_counter() - start
    return {
        "files": files,
        "bytes": sum(os.path.getsize(p) for p in files),
        "rows": rows,
        "values": values,
        "datasets": datasets,
        "seconds": seconds,
        "baseline_rss": baseline,
        "peak_rss": peak_rss_bytes(),
        "problems": problems,
    }


def large(given: Path) -> int:
    manifest_path = find_manifest(given)
    if not manifest_path.is_file():
        fail(f"{manifest_path} not found")
    child = subprocess.run(
        [sys.executable, __file__, "--large-child", str(manifest_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        fail(f"the preparation failed:\n{child.stderr.strip()}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    mb = 1e6
    size, peak, seconds = result["bytes"], result["peak_rss"], result["seconds"]
    print(
        f"file  {size / mb:9.1f} MB   {result['rows']:,} rows, {result['values']:,} values, "
        f"{result['datasets']:,} datasets"
    )
    print(
        f"ours  {seconds:9.1f} s    {result['rows'] / seconds:,.0f} rows/s, "
        f"{result['values'] / seconds:,.0f} values/s, {size / mb / seconds:.1f} MB/s"
    )
    print(
        f"peak  {peak / mb:9.1f} MB   RSS, {peak / size:.2f}x the file's size "
        f"({result['baseline_rss'] / mb:.1f} MB before reading)"
    )
    for problem in result["problems"]:
        print(f"  problem: {problem}")
    if peak >= size:
        print("FAIL: peak memory is not below the file's size")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument(
        "--large",
        type=Path,
        metavar="MANIFEST_OR_CSV",
        help="prepare a large file (see bench/gen_large.py) and measure throughput and memory",
    )
    arguments.add_argument("--large-child", type=Path, help=argparse.SUPPRESS)
    options = arguments.parse_args(argv)
    if options.large_child is not None:
        print(json.dumps(prepare_large(options.large_child)))
        return 0
    if options.large is not None:
        return large(options.large)
    return compare_with_notebook()


if __name__ == "__main__":
    sys.exit(main())
