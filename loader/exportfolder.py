"""The folder an export writes (loader/export.py reads what goes in it): one data file
per series (CSV, or Parquet decimals where a CSV's floats would lose digits), its
config.json, and a manifest whose header lists what could not be carried, with the
access rules each scope's reader showed.

A series' file is staged as soon as its windows are read (`FolderWriter.stage`, from
any thread) and moved into the folder only when the whole export is written; the values
are read back from the work folder a series at a time, never all at once.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from loader.config import unit_code_properties
from loader.contract import CSV_CATEGORIES
from loader.draft import schema_ref, write_new, yaml_scalar
from loader.manifest import display_path
from loader.model import (
    NANOS_PER_UNIT,
    EntityKind,
    SetupConfig,
    Target,
    loader_version,
    nanos_to_text,
    plural,
    value_nanos,
)
from loader.readback import EXACT_FLOAT_BELOW, Series, Values

MANIFEST_NAME = "deploy.yaml"
CONFIG_NAME = "config.json"
SHOWN_NAMES = 5  # names listed per loss before "and N more"


@dataclass
class Losses:
    """What the export could not carry: `always` is what no export of any deployment
    can read; `found` is what this deployment holds that the export lost (it needs
    `--partial`)."""

    always: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)


@dataclass
class Exported:
    """What an export wrote."""

    folder: Path
    series: int  # one data file each
    datasets: int
    grants: dict[str, int]  # rules per scope
    losses: Losses
    resumed: int  # windows read by an earlier, interrupted run


def _names(items: Iterable[str]) -> str:
    listed = sorted(set(items))
    shown = ", ".join(listed[:SHOWN_NAMES])
    return shown + (f" and {len(listed) - SHOWN_NAMES} more" if len(listed) > SHOWN_NAMES else "")


def _round_trips(nanos: int) -> bool:
    """Whether a value written as decimal text and read back as the loader reads a CSV
    (a float) is the same value (always below EXACT_FLOAT_BELOW)."""
    return abs(nanos) < EXACT_FLOAT_BELOW * NANOS_PER_UNIT or (
        value_nanos(float(nanos_to_text(nanos))) == nanos
    )


def _date_text(dt: str) -> str:
    return dt.removesuffix(" 00:00:00")


@dataclass
class _Facts:
    """What one series' windows hold, its file once staged: not its values (a national
    deployment's do not fit in memory; they are read again only where some must go)."""

    series: Series
    index: int  # the series' number in the export
    datasets: int
    inexact: int  # datasets whose floats may have lost digits
    off_grid: int  # datasets dated where a manifest cannot name them
    fits_csv: bool  # whether a CSV, read back as floats, carries every value exactly
    flow: bool
    # Per unit-code property of its spatial resolution: the dts holding a code it lacks.
    lacking: dict[str, set[str]]
    unknown_units: set[str] = field(default_factory=set)  # dts left out, once one is chosen
    parquet: bool = False

    @property
    def unread(self) -> int:
        """How many datasets the series counted that no window found (which they are,
        the service does not say)."""
        return max(0, self.series.count - self.datasets - self.off_grid)


Window = Callable[[int, int], Values]  # a series' window of values, by their numbers


