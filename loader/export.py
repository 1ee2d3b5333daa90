"""`export`: a deployment read back into a folder of data files, a config.json and a
manifest that, applied to an empty backend, reproduces it as far as the service lets
anyone read it (loader/readback.py does the reading).

What cannot be carried is said twice, in the manifest's header and in the summary, and
the export is refused unless `--partial` accepts it. Reading the content costs as much as
loading it, so the work is kept as it goes in `<out>/.export/` (what was found, then one
file per window of dates read and per scope and series whose grants were looked at): an
interrupted export run again goes on where it stopped. The folder is finished last: data
files, config.json, then the manifest, then `.export/` is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from loader.config import boundary_properties, is_unique_code
from loader.contract import CSV_CATEGORIES
from loader.manifest import display_path
from loader.model import (
    NANOS_PER_UNIT,
    Backend,
    EntityKind,
    LoaderError,
    Role,
    SetupConfig,
    Target,
    excerpt,
    loader_version,
    nanos_to_text,
    plural,
    value_nanos,
)
from loader.readback import (
    EXACT_FLOAT_BELOW,
    Series,
    Values,
    find_series,
    granted_stretches,
    grids,
    read_config,
    read_values,
)

WORK = ".export"  # inside the output folder while an export is under way
MANIFEST_NAME = "deploy.yaml"
CONFIG_NAME = "config.json"
SHOWN_NAMES = 5  # names listed per loss before "and N more"


class ExportError(LoaderError):
    """The export cannot start, go on or be written."""


class PartialExport(ExportError):
    """Something could not be carried and `--partial` did not accept that."""


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


Progress = Callable[[int, int], None]  # windows read so far, windows in all
_Read = TypeVar("_Read")


def _names(items: Iterable[str]) -> str:
    listed = sorted(set(items))
    shown = ", ".join(listed[:SHOWN_NAMES])
    return shown + (f" and {len(listed) - SHOWN_NAMES} more" if len(listed) > SHOWN_NAMES else "")


# ---------------------------------------------------------------------------------------
# The work folder


class WorkFolder:
    """`<out>/.export/`: the source it reads, what it found, and each finished read, each
    written whole (a temporary file renamed) so that a stopped run leaves no half."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / WORK

    def begin(self, source: Mapping[str, str]) -> None:
        """Start, or go on with the export of the same source; refuse anything else."""
        had = self.read("source.json", dict)
        if had is not None:
            if had != dict(source):
                raise ExportError(
                    f"{self.out} holds an unfinished export of {had.get('target')} (from "
                    f"{had.get('manifest')}), not {source['target']}: choose another --out "
                    "or remove it"
                )
            return
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ExportError(f"{self.out} exists and is not an empty folder: choose another --out")
        self.write("source.json", dict(source))

    def write(self, name: str, content: Any) -> None:
        target = self.path / name
        temporary = target.with_name(f".{target.name}.tmp")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(content, separators=(",", ":")), encoding="utf-8")
        os.replace(temporary, target)

    def read(self, name: str, parse: Callable[[Any], _Read]) -> _Read | None:
        """What `name` holds, through `parse`; None when it was not written yet."""
        target = self.path / name
        if not target.is_file():
            return None
        try:
            return parse(json.loads(target.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
            raise ExportError(
                f"{target}: damaged ({type(error).__name__}: {excerpt(str(error))}): remove "
                f"{self.path} to start the export over"
            ) from None

    def done(self) -> None:
        shutil.rmtree(self.path)


def _found(raw: Any) -> tuple[dict[str, list[dict[str, Any]]], list[Series]]:
    config = {str(kind): [dict(e) for e in entities] for kind, entities in raw["config"].items()}
    return config, [Series.from_json(s) for s in raw["series"]]


def _window_name(series: int, window: int) -> str:
    return f"values/{series}-{window}.json"


def _grants_name(scope: str, series: int) -> str:
    return f"grants/{scope.encode().hex()}-{series}.json"  # a scope may hold any character


# ---------------------------------------------------------------------------------------
# The export


def export(
    manifest_path: str | Path,
    out: str | Path,
    *,
    target: str | None = None,
    partial: bool = False,
    parallelism: int = 8,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Exported:
    """Read `manifest_path`'s target back into `out` (see the module's docstring)."""
    from loader.backends.factory import Opening, open_backend
    from loader.run import check_reader_sees_everything
    from loader.validation import validate

    env = dict(os.environ if environ is None else environ)
    manifest = validate(manifest_path, target=target, data=False, environ=env).manifest_or_raise()
    chosen = manifest.target(target)
    declared = manifest.setup(chosen.name)
    folder = Path(out)
    work = WorkFolder(folder)
    try:
        work.begin({"manifest": str(Path(manifest_path).absolute()), "target": chosen.url})
        opening = Opening(environ=env, parallelism=parallelism, read_only=True)
        with open_backend(chosen, declared, opening) as backend:
            check_reader_sees_everything(backend.identities([Role.READER]).get(Role.READER))
            found = work.read("found.json", _found)
            if found is None:
                config = read_config(backend)
                listed = find_series(backend, config, parallelism)
                work.write(
                    "found.json", {"config": config, "series": [s.to_json() for s in listed]}
                )
                found = config, listed
            config, series = found
            if not series:
                work.done()
                if not any(folder.iterdir()):
                    folder.rmdir()
                raise ExportError(f"target {chosen.name}: the service shows no dataset to export")
            written = _Writer(folder, work, config, series, declared)
            resumed = _read_values(backend, work, series, written, parallelism, progress)
            scopes = sorted({r.scope for r in manifest.access} | set(chosen.scope_readers))
            looked = _read_grants(backend, work, series, scopes, parallelism)
        written.finish()
        losses = written.losses(scopes, looked, chosen)
        if losses.found and not partial:
            raise PartialExport(
                "the export cannot carry everything: " + "; ".join(losses.found) + ". Run it "
                "again with --partial to write it anyway (what was read is kept: it goes on "
                "from here)"
            )
        exported = written.write(looked, losses, chosen, manifest_path)
    except OSError as error:
        where = error.filename or folder
        raise ExportError(f"{where}: cannot write: {error.strerror or error}") from None
    exported.resumed = resumed
    return exported


def _read_values(
    backend: Backend,
    work: WorkFolder,
    series: list[Series],
    writer: _Writer,
    parallelism: int,
    progress: Progress | None,
) -> int:
    """Read every window not read yet, `parallelism` at a time, and have each series'
    file staged as soon as its last window is in (its writing overlaps the other reads);
    how many windows were read before this run."""
    by_trid = grids(writer.config)
    todo = [(i, k) for i, s in enumerate(series) for k in range(len(s.windows()))]
    left = [(i, k) for i, k in todo if not (work.path / _window_name(i, k)).is_file()]
    waiting = Counter(i for i, _ in left)  # windows each series still needs
    before = count = len(todo) - len(left)
    if progress:
        progress(count, len(todo))

    def read(i: int, k: int) -> int:
        query = series[i].windows()[k]
        work.write(_window_name(i, k), read_values(backend, query, by_trid[query.trid]).to_json())
        return i

    def stage(i: int) -> None:
        writer.stage(i)

    pool = ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="export")
    running: set[Future[int | None]] = {pool.submit(read, i, k) for i, k in left}
    running |= {pool.submit(stage, i) for i in range(len(series)) if not waiting[i]}
    try:
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done = future.result()  # the first failure ends the export (what was read stays)
                if done is None:
                    continue  # a file staged
                count += 1
                waiting[done] -= 1
                if not waiting[done]:
                    running.add(pool.submit(stage, done))
            if progress:
                progress(count, len(todo))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return before


def _read_grants(backend: Backend, work: WorkFolder, series: list[Series], scopes: list[str],
                 parallelism: int) -> dict[str, dict[int, list[tuple[int, int]]]]:  # fmt: skip
    """Per scope that has a reader: per series, the stretches of dates its readers see."""
    readers = {scope: r for scope in scopes if (r := backend.reader(scope)) is not None}

    def look(scope: str, index: int) -> list[tuple[int, int]]:
        name = _grants_name(scope, index)
        stretches = work.read(name, lambda raw: [(int(a), int(b)) for a, b in raw])
        if stretches is None:
            stretches = granted_stretches(backend, readers[scope], series[index])
            work.write(name, stretches)
        return stretches

    with ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="grants") as pool:
        found = {(scope, i): pool.submit(look, scope, i)
                 for scope in readers for i in range(len(series))}  # fmt: skip
        return {scope: {i: found[(scope, i)].result() for i in range(len(series))}
                for scope in readers}  # fmt: skip


# ---------------------------------------------------------------------------------------
# The folder written


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
    """What one series' windows hold, without their values (which are read again, a series
    at a time, to be written: a national deployment's values do not fit in memory)."""

    series: Series
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


def _unit_codes(spatial: Mapping[str, Any]) -> dict[str, set[str]]:
    """A spatial resolution's boundary properties that hold a unique code per geometry,
    with their codes."""
    boundaries = spatial.get("boundaries")
    properties = boundary_properties(boundaries) if isinstance(boundaries, Mapping) else []
    names = sorted(set().union(*(p.keys() for p in properties))) if properties else []
    return {n: {str(p[n]) for p in properties} for n in names if is_unique_code(properties, n)}


class _Writer:
    """The export's folder, from the work folder's reads."""

    def __init__(self, folder: Path, work: WorkFolder, config: Mapping[str, list[dict[str, Any]]],
                 series: list[Series], declared: SetupConfig) -> None:  # fmt: skip
        self.folder = folder
        self.work = work
        self.config = config
        self.series = series
        self.declared = declared
        try:
            import pyarrow  # noqa: F401 (Parquet decimals: the `parquet` extra)

            self.has_parquet = True
        except ImportError:
            self.has_parquet = False
        self.codes = {int(s["srid"]): _unit_codes(s)
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
                    index = self.files.index(file)
                    kept = {dt: cells for dt, cells in self._load(index).items()
                            if dt not in file.unknown_units}  # fmt: skip
                    self._write_staged(file, kept)

    def _window(self, index: int, window: int) -> Values:
        read = self.work.read(_window_name(index, window), Values.from_json)
        if read is None:  # every window was read before the folder is written
            raise ExportError(f"{self.work.path}: the read of window {window} of series "
                              f"{index} is gone: run the export again to read it")  # fmt: skip
        return read

    def _load(self, index: int) -> dict[str, dict[tuple[str, ...], int]]:
        """A series' datasets, as its windows read them."""
        datasets: dict[str, dict[tuple[str, ...], int]] = {}
        for window in range(len(self.series[index].windows())):
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
        for window in range(len(series.windows())):
            values = self._window(index, window)
            datasets.update(sorted(values.datasets.items()))
            inexact.update(values.inexact)
            off_grid.update(values.off_grid)
        units = [{u for key in cells for u in key} for cells in datasets.values()]
        fits = all(_round_trips(n) for cells in datasets.values() for n in cells.values())
        facts = _Facts(
            series, len(datasets), len(inexact), len(off_grid), fits,
            any(len(key) == 2 for cells in datasets.values() for key in cells),
            {name: {dt for dt, used in zip(datasets, units, strict=True) if not used <= held}
             for name, held in codes.items()},
        )  # fmt: skip
        facts.parquet = self.has_parquet and not fits
        self._write_staged(facts, datasets)
        self.staged[index] = facts
        return facts

    def _staged(self, file: _Facts) -> Path:
        return self.work.path / "files" / self._data_path(file)

    def _write_staged(self, file: _Facts, datasets: _Datasets) -> None:
        path = self._staged(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        (_write_parquet if file.parquet else _write_csv)(path, datasets, file.flow)

    def losses(self, scopes: list[str], looked: Mapping[str, Any], target: Target) -> Losses:
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
        names = [_file_name(s.category_id), _file_name(s.indicator_id)]
        if names != [s.category_id, s.indicator_id]:
            names[1] += f"~{self.series.index(s)}"
        suffix = "parquet" if file.parquet else "csv"
        return f"data/{names[0]}/{names[1]}.srid{s.srid}.trid{s.trid}.{suffix}"

    def write(self, looked: Mapping[str, Mapping[int, list[tuple[int, int]]]],
              losses: Losses, target: Target, manifest_path: str | Path) -> Exported:  # fmt: skip
        datasets = 0
        for file in self.files:
            path = self.folder / self._data_path(file)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._staged(file), path)
            datasets += file.datasets - len(file.unknown_units)
        (self.folder / CONFIG_NAME).write_text(_config_text(self.config), encoding="utf-8")
        rules = self._rules(looked)
        text = self._manifest(rules, losses, target, manifest_path)
        from loader.draft import write_new

        write_new(self.folder / MANIFEST_NAME, text)
        self.work.done()
        return Exported(self.folder, len(self.files), datasets,
                        {scope: len(r) for scope, r in rules.items()}, losses, 0)  # fmt: skip

    def _rules(self, looked: Mapping[str, Mapping[int, list[tuple[int, int]]]]
               ) -> dict[str, list[str]]:  # fmt: skip
        from loader.draft import yaml_scalar

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
        from loader.draft import schema_ref, yaml_scalar

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


def _file_name(text: str) -> str:
    """An id as a file name: letters, digits, `-`, `_` and inner dots; the rest as `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).strip(".") or "_"


def _config_text(config: Mapping[str, list[dict[str, Any]]]) -> str:
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
