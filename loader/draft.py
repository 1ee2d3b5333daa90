"""`flowkit-loader init`: a first manifest, drafted from a setup config and data files.

Per file it finds the category whose indicators are among the file's columns, the date
column and the unit column(s) (the columns whose values are unit codes of one spatial
resolution's boundaries: that resolution), and the temporal resolution from the spacing
of the dates. A file it cannot place gets a comment saying why. The manifest has the
`$schema` line for editors and a `local:` default target, so that validate, plan and
apply work at once.

Ids are the dangerous part (hazard 1): a manifest whose ids differ from the server's
creates every dataset again under other ids. With `--from-target`, the ids a server shows
are read from it (`ids_from_target`); the others, for entities whose config carries no
id, come from the config's order, each marked `# confirm`; plan and apply refuse a
remote target while a marker is left (`run.refuse_guessed_ids`), so that nobody loads a
real deployment with guessed ids.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any

from loader.config import NAMED_KINDS, ConfigBuilder, unit_code_properties
from loader.fileformats import format_of
from loader.model import Backend, EntityKind, LoaderError

CONFIRM = "# confirm"  # what marks an id drafted from the config's order
DATE_NAMES = ("date", "dt", "day", "week", "month", "year", "period", "time")
SAMPLE_ROWS = 100_000  # rows read of each file to place it (dates and units)
# A relativedelta unit's length in days, at least and at most.
SPACINGS = {"days": (1, 1), "weeks": (7, 7), "months": (28, 31), "years": (365, 366)}


class DraftError(LoaderError):
    """The config cannot be read, or a file named on the command line does not exist."""


@dataclass
class Placed:
    """What init found for one file: where it goes, or why it cannot go anywhere."""

    path: str  # as the manifest names it (relative to the manifest)
    category: str | None = None
    spatial: str | None = None
    unit_property: str | None = None  # the boundary property whose codes it uses
    temporal: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)  # comments: how each was found
    problem: str = ""  # set when the file cannot be placed


@dataclass(frozen=True)
class Config:
    """The parts of a setup config init reads."""

    body: Mapping[str, Any]

    def entities(self, kind: EntityKind) -> list[Mapping[str, Any]]:
        found = self.body.get(kind.value)
        return [e for e in found if isinstance(e, Mapping)] if isinstance(found, list) else []

    def categories(self) -> dict[str, tuple[str, set[str]]]:
        """category_id: (its type, the names of its indicators without the prefix)."""
        found: dict[str, tuple[str, set[str]]] = {}
        for category in self.entities(EntityKind.CATEGORY):
            found[str(category.get("category_id"))] = (str(category.get("type")), set())
        for indicator in self.entities(EntityKind.INDICATOR):
            owner = str(indicator.get("category_id"))
            name = str(indicator.get("indicator_id", "")).removeprefix(f"{owner}.")
            if owner in found:
                found[owner][1].add(name)
        return found

    @cached_property
    def unit_codes(self) -> dict[str, dict[str, set[str]]]:
        """Per spatial resolution's label, per boundary property holding a unique code per
        geometry: the codes (read once: boundaries are megabytes, and every file asks)."""
        return {
            str(resolution.get("label")): unit_code_properties(resolution.get("boundaries"))
            for resolution in self.entities(EntityKind.SPATIAL_RESOLUTION)
        }

    def temporal(self) -> dict[str, tuple[str, int]]:
        """Per temporal resolution's label: its relativedelta unit and step."""
        return {
            str(t.get("label")): (
                str(t.get("relativedelta_unit")),
                int(t.get("relativedelta_num") or 1),
            )
            for t in self.entities(EntityKind.TEMPORAL_RESOLUTION)
        }