class FolderWriter:
    """The export's folder: `window` gives each window's values as they were read,
    `staging` is where series' files wait until the folder is written."""

    def __init__(self, folder: Path, staging: Path, window: Window,
                 config: Mapping[str, list[dict[str, Any]]], series: list[Series],
                 declared: SetupConfig) -> None:  # fmt: skip
        self.folder = folder
        self.staging = staging
        self._window = window
        self.config = config
        self.series = series
        self.declared = declared
        try:
            import pyarrow  # noqa: F401 (Parquet decimals: the `parquet` extra)

            self.has_parquet = True
        except ImportError:
            self.has_parquet = False
        self.codes = {int(s["srid"]): unit_code_properties(s.get("boundaries"))
                      for s in config[EntityKind.SPATIAL_RESOLUTION.value]}  # fmt: skip
        self.staged: dict[int, _Facts] = {}  # by series: its file written in the work folder
        self.files: list[_Facts] = []
        self.unit_properties: dict[int, str] = {}

    def finish(self) -> None:
        """Every series staged, and the unit-code property of each spatial resolution
        chosen: the one its datasets use; those with a code it lacks are left out (the
        loader would refuse them), and their files written again without them."""
        self.files = [self.staged.get(i) or self.stage(i) for i in range(len(self.series))]
        for srid, candidates in self.codes.items():
            files = [f for f in self.files if f.series.srid == srid]
            if not candidates or not files:
                continue
            best = min(sorted(candidates), key=lambda n: sum(len(f.lacking[n]) for f in files))
            self.unit_properties[srid] = best
            for file in files:
                file.unknown_units = file.lacking[best]
                if file.unknown_units:
                    kept = {dt: cells for dt, cells in self._load(file.index).items()
                            if dt not in file.unknown_units}  # fmt: skip
                    self._write_staged(file, kept)

    def _load(self, index: int) -> dict[str, dict[tuple[str, ...], int]]:
        """A series' datasets, as its windows read them."""
        datasets: dict[str, dict[tuple[str, ...], int]] = {}
        for window in range(len(self.series[index].windows)):
            datasets.update(self._window(index, window).datasets)
        return datasets

    def stage(self, index: int) -> _Facts:
        """A series' facts, and its data file written in the work folder (moved into the
        export's folder once it is written whole). Series are staged from several
        threads, each its own."""
        series = self.series[index]
        codes = self.codes.get(series.srid, {})
        datasets: dict[str, dict[tuple[str, ...], int]] = {}
        inexact: set[str] = set()
        off_grid: set[str] = set()
        for window in range(len(series.windows)):
            values = self._window(index, window)
            datasets.update(sorted(values.datasets.items()))
            inexact.update(values.inexact)
            off_grid.update(values.off_grid)
        units = [{u for key in cells for u in key} for cells in datasets.values()]
        fits = all(_round_trips(n) for cells in datasets.values() for n in cells.values())
        facts = _Facts(
            series, index, len(datasets), len(inexact), len(off_grid), fits,
            any(len(key) == 2 for cells in datasets.values() for key in cells),
            {name: {dt for dt, used in zip(datasets, units, strict=True) if not used <= held}
             for name, held in codes.items()},
        )  # fmt: skip
        facts.parquet = self.has_parquet and not fits
        self._write_staged(facts, datasets)
        self.staged[index] = facts
        return facts

    def _staged(self, file: _Facts) -> Path:
        return self.staging / self._data_path(file)

    def _write_staged(self, file: _Facts, datasets: _Datasets) -> None:
        path = self._staged(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        (_write_parquet if file.parquet else _write_csv)(path, datasets, file.flow)

    def losses(self, scopes: list[str], looked: Mapping[str, Any]) -> Losses:
        losses = Losses(always=[
            "revisions: the service never answers them; every dataset is exported with "
            f"the revision {self.revision}",
            "date_added: never answered; each dataset gets the date it is loaded again",
            "config without a visible dataset: the service shows a category, indicator or "
            "resolution only while one of its datasets is visible, so none such is exported",
            "grants: scope mappings cannot be listed; "
            + (f"only {', '.join(looked)} were read, as their readers see them"
               if looked else "none was read (no scope has a reader)")
            + "; every dataset gets the admin mapping",
        ])  # fmt: skip
        if any(f.series.category_id not in CSV_CATEGORIES for f in self.files):
            losses.always.append(
                "dates of the categories /csv does not give come in their resolution's "
                "format: a dataset stored off its resolution's grid is exported on it"
            )
        shown = {kind: {str(e.get(kind.id_field)) for e in self.config.get(kind.value, [])}
                 for kind in EntityKind}  # fmt: skip
        for kind in EntityKind:
            missing = [e.label for e in self.declared.entities
                       if e.kind is kind and str(e.id) not in shown[kind]]  # fmt: skip
            if missing:
                losses.found.append(
                    f"{plural(len(missing), kind.singular, kind.singular + 's')} of the manifest's "
                    f"config not shown by the service (no visible dataset, or not there), "
                    f"not exported: {_names(missing)}"
                )
        for scope in scopes:
            if scope not in looked:
                losses.found.append(
                    f"{scope}: the manifest names it but gives no reader credential of it "
                    "(credentials.scopes), so its grants could not be read"
                )
        kept_out: list[tuple[str, Callable[[_Facts], int]]] = [
            ("whose values, read through /query, may have lost digits "
             f"({EXACT_FLOAT_BELOW:,} or more, in a category /csv does not give)",
             lambda f: f.inexact),
            ("dated off their resolution's grid, which a manifest cannot name: not "
             "exported", lambda f: f.off_grid),
            ("holding unit codes their resolution's boundaries lack, which the loader "
             "refuses: not exported", lambda f: len(f.unknown_units)),
            ("no window of dates could read (stored off their resolution's grid, or "
             "written while the export ran): not exported", lambda f: f.unread),
        ]  # fmt: skip
        for what, count in kept_out:
            hit = [f"{f.series.indicator_id} srid={f.series.srid} trid={f.series.trid}"
                   for f in self.files if count(f)]  # fmt: skip
            if hit:
                total = sum(count(f) for f in self.files)
                losses.found.append(f"{plural(total, 'dataset')} {what}: {_names(hit)}")
        if not self.has_parquet:
            lossy = [f for f in self.files if not f.fits_csv]
            if lossy:
                losses.found.append(
                    f"{plural(len(lossy), 'series', 'series')} hold values a CSV cannot carry "
                    "exactly (the loader reads it as floats); install flowkit-loader[parquet] "
                    "to export them as Parquet decimals: "
                    + _names(f.series.indicator_id for f in lossy)
                )
        return losses

    @property
    def revision(self) -> str:
        return f"exported-{date.today().isoformat()}"

    def _data_path(self, file: _Facts) -> str:
        """`data/<category>/<indicator>.srid<N>.trid<M>.csv`, with ids made safe for a
        file name (the service's may hold any character: `/` and `..` are kept out) and,
        where that changed one, `~<series number>` added (no safe name holds a `~`)."""
        s = file.series
        names = [file_name(s.category_id), file_name(s.indicator_id)]
        if names != [s.category_id, s.indicator_id]:
            names[1] += f"~{file.index}"
        suffix = "parquet" if file.parquet else "csv"
        return f"data/{names[0]}/{names[1]}.srid{s.srid}.trid{s.trid}.{suffix}"

    def write(self, looked: Mapping[str, Mapping[int, list[tuple[int, int]]]], losses: Losses,
              target: Target, manifest_path: str | Path, resumed: int) -> Exported:  # fmt: skip
        datasets = 0
        for file in self.files:
            path = self.folder / self._data_path(file)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._staged(file), path)
            datasets += file.datasets - len(file.unknown_units)
        (self.folder / CONFIG_NAME).write_text(config_text(self.config), encoding="utf-8")
        rules = self._rules(looked)
        text = self._manifest(rules, losses, target, manifest_path)
        write_new(self.folder / MANIFEST_NAME, text)
        return Exported(self.folder, len(self.files), datasets,
                        {scope: len(r) for scope, r in rules.items()}, losses, resumed)  # fmt: skip

    def _rules(self, looked: Mapping[str, Mapping[int, list[tuple[int, int]]]]
               ) -> dict[str, list[str]]:  # fmt: skip
        rules: dict[str, list[str]] = {}
        for scope, by_series in looked.items():
            lines = []
            for i, stretches in sorted(by_series.items()):
                s = self.series[i]
                for first, count in stretches:
                    indicator = yaml_scalar(s.indicator_id, flow=True)
                    lines.append(
                        f"{{indicator: {indicator}, spatial_resolution: {s.srid}, "
                        f"temporal_resolution: {s.trid}, start: {json.dumps(s.dates[first])}, "
                        f"duration: {count}}}"
                    )
            if lines:
                rules[scope] = lines
        return rules

    def _manifest(self, rules: Mapping[str, list[str]], losses: Losses, target: Target,
                  manifest_path: str | Path) -> str:  # fmt: skip
        header = [
            f"# yaml-language-server: $schema={schema_ref(self.folder.absolute())}",
            "#",
            f"# Exported by flowkit-loader {loader_version()} on {date.today().isoformat()} "
            f"from {target.url}",
            f"# (target {target.name} of {display_path(manifest_path)}). Applied to an empty "
            "backend it reproduces",
            "# the deployment as far as the service lets it be read. What it could not carry:",
        ]
        for line in losses.found + losses.always:
            wrapped = textwrap.wrap(line, width=88)
            header += [f"#   - {wrapped[0]}", *(f"#     {more}" for more in wrapped[1:])]
        labels = {int(s["srid"]): str(s.get("label"))
                  for s in self.config[EntityKind.SPATIAL_RESOLUTION.value]}  # fmt: skip
        body = [
            "version: 1",
            "targets:",
            "  local:",
            "    url: local:.flowkit/exported.db",
            f"setup: {CONFIG_NAME}",
            f"revision: {self.revision}",
        ]
        used = sorted({f.series.srid for f in self.files} & set(self.unit_properties))
        if used:
            body.append("unit_properties:")
            body += [f"  {yaml_scalar(labels[srid])}: {yaml_scalar(self.unit_properties[srid])}"
                     for srid in used]  # fmt: skip
        body.append("datasets:")
        for file in self.files:
            s = file.series
            units = ("origin: origin, destination: destination" if file.flow
                     else "spatial_unit: unit")  # fmt: skip
            body += [
                f"  - file: {self._data_path(file)}",
                f"    category: {yaml_scalar(s.category_id)}",
                f"    spatial_resolution: {s.srid}",
                f"    temporal_resolution: {s.trid}",
                f"    columns: {{date: date, {units}}}",
                f"    indicators: {{value: {yaml_scalar(s.indicator_id, flow=True)}}}",
            ]
        if rules:
            body.append("access:")
            for scope, lines in rules.items():
                body.append(f"  {yaml_scalar(scope)}:")
                body += [f"    - {line}" for line in lines]
        return "\n".join([*header, *body]) + "\n"


