"""Access rules -> the concrete dataset identities each scope may read (pure, model-only).

A rule's dates are read as the backend's /query reads them: `start` in the temporal
resolution's format and `duration` steps select start, start + 1 step, ...,
start + (duration - 1) steps; without a duration the range is open, from `start` (or the
beginning) to `until` (inclusive, or the end).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from loader.model import AccessRule, DatasetKey, SetupConfig
from loader.timegrid import Grid, Span


class RuleSelector:
    """Decides which dataset keys one rule selects under one setup (one target's ids)."""

    def __init__(self, rule: AccessRule, setup: SetupConfig) -> None:
        self.rule = rule
        self.srids = (
            None
            if rule.spatial_resolutions is None
            else {setup.spatial[label].srid for label in rule.spatial_resolutions}
        )
        self.trids = (
            None
            if rule.temporal_resolutions is None
            else {setup.temporal[label].trid for label in rule.temporal_resolutions}
        )
        self.dates = Span()
        if rule.temporal_resolutions and (rule.start or rule.until):
            grid = Grid.of(setup.temporal[rule.temporal_resolutions[0]])
            first = end = last = None
            if rule.start is not None:
                first = grid.parse_formatted(rule.start)
                if rule.duration is not None:
                    end = grid.add(first, rule.duration)
            if rule.until is not None:
                last = grid.parse_formatted(rule.until)
            self.dates = Span(first, end, last)

    def selects(self, key: DatasetKey) -> bool:
        if not fnmatchcase(key.indicator_id, self.rule.indicator):
            return False
        if self.srids is not None and key.srid not in self.srids:
            return False
        if self.trids is not None and key.trid not in self.trids:
            return False
        return self.dates.holds(key.dt)


def grants(
    rules: Iterable[AccessRule], keys: Iterable[DatasetKey], setup: SetupConfig
) -> Mapping[str, frozenset[DatasetKey]]:
    """Every scope's datasets: the union of what its rules select among `keys`."""
    selectors = [RuleSelector(rule, setup) for rule in rules]
    chosen: dict[str, set[DatasetKey]] = {s.rule.scope: set() for s in selectors}
    all_keys = list(keys)
    for selector in selectors:
        chosen[selector.rule.scope].update(k for k in all_keys if selector.selects(k))
    return {scope: frozenset(found) for scope, found in chosen.items()}