def read_config(path: Path) -> Config:
    try:
        body = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DraftError(f"setup config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DraftError(f"cannot read setup config {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise DraftError(
            f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
        ) from None
    if not isinstance(body, Mapping):
        raise DraftError(f"{path}: a setup config is a JSON object")
    return Config(body)


def _sample(path: Path) -> dict[str, list[str]]:
    """The file's columns and the text of their first SAMPLE_ROWS values (empty cells
    left out), read as the loader reads it: CSV of any compression pandas knows, or
    Parquet."""
    import pandas as pd

    shape = format_of(str(path))
    if shape.name == "parquet":
        frame = pd.read_parquet(path).head(SAMPLE_ROWS)
    else:
        # compressed or not by its suffix, as format_of says
        frame = pd.read_csv(path, dtype=str, nrows=SAMPLE_ROWS, keep_default_na=False)
    return {str(name): [str(v) for v in frame[name].tolist() if str(v) != ""]
            for name in frame.columns}  # fmt: skip


def _dates(values: Iterable[str]) -> list[date] | None:
    """The distinct dates of a column (ISO 8601: a day, a month `2020-02` or a year,
    with or without a time), or None when some value is not one."""
    found = set()
    for value in set(values):
        text = value.strip()[:10]
        try:
            if len(text) == 10:
                found.add(date.fromisoformat(text))
            elif len(text) == 7 and text[4] == "-":
                found.add(date(int(text[:4]), int(text[5:]), 1))
            elif len(text) == 4 and text.isdigit():
                found.add(date(int(text), 1, 1))
            else:
                return None
        except ValueError:
            return None
    return sorted(found) if found else None


def _temporal(
    dates: Sequence[date], resolutions: Mapping[str, tuple[str, int]]
) -> tuple[str | None, str]:
    """The temporal resolution whose step the dates' usual spacing is, and why."""
    if len(dates) < 2:
        return None, "one date only: its spacing cannot tell the temporal resolution"
    spacing = statistics.median((b - a).days for a, b in pairwise(dates))
    for label, (unit, step) in resolutions.items():
        low, high = SPACINGS.get(unit, (0, -1))
        if low * step <= spacing <= high * step:
            return label, f"its {len(dates)} dates are {step} {unit.removesuffix('s')} apart"
    return None, f"its dates are {spacing:g} days apart: no temporal resolution has that step"


def place(path: Path, shown: str, config: Config) -> Placed:
    """Where one file goes, found from its columns and values."""
    placed = Placed(shown)
    try:
        columns = _sample(path)
    except Exception as error:  # pandas and pyarrow raise many kinds: any is "cannot read"
        placed.problem = f"cannot read it ({type(error).__name__}: {error})"
        return placed
    categories = config.categories()
    scores = {cid: len(names & set(columns)) for cid, (_, names) in categories.items()}
    best = max(scores.values(), default=0)
    chosen = [cid for cid, score in scores.items() if score == best and best]
    if len(chosen) != 1:
        placed.problem = (
            f"no category has indicators among its columns ({', '.join(columns)})"
            if not chosen
            else f"its columns match the indicators of {' and '.join(chosen)} alike"
        )
        return placed
    placed.category = chosen[0]
    kind, names = categories[chosen[0]]
    placed.why.append(f"{best} of its columns are indicators of {chosen[0]}")
    date_column = next((c for c in columns if c.lower() in DATE_NAMES and _dates(columns[c])), None)
    date_column = date_column or next(
        (c for c in columns if c not in names and _dates(columns[c])), None
    )
    if date_column is None:
        placed.problem = "no column holds dates"
        return placed
    units: list[tuple[str, str, str]] = []  # (column, resolution, boundary property)
    codes_of = config.unit_codes
    for column, values in columns.items():
        if column in names or column == date_column or not values:
            continue
        wanted = set(values)
        matches = [(column, label, prop) for label, properties in codes_of.items()
                   for prop, codes in properties.items() if wanted <= codes]  # fmt: skip
        units += matches[:1]
    flows = kind == "flow"
    if len(units) < (2 if flows else 1) or len({label for _, label, _ in units}) != 1:
        found = ", ".join(f"{c} ({label})" for c, label, _ in units) or "none"
        need = "two columns (origin, destination)" if flows else "one column"
        placed.problem = (f"its unit codes must fill {need} of one spatial resolution's "
                          f"boundaries; found: {found}")  # fmt: skip
        return placed
    placed.spatial, placed.unit_property = units[0][1], units[0][2]
    placed.why.append(f"the codes of {', '.join(c for c, _, _ in units[:2])} are its units")
    dates = _dates(columns[date_column]) or []
    placed.temporal, why = _temporal(dates, config.temporal())
    placed.why.append(why)
    if placed.temporal is None:
        placed.problem = why
        return placed
    if flows:
        placed.columns = {"date": date_column, "origin": units[0][0], "destination": units[1][0]}
    else:
        placed.columns = {"date": date_column, "spatial_unit": units[0][0]}
    return placed


# -- the manifest ---------------------------------------------------------------------------

# The kinds whose ids a manifest names (`ids:`), keyed by what config.py labels them by.
ID_KINDS = tuple(NAMED_KINDS)


def yaml_scalar(value: str, *, flow: bool = False) -> str:
    """A YAML scalar that reads back as this very string (`no`, `null`, `a: b` and `3`
    quoted; in a flow mapping, `,[]{}?:#` too)."""
    import yaml

    if flow and any(c in value for c in ",[]{}?:#"):  # indicators inside a flow mapping
        return json.dumps(value, ensure_ascii=False)
    text = yaml.safe_dump(value, allow_unicode=True, width=1_000_000)
    return text.removesuffix("...\n").strip()


def draft(
    config_path: Path,
    files: Sequence[Path],
    manifest: Path,
    known: Mapping[EntityKind, Mapping[str, int]] | None = None,
) -> tuple[str, list[Placed]]:
    """The manifest's text, and what was found of each file. `known`: ids read from a
    server (`ids_on_server`), written as they are; the others come from the config's
    order, marked `# confirm`, never one the server gives another label."""
    config = read_config(config_path)
    for file in files:
        if not file.is_file():
            raise DraftError(f"data file not found: {file}")
    here = manifest.parent.resolve()
    placed = [place(f, os.path.relpath(f.resolve(), here), config) for f in files]
    name = manifest.stem
    lines = [
        f"# yaml-language-server: $schema={schema_ref(here)}",
        "#",
        f"# Drafted by `flowkit-loader init` from {os.path.relpath(config_path.resolve(), here)}"
        f" and {len(files)} file{'s' if len(files) != 1 else ''}: check it, then",
        "# `flowkit-loader validate` and `plan`. Ids marked `# confirm` come from the config's",
        "# order: plan and apply refuse a remote target until each is checked against the",
        "# server and its marker removed (a wrong id loads every dataset again under another).",
        "version: 1",
        "targets:",
        "  local:",
        "    # The embedded SQLite backend: validate, plan and apply work at once.",
        f"    url: local:.flowkit/{name}.db",
        "default_target: local",
        f"setup: {yaml_scalar(os.path.relpath(config_path.resolve(), here))}",
    ]
    read = [config_path.resolve(), *(f.resolve() for f in files)]
    root = Path(os.path.commonpath([r.parent for r in read]))
    if not root.is_relative_to(here):  # the loader reads beside its manifest unless told
        lines += ["# The config and data sit outside this folder: reading them is opted into here.",
                  f"data_root: {yaml_scalar(os.path.relpath(root, here))}"]  # fmt: skip
    ids = []
    for kind in ID_KINDS:
        served = dict((known or {}).get(kind, {}))
        taken = set(served.values())
        rows = []
        for number, entity in enumerate(config.entities(kind), 1):
            label = str(ConfigBuilder.label_of(kind, entity))
            if entity.get(kind.id_field) is not None:
                continue
            if label in served:
                rows.append(f"    {yaml_scalar(label)}: {served[label]}  # as the server has it")
                continue
            guess = number
            while guess in taken:  # the server gives that id to another label
                guess += 1
            taken.add(guess)
            rows.append(f"    {yaml_scalar(label)}: {guess}  {CONFIRM}")
        if rows:
            ids += [f"  {kind.value}:", *rows]
    if ids:
        lines += ["ids:", *ids]
    used = {p.spatial: p.unit_property for p in placed if not p.problem}
    if used:  # explicit: the codes the files were matched by, whatever a guess would pick
        lines += ["# The boundary property whose codes the files use, per spatial resolution.",
                  "unit_properties:"]  # fmt: skip
        lines += [
            f"  {yaml_scalar(str(label))}: {yaml_scalar(str(prop))}" for label, prop in used.items()
        ]
    lines += ["revision: v1  # the datasets' revision: change it when the method changes",
              "datasets:"]  # fmt: skip
    for entry in placed:
        if entry.problem:
            continue
        lines += [f"  - file: {yaml_scalar(entry.path)}",
                  f"    category: {yaml_scalar(entry.category or '')}  # {entry.why[0]}",
                  f"    spatial_resolution: {yaml_scalar(entry.spatial or '')}  # {entry.why[1]}",
                  f"    temporal_resolution: {yaml_scalar(entry.temporal or '')}  # {entry.why[2]}",
                  "    columns: {" + ", ".join(f"{k}: {yaml_scalar(v, flow=True)}"
                                         for k, v in entry.columns.items())
                  + "}"]  # fmt: skip
    left = [p for p in placed if p.problem]
    if not any(not p.problem for p in placed):
        lines.append("  []  # no file could be placed: see below")
    for entry in left:
        lines.append(f"# not placed: {entry.path}: {entry.problem}")
    return "\n".join(lines) + "\n", placed


ID_PROBES = 50  # srids and trids asked of a server past the config's count


def ids_on_server(backend: Backend, config: Config) -> dict[EntityKind, dict[str, int]]:
    """The ids a server holds, by label: languages and data providers from GET /setup
    (unfiltered), spatial and temporal resolutions by asking for each id in turn (the
    service shows one only while a dataset of it is visible, and cannot list them)."""
    view = backend.read_setup()
    found = {kind: {str(ConfigBuilder.label_of(kind, e)): e[kind.id_field] for e in listed
                    if isinstance(e.get(kind.id_field), int)}
             for kind, listed in ((EntityKind.LANGUAGE, view.languages),
                                  (EntityKind.DATA_PROVIDER, view.data_providers))}  # fmt: skip
    for kind in (EntityKind.SPATIAL_RESOLUTION, EntityKind.TEMPORAL_RESOLUTION):
        found[kind] = {}
        for number in range(1, len(config.entities(kind)) + ID_PROBES + 1):
            entity = backend.read_entity(kind, number)  # the one with this id, if visible
            if entity is not None:
                found[kind][str(ConfigBuilder.label_of(kind, entity))] = number
    return found


def ids_from_target(
    config_path: Path,
    url: str,
    *,
    token_url: str | None,
    audience: str | None,
    client_id: str | None,
    secret_env: str,
) -> dict[EntityKind, dict[str, int]]:
    """`ids_on_server` of the server at `url`, with credentials as a manifest gives them:
    OAuth2 client credentials (the secret in the environment variable `secret_env`), or a
    bearer token in that variable; every role uses them."""
    from loader.backends.factory import Opening, open_backend
    from loader.model import Credential, Role, SetupConfig, Target

    if client_id is not None and token_url is None:
        raise DraftError("--client-id needs --token-url (and the token's --audience)")
    credential = (Credential("client_credentials", secret_env, client_id=client_id,
                             token_url=token_url, audience=audience)
                  if client_id is not None else Credential("token", secret_env))  # fmt: skip
    target = Target("from-target", url.rstrip("/"), "", dict.fromkeys(Role, credential))
    nothing = SetupConfig((), {}, {}, {})
    with open_backend(target, nothing, Opening(read_only=True)) as backend:
        return ids_on_server(backend, read_config(config_path))


def write_new(path: Path, text: str) -> None:
    """The manifest written whole or not at all (a temporary file beside it, renamed)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise DraftError(f"cannot write {path}: {error.strerror or error}") from None


_ID_LINE = re.compile(r"^\s+(?P<label>.+?):\s*\d+\s+(?P<marker># confirm)\s*$")


def confirm_markers(text: str) -> list[tuple[int, int, str]]:
    """The ids of a manifest's `ids:` block still marked `# confirm`: (line, column of the
    marker, `kind.label`)."""
    found = []
    in_ids, kind = False, ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():  # a top-level key: the ids block starts or ends
            in_ids = stripped.split(":", 1)[0] == "ids"
            continue
        if not in_ids:
            continue
        if len(line) - len(line.lstrip()) <= 2:
            kind = stripped.split(":", 1)[0]
            continue
        marked = _ID_LINE.match(line)
        if marked:
            label = marked["label"].strip()
            if label[:1] in ("'", '"'):  # quoted by yaml_scalar: read back as YAML reads it
                import yaml

                label = str(yaml.safe_load(label))
            found.append((number, marked.start("marker") + 1, f"{kind}.{label}"))
    return found


def schema_ref(here: Path) -> str:
    """The manifest schema's path from the manifest's folder (its $id where it is not on
    disk, a zipped package)."""
    from loader.validation import schema_path, schema_text

    path = schema_path("manifest.schema.json")
    if path is None:
        return str(json.loads(schema_text("manifest.schema.json"))["$id"])
    return os.path.relpath(path, here)