def file_name(text: str) -> str:
    """An id as a file name: letters, digits, `-`, `_` and inner dots; the rest as `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).strip(".") or "_"


def config_text(config: Mapping[str, list[dict[str, Any]]]) -> str:
    """config.json with one entity a line: a diff shows which changed, and the megabytes
    of boundaries go through the C encoder (indenting them would not)."""
    kinds = []
    for kind, entities in config.items():
        lines = ",\n".join(f"    {json.dumps(e, ensure_ascii=False)}" for e in entities)
        kinds.append(f"  {json.dumps(kind)}: " + (f"[\n{lines}\n  ]" if entities else "[]"))
    return "{\n" + ",\n".join(kinds) + "\n}\n"


_Datasets = Mapping[str, Mapping[tuple[str, ...], int]]


def _unit_names(flow: bool) -> tuple[str, ...]:
    return ("origin", "destination") if flow else ("unit",)


def _write_csv(path: Path, datasets: _Datasets, flow: bool) -> None:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(["date", *_unit_names(flow), "value"])
        for dt, cells in datasets.items():
            day = _date_text(dt)
            if any(_NEEDS_QUOTES.search(u) for units in cells for u in units):
                out.writerows([day, *units, nanos_to_text(n)] for units, n in cells.items())
            else:  # boundary codes as they usually are: no field needs quoting
                handle.writelines(f"{day},{','.join(units)},{nanos_to_text(n)}\n"
                                  for units, n in cells.items())  # fmt: skip


_NEEDS_QUOTES = re.compile(r'[,"\r\n]')  # what the csv module would quote


def _write_parquet(path: Path, datasets: _Datasets, flow: bool) -> None:
    """Values as DECIMAL(20,9), which the loader reads exactly (a CSV's are floats)."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [(_date_text(dt), units, nanos) for dt, cells in datasets.items()
            for units, nanos in cells.items()]  # fmt: skip
    columns: dict[str, Any] = {"date": pa.array([r[0] for r in rows], pa.string())}
    for index, name in enumerate(_unit_names(flow)):
        columns[name] = pa.array([r[1][index] for r in rows], pa.string())
    columns["value"] = pa.array([Decimal(r[2]).scaleb(-9) for r in rows], pa.decimal128(20, 9))
    pq.write_table(pa.table(columns), path)
