"""The `flowkit-loader` command: parse options, call the core, render, choose the exit code.

click lives here and nowhere else; this is the only module that prints or exits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import click

from loader.model import LoaderError, loader_version, nanos_to_text, plural
from loader.render import PLAN_FORMATS
from loader.validation import SCHEMA_NAMES, ValidationReport, schema_text, validate


class LoaderGroup(click.Group):
    """Errors a user can cause are one line on stderr and exit 1, never a traceback; a
    usage error too (click's 2 would read as "changes" to `plan --detailed-exitcode`);
    Ctrl-C exits 130."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LoaderError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)

    # The commands by what a user does with them (`--help` lists them so).
    SECTIONS = (
        ("Write", ("init", "export", "validate", "schema")),
        ("Review", ("plan", "show", "status")),
        ("Change", ("apply", "import", "unlock")),
        ("Run", ("serve", "check")),
    )

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, names in self.SECTIONS:
            rows = [(name, self.commands[name].get_short_help_str(limit=formatter.width))
                    for name in names]  # fmt: skip
            with formatter.section(f"{title} commands"):
                formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.ClickException as error:
            error.show()
            sys.exit(1)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


# Terraform's colours: what is created, changed, deleted.
SYMBOL_COLOURS = {"+": "green", "~": "yellow", "-": "red"}


def _set_colour(ctx: click.Context, param: click.Parameter, value: bool | None) -> None:
    if value is not None:  # an unset command option leaves the group's choice alone
        ctx.find_root().meta["colour"] = value


_COLOR = click.option(
    "--color/--no-color", default=None, expose_value=False, callback=_set_colour,
    help="Colour the output, or not (default: on a terminal, unless NO_COLOR is set; "
    "FORCE_COLOR turns it on).",
)  # fmt: skip


def colour_wanted(choice: bool | None, environ: Mapping[str, str], terminal: bool) -> bool:
    """--color / --no-color, else NO_COLOR (no-color.org: any value but empty) turns colour
    off, else FORCE_COLOR (any value but empty or 0) on, else a terminal decides."""
    if choice is not None:
        return choice
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    return terminal


def _colour() -> bool:
    choice = click.get_current_context().find_root().meta.get("colour")
    return colour_wanted(choice, os.environ, sys.stdout.isatty())


def paint_symbol(symbol: str) -> str:
    """A plan symbol in Terraform's colours: `-/+` red, then green."""
    return "".join(click.style(c, fg=SYMBOL_COLOURS[c]) if c in SYMBOL_COLOURS else c
                   for c in symbol)  # fmt: skip


def echo_plan(data: Mapping[str, Any], fmt: str = "text") -> None:
    """A plan in `fmt`; the text in colour where colour is wanted."""
    from loader.render import render, render_text

    if fmt != "text":
        click.echo(render(data, fmt), nl=False)
        return
    colour = _colour()
    text = render_text(data, paint_symbol) if colour else render_text(data)
    click.echo(text, nl=False, color=colour)


def examples(*lines: str) -> str:
    """A command's --help epilog: its examples, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # Looked up only when --version is given.
    if value and not ctx.resilient_parsing:
        click.echo(f"flowkit-loader, version {loader_version()}")
        ctx.exit()


@click.group(cls=LoaderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version and exit.")  # fmt: skip
@_COLOR
def cli() -> None:
    """Declarative loader for FlowKit-UI deployments: validate, plan, apply.

    Each command has its own --help, with examples. Shell completion: see the README
    (`_FLOWKIT_LOADER_COMPLETE=bash_source flowkit-loader`)."""


@cli.command(
    name="init",
    short_help="Draft a manifest from a setup config and data files.",
    epilog=examples(
        "flowkit-loader init --setup config.json data/*.csv",
        "flowkit-loader init --setup config.json data/*.csv.gz --out deploy.yaml --force",
        "flowkit-loader init --setup config.json data/*.csv --from-target https://host/v1 "
        "--token-url https://tenant.auth0.com/oauth/token --audience https://host "
        "--client-id loader --secret-env CLIENT_SECRET",
    ),
)
@click.option("--setup", "setup", required=True, type=click.Path(dir_okay=False),
              help="The setup config, in the backend's own format.")  # fmt: skip
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "-o", default="deploy.yaml", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the manifest.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite --out when it exists.")
@click.option("--from-target", metavar="URL",
              help="Read the ids from this server (https://host/v1), not the config.")  # fmt: skip
@click.option("--token-url", help="With --from-target: the OAuth2 token endpoint.")
@click.option("--audience", help="With --from-target: the token's audience.")
@click.option("--client-id", help="With --from-target: the client (else --secret-env is a token).")
@click.option("--secret-env", metavar="VAR", default="FLOWKIT_CLIENT_SECRET", show_default=True,
              help="With --from-target: the environment variable holding the client's "
              "secret (or, without --client-id, a bearer token).")  # fmt: skip
def init_command(  # noqa: PLR0913 (click hands a command each of its options)
    setup: str, files: tuple[str, ...], out: str, force: bool, from_target: str | None,
    token_url: str | None, audience: str | None, client_id: str | None, secret_env: str,
) -> None:  # fmt: skip
    """Write a commented manifest for FILES: per file the category whose indicators are
    its columns, its date and unit columns, its spatial resolution (whose boundaries hold
    its unit codes) and temporal resolution (its dates' spacing), a local target to try it
    on. Ids the config lacks come from its order, marked `# confirm`: plan and apply
    refuse a remote target until each is checked and its marker removed."""
    from pathlib import Path

    from loader.draft import confirm_markers, draft, ids_from_target, write_new

    path = Path(out)
    if path.exists() and not force:
        raise LoaderError(f"{out} exists: choose another --out, or --force to replace it")
    known = None
    if from_target:
        known = ids_from_target(Path(setup), from_target, token_url=token_url,
                                audience=audience, client_id=client_id,
                                secret_env=secret_env)  # fmt: skip
    text, placed = draft(Path(setup), [Path(f) for f in files], path, known)
    write_new(path, text)
    done = sum(1 for p in placed if not p.problem)
    marked = len(confirm_markers(text))
    click.echo(f"wrote {out}: {done} of {plural(len(placed), 'file')} placed, "
               f"{plural(marked, 'id')} to confirm")  # fmt: skip
    for entry in placed:
        if entry.problem:
            click.echo(f"  not placed: {entry.path}: {entry.problem}")


@cli.command(
    name="export",
    short_help="Read a deployment back into data files and a manifest.",
    epilog=examples(
        "flowkit-loader export deploy.yaml --out backup/",
        "flowkit-loader export deploy.yaml --target production --out backup/ --partial",
        "flowkit-loader export deploy.yaml --out backup/ --parallelism 8   # or go on with it",
    ),
)
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="An empty folder (or an unfinished export's, to go on with it).")  # fmt: skip
@click.option("--target", "-t", help="The target to read (default: the manifest's default).")
@click.option(
    "--partial",
    is_flag=True,
    help="Write the export although some of the deployment could not be carried.",
)
@click.option("--parallelism", default=8, show_default=True, type=click.IntRange(1, 32),
              help="Reads in flight at once.")  # fmt: skip
def export_command(
    manifest: str, out: str, target: str | None, partial: bool, parallelism: int
) -> None:
    """Read MANIFEST's target back into --out: a config.json, one data file per
    indicator and resolution, and a deploy.yaml that applied to an empty backend
    reproduces the deployment as far as the service lets it be read. What it cannot
    carry (config without a visible dataset, revisions, grants of scopes without a reader,
    values /query gives as floats) is listed in the manifest and the summary; the export
    is refused unless --partial accepts it. Interrupted, it goes on where it stopped when
    run again with the same --out."""
    import contextlib

    from loader.export import export

    with contextlib.ExitStack() as stack:
        bars: list[Any] = []  # the bar, from the first window on (a refusal shows none)

        def progress(done: int, total: int) -> None:
            if not bars:
                bar = click.progressbar(length=max(total, 1), label="reading",
                                        file=sys.stderr, show_pos=True)  # fmt: skip
                bars.append(stack.enter_context(bar))
            bars[0].update(done - bars[0].pos)

        exported = export(manifest, out, target=target, partial=partial,
                          parallelism=parallelism, progress=progress)  # fmt: skip
    if exported.resumed:
        click.echo(f"went on from an earlier run ({plural(exported.resumed, 'window')} of "
                   "dates already read)")  # fmt: skip
    grants = ", ".join(f"{scope} {n}" for scope, n in exported.grants.items()) or "none"
    click.echo(f"exported {plural(exported.datasets, 'dataset')} of "
               f"{plural(exported.series, 'series', 'series')} to {out} (rules per scope: "
               f"{grants})")  # fmt: skip
    click.echo("not carried:")
    for line in exported.losses.found + exported.losses.always:
        click.echo(f"  - {line}")


@cli.command(
    name="validate",
    short_help="Check manifests, their config and data; nothing is sent.",
    epilog=examples(
        "flowkit-loader validate deploy.yaml",
        "flowkit-loader validate deploy.yaml --no-data     # manifest and config only",
        "flowkit-loader validate deploy.yaml -v            # the datasets it prepares",
    ),
)
@click.argument("manifests", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--target", "-t", help="The target whose ids to check (default: the default).")
@click.option("--no-data", is_flag=True, help="Check the manifest and config only, not the CSVs.")
@click.option(
    "--max-problems",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Print at most this many problems per manifest.",
)
@click.option("--verbose", "-v", is_flag=True, help="List the prepared datasets per indicator.")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["text", "github", "json"]), default="text",
    show_default=True,
    help="text; github: annotations on the pull request's diff (in GitHub Actions); json "
    "(schemas/validation.schema.json).",
)  # fmt: skip
def validate_command(
    manifests: tuple[str, ...],
    target: str | None,
    no_data: bool,
    max_problems: int,
    verbose: bool,
    fmt: str,
) -> None:
    """Check MANIFEST(s) and their data; print every problem as path:line:column: message.

    Nothing is sent anywhere. Exit 1 when there is any error (warnings do not fail).
    """
    from loader.render import github_annotation, render_validation_json, validation_data

    failed = False
    documents = []
    for manifest in manifests:
        report = validate(manifest, target=target, data=not no_data)
        failed = failed or not report.ok
        if fmt == "json":
            documents.append(validation_data(report, data=not no_data, max_problems=max_problems))
            continue
        for problem in report.problems[:max_problems]:
            click.echo(github_annotation(problem) if fmt == "github" else str(problem))
        if len(report.problems) > max_problems:
            click.echo(f"... and {len(report.problems) - max_problems} more")
        if verbose and report.ok:
            for line in [*_dataset_lines(report), *_missing_lines(report)]:
                click.echo(line)
        click.echo(_summary(report, data=not no_data))
    if fmt == "json":
        click.echo(render_validation_json(documents), nl=False)
    sys.exit(1 if failed else 0)


def _summary(report: ValidationReport, data: bool) -> str:
    counts = f"{plural(len(report.errors), 'error')}, {plural(len(report.warnings), 'warning')}"
    if not report.ok:
        return f"{report.path}: invalid: {counts}"
    if not data:
        return f"{report.path}: valid (data not checked): {counts}"
    rows = sum(f.rows for f in report.files)
    values = sum(f.values for f in report.files)
    missing = sum(sum(f.missing_cells.values()) for f in report.files)
    return (
        f"{report.path}: valid: {plural(len(report.files), 'file')}, {plural(rows, 'row')}, "
        f"{plural(values, 'value')} in {plural(len(report.summaries), 'dataset')} "
        f"({plural(missing, 'missing cell')} skipped); {counts}"
    )


def _missing_lines(report: ValidationReport) -> list[str]:
    """How many missing cells were skipped, per spelling (the empty cell as '')."""
    counts: dict[str, int] = defaultdict(int)
    for file in report.files:
        for spelling, count in file.missing_cells.items():
            counts[spelling] += count
    if not counts:
        return []
    spelled = ", ".join(f"{spelling!r} {count:,}" for spelling, count in sorted(counts.items()))
    return [f"  missing cells skipped: {spelled}"]


def _dataset_lines(report: ValidationReport) -> list[str]:
    """One line per indicator and resolution: dates, datasets, values, min and max."""
    labels = report.manifest_or_raise().setup().labels
    groups = defaultdict(list)
    for summary in report.summaries:
        key = summary.key
        groups[(key.indicator_id, key.srid, key.trid)].append(summary)
    lines = ["Datasets prepared, per indicator and resolution:"]
    for (indicator, srid, trid), summaries in sorted(groups.items()):
        dates = sorted(s.key.dt[:10] for s in summaries)
        values = sum(s.stats.count for s in summaries)
        low = min(s.stats.min for s in summaries)
        high = max(s.stats.max for s in summaries)
        lines.append(
            f"  {indicator} {labels.series(srid, trid)}: {dates[0]}..{dates[-1]}, "
            f"{plural(len(summaries), 'dataset')}, {plural(values, 'value')}, "
            f"min {nanos_to_text(low)}, max {nanos_to_text(high)}"
        )
    return lines


@cli.command(
    name="check",
    short_help="Check the credentials, state store and lock plan and apply will use.",
    epilog=examples(
        "flowkit-loader check deploy.yaml",
        "flowkit-loader check deploy.yaml --target production --wait-ready 60",
    ),
)
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--target", "-t", help="The target to check (default: the default).")
@click.option("--state", help="Where the state record is (default: the target's).")
@click.option(
    "--wait-ready",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for a service that starts on its first request.",
)
def check_command(manifest: str, target: str | None, state: str | None, wait_ready: float) -> None:
    """Check what plan and apply will use on MANIFEST's target; one line per thing checked.

    The target answers and its API version is known; each role's token has the scopes
    apply needs (admin: admin; updater: write:data; reader: read:free_data, and the admin
    permission, so that plan sees every dataset); each scope's reader (credentials.scopes)
    can read and sees that scope's grants and no more; the state record reads, and a
    probe beside it is written, locked, unlocked and removed. Nothing else is written.
    Exit 1 when something fails.
    """
    from loader.checks import check
    from loader.validation import load_manifest

    loaded = load_manifest(manifest, target=target)
    failed = False
    for finding in check(loaded, target, state=state, wait_ready=wait_ready):
        click.echo(finding.line())
        failed = failed or not finding.ok
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------------------
# plan, show, apply, import, status


MOST_IN_FLIGHT = 64  # a loader that needs more is better split (see the README's Scale)


def _parallelism(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    """`--parallelism`: a number of writes in flight, or auto."""
    text = str(value).strip().lower()
    if text == "auto":
        return text
    if not text.isdigit() or not 1 <= int(text) <= MOST_IN_FLIGHT:
        raise click.BadParameter(f"{value!r} is neither auto nor a number from 1 to "
                                 f"{MOST_IN_FLIGHT}")  # fmt: skip
    return int(text)


@dataclass(frozen=True)
class _Where:
    """--target, --state and --wait-ready: the target, its state record, and how long to
    wait for a service that starts on its first request."""

    target: str | None
    state: str | None
    wait_ready: float


def _target_options(function: Any) -> Any:
    """The three options, handed to the command as one `where`."""

    @functools.wraps(function)
    def with_where(**params: Any) -> Any:
        where = _Where(params.pop("target"), params.pop("state"), params.pop("wait_ready"))
        return function(where=where, **params)

    for option in reversed([
        click.option("--target", "-t", help="The target (default: the manifest's default)."),
        click.option("--state", help="Where the state record is (default: the target's)."),
        click.option("--wait-ready", type=click.FloatRange(min=0), default=0,
                     show_default=True,
                     help="Seconds to wait for a service that starts on its first request."),
    ]):  # fmt: skip
        with_where = option(with_where)
    return with_where


_ONLY = click.option(
    "--only",
    multiple=True,
    metavar="SELECTOR",
    help="Narrow to some datasets: indicator=GLOB, category=ID, dates=FROM..UNTIL "
    "(repeatable; all must hold).",
)
_FORMAT = click.option(
    "--format", "-f", "fmt", type=click.Choice(list(PLAN_FORMATS)), default="text",
    show_default=True, help="Output format.",
)  # fmt: skip


@cli.command(
    name="plan",
    short_help="Show what apply would change; nothing is written.",
    epilog=examples(
        "flowkit-loader plan deploy.yaml",
        "flowkit-loader plan deploy.yaml --out plan.json    # for `apply plan.json`",
        "flowkit-loader plan deploy.yaml --format markdown  # a pull-request comment",
        "flowkit-loader plan deploy.yaml --offline --only indicator='residents.*'",
        "flowkit-loader plan deploy.yaml --detailed-exitcode -q  # exit 2 when there are changes",
    ),
)
@click.argument("manifest", type=click.Path(dir_okay=False))
@_target_options
@_ONLY
@_FORMAT
@click.option("--offline", is_flag=True, help="Plan against the state record alone (no server).")
@click.option(
    "--verify",
    is_flag=True,
    help="Read every dataset's content back and compare (costs as much as loading).",
)
@click.option("--out", type=click.Path(dir_okay=False), help="Save the plan (JSON) for apply.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when nothing changes, 2 when something does (1 on error).")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="Only the summary line (text format).")
@_COLOR
def plan_command(  # noqa: PLR0913 (click hands a command each of its options)
    manifest: str, where: _Where, only: tuple[str, ...], fmt: str, offline: bool, verify: bool,
    out: str | None,
    detailed_exitcode: bool, quiet: bool,
) -> None:  # fmt: skip
    """Show what applying MANIFEST would change on its target; nothing is written."""
    from loader import planfile, run
    from loader.render import summary_text

    if offline and verify:
        raise LoaderError("--verify reads the server: it cannot be --offline")
    if quiet and fmt != "text":
        raise click.UsageError(f"--quiet is for the text format, not {fmt}")
    made = run.plan(manifest, target=where.target, offline=offline, verify=verify, only=only,
                    state=where.state, wait_ready=where.wait_ready)  # fmt: skip
    if out:
        data = planfile.save_plan(made, out)
    else:  # sealed only where the seal is shown: the JSON document
        data = planfile.document(made) if fmt == "json" else planfile.plan_data(made)
    if quiet:
        click.echo(summary_text(data), nl=False)
    else:
        echo_plan(data, fmt)
    if out:  # on stderr: stdout is the plan alone (a PR comment, a JSON document)
        hint = planfile.how_to_apply(out, manifest, made.refreshed)
        click.echo(f"Saved to {out}: {hint}.", err=True)
    sys.exit(2 if detailed_exitcode and made.has_changes else 0)


@cli.command(
    name="show",
    short_help="Render a saved plan as text, Markdown or JSON.",
    epilog=examples(
        "flowkit-loader show plan.json", "flowkit-loader show plan.json --format markdown"
    ),
)
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@_FORMAT
@_COLOR
def show_command(plan_file: str, fmt: str) -> None:
    """Render a saved plan (`plan --out`) as text, Markdown or JSON; refused when it was
    changed after it was written (its digest), or is not signed with FLOWKIT_PLAN_KEY
    when that is set."""
    from loader import planfile

    echo_plan(planfile.read(plan_file), fmt)


class ApplyProgress:
    """What apply shows while it works: a bar with rate and ETA on a terminal, a log
    line every few seconds otherwise, every change with -v, nothing with -q."""

    LOG_EVERY = 10.0  # seconds between log lines off a terminal

    def __init__(self, quiet: bool, verbose: bool) -> None:
        import threading
        import time

        self.quiet, self.verbose = quiet, verbose
        self.terminal = sys.stderr.isatty()
        self.clock = time.monotonic
        self.lock = threading.Lock()
        self.tally: Any = None  # loader.progress.Tally, from the confirmation on
        self.last = 0.0
        self.open_line = False  # the bar drawn and its line not ended (an interrupted apply)

    def begin(self, changes: Sequence[Any]) -> None:
        from loader.progress import Tally

        self.tally = Tally(changes, self.clock)
        self.last = self.tally.start

    def end(self) -> None:
        """The bar's line ended, so that what follows (the summary after a Ctrl-C or a
        stop) starts on a line of its own."""
        with self.lock:
            if self.open_line:
                click.echo(err=True)
                self.open_line = False

    def __call__(self, outcome: Any) -> None:
        from loader.render import progress_line

        with self.lock:
            tally = self.tally
            elapsed = tally.count(outcome)
            if elapsed is None:
                return  # never started: no progress
            if self.verbose:
                clear = "\r\x1b[K" if self.terminal else ""  # the bar's line, wiped first
                line = f"  {outcome.status.value}: {outcome.change.describe()}"
                click.echo(clear + line, err=True)
            if self.quiet:
                return
            counts = (tally.done, tally.total, tally.failed, elapsed)
            if self.terminal:
                line = progress_line(*counts, 30, **tally.estimate)
                self.open_line = tally.done < tally.total
                click.echo(f"\r{line}", nl=not self.open_line, err=True)
            elif (now := tally.start + elapsed) - self.last >= self.LOG_EVERY \
                    or tally.done == tally.total:  # fmt: skip
                self.last = now
                line = progress_line(*counts, **tally.estimate)
                click.echo(f"apply: {line}", err=True)


@cli.command(
    name="apply",
    short_help="Make the target match the manifest, or carry out a saved plan.",
    epilog=examples(
        "flowkit-loader apply deploy.yaml                 # plan, confirm, apply",
        "flowkit-loader apply plan.json                   # exactly that plan, refused if stale",
        "flowkit-loader apply deploy.yaml --reviewed pr-plan.json --yes   # in CI, after review",
        "flowkit-loader apply deploy.yaml --yes --parallelism auto",
    ),
)
@click.argument("source", metavar="MANIFEST|PLAN", type=click.Path(dir_okay=False))
@_target_options
@_ONLY
@click.option(
    "--verify",
    is_flag=True,
    help="Plan with every dataset's content read back (see plan --verify).",
)
@click.option(
    "--reviewed",
    metavar="PLAN",
    type=click.Path(dir_okay=False),
    help="A plan file that was reviewed (`plan --out`, offline too): refused unless the "
    "fresh plan has exactly its changes.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--allow-destroy", is_flag=True, help="Allow deletes and a setup replace (refused otherwise)."
)
@click.option(
    "--max-destroy",
    type=click.IntRange(min=0),
    help="Refuse when the plan destroys more than this many things.",
)
@click.option(
    "--parallelism",
    "-j",
    metavar="N|auto",
    callback=_parallelism,
    default="4",
    show_default=True,
    help="Dataset writes in flight at once, or auto: as many as the server takes (found "
    "as the apply runs; backs off on 429, 503, timeouts and rising latency).",
)
@click.option(
    "--max-parallelism",
    type=click.IntRange(min=1, max=MOST_IN_FLIGHT),
    default=16,
    show_default=True,
    help="With --parallelism auto: the most requests it may keep in flight.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only the summary and errors.")
@click.option("--verbose", "-v", is_flag=True, help="Every change as it completes.")  # fmt: skip
@_COLOR
def apply_command(  # noqa: PLR0913 (click hands a command each of its options)
    source: str, where: _Where, only: tuple[str, ...], verify: bool, reviewed: str | None,
    yes: bool, allow_destroy: bool, max_destroy: int | None, parallelism: int | Literal["auto"],
    max_parallelism: int, quiet: bool, verbose: bool,
) -> None:  # fmt: skip
    """Make the target match MANIFEST (plan, confirm, apply), or carry out a saved PLAN
    exactly (refused when stale or made for another target). With --reviewed, MANIFEST is
    planned and applied only if the plan has the reviewed plan's changes."""
    from loader import applying

    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose: choose one")
    from loader.planfile import is_plan_file, plan_data
    from loader.planner import Plan
    from loader.render import render_result

    saved = is_plan_file(source)

    progress = ApplyProgress(quiet, verbose)

    asks = not saved and not reviewed and not yes  # a plan file was the confirmation

    def show(made: Plan) -> None:
        if asks or not quiet:
            echo_plan(plan_data(made))

    def confirm(made: Plan) -> bool:
        if asks:
            if not sys.stdin.isatty():
                raise LoaderError("not on a terminal: apply needs --yes (or a saved plan)")
            if not click.confirm("Apply these changes?", default=False):
                return False
        progress.begin(made.changes)  # its clock starts now, not while a person reads
        return True

    options = applying.ApplyOptions(
        target=where.target, state=where.state, wait_ready=where.wait_ready, reviewed=reviewed,
        only=only,
        verify=verify, allow_destroy=allow_destroy, max_destroy=max_destroy, show=show,
        confirm=confirm, parallelism=parallelism, max_parallelism=max_parallelism,
        progress=progress,
    )  # fmt: skip
    applied = applying.apply(source, options)
    if not applied.plan.has_changes:
        click.echo("No changes: the target matches the manifest.")
        return
    if not applied.result.outcomes:
        click.echo("Apply cancelled: nothing was written.")
        sys.exit(1)
    progress.end()
    click.echo(render_result(applied.result, applied.plan.origin.labels), nl=False)
    if applied.pacing is not None and not quiet:
        click.echo(applied.pacing.describe())
    if applied.result.interrupted:
        sys.exit(130)
    sys.exit(0 if applied.result.ok else 1)


@cli.command(
    name="import",
    short_help="Record what the server already holds of the manifest.",
    epilog=examples(
        "flowkit-loader import deploy.yaml", "flowkit-loader import deploy.yaml --target production"
    ),
)
@click.argument("manifest", type=click.Path(dir_okay=False))
@_target_options
def import_command(manifest: str, where: _Where) -> None:
    """Take over a deployment filled by other means: record the config and datasets of
    MANIFEST that the server already holds. Nothing is written to the server; nothing
    unmanaged is ever deleted."""
    from loader import applying
    from loader.render import render_import

    report = applying.import_state(manifest, target=where.target, state=where.state,
                                   wait_ready=where.wait_ready)  # fmt: skip
    click.echo(render_import(report), nl=False)


@cli.command(
    name="status",
    short_help="Show the dates loaded, gaps, grants and the last apply.",
    epilog=examples(
        "flowkit-loader status deploy.yaml",
        "flowkit-loader status deploy.yaml --offline   # from the state record alone",
        "flowkit-loader status deploy.yaml --format html > status.html",
    ),
)
@click.argument("manifest", type=click.Path(dir_okay=False))
@_target_options
@click.option("--offline", is_flag=True, help="From the state record alone.")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
    show_default=True,
    help="text (a coverage strip per indicator); json (schemas/status.schema.json); html "
    "(one self-contained report: a heatmap of indicators by date, who sees what, the "
    "applies).",
)  # fmt: skip
def status_command(manifest: str, where: _Where, offline: bool, fmt: str) -> None:
    """What the target holds: per indicator and resolution the dates loaded, gaps and
    grants, and the last apply."""
    from loader import coverage, inventory
    from loader.render import render_status

    found = inventory.status(manifest, target=where.target, state=where.state, offline=offline,
                             wait_ready=where.wait_ready)  # fmt: skip
    if fmt == "json":
        click.echo(coverage.render_status_json(found), nl=False)
    elif fmt == "html":
        click.echo(coverage.render_status_html(found), nl=False)
    else:
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        unicode = encoding.lower().replace("-", "") in ("utf8", "utf16", "utf32")
        click.echo(render_status(found, unicode=unicode), nl=False)


