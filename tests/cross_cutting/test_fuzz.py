"""Random manifests and CSVs: validate answers every input with problem lines and a
summary, never a traceback."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loader.cli import cli
from tests.helpers import EXAMPLE_CONFIG

PROBLEM = re.compile(r"^[^\n:]+(:\d+(:\d+)?)?: (warning: )?\S.*$")
SUMMARY = re.compile(
    r"^[^\n:]+: (valid: .+; \d+ errors?, [\d,]+ warnings?"
    r"|valid \(data not checked\): .+|invalid: [\d,]+ errors?, [\d,]+ warnings?)$"
)
MORE = re.compile(r"^\.\.\. and \d+ more$")

BASE = {
    "version": 1,
    "targets": {"local": {"url": "local:x.db"}},
    "setup": "config.json",
    "ids": {"spatial_resolutions": {"Region": 1, "District": 2}, "temporal_resolutions": {}},
    "revision": "r",
    "datasets": [
        {
            "file": "data.csv",
            "category": "residents",
            "spatial_resolution": "District",
            "temporal_resolution": "Month",
            "columns": {"date": "month", "spatial_unit": "pcod"},
        }
    ],
    "access": {"read:x": [{"indicator": "residents.*", "temporal_resolution": "Month"}]},
}
KEYS = [
    "version", "targets", "setup", "ids", "revision", "datasets", "access", "url", "file",
    "category", "columns", "date", "spatial_unit", "origin", "indicator", "start", "duration",
    "credentials", "token", "client_secret", "Month", "District", "unit_properties",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "2020-02", "${FKL_FUZZ}", "*", "local:", "http://x", "EX01-01", "no"]),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=5)), inner, max_size=3),
    ),
    max_leaves=6,
)


@st.composite
def mutated_manifests(draw: st.DrawFn) -> str:
    """The base manifest with a few values replaced, keys dropped or added."""
    document = yaml.safe_load(yaml.safe_dump(BASE))
    for _ in range(draw(st.integers(1, 4))):
        node = document
        path = draw(st.lists(st.sampled_from([*KEYS, 0]), min_size=1, max_size=4))
        for step in path[:-1]:
            if isinstance(node, dict) and step in node:
                node = node[step]
            elif isinstance(node, list) and isinstance(step, int) and node:
                node = node[0]
        last = path[-1]
        if isinstance(node, dict):
            if draw(st.booleans()) and last in node:
                del node[last]
            else:
                node[last] = draw(values)
    return yaml.safe_dump(document, allow_unicode=True)


@st.composite
def aliased_manifests(draw: st.DrawFn) -> str:
    """The base manifest with anchored values appended: aliases of earlier anchors (which
    multiply), now and then of the anchor being defined (recursive), merge keys, and
    nesting on both sides of MAX_NESTING (64). Each is refused with a problem or accepted."""
    lines = [yaml.safe_dump(BASE)]
    for n in range(draw(st.integers(1, 8))):
        recursive = draw(st.integers(0, 9)) == 0  # *a{n} inside &a{n}
        aliases = [f"*a{i}" for i in range(n + recursive)]
        width = draw(st.sampled_from([4, 9]))
        items = draw(st.lists(st.sampled_from(["x", "1", *aliases]), min_size=1, max_size=width))
        if draw(st.booleans()):
            pairs = [f"<<: {v}" if v.startswith("*") else f"k{i}: {v}" for i, v in enumerate(items)]
            body = "{" + ", ".join(dict.fromkeys(pairs)) + "}"
        else:
            body = "[" + ", ".join(items) + "]"
        depth = draw(st.one_of(st.integers(0, 3), st.integers(60, 66)))
        levels = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
        opened = "".join("[" if seq else "{k: " for seq in levels)
        closed = "".join("]" if seq else "}" for seq in reversed(levels))
        lines.append(f"k{n}: &a{n} {opened}{body}{closed}")
    return "\n".join(lines) + "\n"


yaml_texts = st.one_of(
    mutated_manifests(),
    aliased_manifests(),
    st.text(alphabet=st.sampled_from(list("ab:-[]{}\n #&*!|>'\"%@`,.0123456789")), max_size=60),
)
cells = st.sampled_from(
    ["2021-01-01", "2021-01-15", "2021-02", "x", "", "EX01-01", "EX09-09", "1", "-2.5", "NaN",
     "inf", "1e400", '"3"', '"a\nb"', "3000000000", "2021-01-01T00:00Z", " ", "0x10"]
)  # fmt: skip
csv_texts = st.builds(
    lambda header, rows, bom, crlf: (
        ("\ufeff" if bom else "")
        + ("\r\n" if crlf else "\n").join([",".join(header)] + [",".join(r) for r in rows])
    ),
    st.one_of(
        st.just(["month", "pcod", "residents", "arrived"]),
        st.lists(st.sampled_from(["month", "pcod", "residents", "x", "", "month"]), max_size=5),
    ),
    st.lists(st.lists(cells, min_size=0, max_size=5), max_size=8),
    st.booleans(),
    st.booleans(),
)


def assert_well_formed(directory: Path, manifest: str, csv: str) -> list[str]:
    """validate's output lines, checked: problem lines and a summary, never a traceback."""
    (directory / "config.json").write_bytes(EXAMPLE_CONFIG.read_bytes())
    (directory / "manifest.yaml").write_text(manifest, encoding="utf-8")
    (directory / "data.csv").write_bytes(csv.encode())
    result = CliRunner().invoke(cli, ["validate", str(directory / "manifest.yaml")])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 1), result.output
    lines = result.output.splitlines()
    assert lines, "validate printed nothing"
    assert SUMMARY.match(lines[-1]), lines[-1]
    for line in lines[:-1]:
        assert PROBLEM.match(line) or MORE.match(line), line
        assert "Traceback" not in line and "internal error" not in line.lower()
    return lines


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(manifest=yaml_texts, csv=csv_texts)
def test_random_manifests(tmp_path: Path, manifest: str, csv: str) -> None:
    assert_well_formed(tmp_path, manifest, csv)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(csv=csv_texts)
