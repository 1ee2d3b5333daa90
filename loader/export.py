"""`export`: a deployment read back into a folder of data files, a config.json and a
manifest that, applied to an empty backend, reproduces it as far as the service lets
anyone read it (loader/readback.py does the reading, loader/exportfolder.py the writing).

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
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from loader.exportfolder import Exported, FolderWriter
from loader.model import Backend, LoaderError, Role, excerpt
from loader.readback import (
    Series,
    Values,
    find_series,
    granted_stretches,
    grids,
    read_config,
    read_values,
)

WORK = ".export"  # inside the output folder while an export is under way


class ExportError(LoaderError):
    """The export cannot start, go on or be written."""


class PartialExport(ExportError):
    """Something could not be carried and `--partial` did not accept that."""


Progress = Callable[[int, int], None]  # windows read so far, windows in all
_Read = TypeVar("_Read")


# ---------------------------------------------------------------------------------------
# The work folder


class WorkFolder:
    """`<out>/.export/`: the source it reads, what it found, and each finished read, each
    written whole (a temporary file renamed) so that a stopped run leaves no half."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / WORK
        self.created = False  # whether this run made the output folder

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
        self.created = not self.out.exists()
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

    def window(self, series: int, window: int) -> Values:
        """A window's values as they were read (all are, before the folder is written)."""
        read = self.read(_window_name(series, window), Values.from_json)
        if read is None:
            raise ExportError(f"{self.path}: the read of window {window} of series {series} "
                              "is gone: run the export again to read it")  # fmt: skip
        return read

    def done(self) -> None:
        shutil.rmtree(self.path)

    def abandon(self) -> None:
        """Leave nothing behind of an export that found nothing to go on with: the work
        folder, and the output folder where this run made it."""
        if self.path.exists():
            self.done()
        if self.created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()


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
                try:
                    config = read_config(backend)
                    listed = find_series(backend, config, parallelism)
                except BaseException:
                    work.abandon()  # nothing was read that is worth keeping
                    raise
                work.write(
                    "found.json", {"config": config, "series": [s.to_json() for s in listed]}
                )
                found = config, listed
            config, series = found
            if not series:
                work.abandon()
                raise ExportError(f"target {chosen.name}: the service shows no dataset to export")
            written = FolderWriter(
                folder, work.path / "files", work.window, config, series, declared
            )
            resumed = _read_values(backend, work, series, written, parallelism, progress)
            scopes = sorted({r.scope for r in manifest.access} | set(chosen.scope_readers))
            looked = _read_grants(backend, work, series, scopes, parallelism)
        written.finish()
        losses = written.losses(scopes, looked)
        if losses.found and not partial:
            raise PartialExport(
                "the export cannot carry everything: " + "; ".join(losses.found) + ". Run it "
                "again with --partial to write it anyway (what was read is kept: it goes on "
                "from here)"
            )
        exported = written.write(looked, losses, chosen, manifest_path, resumed)
        work.done()
    except OSError as error:
        where = error.filename or folder
        raise ExportError(f"{where}: cannot write: {error.strerror or error}") from None
    return exported


def _read_values(
    backend: Backend,
    work: WorkFolder,
    series: list[Series],
    writer: FolderWriter,
    parallelism: int,
    progress: Progress | None,
) -> int:
    """Read every window not read yet, `parallelism` at a time, and have each series'
    file staged as soon as its last window is in (its writing overlaps the other reads);
    how many windows were read before this run."""
    by_trid = grids(writer.config)
    todo = [(i, k) for i, s in enumerate(series) for k in range(len(s.windows))]
    left = [(i, k) for i, k in todo if not (work.path / _window_name(i, k)).is_file()]
    waiting = Counter(i for i, _ in left)  # windows each series still needs
    before = count = len(todo) - len(left)
    if progress:
        progress(count, len(todo))

    def read(i: int, k: int) -> int:
        query = series[i].windows[k]
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
