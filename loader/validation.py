"""Manifest path -> every problem at once: JSON Schema, setup config, data files, access
rules. jsonschema lives here and nowhere else, imported only when a schema check runs: a
manifest and config that passed before (by content, see checked.py) are not checked
again. Nothing is sent anywhere.

Problems carry positions: the YAML position for the manifest, the JSON position for a
config.json, the CSV's physical line for data.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loader import checked
from loader.access import RuleSelector
from loader.manifest import (
    ManifestBuilder,
    SetupSource,
    YamlSyntaxError,
    display_path,
    load_setup_source,
    read_document,
)
from loader.model import (
    DatasetSummary,
    LoaderError,
    Manifest,
    ManifestError,
    Position,
    Problem,
    Severity,
    excerpt,
)
from loader.yamlsrc import JsonPath, YamlDocument

if TYPE_CHECKING:
    import jsonschema

    from loader.summaries import FileReport

SCHEMA_NAMES = ("manifest.schema.json", "config.schema.json", "plan.schema.json",
                "validation.schema.json", "status.schema.json")  # fmt: skip


# ---------------------------------------------------------------------------------------
# The schemas (package data in a wheel, schemas/ in a checkout)


def schema_path(name: str = "manifest.schema.json") -> Path | None:
    """Where a schema is on disk: in the package (a wheel) or beside it (a checkout)."""
    here = Path(__file__).resolve().parent
    for path in (here / "schemas" / name, here.parent / "schemas" / name):
        if path.is_file():
            return path
    return None


def schema_text(name: str = "manifest.schema.json") -> str:
    path = schema_path(name)
    if path is not None:
        return path.read_text(encoding="utf-8")
    # Imported only here: importlib.resources costs a plan more than the schema's read.
    from importlib import resources  # a package inside a zip file

    return resources.files("loader").joinpath("schemas").joinpath(name).read_text(encoding="utf-8")


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    import jsonschema
    from referencing import Registry, Resource

    registry: Registry[Any] = Registry().with_resources(
        (schema, Resource.from_contents(json.loads(schema_text(schema)))) for schema in SCHEMA_NAMES
    )
    validator_class = jsonschema.Draft202012Validator
    return validator_class(json.loads(schema_text(name)), registry=registry)


def schema_problems(
    instance: Any,
    locate: Callable[[JsonPath], Position],
    locate_key: Callable[[JsonPath], Position],
    schema: str = "manifest.schema.json",
    skip: Callable[[JsonPath], bool] = lambda path: False,
    rejected: set[JsonPath] | None = None,
) -> list[Problem]:
    """Every schema violation, each at the position of the offending key or value; the
    paths of the rejected values are added to `rejected`."""
    problems: list[Problem] = []
    import difflib

    for error in _validator(schema).iter_errors(instance):
        path: JsonPath = tuple(error.absolute_path)
        if skip(path):
            continue
        if rejected is not None:
            rejected.add(path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - allowed):
                hint = difflib.get_close_matches(extra, sorted(allowed), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                problems.append(
                    Problem(locate_key((*path, extra)), f"unknown key '{extra}'" + suggestion)
                )
            continue
        problems.append(Problem(locate(path), _message(error, path)))
    return problems


_TYPE_NAMES = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    for name, kind in (
        ("text", str),
        ("an integer", int),
        ("a number", float),
        ("a mapping", dict),
        ("a list", list),
    ):
        if isinstance(value, kind):
            return name
    return "null"


def _shown(value: Any, limit: int = 60) -> str:
    """A value as JSON text, shortened visibly when long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(error: jsonschema.ValidationError, path: JsonPath) -> str:
    where = ".".join(str(p) for p in path)
    secret = "credentials" in path
    shown = "" if secret else f" {_shown(error.instance)}"
    if "errorMessage" in error.schema and error.validator in {"const", "pattern", "enum"}:
        return f"{error.schema['errorMessage']}" + (f", not{shown}" if shown else "")
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return f"missing required key '{missing}'" + (f" in {where}" if where else "")
    if error.validator == "type":
        wanted = error.validator_value
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return f"{where or 'the manifest'} must be {expected}, not {_kind(error.instance)}"
    if error.validator == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        return f"{where} must be one of: {options}; not{shown}"
    if error.validator == "const":
        return f"{where} must be {json.dumps(error.validator_value)}, not{shown}"
    if error.validator in {"minItems", "minProperties"}:
        return f"{where} must not be empty"
    if error.validator == "minLength":
        return f"{where} must not be empty"
    if error.validator == "minimum":
        return f"{where} must be at least {error.validator_value}, not{shown}"
    if error.validator == "dependentRequired":
        return str(error.message).replace("is a dependency of", "is needed with")
    if error.validator == "pattern":
        return f"{where} does not have the expected form{':' + shown if shown else ''}"
    return f"{where}: {error.message}" if where else str(error.message)


