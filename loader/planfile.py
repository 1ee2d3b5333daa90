"""The plan's format, all of it: its JSON form (`plan_data`, which every renderer draws
from), the fingerprint of every input it was made from, and the saved plan (`plan --out`,
`plan --format json`): written sealed, read back verified (its schema is
schemas/plan.schema.json, checked by validation.py, the home of jsonschema), and compared
with a fresh plan before apply carries anything out.

A plan file is what a reviewer looked at, so what `show` renders from it must be what
`apply` does. Three things hold that together:

- a digest (SHA-256 of the canonical JSON of the whole document but the digest itself):
  an edit, a truncation or a bad merge of the file is refused before anything reads it.
  Anyone who can rewrite the file can rewrite its digest too; the digest is against
  accidents and tampering in transit, not against them;
- an optional HMAC-SHA256 signature with a key from `FLOWKIT_PLAN_KEY`, for teams that
  need to know who made a plan: with the key set, only plans signed with it are read;
- apply always carries out a fresh plan, and refuses unless that fresh plan is what the
  file shows (a saved plan), or has the changes the file shows (a reviewed plan).

The key is read from the environment when it is needed and never kept, printed or
written: only the signature is.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loader.manifest import display_path
from loader.model import (
    DatasetStats,
    DatasetSummary,
    LoaderError,
    Target,
    excerpt,
    loader_version,
    nanos_to_text,
)
from loader.planner import Action, Change, DatasetTarget, EntityTarget, GrantTarget, Plan
from loader.record import Actual, Desired, Record
from loader.render import note_text, render_json
from loader.validation import plan_schema_error

FORMAT_VERSION = 2
KEY_ENV = "FLOWKIT_PLAN_KEY"

# What `show` renders, in its order, and so what a saved plan must share with a fresh one.
# The manifest's path is left out: it is shown relative to the working directory, which
# may differ between plan and apply (its content is in the fingerprint).
SHOWN = ("target", "refreshed", "only", "changes", "notes", "summary", "unchanged", "roles")
# What a reviewed plan must share with a fresh one: its changes and what is counted from
# them. Its notes, unchanged counts and refresh may differ (an offline plan from a fork,
# or other merges that landed since: their work is unchanged now).
REVIEWED = ("changes", "summary", "roles")


class PlanRefused(LoaderError):
    """A saved plan that no longer describes the target, or a plan apply may not carry out."""


# ---------------------------------------------------------------------------------------
# The JSON form


def _stats_data(stats: DatasetStats) -> dict[str, Any]:
    # Exact decimal text: sums of nanos exceed what a JSON number keeps exactly.
    return {"count": stats.count, "sum": nanos_to_text(stats.sum),
            "min": nanos_to_text(stats.min), "max": nanos_to_text(stats.max)}  # fmt: skip


def _summary_data(summary: DatasetSummary) -> dict[str, Any]:
    return {**summary.key.to_json(), "data_type": summary.data_type,
            "revision": summary.revision, "digest": summary.digest, "source": summary.source,
            "stats": _stats_data(summary.stats)}  # fmt: skip


def _change_data(change: Change) -> dict[str, Any]:
    data: dict[str, Any] = {
        "action": change.action.word,
        "symbol": change.action.value,
        "subject": change.subject.value,
        "what": change.describe(),
        "reason": change.reason.value,
        "detail": change.detail,
        "destructive": change.destructive,
        "role": change.role.value,
    }
    match change.target:
        case EntityTarget(entity=entity):
            data["entity"] = {"kind": entity.kind.value, "id": entity.id, "label": entity.label}
        case DatasetTarget(summary=summary, recorded=recorded):
            data["key"] = summary.key.to_json()
            data["dataset"] = _summary_data(summary)
            if recorded is not None:
                if change.action is Action.UPDATE:
                    data["before"] = {**_summary_data(recorded.summary), "mdid": recorded.mdid}
                data["mdid"] = recorded.mdid
        case GrantTarget(scope=scope, key=key, mdid=mdid):
            data["key"] = key.to_json()
            data["scope"] = scope
            if mdid is not None:
                data["mdid"] = mdid
    return data


def plan_data(plan: Plan) -> dict[str, Any]:
    """What every format renders (loader/render.py). A plan file is this in an envelope:
    format version, where its manifest is, signature and digest."""
    return {
        "fingerprint": plan.origin.fingerprint,
        "manifest": plan.origin.manifest,
        "target": plan.origin.target,
        "target_url": plan.origin.url,
        "refreshed": plan.refreshed,
        "verify": plan.origin.verify,
        "only": list(plan.only),
        "summary": {**plan.counts(), "destructive": len(plan.destructive)},
        "unchanged": dict(plan.unchanged),
        "roles": [role.value for role in plan.roles()],
        "notes": [note_text(note) for note in plan.notes],
        "changes": [_change_data(c) for c in plan.changes],
        "labels": plan.origin.labels.to_json(),  # shown, not compared: older files lack it
    }


def record_digest(record: Record) -> str:
    content = {k: v for k, v in record.to_content().items() if k != "history"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def fingerprint(
    manifest: Path, target: Target, desired: Desired, actual: Actual, made: Plan, *, verify: bool
) -> str:
    """A digest of every input of a plan: manifest, config, data, target, state record and
    what the server showed. A saved plan applies only while it is unchanged (and plans
    saved by earlier versions of this module must still match: its parts never change)."""
    parts = {
        "manifest": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "target": [target.name, target.url],
        "config": sorted([e.kind.value, str(e.id), e.digest] for e in desired.entities),
        "data": sorted([str(k), s.digest] for k, s in desired.datasets.items()),
        "grants": sorted([str(k), sorted(v)] for k, v in desired.scopes.items()),
        # What the record says, not its serial: folding a journal left behind changes the
        # serial, not the content.
        "state": record_digest(actual.record),
        "server": actual.observed.view_digest,
        "only": sorted(made.only),
        "verify": verify,
        # The plan itself, and the code that made it: the same inputs planned by another
        # loader version may not give the same changes.
        "loader": loader_version(),
        # The changes, without the data files' display paths (they depend on the working
        # directory, the content does not; the data digests are above).
        "changes": comparable_changes(plan_data(made)["changes"]),
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# Writing


def _canonical(document: Mapping[str, Any], *leave_out: str) -> bytes:
    """The bytes the digest and the signature are computed over: sorted keys, no
    whitespace, ASCII only (text from a damaged file may hold lone surrogates)."""
    kept = {k: v for k, v in document.items() if k not in leave_out}
    return json.dumps(kept, sort_keys=True, separators=(",", ":")).encode("ascii")


def _digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(document, "digest")).hexdigest()


def _signature(document: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical(document, "digest", "signature"), hashlib.sha256).hexdigest()


def _key(environ: Mapping[str, str] | None) -> bytes | None:
    """The signing key, or None: unset and empty are the same (GitHub gives a fork's
    pull request an empty string for every secret)."""
    value = (os.environ if environ is None else environ).get(KEY_ENV, "")
    return value.encode("utf-8", "surrogateescape") if value else None


def document(
    made: Plan, *, path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The plan's JSON document, sealed: with where its manifest is from `path` (where it
    will be saved), signed when FLOWKIT_PLAN_KEY is set, and its digest last."""
    data: dict[str, Any] = {"format_version": FORMAT_VERSION, **plan_data(made)}
    manifest = made.origin.manifest_path
    if path is not None and manifest:
        data["manifest_from_plan"] = os.path.relpath(manifest, Path(path).absolute().parent)
    return seal(data, environ=environ)


