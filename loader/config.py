"""The setup config: config.json (or the manifest's inline config) + explicit ids ->
SetupConfig with every id resolved, the unit codes of every spatial resolution, and the
problems found on the way.

Upstream's config carries no ids, and the backend re-numbers entities sent without one
(backend-contract, Hazard 1), so every language, data provider, spatial and temporal
resolution must get its id here, from the config itself or from the manifest's `ids`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from loader.model import (
    DATA_TYPES,
    Category,
    ConfigEntity,
    EntityKind,
    Position,
    Problem,
    SetupConfig,
    SpatialResolution,
    TemporalResolution,
)
from loader.timegrid import UNITS, DateError, Grid
from loader.yamlsrc import JsonPath

Locate = Callable[[JsonPath], Position]

# Kinds whose id the backend would otherwise assign, and how the manifest names them.
NAMED_KINDS: dict[EntityKind, tuple[str, ...]] = {
    EntityKind.LANGUAGE: ("code", "name"),
    EntityKind.DATA_PROVIDER: ("name",),
    EntityKind.SPATIAL_RESOLUTION: ("label",),
    EntityKind.TEMPORAL_RESOLUTION: ("label",),
}
_CODE_LIKE = re.compile(r"(?:^|_)(?:P?CODE|ID)$|^id$", re.IGNORECASE)


class ConfigBuilder:
    """Resolves one config for one set of ids; problems accumulate in `problems`."""

    def __init__(
        self,
        config: Mapping[str, Any],
        locate: Locate,
        ids: Mapping[str, Mapping[str, int]],
        locate_ids: Locate,
        unit_properties: Mapping[str, str],
        locate_unit_property: Locate,
        known_digests: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.known_digests = known_digests or {}  # remembered for this config's text
        self.locate = locate
        self.ids = ids
        self.locate_ids = locate_ids
        self.unit_properties = unit_properties
        self.locate_unit_property = locate_unit_property
        self.problems: list[Problem] = []
        self.excluded: set[tuple[EntityKind, str]] = set()

    def error(self, position: Position, message: str) -> None:
        self.problems.append(Problem(position, message))

    def build(self) -> SetupConfig:
        entities: list[ConfigEntity] = []
        for kind in EntityKind:
            entities.extend(self.entities_of(kind))
        categories = self.categories(entities)
        spatial = {
            e.label: self.spatial(e) for e in entities if e.kind is EntityKind.SPATIAL_RESOLUTION
        }
        temporal = {
            e.label: self.temporal(e) for e in entities if e.kind is EntityKind.TEMPORAL_RESOLUTION
        }
        for label, path in ((label, ("unit_properties", label)) for label in self.unit_properties):
            if label not in spatial:
                self.error(self.locate_unit_property(path), f"unknown spatial resolution '{label}'")
        return SetupConfig(tuple(entities), categories, spatial, temporal, frozenset(self.excluded))

    # -- entities and their ids -----------------------------------------------------------

    def entities_of(self, kind: EntityKind) -> list[ConfigEntity]:
        items = self.config.get(kind.value)
        if not isinstance(items, list):
            return []
        given_ids = self.ids.get(kind.value, {})
        used_labels: set[str] = set()
        entities: list[ConfigEntity] = []
        seen: dict[int | str, str] = {}
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                continue
            path: JsonPath = (kind.value, index)
            label = self.label_of(kind, item)
            if label is None:
                continue
            if label in {e.label for e in entities}:
                self.error(self.locate(path), f"duplicate {kind.singular} '{label}'")
                continue
            entity_id = self.id_of(kind, item, label, given_ids, used_labels, path)
            if entity_id is None:
                continue
            if entity_id in seen:
                self.error(
                    self.locate(path),
                    f"{kind.singular} '{label}' has the same {kind.id_field} {entity_id!r} "
                    f"as '{seen[entity_id]}'",
                )
                continue
            seen[entity_id] = label
            body = dict(item)
            body[kind.id_field] = entity_id
            entity = ConfigEntity(kind, entity_id, label, body)
            known = self.known_digests.get(entity.digest_key)
            entities.append(entity if known is None else entity.knowing_digest(known))
        for label in given_ids:
            if label not in used_labels:
                known = ", ".join(sorted(e.label for e in entities)) or "none"
                self.error(
                    self.locate_ids(("ids", kind.value, label)),
                    f"ids.{kind.value} names '{label}', which is not in the config "
                    f"(known: {known})",
                )
        return entities

    @staticmethod
    def label_of(kind: EntityKind, item: Mapping[str, Any]) -> str | None:
        for name in (*NAMED_KINDS.get(kind, ()), kind.id_field):
            value = item.get(name)
            if isinstance(value, str) and value:
                return value
        return None

    def id_of(
        self,
        kind: EntityKind,
        item: Mapping[str, Any],
        label: str,
        given_ids: Mapping[str, int],
        used_labels: set[str],
        path: JsonPath,
    ) -> int | str | None:
        own = item.get(kind.id_field)
        if kind not in NAMED_KINDS:
            return own if isinstance(own, str) else None
        names = [item[n] for n in NAMED_KINDS[kind] if isinstance(item.get(n), str)]
        given = next((given_ids[n] for n in names if n in given_ids), None)
        used_labels.update(n for n in names if n in given_ids)
        if isinstance(own, int) and given is not None and own != given:
            self.error(
                self.locate(path),
                f"{kind.singular} '{label}' has {kind.id_field} {own} in the config "
                f"but {given} in ids.{kind.value}",
            )
            return None
        chosen = own if isinstance(own, int) else given
        if chosen is None:
            self.excluded.add((kind, label))
            why = (
                "the backend never assigns one"
                if kind is EntityKind.TEMPORAL_RESOLUTION
                else "the backend would assign a new one on every setup, hiding existing data"
            )
            self.error(
                self.locate(path),
                f"{kind.singular} '{label}' has no {kind.id_field}: set it in the config "
                f"or under ids.{kind.value} in the manifest ({why})",
            )
        return chosen

    # -- categories and indicators --------------------------------------------------------

    def categories(self, entities: list[ConfigEntity]) -> dict[str, Category]:
        types: dict[str, Any] = {}
        members: dict[str, list[str]] = {}
        for entity in entities:
            if entity.kind is EntityKind.CATEGORY:
                types[str(entity.id)] = entity.body.get("type")
                members[str(entity.id)] = []
        for entity in (e for e in entities if e.kind is EntityKind.INDICATOR):
            category_id = entity.body.get("category_id")
            if not isinstance(category_id, str):
                continue  # the config's schema reports it
            if category_id not in members:
                index = self.index_of(EntityKind.INDICATOR, entity.label)
                self.error(
                    self.locate(("indicators", index, "category_id")),
                    f"indicator '{entity.id}' names category '{category_id}', "
                    "which is not in the config",
                )
                continue
            members[category_id].append(str(entity.id))
        self.excluded.update(
            (EntityKind.CATEGORY, cid) for cid in members if types[cid] not in DATA_TYPES
        )
        return {
            cid: Category(cid, types[cid], tuple(members[cid]))
            for cid in members
            if types[cid] in DATA_TYPES
        }

    # -- resolutions ----------------------------------------------------------------------

    def temporal(self, entity: ConfigEntity) -> TemporalResolution:
        body = entity.body
        resolution = TemporalResolution(
            trid=int(entity.id),
            label=entity.label,
            unit=str(body.get("relativedelta_unit")),
            step=_whole_step(body.get("relativedelta_num")),
            date_format=str(body.get("date_format") or "%Y-%m-%d"),
        )
        if resolution.unit in UNITS:
            grid = Grid.of(resolution)
            sample = grid.floor(datetime(2020, 2, 5, 13))
            try:
                ok = grid.parse_formatted(grid.format(sample)) == sample
            except DateError:
                ok = False
            if not ok:
                index = self.index_of(EntityKind.TEMPORAL_RESOLUTION, entity.label)
                self.error(
                    self.locate(("temporal_resolutions", index, "date_format")),
                    f"date_format {resolution.date_format!r} of '{entity.label}' does not "
                    f"identify a {resolution.unit[:-1]}: dates would collide",
                )
        return resolution

    def index_of(self, kind: EntityKind, label: str) -> int:
        for index, item in enumerate(self.config.get(kind.value) or []):
            if isinstance(item, Mapping) and self.label_of(kind, item) == label:
                return index
        return 0

    def spatial(self, entity: ConfigEntity) -> SpatialResolution:
        index = self.index_of(EntityKind.SPATIAL_RESOLUTION, entity.label)
        path: JsonPath = ("spatial_resolutions", index, "boundaries")
        boundaries = entity.body.get("boundaries")
        explicit = self.unit_properties.get(entity.label)
        if not isinstance(boundaries, Mapping):
            return SpatialResolution(int(entity.id), entity.label, explicit, None)
        properties = boundary_properties(boundaries)
        if not properties:
            self.error(
                self.locate(path),
                f"boundaries of '{entity.label}' hold no geometries with properties "
                "(expected a TopoJSON Topology or a GeoJSON FeatureCollection)",
            )
            return SpatialResolution(int(entity.id), entity.label, explicit, None)
        chosen = explicit or self.infer_unit_property(entity.label, properties, path)
        if chosen is None:
            return SpatialResolution(int(entity.id), entity.label, None, None)
        codes = [p.get(chosen) for p in properties]
        if any(not isinstance(c, str | int) for c in codes):
            self.error(
                self.locate_unit_property(("unit_properties", entity.label))
                if explicit
                else self.locate(path),
                f"boundary property '{chosen}' is missing from some geometries of '{entity.label}'",
            )
            return SpatialResolution(int(entity.id), entity.label, chosen, None)
        return SpatialResolution(
            int(entity.id), entity.label, chosen, frozenset(str(c) for c in codes)
        )

    def infer_unit_property(
        self, label: str, properties: list[Mapping[str, Any]], path: JsonPath
    ) -> str | None:
        candidates = sorted(
            name
            for name in set().union(*(p.keys() for p in properties))
            if _CODE_LIKE.search(name) and is_unique_code(properties, name)
        )
        if len(candidates) == 1:
            return candidates[0]
        found = ", ".join(candidates) if candidates else "none"
        self.error(
            self.locate(path),
            f"cannot tell which boundary property holds the unit codes of '{label}' "
            f"(unique code-like properties: {found}); set unit_properties.{label} "
            "in the manifest",
        )
        return None


def _whole_step(value: Any) -> int:
    """relativedelta_num as the grid's step; 1 where the config's schema reports it (not
    a whole number of at least 1), so that a bad config yields problems, never a crash."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return 1


