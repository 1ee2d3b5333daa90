"""`init`'s draft: files placed by their columns and values, ids from the config's order
marked for confirmation, what it cannot place said; on upstream's synthetic data, the
same datasets as the hand-written upstream manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from loader.draft import CONFIRM, DraftError, confirm_markers, draft, yaml_scalar
from loader.validation import validate
from tests.conftest import ROOT, need_reference
from tests.helpers import EXAMPLE_CONFIG, RESIDENTS_SAMPLE

UPSTREAM = ROOT.parent / "shared" / "reference" / "upstream-data"


def test_upstream_drafted_plans_the_hand_written_manifests_datasets(tmp_path: Path) -> None:
    need_reference()
    manifest = tmp_path / "upstream.yaml"
    text, placed = draft(UPSTREAM / "config.json", sorted(UPSTREAM.glob("*.csv")), manifest)
    manifest.write_text(text)
    assert [p.problem for p in placed] == ["", "", "", ""]
    ours = validate(manifest)
    assert ours.ok, [str(p) for p in ours.problems]
    theirs = validate(ROOT / "tests" / "data" / "upstream" / "manifest.yaml")
    assert len(ours.summaries) == 149
    # The same datasets, value for value (the revision is the manifest's to choose: it is
    # in the digest, not in the data).
    assert {(s.key, s.data_type, s.stats) for s in ours.summaries} == \
        {(s.key, s.data_type, s.stats) for s in theirs.summaries}  # fmt: skip
    assert text.startswith("# yaml-language-server: $schema=")
    # Upstream's config has no ids: every one is from its order, and marked.
    assert len(confirm_markers(text)) == 3 + 1 + 3 + 4
    assert "    Communal section: 3  # confirm\n" in text


def test_what_cannot_be_placed_is_said_and_the_rest_still_validates(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(EXAMPLE_CONFIG.read_bytes())
    (tmp_path / "residents.csv").write_text(RESIDENTS_SAMPLE)
    (tmp_path / "other.csv").write_text("when,where,what\n2021-01-01,EX01-01,3\n")
    (tmp_path / "units.csv").write_text("month,code,residents\n2021-01-01,nowhere,3\n")
    manifest = tmp_path / "deploy.yaml"
    text, _ = draft(tmp_path / "config.json",
                         [tmp_path / n for n in ("residents.csv", "other.csv", "units.csv")],
                         manifest)  # fmt: skip
    manifest.write_text(text)
    assert "# not placed: other.csv: no category has indicators among its columns " \
        "(when, where, what)\n" in text  # fmt: skip
    assert "# not placed: units.csv: its unit codes must fill one column of one spatial " \
        "resolution's boundaries; found: none\n" in text  # fmt: skip
    assert "  - file: residents.csv\n    category: residents  # 3 of its columns" in text
    assert "    temporal_resolution: Month  # its 2 dates are 1 month apart\n" in text
    report = validate(manifest)
    assert report.ok, [str(p) for p in report.problems]
    assert len(report.summaries) == 6  # residents' three indicators over two months
    assert all(not line.strip().startswith("lid") for line in text.splitlines())
    # The example's config carries its languages' and provider's ids: none drafted.
    assert [m[2] for m in confirm_markers(text)] == [
        "spatial_resolutions.Region", "spatial_resolutions.District",
        "temporal_resolutions.Month", "temporal_resolutions.Day",
    ]  # fmt: skip


def test_a_missing_config_or_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(DraftError, match=r"^setup config not found: "):
        draft(tmp_path / "none.json", [], tmp_path / "m.yaml")
    (tmp_path / "config.json").write_text('{\n  "languages": [,]\n}')
    with pytest.raises(DraftError, match=r"config.json:2:17: invalid JSON: "):
        draft(tmp_path / "config.json", [], tmp_path / "m.yaml")
    (tmp_path / "config.json").write_bytes(EXAMPLE_CONFIG.read_bytes())
    with pytest.raises(DraftError, match=r"^data file not found: .*nothing.csv$"):
        draft(tmp_path / "config.json", [tmp_path / "nothing.csv"], tmp_path / "m.yaml")


def test_confirm_markers_are_found_on_id_lines_only() -> None:
    text = ("ids:\n  spatial_resolutions:\n    District: 2  # confirm\n"
            f"    Region: 1\nrevision: v1  {CONFIRM}\n")  # fmt: skip
    assert confirm_markers(text) == [(3, 18, "spatial_resolutions.District")]


@given(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() == t and t.isprintable()))
def test_a_drafted_scalar_reads_back_as_the_same_string(value: str) -> None:
    assert yaml.safe_load(f"key: {yaml_scalar(value)}\n")["key"] == value
    assert yaml.safe_load(f"{{key: {yaml_scalar(value, flow=True)}, other: 1}}\n")["key"] == value


@pytest.mark.parametrize("value", ["no", "null", "3", "a: b", "#x", "x,y", "Communal section"])
def test_scalars_yaml_would_read_otherwise_are_quoted(value: str) -> None:
    assert yaml.safe_load(f"{{key: {yaml_scalar(value, flow=True)}}}")["key"] == value


def test_a_quoted_label_is_named_as_yaml_reads_it() -> None:
    text = f"ids:\n  languages:\n    {yaml_scalar('no')}: 4  {CONFIRM}\n"
    column = text.splitlines()[2].index("#") + 1
    assert confirm_markers(text) == [(3, column, "languages.no")]
    assert yaml.safe_load(text) == {"ids": {"languages": {"no": 4}}}