@cli.command(
    name="unlock",
    short_help="Break the state lock of a run that is gone.",
    epilog=examples(
        "flowkit-loader unlock deploy.yaml",
        "flowkit-loader unlock deploy.yaml --force   # before it expires",
    ),
)
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--target", "-t", help="The target (default: the manifest's default).")
@click.option("--state", help="Where the state record is (default: the target's).")
@click.option("--force", is_flag=True, help="Break a lock that has not expired yet.")
def unlock_command(manifest: str, target: str | None, state: str | None, force: bool) -> None:
    """Break the state lock of a run that is gone (killed, or its machine lost). A lock
    that has not expired needs --force: be sure its run is really gone."""
    from loader.checks import unlock
    from loader.validation import load_manifest

    done = unlock(load_manifest(manifest, target=target), target, state=state, force=force)
    broken = f"lock of {done.broken.holder} broken" if done.broken else "no lock"
    click.echo(f"{done.location}: {broken}")


@cli.command(
    name="schema",
    short_help="Print the manifest's (or the config's) JSON Schema.",
    epilog=examples(
        "flowkit-loader schema > manifest.schema.json", "flowkit-loader schema --config"
    ),
)
@click.option(
    "--config",
    "which",
    flag_value="config.schema.json",
    help="Print the setup config's schema instead.",
)
@click.option(
    "--manifest",
    "which",
    flag_value="manifest.schema.json",
    default=True,
    help="Print the manifest's schema (the default).",
)
def schema_command(which: str) -> None:
    """Print the manifest's JSON Schema (for editors and other tools)."""
    assert which in SCHEMA_NAMES
    click.echo(schema_text(which), nl=False)


@cli.command(
    name="serve",
    short_help="Serve a local backend over HTTP with the real service's API.",
    epilog=examples(
        "FLOWKIT_SERVE_SECRET=dev-secret flowkit-loader serve --db .flowkit/serve.db",
        "flowkit-loader serve --port 0 --upstream-quirks --latency  # its hazards and costs",
    ),
)
@click.option(
    "--db",
    default=".flowkit/serve.db",
    show_default=True,
    help="The SQLite file of the local backend.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; loopback unless told otherwise.",
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="0 picks a free port.")  # fmt: skip
@click.option(
    "--upstream-quirks",
    is_flag=True,
    help="Reproduce the real service's hazards (500s after successful writes, "
    "duplicate datasets under concurrent creates, ...).",
)
@click.option(
    "--latency",
    is_flag=True,
    help="Cost model: each request and each value written or read takes the time "
    "it takes on the real service.",
)
@click.option(
    "--request-cost",
    default=0.005,
    show_default=True,
    type=float,
    help="With --latency: seconds per request.",
)
@click.option(
    "--value-cost",
    default=0.00004,
    show_default=True,
    type=float,
    help="With --latency: seconds per value written or read (serialised).",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    help="Requests served at once (implies --latency); as many again wait their turn, "
    "more answer 429 at once.",
)
@click.option(
    "--audience",
    default="https://flowkit-ui-backend.local",
    show_default=True,
    help="The audience the token endpoint accepts.",
)
@click.option(
    "--max-body-bytes",
    default=2 * 1024**3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request body, once decompressed; larger ones answer 413.",
)
def serve_command(  # noqa: PLR0913 (click hands a command each of its options)
    db: str,
    host: str,
    port: int,
    upstream_quirks: bool,
    latency: bool,
    request_cost: float,
    value_cost: float,
    capacity: int | None,
    audience: str,
    max_body_bytes: int,
) -> None:
    """Serve the local backend under /v1 with the real service's REST contract, and an
    OAuth2 token endpoint for development clients (secrets from FLOWKIT_SERVE_SECRET;
    an empty one enables none)."""
    from loader.backends.server import CostModel, serve

    cost = CostModel(request_cost, value_cost, capacity) if latency or capacity else None
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server stops
        serve(db, host, port, quirks=upstream_quirks, cost=cost, audience=audience,
              announce=lambda line: click.echo(line, err=True),
              max_body=max_body_bytes)  # fmt: skip


def main() -> None:
    cli.main(prog_name="flowkit-loader")
