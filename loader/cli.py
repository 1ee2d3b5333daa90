"""The `flowkit-loader` command: parse options, call the core, render, choose the exit code.

click lives here and nowhere else; this is the only module that prints or exits.
"""

from __future__ import annotations

import contextlib
import sys
from collections import defaultdict
from importlib.metadata import PackageNotFoundError, version

import click

from loader.model import LoaderError, nanos_to_text
from loader.validate import SCHEMA_NAMES, ValidationReport, schema_text, validate


def _version() -> str:
    try:
        return version("flowkit-loader")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


class LoaderGroup(click.Group):
    """Errors a user can cause are one line on stderr and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LoaderError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)


@click.group(cls=LoaderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="flowkit-loader")
def cli() -> None:
    """Declarative loader for FlowKit-UI deployments: validate, plan, apply."""


@cli.command(name="validate")
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
def validate_command(
    manifests: tuple[str, ...],
    target: str | None,
    no_data: bool,
    max_problems: int,
    verbose: bool,
) -> None:
    """Check MANIFEST(s) and their data; print every problem as path:line:column: message.

    Nothing is sent anywhere. Exit 1 when there is any error (warnings do not fail).
    """
    failed = False
    for manifest in manifests:
        report = validate(manifest, target=target, data=not no_data)
        for problem in report.problems[:max_problems]:
            click.echo(str(problem))
        if len(report.problems) > max_problems:
            click.echo(f"... and {len(report.problems) - max_problems} more")
        if verbose and report.ok:
            for line in _dataset_lines(report):
                click.echo(line)
        click.echo(_summary(report, data=not no_data))
        failed = failed or not report.ok
    sys.exit(1 if failed else 0)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _summary(report: ValidationReport, data: bool) -> str:
    counts = f"{_plural(len(report.errors), 'error')}, {_plural(len(report.warnings), 'warning')}"
    if not report.ok:
        return f"{report.path}: invalid: {counts}"
    if not data:
        return f"{report.path}: valid (data not checked): {counts}"
    rows = sum(f.rows for f in report.files)
    values = sum(f.values for f in report.files)
    empty = sum(f.empty_cells for f in report.files)
    return (
        f"{report.path}: valid: {_plural(len(report.files), 'file')}, {_plural(rows, 'row')}, "
        f"{_plural(values, 'value')} in {_plural(len(report.summaries), 'dataset')} "
        f"({_plural(empty, 'empty cell')} skipped); {counts}"
    )


def _dataset_lines(report: ValidationReport) -> list[str]:
    """One line per indicator and resolution: dates, datasets, values, min and max."""
    groups = defaultdict(list)
    for summary in report.summaries:
        key = summary.key
        groups[(key.indicator_id, key.srid, key.trid)].append(summary)
    lines = []
    for (indicator, srid, trid), summaries in sorted(groups.items()):
        dates = sorted(s.key.dt[:10] for s in summaries)
        values = sum(s.stats.count for s in summaries)
        low = min(s.stats.min for s in summaries)
        high = max(s.stats.max for s in summaries)
        lines.append(
            f"  {indicator} srid={srid} trid={trid}: {dates[0]}..{dates[-1]}, "
            f"{_plural(len(summaries), 'dataset')}, {_plural(values, 'value')}, "
            f"min {nanos_to_text(low)}, max {nanos_to_text(high)}"
        )
    return lines


@cli.command(name="check")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--target", "-t", help="The target to check (default: the default).")
@click.option(
    "--wait-ready",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for a service that starts on its first request.",
)
def check_command(manifest: str, target: str | None, wait_ready: float) -> None:
    """Check that MANIFEST's target answers and that its credentials can do their work.

    A remote target: /heartbeat and the API version, then each role's token and the
    scopes it must carry (admin: admin; updater: write:data; reader: read:free_data).
    Nothing is written. Exit 1 when something is missing.
    """
    from loader.backends.factory import open_backend
    from loader.model import Role
    from loader.validate import load_manifest

    loaded = load_manifest(manifest, target=target)
    chosen = loaded.target(target)
    backend = open_backend(chosen, loaded.setup(target))
    if chosen.is_local:
        view = backend.read_setup()
        click.echo(
            f"{chosen.name}: embedded backend at {chosen.local_path}: "
            f"{_plural(len(view.languages), 'language')}, "
            f"{_plural(len(view.data_providers), 'data provider')}"
        )
        return
    from loader.backends.remote import RemoteBackend

    assert isinstance(backend, RemoteBackend)
    try:
        backend.wait_ready(wait_ready)
        needs = {Role.ADMIN: ["admin"], Role.UPDATER: ["write:data"],
                 Role.READER: ["read:free_data"]}  # fmt: skip
        backend.preflight({role: scopes for role, scopes in needs.items()
                           if role in backend.tokens})  # fmt: skip
        click.echo(f"{chosen.name}: {chosen.url} is ready")
        for role, provider in backend.tokens.items():
            token = provider.current()
            click.echo(
                f"  {role.value}: {token.subject}, scopes {' '.join(sorted(token.scopes))}, "
                f"sees {' '.join(sorted(token.permissions)) or 'nothing'}"
            )
    finally:
        backend.close()


@cli.command(name="schema")
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


@cli.command(name="serve")
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
@click.option("--port", default=8000, show_default=True, type=int, help="0 picks a free port.")
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
    "--audience",
    default="https://flowkit-ui-backend.local",
    show_default=True,
    help="The audience the token endpoint accepts.",
)
def serve_command(
    db: str,
    host: str,
    port: int,
    upstream_quirks: bool,
    latency: bool,
    request_cost: float,
    value_cost: float,
    audience: str,
) -> None:
    """Serve the local backend under /v1 with the real service's REST contract, and an
    OAuth2 token endpoint for development clients (secrets from FLOWKIT_SERVE_SECRET)."""
    from pathlib import Path

    from loader.backends.server import CostModel, serve

    Path(db).parent.mkdir(parents=True, exist_ok=True)
    cost = CostModel(request_cost, value_cost) if latency else None
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server stops
        serve(db, host, port, quirks=upstream_quirks, cost=cost, audience=audience,
              announce=lambda line: click.echo(line, err=True))  # fmt: skip


def main() -> None:
    cli.main(prog_name="flowkit-loader")