# ---------------------------------------------------------------------------------------
# The report


@dataclass
class ValidationReport:
    path: str
    manifest: Manifest | None = None
    problems: list[Problem] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def summaries(self) -> list[DatasetSummary]:
        return [s for f in self.files for s in f.summaries]

    def manifest_or_raise(self) -> Manifest:
        """The manifest, or one ManifestError line: the first error and how many more."""
        if self.errors or self.manifest is None:
            count = len(self.errors)
            more = (
                f" (and {count - 1} more problems; `flowkit-loader validate {self.path}` "
                "lists them)"
                if count > 1
                else ""
            )
            raise ManifestError(f"{self.errors[0]}{more}")
        return self.manifest


def validate(
    path: str | Path,
    *,
    target: str | None = None,
    data: bool = True,
    environ: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Check a manifest and (unless `data` is False) its data files; never raises for a
    problem in the input, only reports it."""
    env = os.environ if environ is None else environ
    manifest_path = Path(path)
    report = ValidationReport(display_path(manifest_path))
    try:
        document = read_document(manifest_path, env)
    except YamlSyntaxError as error:
        report.problems.append(Problem(error.position, error.message))
        return report
    except LoaderError as error:
        report.problems.append(Problem(Position(report.path), str(error).split(": ", 1)[-1]))
        return report
    base = manifest_path.absolute().parent
    unresolved = {v.path for v in document.variables if not v.defined}
    rejected: set[JsonPath] = set()

    def check_manifest() -> list[Problem]:
        return schema_problems(document.value, document.position, document.key_position,
                               skip=lambda p: p in unresolved, rejected=rejected)  # fmt: skip

    # What the check sees: the document, and which of its values are left unchecked.
    seen = json.dumps([document.value, sorted(map(list, unresolved))], sort_keys=True, default=str)
    report.problems += _unless_passed(seen, "manifest.schema.json", check_manifest)
    loaded = load_setup_source(document, base)
    source: SetupSource | None = None
    if isinstance(loaded, Problem):
        report.problems.append(loaded)
    else:
        source = loaded
        if source.from_file:
            config = source

            def check_config() -> list[Problem]:
                return schema_problems(config.config, config.locate, config.locate,
                                       schema="config.schema.json")  # fmt: skip

            report.problems += _unless_passed(source.digest, "config.schema.json", check_config)
    builder = ManifestBuilder(document, base, source, target, frozenset(rejected))
    manifest = builder.build()
    report.problems += builder.problems
    report.manifest = manifest
    if target is not None and target not in manifest.targets:
        names = ", ".join(sorted(manifest.targets)) or "none"
        report.problems.append(
            Problem(
                document.key_position(("targets",)),
                f"no target named '{target}' (targets: {names})",
            )
        )
    if data and manifest.setups:
        _check_data(report, manifest, target, document)
    report.problems = _ordered(report.problems, report.path)
    return report


def _unless_passed(content: str, schema: str, check: Callable[[], list[Problem]]) -> list[Problem]:
    """`check()`'s problems, or none when the same content passed the same schema, checked
    by the same jsonschema, before (remembered then: checked.py)."""
    key = checked.digest_of(content, schema_text(schema), _jsonschema_stamp())
    if checked.recall("schema", key) is not None:
        return []
    problems = check()
    if not problems:
        checked.remember("schema", key, True)
    return problems


@cache
def _jsonschema_stamp() -> str:
    """Which jsonschema checks, without importing it: its installed files' sizes and
    times (an upgrade changes them)."""
    from importlib.util import find_spec

    spec = find_spec("jsonschema")
    if spec is None or not spec.origin:
        return "absent"
    package = Path(spec.origin).parent
    stamps = []
    for module in ("__init__.py", "validators.py", "_keywords.py", "_format.py"):
        with contextlib.suppress(OSError):
            stat = (package / module).stat()
            stamps.append(f"{module}:{stat.st_size}:{stat.st_mtime_ns}")
    return ";".join(stamps)


def _setup_name(manifest: Manifest, target: str | None) -> str:
    for name in (target, manifest.default_target):
        if name is not None and name in manifest.setups:
            return name
    return next(iter(manifest.setups))


def _check_data(
    report: ValidationReport, manifest: Manifest, target: str | None, document: YamlDocument
) -> None:
    # pandas only here: the manifest alone (`load_manifest`, and through it the CLI's
    # --help, schema and unlock) is read without it.
    from loader.summaries import summarize_file

    setup = manifest.setups[_setup_name(manifest, target)]
    for spec in manifest.datasets:
        for file in spec.files:
            file_report = summarize_file(spec, file, setup, display_path(file))
            report.files.append(file_report)
            report.problems += file_report.problems
    _check_duplicate_datasets(report)
    keys = [s.key for s in report.summaries]
    for rule in manifest.access:
        selector = RuleSelector(rule, setup)
        if not any(selector.selects(k) for k in keys):
            report.problems.append(
                Problem(
                    rule.position,
                    f"access rule for {rule.scope} selects no dataset",
                    Severity.WARNING,
                )
            )


def _check_duplicate_datasets(report: ValidationReport) -> None:
    """Two files (or entries) that produce the same dataset identity would fight."""
    origin: dict[object, str] = {}
    clashes: dict[tuple[str, str], list[str]] = {}
    for file_report in report.files:
        for summary in file_report.summaries:
            other = origin.setdefault(summary.key, file_report.path)
            if other != file_report.path:
                clashes.setdefault((file_report.path, other), []).append(str(summary.key))
    for (path, other), keys in clashes.items():
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        report.problems.append(
            Problem(
                Position(path, 1, 1),
                f"dataset {keys[0]} also comes from {other}{more}: each file is a table of its "
                "own, so the rows of one dataset must all be in one file",
            )
        )


def _ordered(problems: Iterable[Problem], manifest: str) -> list[Problem]:
    """Unique problems: the manifest's first, then each other file's in order of
    appearance, each by line and column."""
    unique = list(dict.fromkeys(problems))
    first_seen: dict[str, int] = {manifest: 0}
    for problem in unique:
        first_seen.setdefault(problem.position.path, len(first_seen))
    return sorted(
        unique,
        key=lambda p: (first_seen[p.position.path], p.position.line, p.position.column),
    )


def load_manifest(
    path: str | Path, *, target: str | None = None, environ: Mapping[str, str] | None = None
) -> Manifest:
    """The manifest model, or ManifestError listing its errors (data files not read)."""
    return validate(path, target=target, data=False, environ=environ).manifest_or_raise()


def plan_schema_error(data: object) -> str | None:
    """What is wrong with a plan document against schemas/plan.schema.json, as `where:
    message` (cut: a hand-edited file may hold anything), or None. Reading and verifying
    plan files is loader/planfile.py's; only the schema check lives here, with jsonschema."""
    from jsonschema.exceptions import best_match

    wrong = best_match(_validator("plan.schema.json").iter_errors(data))
    if wrong is None:
        return None
    where = "/".join(map(str, wrong.absolute_path)) or "top level"
    return f"{excerpt(where)}: {excerpt(wrong.message, 160)}"
