"""Regenerate the example data for the fictional country "Examplia".

Run from the repository root with::

    python manifests/example/generate.py

It (re)writes, next to this script:

* ``config.json`` -- a FlowKit-UI backend setup config (languages, data
  providers, categories, indicators, temporal and spatial resolutions with
  TopoJSON boundaries for 3 regions and 8 districts);
* ``data/residents_district_monthly.csv`` -- monthly residents indicators per
  district, with a few deliberately empty cells;
* ``data/movements_district_daily.csv`` -- daily travellers between pairs of
  districts.

Everything is synthetic and fictional. The output is fully deterministic:
the same script always produces byte-identical files (stdlib only, seeded
``random.Random``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"

SEED = 20210301
COUNTRY_CODE = "EX"
COUNTRY_EN = "Examplia"
EXAMPLE_URL = "https://example.org/examplia"

# Quantisation: one integer unit is 0.0001 degrees. The (fictional) country
# sits in the open South Atlantic so that it cannot be mistaken for real land.
SCALE = (0.0001, 0.0001)
TRANSLATE = (-27.5, -45.2)

# --------------------------------------------------------------------------
# Geography: three regions as vertical strips, each cut into districts.
# Rectangles are (x0, y0, x1, y1) in quantised units.
# --------------------------------------------------------------------------

REGIONS: list[dict] = [
    {
        "pcode": "EX01",
        "en": "Westmarch",
        "fr": "Marche de l'Ouest",
        "rect": (0, 1000, 6000, 12000),
        # districts from north to south: (suffix, en, fr, y_top, y_bottom)
        "districts": [
            ("01", "Port Alba", "Port-Alba", 12000, 8000),
            ("02", "Greenfield", "Champvert", 8000, 4000),
            ("03", "Saltmarsh", "Marais-Salant", 4000, 1000),
        ],
    },
    {
        "pcode": "EX02",
        "en": "Central Highlands",
        "fr": "Hautes-Terres centrales",
        "rect": (6000, 0, 12000, 12500),
        "districts": [
            ("01", "Highmoor", "Haute-Lande", 12500, 7000),
            ("02", "Stonebridge", "Pont-de-Pierre", 7000, 3000),
            ("03", "Riverside", "Bord-de-Rivière", 3000, 0),
        ],
    },
    {
        "pcode": "EX03",
        "en": "Eastern Lakes",
        "fr": "Lacs de l'Est",
        "rect": (12000, 1500, 18000, 11000),
        "districts": [
            ("01", "Lakeshore", "Rive-du-Lac", 11000, 6500),
            ("02", "Eastwood", "Bois-de-l'Est", 6500, 1500),
        ],
    },
]


def district_features() -> list[dict]:
    """Districts as flat records (sorted by pcode)."""
    out = []
    for region in REGIONS:
        x0, _, x1, _ = region["rect"]
        for suffix, en, fr, y_top, y_bottom in region["districts"]:
            out.append(
                {
                    "pcode": f"{region['pcode']}-{suffix}",
                    "en": en,
                    "fr": fr,
                    "rect": (x0, y_bottom, x1, y_top),
                    "region": region,
                }
            )
    return sorted(out, key=lambda d: d["pcode"])


# --------------------------------------------------------------------------
# Minimal TopoJSON builder for rectangles (shared edges become shared arcs).
# --------------------------------------------------------------------------

Point = tuple[int, int]


def _rect_ring(rect: tuple[int, int, int, int], nodes: set[Point]) -> list[Point]:
    """Clockwise closed ring (y up) through all `nodes` lying on the edges."""
    x0, y0, x1, y1 = rect
    corners = [(x0, y0), (x0, y1), (x1, y1), (x1, y0), (x0, y0)]  # clockwise
    ring: list[Point] = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:]):
        on_edge = [
            p
            for p in nodes
            if min(ax, bx) <= p[0] <= max(ax, bx)
            and min(ay, by) <= p[1] <= max(ay, by)
            and (ax == bx == p[0] or ay == by == p[1])
        ]
        on_edge.sort(key=lambda p: abs(p[0] - ax) + abs(p[1] - ay))
        ring.extend(on_edge[:-1])  # the edge's end is the next edge's start
    ring.append(ring[0])
    return ring


def build_topology(object_name: str, features: list[tuple[tuple, dict]]) -> dict:
    """Build a quantised TopoJSON Topology from (rect, properties) pairs."""
    nodes = {
        p
        for rect, _ in features
        for p in ((rect[0], rect[1]), (rect[0], rect[3]), (rect[2], rect[3]), (rect[2], rect[1]))
    }
    rings = [_rect_ring(rect, nodes) for rect, _ in features]

    # Junctions: vertices where the boundary network branches (degree != 2).
    neighbours: dict[Point, set[Point]] = {}
    for ring in rings:
        for a, b in zip(ring, ring[1:]):
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    junctions = {p for p, ns in neighbours.items() if len(ns) != 2}

    arcs: list[list[Point]] = []
    arc_index: dict[tuple[Point, ...], int] = {}

    def arc_ref(chain: list[Point]) -> int:
        key = tuple(chain)
        if key in arc_index:
            return arc_index[key]
        rev = tuple(reversed(chain))
        if rev in arc_index:
            return ~arc_index[rev]
        arc_index[key] = len(arcs)
        arcs.append(chain)
        return arc_index[key]

    geometries = []
    for ring, (_, props) in zip(rings, features):
        body = ring[:-1]
        starts = [i for i, p in enumerate(body) if p in junctions]
        if not starts:
            refs = [arc_ref(ring)]
        else:
            # rotate so the ring starts at a junction, then cut at junctions
            body = body[starts[0]:] + body[: starts[0]]
            closed = body + [body[0]]
            refs, chain = [], [closed[0]]
            for p in closed[1:]:
                chain.append(p)
                if p in junctions:
                    refs.append(arc_ref(chain))
                    chain = [p]
        geometries.append({"type": "Polygon", "arcs": [refs], "properties": props})

    def delta(chain: list[Point]) -> list[list[int]]:
        out, px, py = [], 0, 0
        for x, y in chain:
            out.append([x - px, y - py])
            px, py = x, y
        return out

    return {
        "type": "Topology",
        "arcs": [delta(a) for a in arcs],
        "transform": {"scale": list(SCALE), "translate": list(TRANSLATE)},
        "objects": {object_name: {"type": "GeometryCollection", "geometries": geometries}},
    }


def to_lonlat(x: float, y: float) -> list[float]:
    return [round(TRANSLATE[0] + x * SCALE[0], 6), round(TRANSLATE[1] + y * SCALE[1], 6)]


def centroid(rect: tuple[int, int, int, int]) -> dict:
    x0, y0, x1, y1 = rect
    return {"type": "Point", "coordinates": to_lonlat((x0 + x1) / 2, (y0 + y1) / 2)}


def area_km2(rect: tuple[int, int, int, int]) -> float:
    """Approximate area of a lon/lat rectangle (good enough for examples)."""
    x0, y0, x1, y1 = rect
    lat_mid = TRANSLATE[1] + (y0 + y1) / 2 * SCALE[1]
    width_km = (x1 - x0) * SCALE[0] * 111.320 * math.cos(math.radians(lat_mid))
    height_km = (y1 - y0) * SCALE[1] * 110.574
    return width_km * height_km


def region_topology() -> dict:
    features = []
    for region in sorted(REGIONS, key=lambda r: r["pcode"]):
        features.append(
            (
                region["rect"],
                {
                    "ADM1_PCODE": region["pcode"],
                    "centroid": centroid(region["rect"]),
                    "ADM1_EN": region["en"],
                    "ADM1_FR": region["fr"],
                    "ADM0_EN": COUNTRY_EN,
                    "ADM0_FR": COUNTRY_EN,
                    "ADM0_PCODE": COUNTRY_CODE,
                },
            )
        )
    return build_topology("admin1", features)


def district_topology() -> dict:
    features = []
    for d in district_features():
        region = d["region"]
        features.append(
            (
                d["rect"],
                {
                    "ADM2_PCODE": d["pcode"],
                    "centroid": centroid(d["rect"]),
                    "ADM2_EN": d["en"],
                    "ADM2_FR": d["fr"],
                    "ADM1_EN": region["en"],
                    "ADM1_FR": region["fr"],
                    "ADM1_PCODE": region["pcode"],
                    "ADM0_EN": COUNTRY_EN,
                    "ADM0_FR": COUNTRY_EN,
                    "ADM0_PCODE": COUNTRY_CODE,
                },
            )
        )
    return build_topology("admin2", features)


# --------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------


def indicator(
    category_id: str,
    name: str,
    order: int,
    label: str,
    description: str,
    method: str,
    label_fr: str,
    description_fr: str,
    method_fr: str,
    scale: str,
    decimals: int,
    min_value: float | None,
    max_value: float | None,
    **extra: object,
) -> dict:
    return {
        "category_id": category_id,
        "indicator_id": f"{category_id}.{name}",
        "order": order,
        "flowgeek_url": f"{EXAMPLE_URL}/methods/{category_id}#{name}",
        "label": label,
        "description": description,
        "method": method,
        "label_fr": label_fr,
        "description_fr": description_fr,
        "method_fr": method_fr,
        "scale": scale,
        "decimals": decimals,
        "min_value": min_value,
        "max_value": max_value,
        **extra,
    }


def build_config() -> dict:
    languages = [
        {"lid": 1, "code": "en", "name": "English", "flag": "🇬🇧", "default": True},
        {"lid": 2, "code": "fr", "name": "French", "flag": "🇫🇷", "default": False},
    ]
    data_providers = [
        {
            "dpid": 1,
            "name": "Examplia Mobile (fictional operator)",
            "logo": f"{EXAMPLE_URL}/provider/logo.svg",
            "url": f"{EXAMPLE_URL}/provider",
        }
    ]
    categories = [
        {
            "category_id": "residents",
            "type": "single_location",
            "order": 1,
            "flowgeek_url": f"{EXAMPLE_URL}/methods/residents",
            "label": "Residents",
            "description": "Monthly figures on how many people live in each area of Examplia.",
            "label_fr": "Résidents",
            "description_fr": "Chiffres mensuels sur le nombre de personnes vivant dans chaque zone d'Examplia.",
        },
        {
            "category_id": "movements",
            "type": "flow",
            "order": 2,
            "flowgeek_url": f"{EXAMPLE_URL}/methods/movements",
            "label": "Movements",
            "description": "Daily figures on how many people travel from one area of Examplia to another.",
            "label_fr": "Déplacements",
            "description_fr": "Chiffres quotidiens sur le nombre de personnes se rendant d'une zone d'Examplia à une autre.",
        },
    ]
    synthetic = "Example data: all values are randomly generated for the fictional country Examplia."
    synthetic_fr = "Données d'exemple : toutes les valeurs sont générées aléatoirement pour le pays fictif Examplia."
    indicators = [
        indicator(
            "residents", "residents", 1,
            "Residents",
            "Number of people whose home is in the area during the selected month.",
            f"Count of subscribers with a home location in the area, scaled to the population. {synthetic}",
            "Résidents",
            "Nombre de personnes dont le domicile se trouve dans la zone pendant le mois choisi.",
            f"Nombre d'abonnés domiciliés dans la zone, rapporté à la population. {synthetic_fr}",
            "sequential", 0, 0, None,
            num_bins=7,
        ),
        indicator(
            "residents", "residents_perKm2", 2,
            "Residents per km²",
            "Average number of residents per square kilometre of the area during the selected month.",
            f"The residents indicator divided by the surface of the area. {synthetic}",
            "Résidents par km²",
            "Nombre moyen de résidents par kilomètre carré de la zone pendant le mois choisi.",
            f"L'indicateur des résidents divisé par la superficie de la zone. {synthetic_fr}",
            "sequential", 2, 0, None,
        ),
        indicator(
            "residents", "arrived", 3,
            "Arrived residents",
            "Number of people who moved their home into the area during the selected month.",
            f"Count of subscribers whose home location changed to this area since the previous month. {synthetic}",
            "Résidents arrivés",
            "Nombre de personnes ayant installé leur domicile dans la zone pendant le mois choisi.",
            f"Nombre d'abonnés dont le domicile est passé dans cette zone depuis le mois précédent. {synthetic_fr}",
            "sequential", 0, 0, None,
        ),
        indicator(
            "movements", "travellers", 1,
            "Travellers",
            "Number of people who travelled from the origin area to the destination area on the selected day.",
            f"Count of subscribers seen in the origin area and then in the destination area on the same day. {synthetic}",
            "Voyageurs",
            "Nombre de personnes ayant voyagé de la zone d'origine vers la zone de destination le jour choisi.",
            f"Nombre d'abonnés observés dans la zone d'origine puis dans la zone de destination le même jour. {synthetic_fr}",
            "sequential", 0, 0, None,
        ),
        indicator(
            "movements", "travellers_pctchangewithref", 2,
            "Travellers: % change from reference",
            "Change in the number of travellers compared with a reference period, in percent.",
            f"(travellers - reference) / reference × 100, where the reference is the typical value for the pair of areas. {synthetic}",
            "Voyageurs : variation en % par rapport à la référence",
            "Variation du nombre de voyageurs par rapport à une période de référence, en pourcentage.",
            f"(voyageurs - référence) / référence × 100, la référence étant la valeur habituelle pour la paire de zones. {synthetic_fr}",
            "diverging", 2, -100, None,
            bins=[
                {"min": -3, "max": 3, "width": "2%"},
                {"min": -10, "max": -3, "width": "20%"},
                {"min": 3, "max": 10, "width": "20%"},
                {"min": None, "max": -10, "width": "80%"},
                {"min": 10, "max": None, "width": "80%"},
            ],
        ),
    ]
    temporal_resolutions = [
        {
            "label": "Month",
            "label_fr": "Mois",
            "index": 1,
            "relativedelta_unit": "months",
            "relativedelta_num": 1,
            "date_format": "%Y-%m",
            "description": "One calendar month",
            "description_fr": "Un mois calendaire",
            "default_selected": 12,
        },
        {
            "label": "Day",
            "label_fr": "Jour",
            "index": 3,
            "relativedelta_unit": "days",
            "relativedelta_num": 1,
            "date_format": "%Y-%m-%d",
            "description": "One calendar day, from midnight to midnight",
            "description_fr": "Un jour calendaire, de minuit à minuit",
            "default_selected": 7,
        },
    ]
    spatial_resolutions = [
        {
            "label": "Region",
            "label_fr": "Région",
            "index": 1,
            "description": "Examplia is divided into three regions, its first administrative level.",
            "description_fr": "Examplia est divisé en trois régions, son premier niveau administratif.",
            "boundaries": region_topology(),
        },
        {
            "label": "District",
            "label_fr": "District",
            "index": 2,
            "description": "Each region of Examplia is divided into districts, its second administrative level.",
            "description_fr": "Chaque région d'Examplia est divisée en districts, son deuxième niveau administratif.",
            "boundaries": district_topology(),
        },
    ]
    return {
        "languages": languages,
        "data_providers": data_providers,
        "categories": categories,
        "indicators": indicators,
        "temporal_resolutions": temporal_resolutions,
        "spatial_resolutions": spatial_resolutions,
    }


# --------------------------------------------------------------------------
# CSV data
# --------------------------------------------------------------------------


def fmt2(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def residents_rows(rng: random.Random) -> list[list[str]]:
    districts = district_features()
    months = [dt.date(2021, m, 1) for m in range(1, 7)]
    base = {d["pcode"]: rng.randint(20_000, 95_000) for d in districts}
    rows = []
    for month in months:
        for d in districts:
            pcode = d["pcode"]
            base[pcode] = round(base[pcode] * rng.uniform(0.97, 1.03))
            residents = base[pcode]
            arrived = round(residents * rng.uniform(0.005, 0.03))
            rows.append(
                [month.isoformat(), pcode, str(residents), fmt2(residents / area_km2(d["rect"])), str(arrived)]
            )
    # Blank a few value cells (never the key columns) to show they are skipped.
    for row_idx, col_idx in sorted(
        rng.sample([(r, c) for r in range(len(rows)) for c in (2, 3, 4)], 4)
    ):
        rows[row_idx][col_idx] = ""
    return rows


def movements_rows(rng: random.Random) -> list[list[str]]:
    pcodes = [d["pcode"] for d in district_features()]
    pairs = [(a, b) for a in pcodes for b in pcodes if a != b]
    reference = {pair: rng.randint(150, 4_000) for pair in pairs}
    rows = []
    day = dt.date(2021, 3, 1)
    while day <= dt.date(2021, 3, 14):
        weekend = 0.8 if day.weekday() >= 5 else 1.0
        for pair in sorted(rng.sample(pairs, 20)):
            ref = reference[pair]
            travellers = max(0, round(ref * weekend * rng.uniform(0.75, 1.25)))
            pct = (travellers - ref) / ref * 100
            rows.append([day.isoformat(), pair[0], pair[1], str(travellers), fmt2(pct)])
        day += dt.timedelta(days=1)
    return rows


def main() -> None:
    rng = random.Random(SEED)
    config = build_config()
    (HERE / "config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n"
    )
    write_csv(
        DATA_DIR / "residents_district_monthly.csv",
        ["month", "pcod", "residents", "residents_perKm2", "arrived"],
        residents_rows(rng),
    )
    write_csv(
        DATA_DIR / "movements_district_daily.csv",
        ["date", "pcod_from", "pcod_to", "travellers", "travellers_pctchangewithref"],
        movements_rows(rng),
    )


if __name__ == "__main__":
    main()
