"""Replay of the real service's observations (`reference/observed-behaviour.json`):
each one is reproduced by `flowkit-loader serve --upstream-quirks` over HTTP (same status,
same body shape) and, unless it is about the transport, by the store in-process; or it
is listed in tests/replay/exclusions.json with its reason.

Scenarios run per group, once per session and caller, each group on a fresh database
(and over HTTP its own server); each observation is then one test per caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REFERENCE, ROOT, need_reference
from tests.replay.callers import http_caller, store_caller
from tests.replay.scenarios import Context, Group, Observed, Scenario, all_scenarios, run_group
from tests.replay.shape import differences, escaped, parse_recorded

OBSERVATIONS = REFERENCE / "observed-behaviour.json"
EXCLUSIONS = ROOT / "tests" / "replay" / "exclusions.json"


def _observations() -> dict[str, dict[str, Any]]:
    if not OBSERVATIONS.is_file():
        return {}
    rows = json.loads(OBSERVATIONS.read_text(encoding="utf-8"))["observations"]
    return {f"{row['section']} / {row['name']}": row for row in rows}


OBSERVED = _observations()
BY_NAME = {row["name"]: row for row in OBSERVED.values()}
EXCLUDED: dict[str, str] = json.loads(EXCLUSIONS.read_text(encoding="utf-8"))
SCENARIOS = all_scenarios()
# One test per reproduced observation and caller; excluded ones are accounted for by
# test_every_observation_is_replayed_or_excluded, not run (and not skipped).
CASES = [
    (key, caller)
    for key in OBSERVED
    if key not in EXCLUDED and key in SCENARIOS
    for caller in ("http", "store")
    if caller == "http" or not SCENARIOS[key][1].http_only
] or [("(observed-behaviour.json not found)", "http")]


class Replays:
    """Each group's outcome per caller, run on first demand."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.done: dict[tuple[str, str], tuple[Context, dict[str, Any]] | BaseException] = {}

    def outcome(self, caller: str, group: Group) -> tuple[Context, dict[str, Any]]:
        key = (caller, group.name)
        if key not in self.done:
            directory = self.factory.mktemp(f"{caller}-{re.sub(r'[^a-z]+', '-', group.name)}")
            try:
                if caller == "http":
                    with http_caller(directory) as http:
                        scratch = {"secret": http.server.secret}
                        self.done[key] = run_group(group, http, http=True, scratch=scratch)
                else:
                    with store_caller(directory) as store:
                        self.done[key] = run_group(group, store, http=False)
            except Exception as error:  # the server did not start, ...: every test says so
                self.done[key] = error
        done = self.done[key]
        if isinstance(done, BaseException):
            raise AssertionError(f"group {group.name!r} could not run: {done!r}") from done
        return done


@pytest.fixture(scope="session")
def replays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replays]:
    yield Replays(tmp_path_factory)


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def compare(observation: dict[str, Any], scenario: Scenario, observed: Observed,
            ctx: Context) -> list[str]:  # fmt: skip
    """Why `observed` does not reproduce `observation` (empty: it does)."""
    recorded = parse_recorded(observation)
    problems = []
    if str(observation["status"]) != str(observed.status):
        problems.append(f"status {observed.status}, recorded {observation['status']}")
    if scenario.project is not None:  # a derived row: the part the API can show, exactly
        expected = scenario.project(recorded.value)
        return problems + differences(expected, observed.body, exact=True, path="derived")
    recorded_type = str(observation["content_type"])
    if recorded_type and _media(recorded_type) != _media(observed.content_type):
        problems.append(f"Content-Type {observed.content_type!r}, recorded {recorded_type!r}")
    if recorded.kind == "empty":
        if observed.body not in (None, ""):
            problems.append(f"a body {observed.text!r:.200}, recorded none")
    elif recorded.kind == "text":
        text = escaped(observed.text or "")
        same = text.startswith(recorded.text) if recorded.cut else text == recorded.text
        if not same:
            problems.append(f"text {text[:300]!r}, recorded {recorded.text[:300]!r}")
    elif isinstance(recorded.value, str):  # an error string: exactly
        if observed.body != recorded.value:
            problems.append(f"body {observed.body!r:.300}, recorded {recorded.value!r}")
    else:
        problems += differences(recorded.value, observed.body, exact=scenario.exact,
                                sized=scenario.sized)  # fmt: skip
    if scenario.full_length:  # the whole answer is as long as the recorded one
        assert recorded.omitted is not None or not recorded.cut, "cut, length not recorded"
        text = observed.text or ""
        length = len(escaped(text) if recorded.kind == "text" else text)
        if length != len(recorded.text) + (recorded.omitted or 0):
            problems.append(f"{length} characters, recorded "
                            f"{len(recorded.text)} + {recorded.omitted or 0}")  # fmt: skip
    if scenario.relation is not None:
        relation = scenario.relation
        other = relation.other
        recorded_other = parse_recorded(BY_NAME[other]).value if other else None
        if not relation.holds(recorded.value, recorded_other):
            problems.append(f"the recording does not show {relation.text}: the scenario is wrong")
        if not relation.holds(observed.body, ctx.body(other) if other else None):
            problems.append(f"not {relation.text}: {observed.body!r:.200}")
    return problems


@pytest.mark.parametrize(("key", "caller"), CASES)
def test_observation_is_replayed(key: str, caller: str, replays: Replays) -> None:
    need_reference()
    if not OBSERVED:
        pytest.skip(f"observations not found at {OBSERVATIONS}")
    observation = OBSERVED[key]
    group, scenario = SCENARIOS[key]
    ctx, outcomes = replays.outcome(caller, group)
    outcome = outcomes[key]
    if isinstance(outcome, BaseException):
        raise AssertionError(f"the replay raised {outcome!r}") from outcome
    problems = compare(observation, scenario, outcome, ctx)
    assert not problems, f"{caller}: {key}\n  " + "\n  ".join(problems)


def test_every_observation_is_replayed_or_excluded() -> None:
    need_reference()
    if not OBSERVED:
        pytest.skip(f"observations not found at {OBSERVATIONS}")
    both = sorted(set(SCENARIOS) & set(EXCLUDED))
    neither = sorted(set(OBSERVED) - set(SCENARIOS) - set(EXCLUDED))
    assert not both, f"both replayed and excluded: {both}"
    assert not neither, f"neither replayed nor excluded: {neither}"


def test_every_exclusion_names_an_observation() -> None:
    need_reference()
    if not OBSERVED:
        pytest.skip(f"observations not found at {OBSERVATIONS}")
    unknown = sorted(set(EXCLUDED) - set(OBSERVED))
    assert not unknown, f"exclusions of no observation: {unknown}"
    assert all(reason.strip() for reason in EXCLUDED.values()), "an exclusion without reason"


def test_every_scenario_names_an_observation() -> None:
    need_reference()
    if not OBSERVED:
        pytest.skip(f"observations not found at {OBSERVATIONS}")
    unknown = sorted(set(SCENARIOS) - set(OBSERVED))
    assert not unknown, f"scenarios of no observation: {unknown}"
