#!/usr/bin/env python3
"""Write a deployment of the demo territory grown to N devices, for the console's map
benchmark (web/e2e/map-bench.mjs; figures in BENCHMARKS.md).

The communes, sites, kinds, rules and procedures are the demo's (copied from demo/); the
demo's own devices are kept and synthetic ones are added, spread around each site (a
Gaussian of about 1.5 km), so that the map has as many devices as asked, distributed like
a real territory's. Deterministic (seeded). Python 3.11+ standard library only.

    python3 tools/gen_map_bench.py --out /tmp/beffroi-100k --devices 100000
    cargo run --release -p beffroi -- serve --config /tmp/beffroi-100k/beffroi.toml
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
# Kinds whose readings need nothing special from the synthetic devices.
KINDS = ["smoke_detector", "temperature", "people_counter", "camera_health", "access_reader"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--listen", default="127.0.0.1:8090")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    out: Path = args.out
    if (out / "territory").exists():
        shutil.rmtree(out / "territory")
    (out / "territory" / "devices").mkdir(parents=True)
    for f in ["territory.toml", "kinds.toml", "sites.geojson", "communes.geojson"]:
        shutil.copy(DEMO / "territory" / f, out / "territory" / f)
    for f in (DEMO / "territory" / "devices").glob("*.toml"):
        shutil.copy(f, out / "territory" / "devices" / f.name)
    # Every file of the deployment beside the territory (rules, procedures, privacy
    # register, security, crisis, escalation, events, situations): serve needs them all.
    for f in DEMO.glob("*.toml"):
        shutil.copy(f, out / f.name)

    existing = sum(f.read_text().count("[[device]]") for f in (out / "territory/devices").glob("*.toml"))
    sites = json.loads((DEMO / "territory/sites.geojson").read_text())["features"]
    rng = random.Random(args.seed)
    extra = max(0, args.devices - existing)
    lines: list[str] = ["# Synthetic devices of the map benchmark (tools/gen_map_bench.py).\n"]
    for n in range(extra):
        site = sites[n % len(sites)]
        lon0, lat0 = site["geometry"]["coordinates"] if site["geometry"]["type"] == "Point" else site["geometry"]["coordinates"][0][0]
        # ~1.5 km standard deviation; 1° of latitude ≈ 111 km.
        dlat = rng.gauss(0, 1.5) / 111.0
        dlon = rng.gauss(0, 1.5) / (111.0 * math.cos(math.radians(lat0)))
        lines.append(
            f'[[device]]\nid = "bench-{n:06d}"\nkind = "{KINDS[n % len(KINDS)]}"\n'
            f'site = "{site["properties"]["id"]}"\nposition = [{lon0 + dlon:.6f}, {lat0 + dlat:.6f}]\n\n'
        )
    (out / "territory/devices/zz-bench.toml").write_text("".join(lines))
    (out / "beffroi.toml").write_text(
        f'listen = "{args.listen}"\ndata_dir = "data"\ndeployment = "."\n'
    )
    print(f"{out}: {existing + extra} devices ({extra} synthetic); serve with --config {out / 'beffroi.toml'}")


if __name__ == "__main__":
    main()