def seal(data: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`data` signed anew when FLOWKIT_PLAN_KEY is set, and its digest last (it covers the
    signature: a signature edited without the key is an edit like any other)."""
    sealed = {k: v for k, v in data.items() if k not in ("digest", "signature")}
    key = _key(environ)
    if key is not None:
        sealed["signature"] = _signature(sealed, key)
    sealed["digest"] = _digest(sealed)
    return sealed


def save_plan(
    made: Plan, path: str | Path, *, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Write the plan's sealed document to `path`, and return it."""
    data = document(made, path=path, environ=environ)
    target = Path(path)
    # Beside it, then renamed: a full disk never leaves half a plan under its name.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(render_json(data), encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise LoaderError(f"{path}: cannot save the plan: {error.strerror or error}") from None
    return data


def how_to_apply(path: str, manifest: str, refreshed: bool) -> str:
    """What a saved plan is for, as `plan --out` and apply's refusal both say it."""
    path, manifest = shlex.quote(path), shlex.quote(manifest)
    if refreshed:
        return f"`flowkit-loader apply {path}` carries out exactly this plan"
    return (
        "an offline plan is for review: apply it with "
        f"`flowkit-loader apply {manifest} --reviewed {path}`"
    )


# ---------------------------------------------------------------------------------------
# Reading


def read(path: str | Path, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A plan file, verified (see `verify`); one-line LoaderErrors otherwise."""
    shown = display_path(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoaderError(f"{shown}: no such plan file") from None
    except RecursionError:
        raise LoaderError(f"{shown}: not a plan file: nested too deeply") from None
    except (OSError, ValueError) as error:
        raise LoaderError(f"{shown}: not a plan file: {error}") from None
    return verify(data, shown, environ=environ)


def verify(data: Any, shown: str, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`data` as a plan document that is what `plan` wrote: this format version, its
    digest its content's, valid against schemas/plan.schema.json, and signed with
    FLOWKIT_PLAN_KEY when that is set. The digest comes before the schema: a file
    changed by hand is told so, not what its edit broke."""
    if isinstance(data, dict):
        version = data.get("format_version")
        if version is not None and version != FORMAT_VERSION:
            raise LoaderError(
                f"{shown}: plan format version {excerpt(version)}; this loader reads version "
                f"{FORMAT_VERSION} only: plan again"
            )
        if isinstance(data.get("digest"), str) and data["digest"] != _digest(data):
            raise LoaderError(
                f"{shown}: its digest does not match its content: it was changed after "
                "`plan --out` wrote it; plan again"
            )
    wrong = plan_schema_error(data)
    if wrong is not None:
        raise LoaderError(f"{shown}: not a valid plan ({wrong})")
    key, signature = _key(environ), data.get("signature")
    if key is None and signature is not None:
        raise LoaderError(
            f"{shown}: the plan is signed: set {KEY_ENV} to the key that signed it to read it"
        )
    if key is not None and signature is None:
        raise LoaderError(
            f"{shown}: the plan is not signed, and {KEY_ENV} is set: only plans signed with "
            "that key are accepted; plan again with it"
        )
    if key is not None and not hmac.compare_digest(signature, _signature(data, key)):
        raise LoaderError(
            f"{shown}: its signature is not {KEY_ENV}'s: it was signed with another key; "
            "plan again with this one"
        )
    result: dict[str, Any] = data
    return result


def is_plan_file(source: str | Path) -> bool:
    """A saved plan, not a manifest: a .json file, or a JSON object with a fingerprint."""
    if str(source).endswith(".json"):
        return True
    try:
        with open(source, "rb") as handle:
            if handle.read(64).lstrip()[:1] != b"{":
                return False
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "fingerprint" in data


# ---------------------------------------------------------------------------------------
# A plan file against a fresh plan


@dataclass(frozen=True)
class SavedPlan:
    """A verified plan file, and how apply uses it: as the plan to carry out (`apply
    plan.json`: it must still be exactly the fresh plan) or as the reviewed one (`apply
    MANIFEST --reviewed plan.json`: the fresh plan must have its changes)."""

    path: str  # as messages show it
    document: Mapping[str, Any]
    manifest: str  # where its manifest is from here
    reviewed: bool = False

    @classmethod
    def read(
        cls, path: str | Path, *, reviewed: bool = False, environ: Mapping[str, str] | None = None
    ) -> SavedPlan:
        """A plan file; its manifest is found beside it wherever the plan is applied from."""
        data = read(path, environ=environ)
        manifest = data["manifest"]
        beside = data.get("manifest_from_plan")
        if beside is not None and (Path(path).parent / beside).is_file():
            manifest = display_path(Path(path).parent / beside)
        return cls(display_path(path), data, manifest, reviewed)

    @property
    def target(self) -> str:
        return str(self.document["target"])

    @property
    def target_url(self) -> str:
        return str(self.document["target_url"])

    @property
    def only(self) -> tuple[str, ...]:
        return tuple(self.document["only"])

    @property
    def verify(self) -> bool:
        return bool(self.document["verify"])

    @property
    def _which(self) -> str:
        return "the reviewed plan" if self.reviewed else "the saved plan"

    def check_source(self) -> None:
        """Refuse a plan file apply cannot carry out whatever the target holds: an offline
        plan saw no server, so it can only be compared with one that did."""
        if not self.reviewed and not self.document["refreshed"]:
            raise PlanRefused(f"{self.path}: {how_to_apply(self.path, self.manifest, False)}")

    def check_target(self, url: str) -> None:
        if self.target_url != url:
            raise PlanRefused(
                f"{self.path}: {self._which} was made for {self.target_url}, not {url}"
            )

    def check(self, fresh: Plan) -> None:
        """Refuse unless `fresh` (made under the lock, what apply would carry out) is what
        this file shows, or for a reviewed plan has the changes it shows."""
        if not self.reviewed and fresh.fingerprint != self.document["fingerprint"]:
            raise PlanRefused(
                f"{self.path}: the saved plan is stale: the manifest, its data, the state "
                "record or the server changed since it was made; plan again"
            )
        # The fingerprint says the fresh plan has the saved plan's inputs, not that the
        # file shows its changes: someone who rewrote the file with its digest could have
        # changed them. What would be done is compared with what the file shows.
        now = plan_data(fresh)
        for name in REVIEWED if self.reviewed else SHOWN:
            difference = _difference(name, self.document[name], now[name])
            if difference is not None:
                raise PlanRefused(
                    f"{self.path}: {self._which} differs from a fresh plan: "
                    f"{difference.format(self._which)}; plan again"
                )


@dataclass(frozen=True)
class _Difference:
    where: str  # `summary.create`, or a field of one change: `scope`, `dataset.stats.sum`
    ours: Any  # the file's value (`_ABSENT`: it has none)
    fresh: Any
    change: tuple[int, str] | None = None  # its number from 1, and what it is

    def format(self, file: str) -> str:
        values = f"{_shown(self.ours)} in {file}, {_shown(self.fresh)} in a fresh plan"
        if self.change is None:
            return f"{self.where} is {values}"
        number, what = self.change
        change = f"change {number} ({what})"
        if self.ours is _ABSENT:
            return f"{change} is in a fresh plan, not in {file}"
        if self.fresh is _ABSENT:
            return f"{change} is in {file}, not in a fresh plan"
        return f"{change}: {self.where} is {values}"


_ABSENT: Any = object()


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    return excerpt(json.dumps(value, sort_keys=True), 80)


def _comparable(change: Any) -> Any:
    """A change as apply compares it: without the data files' display paths (they depend
    on the working directory; the data's digests say what the content is)."""
    if not isinstance(change, dict):
        return change
    return change | {k: {**change[k], "source": ""} for k in ("dataset", "before")
                     if isinstance(change.get(k), dict)}  # fmt: skip


def comparable_changes(changes: Sequence[Any]) -> list[Any]:
    return [_comparable(change) for change in changes]


def _difference(name: str, ours: Any, fresh: Any) -> _Difference | None:
    if name != "changes":
        found = next(_leaves(ours, fresh, name), None)
        return None if found is None else _Difference(*found)
    ours, fresh = comparable_changes(ours), comparable_changes(fresh)
    for index in range(max(len(ours), len(fresh))):
        mine = ours[index] if index < len(ours) else _ABSENT
        now = fresh[index] if index < len(fresh) else _ABSENT
        # Named as the fresh plan has it where it can: the file's words are not trusted.
        shown = now if now is not _ABSENT else mine
        what = excerpt(f"{shown.get('symbol')} {shown.get('what')}", 120)
        if mine is _ABSENT or now is _ABSENT:
            return _Difference("", mine, now, (index + 1, what))
        found = next(_leaves(mine, now, ""), None)
        if found is not None:
            return _Difference(found[0], found[1], found[2], (index + 1, what))
    return None


def _leaves(ours: Any, fresh: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    """Where two JSON values differ, depth first, in the fresh plan's order of keys (the
    order plan_data writes them: what a change is before its details)."""
    if isinstance(ours, dict) and isinstance(fresh, dict):
        for key in [*fresh, *(k for k in ours if k not in fresh)]:
            inner = f"{where}.{key}" if where else str(key)
            if key not in ours or key not in fresh:
                yield inner, ours.get(key, _ABSENT), fresh.get(key, _ABSENT)
            else:
                yield from _leaves(ours[key], fresh[key], inner)
    elif isinstance(ours, list) and isinstance(fresh, list) and len(ours) == len(fresh):
        for index, (mine, now) in enumerate(zip(ours, fresh, strict=True)):
            yield from _leaves(mine, now, f"{where}[{index}]")
    elif ours != fresh or type(ours) is not type(fresh):
        yield where, ours, fresh
