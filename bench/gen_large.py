"""Write a large synthetic daily origin-destination file for bench/prepare.py --large.

``python bench/gen_large.py PATH [--units 570] [--days 31] [--seed N]`` writes PATH, a CSV in
the shape of upstream's movements_admin3_daily_small.csv (header ``date,pcod_from,pcod_to,
travellers,abnormality,travellers_diffwithref,travellers_pctchangewithref``) with one row per
day and ordered pair of distinct units (570 units, 31 days: 570 * 569 * 31 = 10,054,230
rows), sorted by date, origin and destination. Beside it go ``<stem>.config.json``, a
minimal FlowKit-UI config (one flow category "movements" and its four indicators, a "Day"
resolution with trid 4, a spatial resolution with srid 3 whose boundaries hold one tiny
TopoJSON polygon per unit with its ADM3_PCODE), and ``<stem>.manifest.yaml``, a manifest
that reads the CSV with that config.

Unit codes look like upstream's (HT0111-01) but are invented: XX0101-01, XX0101-02, ...
Values: travellers are counts rounded to tens; the other three columns have two decimals;
about 1% of rows have no travellers (suppressed small counts: their difference and
percentage are empty too) and about 0.5% of abnormality cells are empty.

Everything is vectorised with numpy (>= 2: StringDType and np.strings) and written one
day at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.dtypes import StringDType  # numpy >= 2

HEADER = (
    "date,pcod_from,pcod_to,travellers,abnormality,travellers_diffwithref,"
    "travellers_pctchangewithref"
)
INDICATORS = {
    "travellers": ("Travellers", "sequential", 0),
    "abnormality": ("Abnormality", "diverging", 2),
    "travellers_diffwithref": ("Travellers difference", "diverging", 0),
    "travellers_pctchangewithref": ("Travellers percentage change", "diverging", 2),
}
START = np.datetime64("2020-02-01")


def unit_codes(count: int) -> list[str]:
    """XXddcc-ss: 10 sections per commune, 10 communes per department, like HT0111-01."""
    return [f"XX{i // 100 + 1:02d}{i // 10 % 10 + 1:02d}-{i % 10 + 1:02d}" for i in range(count)]


STRING = StringDType()
# The text after the integer part of a number of hundredths: "", ".01", ..., ".1", ..., ".99".
FRACTIONS = np.array([""] + [f".{f:02d}".rstrip("0") for f in range(1, 100)], dtype=STRING)
SIGNS = np.array(["", "-"], dtype=STRING)


def cents_text(cents: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Integer hundredths -> shortest decimal text ("-0.08", "2.5", "12"), vectorised."""
    magnitude = np.abs(cents)
    text = np.strings.add((magnitude // 100).astype(STRING), FRACTIONS[magnitude % 100])
    return np.strings.add(SIGNS[(cents < 0).astype(np.intp)], text)


def write_csv(path: Path, codes: list[str], days: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    n = len(codes)
    origin, destination = np.divmod(np.arange(n * n), n)
    distinct = origin != destination
    origin, destination = origin[distinct], destination[distinct]
    code_array = np.array(codes, dtype=STRING)
    pairs = np.strings.add(np.strings.add(code_array[origin], ","), code_array[destination])
    size = len(pairs)
    # A reference level per pair: large flows between few pairs, small ones between most.
    reference = np.round(rng.lognormal(mean=5.0, sigma=1.6, size=size), 1) + 10.0
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER + "\n")
        for day in range(days):
            date = str(START + np.timedelta64(day, "D"))
            factor = rng.normal(1.0, 0.15, size=size).clip(0.2, None)
            travellers = np.round(reference * factor, -1).astype(np.int64)
            diff_cents = np.round((travellers - reference) * 100).astype(np.int64)
            pct_cents = np.round((travellers - reference) / reference * 10_000).astype(np.int64)
            abnormality_cents = np.round(rng.normal(0.0, 1.0, size=size) * 100).astype(np.int64)
            suppressed = (rng.random(size) < 0.01) | (travellers == 0)
            no_abnormality = rng.random(size) < 0.005
            columns = [
                travellers.astype(STRING),
                cents_text(abnormality_cents),
                cents_text(diff_cents),
                cents_text(pct_cents),
            ]
            for index, column in enumerate(columns):
                column[no_abnormality if index == 1 else suppressed] = ""
            lines = np.strings.add(date + ",", pairs)
            for column in columns:
                lines = np.strings.add(np.strings.add(lines, ","), column)
            handle.write("\n".join(lines.tolist()))
            handle.write("\n")
            rows += size
    return rows


def topology(codes: list[str]) -> dict[str, Any]:
    """One tiny square per unit on a grid, each its own arc (quantized TopoJSON)."""
    side = int(np.ceil(np.sqrt(len(codes))))
    arcs = []
    geometries = []
    for index, code in enumerate(codes):
        x, y = divmod(index, side)
        arcs.append([[x * 10, y * 10], [9, 0], [0, 9], [-9, 0], [0, -9]])
        geometries.append(
            {
                "type": "Polygon",
                "arcs": [[index]],
                "properties": {"ADM3_PCODE": code, "ADM3_EN": f"Section {code}"},
            }
        )
    return {
        "type": "Topology",
        "transform": {"scale": [0.001, 0.001], "translate": [-10.0, 10.0]},
        "arcs": arcs,
        "objects": {"admin3": {"type": "GeometryCollection", "geometries": geometries}},
    }


def config(codes: list[str]) -> dict[str, Any]:
    return {
        "languages": [{"lid": 1, "code": "en", "name": "English"}],
        "data_providers": [{"dpid": 1, "name": "Synthetic"}],
        "categories": [
            {
                "category_id": "movements",
                "type": "flow",
                "order": 1,
                "label": "Movements",
                "description": "Daily numbers of people travelling between pairs of areas.",
            }
        ],
        "indicators": [
            {
                "category_id": "movements",
                "indicator_id": f"movements.{column}",
                "order": order,
                "label": label,
                "scale": scale,
                "decimals": decimals,
                "min_value": None,
                "max_value": None,
            }
            for order, (column, (label, scale, decimals)) in enumerate(INDICATORS.items(), 1)
        ],
        "spatial_resolutions": [
            {
                "srid": 3,
                "label": "Communal section",
                "index": 3,
                "description": "Invented third-level areas.",
                "boundaries": topology(codes),
            }
        ],
        "temporal_resolutions": [
            {
                "trid": 4,
                "label": "Day",
                "index": 3,
                "relativedelta_unit": "days",
                "relativedelta_num": 1,
                "date_format": "%Y-%m-%d",
                "default_selected": 7,
                "description": "A calendar day",
            }
        ],
    }


def manifest(csv_path: Path, config_path: Path, days: int, units: int) -> str:
    return f"""\
# Written by bench/gen_large.py: {units} units, {days} days of daily movements.
version: 1
targets:
  local:
    url: local:{csv_path.stem}.db
setup: {config_path.name}
revision: bench
datasets:
  - file: {csv_path.name}
    category: movements
    spatial_resolution: Communal section
    temporal_resolution: Day
    columns: {{date: date, origin: pcod_from, destination: pcod_to}}
"""


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("path", type=Path, help="the CSV to write")
    arguments.add_argument("--units", type=int, default=570, help="number of units (570)")
    arguments.add_argument("--days", type=int, default=31, help="number of days (31)")
    arguments.add_argument("--seed", type=int, default=20200201, help="random seed")
    options = arguments.parse_args(argv)
    if options.units < 2 or options.units > 10_000 or options.days < 1:
        arguments.error("need 2 <= --units <= 10000 and --days >= 1")
    path: Path = options.path
    path.parent.mkdir(parents=True, exist_ok=True)
    codes = unit_codes(options.units)
    start = time.perf_counter()
    rows = write_csv(path, codes, options.days, options.seed)
    config_path = path.with_suffix(".config.json")
    config_path.write_text(json.dumps(config(codes)), encoding="utf-8")
    manifest_path = path.with_suffix(".manifest.yaml")
    manifest_path.write_text(
        manifest(path, config_path, options.days, options.units), encoding="utf-8"
    )
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    print(f"{path}: {size:,} bytes ({size / 1e6:.1f} MB), {rows:,} rows in {seconds:.1f}s")
    print(f"config: {config_path}\nmanifest: {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
