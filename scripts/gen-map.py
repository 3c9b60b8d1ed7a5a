#!/usr/bin/env python3
"""Draws the console's map of Europe once, from Natural Earth's 1:50m countries.

The input is `countries-50m.json` of the `world-atlas` npm package (Natural Earth 4.1.0 as
TopoJSON; `npm pack world-atlas@2` fetches it). The output is committed:

  crates/node/src/console/assets/europe.svg         the countries, as paths
  crates/node/src/console/assets/map-points.json    each member country's point on it

A member is drawn at a point of its country (the centre of the country's largest area
within the frame), not at its site: the research data does not give coordinates.

Usage: scripts/gen-map.py PATH/TO/countries-50m.json
"""

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/node/src/console/assets"

# The frame: longitude and latitude bounds, and the parallel whose scale is kept.
LON0, LON1, LAT0, LAT1 = -25.0, 42.0, 33.5, 71.5
MID_LAT = 52.0
WIDTH = 1000.0
K = WIDTH / ((LON1 - LON0) * math.cos(math.radians(MID_LAT)))
HEIGHT = (LAT1 - LAT0) * K

# ISO 3166-1 numeric codes (Natural Earth's ids) of the members' countries.
ISO_NUMERIC = {
    "AT": "040", "BE": "056", "BG": "100", "CH": "756", "CY": "196", "CZ": "203",
    "DE": "276", "ES": "724", "FI": "246", "FR": "250", "GB": "826", "GR": "300",
    "HU": "348", "IE": "372", "IS": "352", "IT": "380", "LT": "440", "LU": "442",
    "LV": "428", "MD": "498", "MK": "807", "MT": "470", "NL": "528", "PL": "616",
    "RO": "642", "RS": "688", "SE": "752", "SI": "705", "SK": "703",
}


def project(lon, lat):
    # Points far outside the frame are pulled to just outside it, so that a country that
    # wraps the globe (Russia) draws no line across it.
    lon = min(max(lon, LON0 - 8), LON1 + 8)
    lat = min(max(lat, LAT0 - 8), LAT1 + 8)
    x = (lon - LON0) * math.cos(math.radians(MID_LAT)) * K
    y = (LAT1 - lat) * K
    return x, y


def decode_arcs(topo):
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring(arcs, indexes):
    points = []
    for i in indexes:
        arc = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        points.extend(arc if not points else arc[1:])
    return points


def unwrap(points):
    """A ring that crosses the antimeridian (Russia's) continues east of 180 degrees."""
    if any(lon > 90 for lon, _ in points) and any(lon < -90 for lon, _ in points):
        return [(lon + 360 if lon < 0 else lon, lat) for lon, lat in points]
    return points


def polygons(geometry, arcs):
    if geometry["type"] == "Polygon":
        return [[unwrap(ring(arcs, r)) for r in geometry["arcs"]]]
    if geometry["type"] == "MultiPolygon":
        return [[unwrap(ring(arcs, r)) for r in p] for p in geometry["arcs"]]
    return []


def in_frame(points):
    return any(LON0 - 5 <= lon <= LON1 + 5 and LAT0 - 5 <= lat <= LAT1 + 5 for lon, lat in points)


def path_of(rings):
    parts = []
    for r in rings:
        last = None
        cmds = []
        for lon, lat in r:
            x, y = project(lon, lat)
            p = (round(x), round(y))
            if last is not None and abs(p[0] - last[0]) + abs(p[1] - last[1]) < 1.5:
                continue
            cmds.append(f"{p[0]:g},{p[1]:g}")
            last = p
        if len(cmds) >= 3:
            parts.append("M" + "L".join(cmds) + "Z")
    return "".join(parts)


def area_centre(outer):
    """Area and centroid of a ring, in map coordinates."""
    pts = [project(lon, lat) for lon, lat in outer]
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        c = x0 * y1 - x1 * y0
        a += c
        cx += (x0 + x1) * c
        cy += (y0 + y1) * c
    if a == 0:
        return 0.0, pts[0]
    return abs(a) / 2, (cx / (3 * a), cy / (3 * a))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    topo = json.loads(Path(sys.argv[1]).read_text())
    arcs = decode_arcs(topo)
    numeric_to_code = {v: k for k, v in ISO_NUMERIC.items()}
    paths = []
    points = {}
    for g in topo["objects"]["countries"]["geometries"]:
        polys = [p for p in polygons(g, arcs) if p and in_frame(p[0])]
        if not polys:
            continue
        d = "".join(path_of(p) for p in polys)
        if not d:
            continue
        code = numeric_to_code.get(g.get("id"))
        # Colours as attributes, not a style sheet: the console's CSP allows no inline style.
        fill = "#cfd8e3" if code else "#e8ebef"
        name = g.get("properties", {}).get("name", "")
        paths.append(f'<path fill="{fill}" d="{d}"><title>{name}</title></path>')
        if code:
            inside = [p for p in polys if all(0 <= x <= WIDTH and 0 <= y <= HEIGHT
                                              for x, y in [area_centre(p[0])[1]])]
            best = max(inside or polys, key=lambda p: area_centre(p[0])[0])
            _, (x, y) = area_centre(best[0])
            points[code] = [round(x, 1), round(y, 1)]
    missing = sorted(set(ISO_NUMERIC) - set(points))
    if missing:
        sys.exit(f"no geometry for {missing}")
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:g} {HEIGHT:.0f}">'
        '<g stroke="#fff" stroke-width=".6">'
        + "".join(paths)
        + "</g></svg>\n"
    )
    (OUT / "europe.svg").write_text(svg)
    (OUT / "map-points.json").write_text(json.dumps(
        {"width": WIDTH, "height": round(HEIGHT), "countries": dict(sorted(points.items()))},
        indent=1) + "\n")
    print(f"europe.svg: {len(svg)} bytes, {len(paths)} countries; {len(points)} member countries")


if __name__ == "__main__":
    main()