def test_random_csv_under_a_valid_manifest(tmp_path: Path, csv: str) -> None:
    assert_well_formed(tmp_path, yaml.safe_dump(BASE), csv)


VALID = {
    **BASE,
    "ids": {
        "spatial_resolutions": {"Region": 1, "District": 2},
        "temporal_resolutions": {"Month": 2, "Day": 4},
    },
}

# Rows of random length and random quoting: the fields of each record as the csv module
# reads them decide whether validate must report a field count.
quoted_cells = st.one_of(
    cells,
    st.text(alphabet=st.sampled_from(list('ab1,"\n\r ')), max_size=6),
    st.text(alphabet=st.sampled_from(list("ab1\n,")), max_size=4).map(lambda s: f'"{s}"'),
)
ragged_csv_texts = st.builds(
    lambda rows, crlf, final: (
        "month,pcod,residents,arrived" + ("\r\n" if crlf else "\n")
        + ("\r\n" if crlf else "\n").join(",".join(r) for r in rows) + ("\n" if final else "")
    ),
    st.lists(st.lists(quoted_cells, min_size=1, max_size=6), min_size=1, max_size=8),
    st.booleans(),
    st.booleans(),
)  # fmt: skip


def first_ragged_line(text: str) -> int | None:
    """The physical line where the first record of the wrong length starts, as the csv
    module (which quotes as pandas does) reads the text."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for index, fields in enumerate(reader):
        if index and fields and len(fields) != 4:
            return start
        start = reader.line_num + 1
    return None


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=ragged_csv_texts)
def test_random_field_counts_and_quoting(tmp_path: Path, text: str) -> None:
    """No record of the wrong length ever validates; the first is named at its line."""
    lines = assert_well_formed(tmp_path, yaml.safe_dump(VALID), text)
    try:
        ragged = first_ragged_line(text)
    except csv.Error:  # a quote left open at the end: pandas refuses the file
        assert lines[-1].startswith(str(tmp_path / "manifest.yaml") + ": invalid"), lines
        return
    if ragged is not None:
        # Or, when that record is the last and ends inside a quoted field, the quote that
        # is never closed (the csv module reads it as a field that ends with the file).
        wanted = re.compile(rf"^[^:]+data\.csv:{ragged}: \d+ fields?, the header has 4")
        unclosed = re.compile(r"^[^:]+data\.csv:(\d+): a quoted field opens here and is never")
        assert any(
            wanted.match(line)
            or ((found := unclosed.match(line)) is not None and int(found[1]) >= ragged)
            for line in lines
        ), (ragged, lines)
        assert ": invalid:" in lines[-1]
    else:
        assert not any("the header has" in line for line in lines), lines


def test_the_valid_base_of_the_field_count_property_is_valid(tmp_path: Path) -> None:
    lines = assert_well_formed(
        tmp_path, yaml.safe_dump(VALID), "month,pcod,residents,arrived\n2021-01-01,EX01-01,1,2\n"
    )
    assert ": valid: " in lines[-1], lines