def is_unique_code(properties: list[Mapping[str, Any]], name: str) -> bool:
    values = [p.get(name) for p in properties]
    return all(isinstance(v, str) and v for v in values) and len(set(values)) == len(values)


def unit_code_properties(boundaries: Any) -> dict[str, set[str]]:
    """The boundary properties that hold a unique code per geometry, with their codes
    (none when there are no boundaries)."""
    properties = boundary_properties(boundaries) if isinstance(boundaries, Mapping) else []
    names = sorted(set().union(*(p.keys() for p in properties))) if properties else []
    return {n: {str(p[n]) for p in properties} for n in names if is_unique_code(properties, n)}


def boundary_properties(boundaries: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The property objects of every geometry (TopoJSON) or feature (GeoJSON)."""
    found: list[Mapping[str, Any]] = []
    if boundaries.get("type") == "Topology":
        objects = boundaries.get("objects")
        for obj in objects.values() if isinstance(objects, Mapping) else ():
            if isinstance(obj, Mapping):
                geometries = obj.get("geometries")
                found.extend(_props(geometries if isinstance(geometries, list) else [obj]))
    elif boundaries.get("type") == "FeatureCollection":
        features = boundaries.get("features")
        found.extend(_props(features if isinstance(features, list) else []))
    return found


def _props(items: list[Any]) -> list[Mapping[str, Any]]:
    return [
        item["properties"]
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("properties"), Mapping)
    ]
