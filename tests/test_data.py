"""CSV -> canonical datasets: values, sorting, digests, chunking, problems and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from loader import csvshape, data, readers
from loader.cli import cli
from loader.model import Dataset, Severity, nanos_to_text
from loader.validation import validate
from tests.helpers import RESIDENTS_SAMPLE, write_manifest

RESIDENTS = RESIDENTS_SAMPLE
MOVEMENTS = (
    "date,pcod_from,pcod_to,travellers,travellers_pctchangewithref\n"
    "2021-03-02,EX01-02,EX01-01,7,-1.5\n"
    "2021-03-01,EX02-01,EX01-01,5,0.5\n"
    "2021-03-01,EX01-01,EX02-01,3,\n"
    "2021-03-01,EX01-01,EX01-02,4,2\n"
)


def datasets_of(manifest: Path) -> dict[str, Dataset]:
    report = validate(manifest, data=False)
    assert report.ok, report.problems
    assert report.manifest is not None
    found: dict[str, Dataset] = {}
    setup = report.manifest.setup()
    for spec in report.manifest.datasets:
        for file in spec.files:
            iterator, file_report = data.read_datasets(spec, file, setup)
            for dataset in iterator:
                found[f"{dataset.key.indicator_id} {dataset.key.dt[:10]}"] = dataset
            assert not file_report.has_errors, file_report.problems
    return found


def test_single_location_datasets(tmp_path: Path) -> None:
    found = datasets_of(write_manifest(tmp_path, {"residents.csv": RESIDENTS}))
    assert sorted(found) == [
        "residents.arrived 2021-01-01",
        "residents.arrived 2021-02-01",
        "residents.residents 2021-01-01",
        "residents.residents 2021-02-01",
        "residents.residents_perKm2 2021-01-01",
        "residents.residents_perKm2 2021-02-01",
    ]
    january = found["residents.residents 2021-01-01"]
    assert january.units == [("EX01-01",), ("EX02-01",)]  # sorted
    assert list(january.values) == [100 * 10**9, 300 * 10**9]
    assert january.key.dt == "2021-01-01 00:00:00"
    assert (january.key.srid, january.key.trid, january.summary.revision) == (2, 2, "r1")
    # Empty cells are skipped, not sent.
    assert found["residents.arrived 2021-01-01"].units == [("EX02-01",)]
    density = found["residents.residents_perKm2 2021-02-01"]
    assert [nanos_to_text(v) for v in density.values] == ["0.12345679", "2.5"]
    stats = density.summary.stats
    assert (stats.count, nanos_to_text(stats.sum)) == (2, "2.62345679")


def test_flow_datasets(tmp_path: Path) -> None:
    found = datasets_of(write_manifest(tmp_path, {"movements.csv": MOVEMENTS}))
    first = found["movements.travellers 2021-03-01"]
    assert first.units == [("EX01-01", "EX01-02"), ("EX01-01", "EX02-01"), ("EX02-01", "EX01-01")]
    assert list(first.values) == [4 * 10**9, 3 * 10**9, 5 * 10**9]
    assert first.summary.data_type == "flow"
    assert found["movements.travellers_pctchangewithref 2021-03-01"].units == [
        ("EX01-01", "EX01-02"),
        ("EX02-01", "EX01-01"),
    ]


def test_digest_ignores_row_order_and_encoding_but_not_content(tmp_path: Path) -> None:
    plain = datasets_of(write_manifest(tmp_path, {"residents.csv": RESIDENTS}))
    lines = RESIDENTS.splitlines()
    shuffled = "\ufeff" + "\r\n".join([lines[0], *reversed(lines[1:])]) + "\r\n"
    shuffled = shuffled.replace("EX01-01,100", '"EX01-01","100"')
    other = tmp_path / "other"
    other.mkdir()
    same = datasets_of(write_manifest(other, {"residents.csv": shuffled}))
    assert {k: d.summary.digest for k, d in plain.items()} == {
        k: d.summary.digest for k, d in same.items()
    }
    changed_dir = tmp_path / "changed"
    changed_dir.mkdir()
    changed = datasets_of(
        write_manifest(changed_dir, {"residents.csv": RESIDENTS.replace(",300,", ",301,")})
    )
    differing = [k for k in plain if plain[k].summary.digest != changed[k].summary.digest]
    assert differing == ["residents.residents 2021-01-01"]
    assert plain[differing[0]].summary.digest.startswith("1:")


def test_chunked_two_pass_reading_gives_the_same_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        f"2021-03-{day:02d},{origin},{destination},{day * 10 + i},{i}.5"
        for day in (1, 2, 3)
        for i, (origin, destination) in enumerate(
            [("EX01-01", "EX01-02"), ("EX01-02", "EX01-01"), ("EX02-01", "EX03-01")]
        )
    ]
    rows.insert(1, rows.pop())  # a date that comes back after another one started
    text = "date,pcod_from,pcod_to,travellers,travellers_pctchangewithref\n" + "\n".join(rows)
    manifest = write_manifest(tmp_path, {"movements.csv": text + "\n"})
    whole = datasets_of(manifest)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 2)
    monkeypatch.setattr(readers, "SINGLE_PASS_BYTES", 0)
    chunked = datasets_of(manifest)
    assert sorted(whole) == sorted(chunked)
    for key, dataset in whole.items():
        assert (chunked[key].units, chunked[key].values) == (dataset.units, dataset.values)
        assert chunked[key].summary == dataset.summary


def test_indicator_without_any_value_on_a_date_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = "month,pcod,residents,residents_perKm2,arrived\n2021-01-01,EX01-01,5,,\n"
    report = validate(write_manifest(tmp_path, {"residents.csv": text}))
    assert report.ok
    assert [(str(p), p.severity) for p in report.problems] == [
        (
            "residents.csv:2:22: warning: no value for residents.residents_perKm2 on "
            "2021-01-01: that dataset is not sent (the backend refuses an empty dataset)",
            Severity.WARNING,
        ),
        (
            "residents.csv:2:23: warning: no value for residents.arrived on 2021-01-01: "
            "that dataset is not sent (the backend refuses an empty dataset)",
            Severity.WARNING,
        ),
    ]
    assert [s.key.indicator_id for s in report.summaries] == ["residents.residents"]


def test_problems_point_at_the_physical_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = (
        "month,pcod,residents,residents_perKm2,arrived\n"
        '2021-01-01,EX01-01,1,"a\nb",3\n'  # a quoted value spanning two lines: not a number
        "\n"
        "2021-01-01,EX01-02,x,2,3\n"
    )
    report = validate(write_manifest(tmp_path, {"residents.csv": text}))
    lines = [str(p) for p in report.problems]
    assert lines == [
        "residents.csv:2:22: not a number: 'a\\nb' in column 'residents_perKm2'",
        "residents.csv:5:20: not a number: 'x' in column 'residents'",
    ]


def test_missing_spellings_in_value_columns_are_skipped_and_counted(tmp_path: Path) -> None:
    text = (
        "month,pcod,residents,arrived\n"
        "2021-01-01,EX01-01,NA,1\n"
        "2021-01-01,EX01-02,NaN,\n"
        "2021-02-01,EX01-01,N/A,null\n"
        "2021-02-01,EX01-02,5,NA\n"
    )
    report = validate(write_manifest(tmp_path, {"residents.csv": text}))
    assert report.ok, report.problems
    [file] = report.files
    assert file.missing_cells == {"NA": 2, "NaN": 1, "N/A": 1, "null": 1, "": 1}
    assert {(s.key.indicator_id, s.key.dt[:10]): s.stats.count for s in report.summaries} == {
        ("residents.residents", "2021-02-01"): 1,
        ("residents.arrived", "2021-01-01"): 1,
    }
    result = CliRunner().invoke(cli, ["validate", "-v", str(tmp_path / "manifest.yaml")])
    assert "  missing cells skipped: '' 1, 'N/A' 1, 'NA' 2, 'NaN' 1, 'null' 1\n" in result.stdout
    assert "(6 missing cells skipped)" in result.stdout


def test_a_unit_code_na_is_a_code_never_missing(tmp_path: Path) -> None:
    text = "month,pcod,residents\n2021-01-01,NA,1\n"
    [problem] = validate(write_manifest(tmp_path, {"residents.csv": text})).errors
    assert "unknown spatial unit 'NA' in column 'pcod'" in problem.message


def test_inf_is_an_error_unless_listed_and_a_dataset_overrides_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = "month,pcod,residents\n2021-01-01,EX01-01,Inf\n2021-01-01,EX01-02,-999\n"
    manifest = write_manifest(tmp_path, {"residents.csv": text}, extra='missing: ["", "Inf"]\n')
    report = validate(manifest)
    assert report.ok, report.problems
    assert report.files[0].missing_cells == {"Inf": 1}
    assert [s.stats.count for s in report.summaries] == [1]  # -999 is a value here
    manifest.write_text(manifest.read_text() + '    missing: ["-999"]\n')
    report = validate(manifest)
    assert [str(p) for p in report.errors] == [
        "residents.csv:2:20: value 'Inf' in column 'residents' is not finite (list its "
        "spelling under missing to skip it)"
    ]
    assert report.files[0].missing_cells == {"-999": 1}


def test_a_header_only_file_is_a_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report = validate(write_manifest(tmp_path, {"residents.csv": "month,pcod,residents\n\n"}))
    assert report.ok
    assert [str(p) for p in report.warnings] == [
        "residents.csv: warning: no data rows: the file has only its header, so it loads nothing"
    ]


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64])
def test_the_field_count_scan_is_the_same_in_any_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Records, quotes and \\r\\n pairs cut across blocks: the same shape every time."""
    text = (
        '\ufeffmonth,pcod,"resi\ndents",arrived\r\n'
        '2021-01-01,"EX01,01",1,2\r\n\r\n'
        '2021-01-01,"EX""01",1\r'
        "2021-01-01,EX01,1,2,\n"
        '"2021-01-01",x,"a\r\nb",3'
    )
    path = tmp_path / "shape.csv"
    path.write_bytes(text.encode())
    monkeypatch.setattr(csvshape, "BLOCK_BYTES", block)
    shape = csvshape.scan_shape(str(path))
    assert (shape.header_fields, shape.records, shape.ragged_count) == (4, 4, 2)
    assert shape.ragged == [csvshape.Ragged(line=5, fields=3, last_line=5)]
    assert shape == csvshape._exact_scan(str(path))


def test_a_stray_quote_in_a_large_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quote swallows 200,000 lines (a field far over the csv module's limit)."""
    monkeypatch.chdir(tmp_path)
    rows = "".join(f"2021-01-01,EX01-0{i % 2 + 1},{i},1\n" for i in range(200_000))
    text = 'month,pcod,residents,arrived\n2021-01-01,EX01-01,"5,1\n' + rows + 'x,"y,1,2\n'
    report = validate(write_manifest(tmp_path, {"residents.csv": text}))
    assert [str(p) for p in report.errors] == [
        "residents.csv:2: 5 fields, the header has 4 (the record runs to line 200003: a quoted "
        "field holds line breaks, or a quote is not closed where it should be)",
    ]
