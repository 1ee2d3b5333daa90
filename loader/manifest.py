"""Manifest (YAML document) -> Manifest model, with the semantic problems found on the way.

Reading order: `read_document` parses the YAML (positions, ${ENV}); validate checks it
against the JSON Schema; `load_setup_source` reads the setup config; `ManifestBuilder`
resolves targets (through loader/targets.py), ids, data files and access rules. The
builder is defensive: a part that the schema already rejected is skipped here, never
reported twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from loader import checked
from loader.config import ConfigBuilder
from loader.contract import SEES_EVERYTHING
from loader.fileroot import FileRoot, OutsideRoot
from loader.jsonpos import JsonPositions
from loader.manifestpart import ManifestPart
from loader.model import (
    DEFAULT_MISSING,
    AccessRule,
    DatasetSpec,
    EntityKind,
    LoaderError,
    Manifest,
    Position,
    Problem,
    SetupConfig,
    Severity,
    Target,
)
from loader.targets import TargetReader
from loader.timegrid import DateError, Grid
from loader.yamlsrc import MAX_NESTING, JsonPath, YamlDocument, YamlSyntaxError, load_yaml

_GLOB_CHARS = re.compile(r"[*?\[]")


def display_path(path: Path | str) -> str:
    """A path as a user wants to read it: relative to the working directory when it is
    inside it or near it (a sibling folder), absolute otherwise."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive
        return absolute
    return relative if not relative.startswith(os.path.join("..", "..")) else absolute


def read_document(path: Path, environ: Mapping[str, str]) -> YamlDocument:
    """Parse the manifest file; raise LoaderError (missing) or YamlSyntaxError (broken)."""
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LoaderError(f"{shown}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LoaderError(f"{shown}: cannot read manifest: {error}") from None
    document = load_yaml(text, shown, environ)
    if not isinstance(document.value, dict):
        raise YamlSyntaxError(Position(shown, 1, 1), "a manifest must be a mapping of keys")
    return document


@dataclass
class SetupSource:
    """The setup config as read, with a way to locate any of its values."""

    config: Any
    locate: Callable[[JsonPath], Position]
    from_file: bool
    digest: str = ""  # of the file's text, for what is remembered of it (checked.py)


def load_setup_source(document: YamlDocument, base: Path) -> SetupSource | Problem:
    value = document.value.get("setup")
    if isinstance(value, dict):
        return SetupSource(value, lambda p: document.position(("setup", *p)), from_file=False)
    if not isinstance(value, str):
        return SetupSource({}, document.position, from_file=False)
    where = document.position(("setup",))
    if document.unresolved(("setup",)):
        return Problem(
            where,
            f"environment variable {document.unresolved(('setup',))[0].name} "
            "is not set (needed to find the setup config)",
        )
    try:
        path = FileRoot.of(base, document.value.get("data_root")).resolve(value)
    except OutsideRoot as refused:
        return Problem(where, f"setup config {refused}")
    shown = display_path(base / value)  # as written: a link in the way is not shown
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Problem(where, f"setup config not found: {value}")
    except (OSError, UnicodeDecodeError) as error:
        return Problem(where, f"cannot read setup config {value}: {error}")
    positions = JsonPositions(shown, text)
    digest = checked.digest_of(text)
    nesting = checked.digest_of(digest, str(MAX_NESTING))
    if checked.recall("nesting", nesting) is None:
        too_deep = positions.nesting_problem()  # before json.loads, which recurses per level
        if too_deep is not None:
            return too_deep
        checked.remember("nesting", nesting, True)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        return Problem(Position(shown, error.lineno, error.colno), f"invalid JSON: {error.msg}")
    return SetupSource(config, positions.position, from_file=True, digest=digest)


class ManifestBuilder(ManifestPart):
    """The whole manifest: targets (loader/targets.py), the setup config and each
    target's ids, data files and access rules."""

    def __init__(
        self,
        document: YamlDocument,
        base: Path,
        setup: SetupSource | None,
        target: str | None = None,
        rejected: frozenset[JsonPath] = frozenset(),
    ) -> None:
        super().__init__(document, base, rejected, [])
        self.selected = target
        self.file_root = FileRoot.of(base, document.value.get("data_root"))
        # None when the setup config could not be read (reported already): nothing that
        # depends on it is checked, so that one cause gives one line.
        self.source = setup or SetupSource({}, document.position, from_file=False)
        self.setup_readable = setup is not None
        self.value: dict[str, Any] = document.value

    def section(self, name: str) -> Any:
        return self.value.get(name)

    # -- the whole ----------------------------------------------------------------------

    def build(self) -> Manifest:
        self.report_variables()
        self.report_duplicate_keys()
        targets = TargetReader(self, self.file_root).targets(self.section("targets"))
        setups = self.setups(targets)
        any_setup = next(iter(setups.values()), None) if self.setup_readable else None
        revision = self.section("revision")
        revision = revision if isinstance(revision, str) else ""
        datasets = self.datasets(setups, revision) if any_setup else ()
        access = self.access(setups) if any_setup else ()
        default = self.section("default_target")
        if isinstance(default, str) and default not in targets:
            self.error(("default_target",), f"no target named '{default}'")
        if not isinstance(default, str):
            default = next(iter(targets)) if len(targets) == 1 else None
        return Manifest(
            path=self.doc.path,
            version=1,
            targets=targets,
            default_target=default if default in targets else None,
            setups=setups,
            datasets=datasets,
            access=access,
            revision=revision,
        )

    def chosen_target(self) -> str | None:
        """The target this run is about: --target, default_target, or the only one."""
        if self.selected:
            return self.selected
        default = self.section("default_target")
        targets = self.section("targets")
        if isinstance(default, str):
            return default
        if isinstance(targets, dict) and len(targets) == 1:
            return str(next(iter(targets)))
        return None

    def report_variables(self) -> None:
        reported: set[tuple[JsonPath, str]] = set()
        chosen = self.chosen_target()
        for variable in self.doc.variables:
            if variable.defined or (variable.path, variable.name) in reported:
                continue
            if variable.path[:1] == ("targets",) and chosen and variable.path[1:2] != (chosen,):
                continue  # another target's variables matter only when that one is used
            if variable.path == ("setup",):
                continue  # load_setup_source says why it is needed
            reported.add((variable.path, variable.name))
            # Validate runs where secrets are absent (pre-commit, forks): a variable that
            # only plan and apply need is a warning; one validate needs is an error.
            if variable.path[:1] == ("targets",):
                self.problems.append(
                    Problem(
                        variable.position,
                        f"environment variable {variable.name} is not set "
                        "(needed to plan or apply)",
                        Severity.WARNING,
                    )
                )
            else:
                self.problems.append(
                    Problem(variable.position, f"environment variable {variable.name} is not set")
                )

    def report_duplicate_keys(self) -> None:
        for path, position in self.doc.duplicate_keys:
            self.problems.append(Problem(position, f"duplicate key '{path[-1]}'"))

    # -- setup config, per target ids -----------------------------------------------------

    def setups(self, targets: Mapping[str, Target]) -> dict[str, SetupConfig]:
        top_ids = self.ids_section(self.value.get("ids"))
        unit_props = self.section("unit_properties")
        unit_props = unit_props if isinstance(unit_props, dict) else {}
        config = self.source.config if isinstance(self.source.config, Mapping) else {}
        built: dict[str, tuple[SetupConfig, list[Problem]]] = {}
        setups: dict[str, SetupConfig] = {}
        digest = self.source.digest
        known = checked.recall_texts("digests", digest) if digest else {}
        names = list(targets) or [""]
        for name in names:
            target_ids = self.ids_section(
                self.value.get("targets", {}).get(name, {}).get("ids") if name else None
            )
            merged = {
                kind: {**top_ids.get(kind, {}), **target_ids.get(kind, {})}
                for kind in {*top_ids, *target_ids}
            }
            fingerprint = json.dumps(merged, sort_keys=True)
            if fingerprint not in built:
                builder = ConfigBuilder(
                    config,
                    self.source.locate,
                    merged,
                    self.locate_ids(name),
                    unit_props,
                    self.doc.key_position,
                    known,
                )
                built[fingerprint] = (builder.build(), builder.problems)
            setups[name] = built[fingerprint][0]
        if digest:
            found = {e.digest_key: e.digest for s in setups.values() for e in s.entities}
            if not found.items() <= known.items():
                checked.remember("digests", digest, {**known, **found})
        seen: set[Problem] = set()
        for _, problems in built.values():
            for problem in problems:
                if problem not in seen:
                    seen.add(problem)
                    self.problems.append(problem)
        return setups

    def locate_ids(self, target: str) -> Callable[[JsonPath], Position]:
        def locate(path: JsonPath) -> Position:
            own = ("targets", target, *path)
            if target and own in self.doc.key_positions:
                return self.doc.key_position(own)
            return self.doc.key_position(path)

        return locate

    @staticmethod
    def ids_section(value: Any) -> dict[str, dict[str, int]]:
        if not isinstance(value, dict):
            return {}
        return {
            kind: {str(k): v for k, v in ids.items() if isinstance(v, int)}
            for kind, ids in value.items()
            if isinstance(ids, dict)
        }

    # -- resolution references ------------------------------------------------------------

    def resolution_label(
        self, path: JsonPath, value: Any, setups: Mapping[str, SetupConfig], spatial: bool
    ) -> str | None:
        """The label a dataset or rule means by `value` (a label or an id) in every target."""
        what = "spatial" if spatial else "temporal"
        labels: dict[str, str | None] = {}
        for name, setup in setups.items():
            resolutions = setup.spatial if spatial else setup.temporal
            if isinstance(value, str):
                labels[name] = value if value in resolutions else None
            else:
                labels[name] = next(
                    (
                        label
                        for label, r in resolutions.items()
                        if (r.srid if spatial else r.trid) == value  # type: ignore[union-attr]
                    ),
                    None,
                )
        found = set(labels.values())
        kind = EntityKind.SPATIAL_RESOLUTION if spatial else EntityKind.TEMPORAL_RESOLUTION
        if None in found and any(
            k is kind and (label == value or not isinstance(value, str))
            for setup in setups.values()
            for k, label in setup.excluded
        ):
            return None  # a resolution without an id: that root cause is reported already
        if found == {None}:
            any_setup = next(iter(setups.values()))
            known = sorted(any_setup.spatial if spatial else any_setup.temporal)
            self.error(
                path,
                f"unknown {what} resolution {value!r} (known: {', '.join(known) or 'none'})",
            )
            return None
        if len(found) > 1:
            meanings = ", ".join(f"{t}: {label or 'none'}" for t, label in labels.items())
            self.error(
                path,
                f"{what} resolution {value!r} is not the same resolution in every target "
                f"({meanings}); name it by label",
            )
            return None
        return found.pop()

    # -- datasets -----------------------------------------------------------------------

    def datasets(self, setups: Mapping[str, SetupConfig], revision: str) -> tuple[DatasetSpec, ...]:
        section = self.section("datasets")
        specs: list[DatasetSpec] = []
        setup = next(iter(setups.values()))
        listed: dict[str, int] = {}  # file -> the entry that lists it first
        for index, entry in enumerate(section if isinstance(section, list) else []):
            if isinstance(entry, dict) and self.is_readable(("datasets", index)):
                spec = self.dataset(index, entry, setups, setup, revision)
                if spec is not None:
                    specs.append(self.once(spec, listed))
        return tuple(specs)

    def once(self, spec: DatasetSpec, listed: dict[str, int]) -> DatasetSpec:
        """The entry without the files an earlier entry lists already (each is an error:
        read twice, a file would count twice and fight itself for its datasets)."""
        path: JsonPath = ("datasets", spec.index, "file")
        fresh: list[str] = []
        for file in spec.files:
            first = listed.setdefault(file, spec.index)
            if first == spec.index:
                fresh.append(file)
                continue
            where = self.doc.position(("datasets", first, "file"))
            self.error(
                path,
                f"data file {display_path(file)} is listed twice: datasets[{first}] "
                f"({where}) lists it already",
            )
        return spec if len(fresh) == len(spec.files) else replace(spec, files=tuple(fresh))

    def dataset(
        self,
        index: int,
        entry: dict[str, Any],
        setups: Mapping[str, SetupConfig],
        setup: SetupConfig,
        revision: str,
    ) -> DatasetSpec | None:
        path: JsonPath = ("datasets", index)
        required = ("file", "category", "spatial_resolution", "temporal_resolution", "columns")
        if any(key not in entry for key in required) or not isinstance(entry["columns"], dict):
            return None  # the schema has said so
        files = self.files((*path, "file"), entry["file"])
        category = setup.categories.get(entry["category"])
        if category is None and (EntityKind.CATEGORY, entry["category"]) in setup.excluded:
            return None  # its problem in the config is reported already
        if category is None:
            known = ", ".join(sorted(setup.categories)) or "none"
            self.error(
                (*path, "category"), f"unknown category '{entry['category']}' (known: {known})"
            )
        spatial = self.resolution_label(
            (*path, "spatial_resolution"), entry["spatial_resolution"], setups, spatial=True
        )
        temporal = self.resolution_label(
            (*path, "temporal_resolution"), entry["temporal_resolution"], setups, spatial=False
        )
        columns = entry["columns"]
        if category is None:
            return None
        unit_keys: tuple[str, ...]
        if category.data_type == "flow":
            unit_keys = ("origin", "destination")
            wrong = "spatial_unit"
        else:
            unit_keys = ("spatial_unit",)
            wrong = "origin" if "origin" in columns else "destination"
        missing = [key for key in unit_keys if key not in columns]
        if missing or wrong in columns:
            need = " and ".join(unit_keys)
            kind = "a flow" if category.data_type == "flow" else "single-location"
            self.error(
                (*path, "columns", wrong) if wrong in columns else (*path, "columns"),
                f"category '{category.category_id}' is {kind}: columns needs {need}"
                + (f", not {wrong}" if wrong in columns else ""),
                key=wrong in columns,
            )
            return None
        indicator_columns = entry.get("indicators") or {}
        for column, indicator in indicator_columns.items():
            if indicator not in category.indicators:
                self.error(
                    (*path, "indicators", column),
                    f"'{indicator}' is not an indicator of category '{category.category_id}'",
                )
        own_revision = entry.get("revision")
        if files is None or spatial is None or temporal is None:
            return None
        return DatasetSpec(
            index=index,
            pattern=entry["file"],
            files=files,
            category_id=category.category_id,
            data_type=category.data_type,
            spatial_resolution=spatial,
            temporal_resolution=temporal,
            date_column=columns["date"],
            unit_columns=tuple(columns[key] for key in unit_keys),
            indicator_columns=dict(indicator_columns),
            exclude=frozenset(entry.get("exclude") or ()),
            revision=own_revision if isinstance(own_revision, str) else revision,
            date_format=entry.get("date_format"),
            position=self.doc.position(path),
            missing=self.missing(entry),
            format=entry.get("format"),
        )

    def missing(self, entry: dict[str, Any]) -> tuple[str, ...]:
        """The dataset's spellings of a missing value: its own, the manifest's, or the
        default (a list the schema rejected counts as not given)."""
        for value in (entry.get("missing"), self.section("missing")):
            if isinstance(value, list) and all(isinstance(s, str) for s in value):
                return tuple(value)
        return DEFAULT_MISSING

    def files(self, path: JsonPath, pattern: str) -> tuple[str, ...] | None:
        if self.doc.unresolved(path):
            return None  # reported as an undefined variable
        try:
            if _GLOB_CHARS.search(pattern):
                matches = self.file_root.glob(pattern)
                if not matches:
                    self.error(path, f"no file matches '{pattern}'")
                    return None
                return tuple(str(m) for m in matches)
            resolved = self.file_root.resolve(pattern)
        except OutsideRoot as refused:
            self.error(path, str(refused))
            return None
        if not resolved.is_file():
            self.error(path, f"data file not found: {pattern}")
            return None
        return (str(resolved),)

    # -- access rules -------------------------------------------------------------------

    def access(self, setups: Mapping[str, SetupConfig]) -> tuple[AccessRule, ...]:
        section = self.section("access")
        rules: list[AccessRule] = []
        setup = next(iter(setups.values()))
        indicators = sorted(i for c in setup.categories.values() for i in c.indicators)
        for scope, entries in section.items() if isinstance(section, dict) else ():
            if scope == SEES_EVERYTHING:
                self.error(
                    ("access", scope),
                    "the admin scope is mapped to every dataset automatically and must not "
                    "be managed",
                    key=True,
                )
                continue
            for index, entry in enumerate(entries if isinstance(entries, list) else []):
                if isinstance(entry, dict) and self.is_readable(("access", scope, index)):
                    rule = self.rule(("access", scope, index), scope, entry, setups, indicators)
                    if rule is not None:
                        rules.append(rule)
        return tuple(rules)

    def rule(
        self,
        path: JsonPath,
        scope: str,
        entry: dict[str, Any],
        setups: Mapping[str, SetupConfig],
        indicators: list[str],
    ) -> AccessRule | None:
        pattern = entry["indicator"]
        if not any(fnmatchcase(i, pattern) for i in indicators):
            self.error(
                (*path, "indicator"),
                f"unknown indicator '{pattern}'"
                if not _GLOB_CHARS.search(pattern)
                else f"no indicator matches '{pattern}'",
            )
            return None
        resolved: dict[str, tuple[str, ...] | None] = {}
        for field, spatial in (("spatial_resolution", True), ("temporal_resolution", False)):
            value = entry.get(field)
            if value is None:
                resolved[field] = None
                continue
            values = value if isinstance(value, list) else [value]
            labels = [
                self.resolution_label(
                    (*path, field, i) if isinstance(value, list) else (*path, field),
                    v,
                    setups,
                    spatial,
                )
                for i, v in enumerate(values)
            ]
            if any(label is None for label in labels):
                return None
            resolved[field] = tuple(label for label in labels if label is not None)
        start, until, duration = entry.get("start"), entry.get("until"), entry.get("duration")
        if duration is not None and until is not None:
            self.error((*path, "until"), "give either duration or until, not both")
            return None
        temporal = resolved["temporal_resolution"]
        if start is not None or until is not None:
            if temporal is None or len(temporal) != 1:
                self.error(
                    path,
                    "a rule with start or until needs exactly one temporal_resolution "
                    "(its dates are in that resolution's format)",
                )
                return None
            resolution = next(iter(setups.values())).temporal[temporal[0]]
            grid = Grid.of(resolution)
            for field in ("start", "until"):
                value = entry.get(field)
                if value is None:
                    continue
                try:
                    grid.parse_formatted(str(value))
                except DateError as error:
                    self.error((*path, field), str(error))
                    return None
        return AccessRule(
            scope=scope,
            indicator=pattern,
            spatial_resolutions=resolved["spatial_resolution"],
            temporal_resolutions=temporal,
            start=None if start is None else str(start),
            duration=duration,
            until=None if until is None else str(until),
            position=self.doc.position(path),
        )


__all__ = [
    "ManifestBuilder",
    "SetupSource",
    "YamlSyntaxError",
    "display_path",
    "load_setup_source",
    "read_document",
]
