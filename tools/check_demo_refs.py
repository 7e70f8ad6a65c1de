#!/usr/bin/env python3
"""Sanity checks for the Beffroi demo files (docs/formats.md).

    python3 tools/check_demo_refs.py [DEMO_DIR] [--simulate]

Checks that every file parses (tomllib / json), that every referenced id exists (communes,
zones, sites, kinds, fields, devices, rules, procedures; events.toml's perimeters, windows,
capacities and temporary rules), that ids are unique and
well-formed, values have the field's type and stay in its physical range (noise included),
durations parse, `chirpstack` is only used for devices with a dev_eui, and so on.

With --simulate it also plays every scenario together with background.toml through a
small, approximate re-implementation of the rule semantics (threshold/for, absence, rate,
correlation, escalation) and checks the [[expect]] blocks, `exclusive`, and that
background alone opens no incident. This is a sanity check of the demo data, not a
reference implementation of the engine. Silence semantics used: a scenario's [[silence]]
hides the device from every *other* scenario played with it, never from its own signals.

Python 3.11+ standard library only. Exit status 1 when a problem is found.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import re
import sys
import tempfile
import tomllib
from collections import defaultdict, deque
from pathlib import Path

ID_RE = re.compile(r"^[a-z0-9._-]{1,128}$")
EUI_RE = re.compile(r"^[0-9a-f]{16}$")
DUR_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
SITE_KINDS = {"town_hall", "school", "gym", "media_library", "river_reach", "road_section",
              "event_ground", "public_building", "other"}
SEVERITIES = ["info", "minor", "major", "critical"]
FORMATS = {"senml", "json", "chirpstack"}
COMPARATORS = ["above", "below", "equals", "not_equals", "between", "outside"]
KIND_SHORT = {
    "water_level": "gauge", "rain_gauge": "rain", "fire_panel": "fire",
    "intrusion_panel": "intrusion", "access_reader": "access", "smoke_detector": "smoke",
    "temperature": "temp", "road_surface": "road", "people_counter": "counter",
    "camera_health": "cam",
}
MUST_HAVE_EUI = {"water_level", "rain_gauge", "road_surface", "people_counter"}


class Problems:
    def __init__(self):
        self.items = []

    def __call__(self, where, msg):
        self.items.append(f"{where}: {msg}")


def dur(s) -> int | None:
    """Seconds in a duration string, or None."""
    if not isinstance(s, str) or not s:
        return None
    m = DUR_RE.match(s.strip())
    if not m or not any(m.groups()):
        return None
    d, h, mi, se = (int(x or 0) for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + se


def dist_m(a, b) -> float:
    (lon1, lat1), (lon2, lat2) = a, b
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def valid_pos(p):
    return (isinstance(p, list) and len(p) >= 2 and all(isinstance(x, (int, float)) for x in p[:2])
            and -180 <= p[0] <= 180 and -90 <= p[1] <= 90)


def check_keys(where, d, allowed, required, prob):
    for k in d:
        if k not in allowed:
            prob(where, f"unknown key `{k}`")
    for k in required:
        if k not in d:
            prob(where, f"missing key `{k}`")


def load_toml(path: Path, prob):
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        prob(str(path), f"does not parse: {e}")
        return None


# --------------------------------------------------------------------------------------


class Demo:
    pass


def check_territory(tdir: Path, prob) -> Demo:
    demo = Demo()
    demo.communes, demo.zones, demo.kinds, demo.sites, demo.devices = {}, {}, {}, {}, {}
    p = tdir / "territory.toml"
    t = load_toml(p, prob) or {}
    check_keys(p.name, t, {"territory", "commune", "zone"}, ["territory"], prob)
    check_keys(f"{p.name} [territory]", t.get("territory", {}), {"id", "name", "timezone"},
               ["id", "name"], prob)
    for c in t.get("commune", []):
        w = f"{p.name} commune {c.get('id')}"
        check_keys(w, c, {"id", "name", "insee", "position"}, ["id", "name", "position"], prob)
        if not ID_RE.match(str(c.get("id", ""))) or not re.match(r"^[a-z0-9-]+$", c["id"]):
            prob(w, "invalid id")
        if c.get("id") in demo.communes:
            prob(w, "duplicate id")
        if not valid_pos(c.get("position")):
            prob(w, "invalid position")
        if "insee" in c and not re.match(r"^\d[0-9AB]\d{3}$", c["insee"]):
            prob(w, "invalid INSEE code")
        demo.communes[c["id"]] = c
    for z in t.get("zone", []):
        w = f"{p.name} zone {z.get('id')}"
        check_keys(w, z, {"id", "name", "commune"}, ["id", "name", "commune"], prob)
        if not ID_RE.match(str(z.get("id", ""))):
            prob(w, "invalid id")
        if z.get("id") in demo.zones:
            prob(w, "duplicate id")
        if z.get("commune") not in demo.communes:
            prob(w, f"unknown commune {z.get('commune')}")
        demo.zones[z["id"]] = z
    for cid in demo.communes:
        if not any(z["commune"] == cid for z in demo.zones.values()):
            prob(p.name, f"commune {cid} has no zone")

    p = tdir / "kinds.toml"
    k = load_toml(p, prob) or {}
    check_keys(p.name, k, {"kind"}, ["kind"], prob)
    for kd in k.get("kind", []):
        w = f"{p.name} kind {kd.get('id')}"
        check_keys(w, kd, {"id", "label", "heartbeat", "field"}, ["id", "label", "field"], prob)
        if "heartbeat" in kd and not dur(kd["heartbeat"]):
            prob(w, "invalid heartbeat")
        fields = {}
        for f in kd.get("field", []):
            fw = f"{w} field {f.get('name')}"
            check_keys(fw, f, {"name", "unit", "type", "min", "max", "category",
                                  "max_step_per_minute"},
                       ["name", "type", "category"], prob)
            if f.get("type") not in ("number", "bool", "text"):
                prob(fw, "invalid type")
            if f.get("category") not in ("technical", "personal"):
                prob(fw, "invalid category")
            if f.get("type") != "number" and ("min" in f or "max" in f):
                prob(fw, "range on a non-number field")
            if "min" in f and "max" in f and not f["min"] < f["max"]:
                prob(fw, "min >= max")
            if f.get("name") in fields:
                prob(fw, "duplicate field")
            fields[f["name"]] = f
        kd["fields"] = fields
        kd["hb"] = dur(kd.get("heartbeat"))
        if kd.get("id") in demo.kinds:
            prob(w, "duplicate kind")
        demo.kinds[kd["id"]] = kd

    p = tdir / "sites.geojson"
    try:
        fc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        prob(p.name, f"does not parse: {e}")
        fc = {"type": "FeatureCollection", "features": []}
    if fc.get("type") != "FeatureCollection":
        prob(p.name, "not a FeatureCollection")
    for n, f in enumerate(fc.get("features", [])):
        pr = f.get("properties") or {}
        w = f"{p.name} feature #{n} {pr.get('id')}"
        for key in ("id", "name", "kind", "commune"):
            if not isinstance(pr.get(key), str):
                prob(w, f"missing property {key}")
        sid = pr.get("id", "")
        if not ID_RE.match(sid):
            prob(w, "invalid id")
        if sid in demo.sites:
            prob(w, "duplicate site id")
        if pr.get("kind") not in SITE_KINDS:
            prob(w, f"unknown site kind {pr.get('kind')}")
        if pr.get("commune") not in demo.communes:
            prob(w, f"unknown commune {pr.get('commune')}")
        if "zone" in pr:
            z = demo.zones.get(pr["zone"])
            if z is None:
                prob(w, f"unknown zone {pr['zone']}")
            elif z["commune"] != pr.get("commune"):
                prob(w, f"zone {pr['zone']} belongs to another commune")
        g = f.get("geometry") or {}
        pos = None
        if g.get("type") == "Point" and valid_pos(g.get("coordinates")):
            pos = tuple(g["coordinates"][:2])
        elif g.get("type") == "Polygon":
            ring = (g.get("coordinates") or [[]])[0]
            if len(ring) >= 4 and ring[0] == ring[-1] and all(valid_pos(x) for x in ring):
                pts = ring[:-1]
                pos = (sum(x[0] for x in pts) / len(pts), sum(x[1] for x in pts) / len(pts))
                area2 = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:]))
                if area2 <= 0:
                    prob(w, "polygon ring is not counter-clockwise (RFC 7946)")
        if pos is None:
            prob(w, "needs a valid Point or closed Polygon")
            pos = (0.0, 0.0)
        elif pr.get("commune") in demo.communes:
            d = dist_m(pos, demo.communes[pr["commune"]]["position"])
            limit = 5000 if pr["commune"] == "dijon" else 2500
            if d > limit:
                prob(w, f"{d:.0f} m from its commune's centre")
        demo.sites[sid] = {"id": sid, "kind": pr.get("kind"), "commune": pr.get("commune"),
                           "pos": pos, "name": pr.get("name")}

    p = tdir / "communes.geojson"
    if p.exists():
        try:
            cfc = json.loads(p.read_text(encoding="utf-8"))
            ids = [f["properties"]["id"] for f in cfc["features"]]
            for cid in ids:
                if cid not in demo.communes:
                    prob(p.name, f"unknown commune {cid}")
            for cid in demo.communes:
                if cid not in ids:
                    prob(p.name, f"commune {cid} missing")
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            prob(p.name, f"invalid: {e}")

    euis = {}
    for dp in sorted((tdir / "devices").glob("*.toml")):
        d = load_toml(dp, prob) or {}
        check_keys(dp.name, d, {"device"}, [], prob)
        for dev in d.get("device", []):
            did = dev.get("id", "")
            w = f"devices/{dp.name} {did}"
            check_keys(w, dev, {"id", "kind", "site", "position", "dev_eui"},
                       ["id", "kind", "site"], prob)
            if not ID_RE.match(did):
                prob(w, "invalid id")
            if did in demo.devices:
                prob(w, "duplicate device id")
            if dev.get("kind") not in demo.kinds:
                prob(w, f"unknown kind {dev.get('kind')}")
            site = demo.sites.get(dev.get("site"))
            if site is None:
                prob(w, f"unknown site {dev.get('site')}")
            else:
                if dp.stem != site["commune"]:
                    prob(w, f"in {dp.name} but its site is in {site['commune']}")
                short = KIND_SHORT.get(dev.get("kind"))
                if short and not re.match(rf"^{re.escape(site['id'])}-{short}-\d{{2,3}}$", did):
                    prob(w, "id does not follow <site>-<kind-short>-NN")
            if "position" in dev and not valid_pos(dev["position"]):
                prob(w, "invalid position")
            e = dev.get("dev_eui")
            if e is not None:
                if not EUI_RE.match(e):
                    prob(w, f"dev_eui {e} is not 16 lowercase hex digits")
                if e in euis:
                    prob(w, f"dev_eui {e} also used by {euis[e]}")
                euis[e] = did
            elif dev.get("kind") in MUST_HAVE_EUI:
                prob(w, "needs a dev_eui")
            pos = tuple(dev["position"]) if "position" in dev else (site or {}).get("pos")
            demo.devices[did] = {"id": did, "kind": dev.get("kind"), "site": dev.get("site"),
                                 "eui": e, "pos": pos,
                                 "commune": (site or {}).get("commune")}
    demo.by_kind = defaultdict(list)
    for dv in demo.devices.values():
        demo.by_kind[dv["kind"]].append(dv["id"])
    return demo


# --------------------------------------------------------------------------------------


def check_value(where, demo, kind, field, value, noise, prob):
    f = demo.kinds.get(kind, {}).get("fields", {}).get(field)
    if f is None:
        prob(where, f"kind {kind} has no field {field}")
        return
    ty = f["type"]
    if ty == "bool" and not isinstance(value, bool):
        prob(where, f"{field} expects a bool, got {value!r}")
    elif ty == "text" and not isinstance(value, str):
        prob(where, f"{field} expects text, got {value!r}")
    elif ty == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            prob(where, f"{field} expects a number, got {value!r}")
            return
        n = noise or 0
        if "min" in f and value - n < f["min"] or "max" in f and value + n > f["max"]:
            prob(where, f"{field} = {value} ± {n} leaves the range [{f.get('min')}, {f.get('max')}]")
    if noise is not None and ty != "number":
        prob(where, "noise on a non-number field")


def cond_of(d):
    present = [c for c in COMPARATORS if c in d]
    return present


def check_rules(path: Path, demo, categories, prob):
    r = load_toml(path, prob) or {}
    rules = {}
    for rule in r.get("rule", []):
        w = f"rules.toml {rule.get('id')}"
        check_keys(w, rule, {"id", "title", "category", "severity", "key", "auto_resolve",
                             "kind", "communes", "site_kinds", "sites", "devices", "threshold",
                             "absence", "rate", "correlation", "escalate"},
                   ["id", "title", "category", "severity", "key"], prob)
        if rule.get("id") in rules:
            prob(w, "duplicate id")
        rules[rule["id"]] = rule
        if rule.get("severity") not in SEVERITIES:
            prob(w, "invalid severity")
        if rule.get("key") not in ("site", "device"):
            prob(w, "invalid key")
        if rule.get("category") not in categories:
            prob(w, f"no procedure for category {rule.get('category')}")
        conds = [c for c in ("threshold", "absence", "rate", "correlation") if c in rule]
        if len(conds) != 1:
            prob(w, f"needs exactly one of threshold/absence/rate/correlation, has {conds}")
            continue
        cond = conds[0]
        kind = rule.get("kind")
        if cond == "correlation":
            if kind is not None:
                prob(w, "correlation rules take no `kind`")
        elif kind not in demo.kinds:
            prob(w, f"unknown kind {kind}")
            continue
        for c in rule.get("communes", []):
            if c not in demo.communes:
                prob(w, f"unknown commune {c}")
        for s in rule.get("site_kinds", []):
            if s not in SITE_KINDS:
                prob(w, f"unknown site kind {s}")
        for s in rule.get("sites", []):
            if s not in demo.sites:
                prob(w, f"unknown site {s}")
        for d in rule.get("devices", []):
            if d not in demo.devices:
                prob(w, f"unknown device {d}")

        def check_cmp(cw, ckind, body, extra):
            check_keys(cw, body, {"field", *COMPARATORS, *extra}, ["field"], prob)
            c = cond_of(body)
            if len(c) != 1:
                prob(cw, f"needs exactly one comparator, has {c}")
                return
            v = body[c[0]]
            if c[0] in ("between", "outside"):
                if not (isinstance(v, list) and len(v) == 2 and v[0] < v[1]):
                    prob(cw, f"{c[0]} needs [a, b] with a < b")
                    return
                for x in v:
                    check_value(cw, demo, ckind, body["field"], x, None, prob)
            else:
                check_value(cw, demo, ckind, body["field"], v, None, prob)
            f = demo.kinds.get(ckind, {}).get("fields", {}).get(body["field"], {})
            if c[0] in ("above", "below", "between", "outside") and f.get("type") != "number":
                prob(cw, f"{c[0]} on a non-number field")

        body = rule[cond]
        cw = f"{w} [{cond}]"
        if cond == "threshold":
            check_cmp(cw, kind, body, {"for"})
            if "for" in body and not dur(body["for"]):
                prob(cw, "invalid `for`")
        elif cond == "absence":
            check_keys(cw, body, {"after"}, [], prob)
            if "after" in body and not dur(body["after"]):
                prob(cw, "invalid `after`")
        elif cond == "rate":
            check_cmp(cw, kind, body, {"count", "window", "per"})
            if not isinstance(body.get("count"), int) or body["count"] < 1:
                prob(cw, "count must be a positive integer")
            if not dur(body.get("window")):
                prob(cw, "invalid window")
            if body.get("per", "device") not in ("device", "site"):
                prob(cw, "per is device or site")
        else:
            check_keys(cw, body, {"window", "scope", "radius_m", "when"}, ["window", "when"], prob)
            if not dur(body.get("window")):
                prob(cw, "invalid window")
            if ("scope" in body) == ("radius_m" in body):
                prob(cw, "needs exactly one of scope = \"site\" or radius_m")
            if "scope" in body and body["scope"] != "site":
                prob(cw, "scope must be \"site\"")
            if "radius_m" in body and not (isinstance(body["radius_m"], (int, float))
                                           and body["radius_m"] > 0):
                prob(cw, "radius_m must be a positive number")
            if len(body.get("when", [])) < 2:
                prob(cw, "a correlation needs at least two conditions")
            for i, wh in enumerate(body.get("when", [])):
                ww = f"{cw} when #{i}"
                if wh.get("kind") not in demo.kinds:
                    prob(ww, f"unknown kind {wh.get('kind')}")
                    continue
                check_cmp(ww, wh["kind"], {k: v for k, v in wh.items() if k != "kind"}, set())
        last = 0
        for e in rule.get("escalate", []):
            ew = f"{w} [escalate]"
            check_keys(ew, e, {"after", "severity"}, ["after", "severity"], prob)
            a = dur(e.get("after"))
            if not a or a <= last:
                prob(ew, "after must be a duration, increasing")
            last = a or last
            if e.get("severity") not in SEVERITIES or (
                    SEVERITIES.index(e["severity"]) <= SEVERITIES.index(rule["severity"])):
                prob(ew, "escalation must raise the severity")
    return rules


ID_EVENT_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def point_in_ring(p, ring):
    """Even-odd rule, planar in degrees (as the engine does)."""
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring = ring[:-1]
    inside, j = False, len(ring) - 1
    for i in range(len(ring)):
        (xi, yi), (xj, yj) = ring[i][:2], ring[j][:2]
        if (yi > p[1]) != (yj > p[1]) and p[0] < (xj - xi) * (p[1] - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def check_events(path: Path, demo, categories, prob):
    """events.toml: ids, perimeter, window, capacity, counters inside, temporary rules."""
    if not path.exists():
        return {}
    ev = load_toml(path, prob) or {}
    events = {}
    for e in ev.get("event", []):
        w = f"events.toml {e.get('id')}"
        check_keys(w, e, {"id", "name", "perimeter", "starts_at", "ends_at", "capacity", "rules"},
                   ["id", "name", "perimeter", "starts_at", "ends_at"], prob)
        if not ID_EVENT_RE.match(str(e.get("id", ""))):
            prob(w, "invalid id")
        if e.get("id") in events:
            prob(w, "duplicate id")
        events[e.get("id")] = e
        ring = e.get("perimeter", [])
        pts = ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring
        if len(pts) < 3 or not all(valid_pos(p) for p in pts):
            prob(w, "perimeter needs at least three valid [lon, lat] vertices")
            continue
        times = []
        for k in ("starts_at", "ends_at"):
            v = str(e.get(k, ""))
            if v.startswith("+"):
                times.append(dur(v[1:]))
            elif RFC3339_RE.match(v):
                times.append(v)
            else:
                prob(w, f"{k} is neither RFC 3339 nor +DURATION")
                times.append(None)
        if all(isinstance(t, int) for t in times) and not times[0] < times[1]:
            prob(w, "ends_at must be after starts_at")
        cap = e.get("capacity")
        counters = [d for d in demo.devices.values() if d["pos"] and point_in_ring(d["pos"], ring)
                    and any(f.get("unit") == "people"
                            for f in demo.kinds.get(d["kind"], {}).get("fields", {}).values())]
        if cap is not None:
            check_keys(f"{w} capacity", cap, {"warning", "critical"}, ["warning", "critical"], prob)
            if not (0 < cap.get("warning", 0) <= cap.get("critical", 0)):
                prob(w, "capacity needs 0 < warning <= critical")
            if not counters:
                prob(w, "capacity thresholds but no people counter inside the perimeter")
        if "rules" in e:
            with tempfile.TemporaryDirectory() as tmp:
                rp = Path(tmp) / "rules.toml"
                rp.write_text(e["rules"], encoding="utf-8")
                sub = Problems()
                rules = check_rules(rp, demo, categories, sub)
                for item in sub.items:
                    prob(w, f"rules: {item}")
                if "capacity" in rules:
                    prob(w, "rule id `capacity` is reserved")
    return events


def check_procedures(path: Path, prob):
    p = load_toml(path, prob) or {}
    cats = {}
    for pr in p.get("procedure", []):
        w = f"procedures.toml {pr.get('category')}"
        check_keys(w, pr, {"category", "title", "steps"}, ["category", "title", "steps"], prob)
        if pr.get("category") in cats:
            prob(w, "duplicate category")
        def step_ok(st):
            if isinstance(st, str):
                return bool(st)
            return (isinstance(st, dict) and set(st) <= {"text", "within"}
                    and isinstance(st.get("text"), str) and st["text"]
                    and ("within" not in st or dur(st["within"]) is not None))
        if not pr.get("steps") or not all(step_ok(st) for st in pr["steps"]):
            prob(w, "steps must be a non-empty list of strings or {text, within} tables")
        cats[pr["category"]] = pr
    return cats


def check_operations(root: Path, demo, prob):
    """units.toml, escalation.toml and crisis.toml, each optional."""
    if (root / "units.toml").exists():
        ids = set()
        for u in (load_toml(root / "units.toml", prob) or {}).get("unit", []):
            w = f"units.toml {u.get('id')}"
            check_keys(w, u, {"id", "name", "kind", "communes", "status"}, ["id", "name", "kind"], prob)
            if not ID_RE.match(str(u.get("id", ""))) or u.get("id") in ids:
                prob(w, "id malformed or duplicate")
            ids.add(u.get("id"))
            if u.get("kind") not in {"police", "technical", "video", "other"}:
                prob(w, f"unknown kind {u.get('kind')}")
            if u.get("status", "available") not in {"available", "engaged", "off_duty"}:
                prob(w, f"unknown status {u.get('status')}")
            for c in u.get("communes", []):
                if c not in demo.communes:
                    prob(w, f"unknown commune {c}")
    if (root / "escalation.toml").exists():
        esc = load_toml(root / "escalation.toml", prob) or {}
        check_keys("escalation.toml", esc, {"severity"}, [], prob)
        for sev, d in esc.get("severity", {}).items():
            w = f"escalation.toml severity.{sev}"
            if sev not in SEVERITIES:
                prob(w, "unknown severity")
            check_keys(w, d, {"remind_after", "escalate_after"}, [], prob)
            r, e = dur(d.get("remind_after", "1s")), dur(d.get("escalate_after", "999d"))
            if r is None or e is None or r > e:
                prob(w, "bad durations (the reminder must come before the escalation)")
    if (root / "crisis.toml").exists():
        ids = set()
        for r in (load_toml(root / "crisis.toml", prob) or {}).get("role", []):
            w = f"crisis.toml {r.get('id')}"
            check_keys(w, r, {"id", "name", "name_en"}, ["id", "name", "name_en"], prob)
            if r.get("id") in ids:
                prob(w, "duplicate role")
            ids.add(r.get("id"))


def signal_targets(demo, sig):
    if "device" in sig:
        return [sig["device"]] if sig["device"] in demo.devices else []
    return [d for d in demo.by_kind.get(sig.get("kind"), [])
            if "commune" not in sig or demo.devices[d]["commune"] == sig["commune"]]


# The incidents of the anomaly detector (crates/beffroi-sentinel): `cyber-<anomaly>`.
CYBER_RULES = {f"cyber-{a}" for a in (
    "silence", "flood", "impossible_jump", "clock_skew", "replay", "bad_signature",
    "unregistered", "topic_mismatch", "brute_force", "firmware_change", "identity_change")}


def check_scenario(path: Path, demo, rules, prob):
    s = load_toml(path, prob)
    if s is None:
        return None
    w0 = f"scenarios/{path.name}"
    check_keys(w0, s, {"name", "title", "description", "duration", "exclusive", "signal",
                       "event", "silence", "expect", "security"}, ["name", "title", "duration"], prob)
    if s.get("name") != path.stem:
        prob(w0, f"name {s.get('name')!r} differs from the file stem")
    D = dur(s.get("duration"))
    if not D:
        prob(w0, "invalid duration")
        D = 0
    for i, sig in enumerate(s.get("signal", [])):
        w = f"{w0} signal #{i}"
        check_keys(w, sig, {"device", "kind", "commune", "field", "every", "start", "end",
                            "constant", "linear", "steps", "noise", "format"},
                   ["field", "every"], prob)
        if ("device" in sig) == ("kind" in sig):
            prob(w, "needs exactly one of device or kind")
            continue
        if "commune" in sig and "kind" not in sig:
            prob(w, "commune only goes with kind")
        if "commune" in sig and sig["commune"] not in demo.communes:
            prob(w, f"unknown commune {sig['commune']}")
        if "device" in sig and sig["device"] not in demo.devices:
            prob(w, f"unknown device {sig['device']}")
            continue
        kind = demo.devices[sig["device"]]["kind"] if "device" in sig else sig["kind"]
        if kind not in demo.kinds:
            prob(w, f"unknown kind {kind}")
            continue
        every, start = dur(sig.get("every")), dur(sig.get("start", "0s"))
        end = dur(sig["end"]) if "end" in sig else D
        if not every or start is None or end is None or not start <= end <= D:
            prob(w, "bad every/start/end")
        vals = [k for k in ("constant", "linear", "steps") if k in sig]
        if len(vals) != 1:
            prob(w, f"needs exactly one of constant/linear/steps, has {vals}")
            continue
        noise = sig.get("noise")
        if noise is not None and (not isinstance(noise, (int, float)) or noise < 0):
            prob(w, "noise must be a non-negative number")
        if "constant" in sig:
            check_value(w, demo, kind, sig["field"], sig["constant"], noise, prob)
        elif "linear" in sig:
            lin = sig["linear"]
            if not (isinstance(lin, list) and len(lin) == 2):
                prob(w, "linear = [from, to]")
            else:
                for x in lin:
                    check_value(w, demo, kind, sig["field"], x, noise, prob)
        else:
            last = -1
            for st in sig["steps"]:
                if not (isinstance(st, list) and len(st) == 2) or dur(st[0]) is None:
                    prob(w, f"bad step {st}")
                    continue
                if dur(st[0]) <= last:
                    prob(w, "steps must be in increasing time order")
                last = dur(st[0])
                check_value(w, demo, kind, sig["field"], st[1], noise, prob)
        fmt = sig.get("format", "senml")
        if fmt not in FORMATS:
            prob(w, f"unknown format {fmt}")
        targets = signal_targets(demo, sig)
        if not targets:
            prob(w, "targets no device")
        if fmt == "chirpstack" and any(not demo.devices[d]["eui"] for d in targets):
            prob(w, "chirpstack format for a device without dev_eui")
        hb = demo.kinds[kind]["hb"]
        if path.stem == "background" and hb and every and every > hb:
            prob(w, f"every {sig['every']} is longer than the heartbeat of {kind}")
    for i, ev in enumerate(s.get("event", [])):
        w = f"{w0} event #{i}"
        check_keys(w, ev, {"at", "device", "values", "format"}, ["at", "device", "values"], prob)
        at = dur(ev.get("at"))
        if at is None or at > D:
            prob(w, "bad `at`")
        dev = demo.devices.get(ev.get("device"))
        if dev is None:
            prob(w, f"unknown device {ev.get('device')}")
            continue
        if not isinstance(ev.get("values"), dict) or not ev["values"]:
            prob(w, "values must be a non-empty table")
            continue
        for f, v in ev["values"].items():
            check_value(w, demo, dev["kind"], f, v, None, prob)
        fmt = ev.get("format", "senml")
        if fmt not in FORMATS:
            prob(w, f"unknown format {fmt}")
        if fmt == "chirpstack" and not dev["eui"]:
            prob(w, "chirpstack format for a device without dev_eui")
    for i, si in enumerate(s.get("silence", [])):
        w = f"{w0} silence #{i}"
        check_keys(w, si, {"device", "from", "to"}, ["device", "from"], prob)
        if si.get("device") not in demo.devices:
            prob(w, f"unknown device {si.get('device')}")
        f, t = dur(si.get("from")), dur(si.get("to", s.get("duration")))
        if f is None or t is None or f > t:
            prob(w, "bad from/to")
    for i, ex in enumerate(s.get("expect", [])):
        w = f"{w0} expect #{i}"
        check_keys(w, ex, {"rule", "category", "site", "min_severity", "by"}, [], prob)
        if "rule" in ex:
            if ex["rule"] in CYBER_RULES:
                if ex.get("category", "cyber") != "cyber":
                    prob(w, f"rule {ex['rule']} is of category cyber")
            elif ex["rule"] not in rules:
                prob(w, f"unknown rule {ex['rule']}")
            elif "category" in ex and rules[ex["rule"]]["category"] != ex["category"]:
                prob(w, f"rule {ex['rule']} is not of category {ex['category']}")
        if "site" in ex and ex["site"] not in demo.sites:
            prob(w, f"unknown site {ex['site']}")
        if "min_severity" in ex and ex["min_severity"] not in SEVERITIES:
            prob(w, "invalid min_severity")
        if "by" in ex and (dur(ex["by"]) is None or dur(ex["by"]) > D):
            prob(w, "bad `by`")
    if path.stem == "background":
        if s.get("expect"):
            prob(w0, "background must expect nothing")
        if not s.get("exclusive"):
            prob(w0, "background must be exclusive")
        covered = {sig.get("kind") for sig in s.get("signal", [])}
        for k in demo.kinds:
            for f in demo.kinds[k]["fields"].values():
                # Personal values are not simulated; firmware is reported on change only.
                if f["category"] == "personal" or f["name"] == "firmware":
                    continue
                if not any(sig.get("kind") == k and sig.get("field") == f["name"]
                           for sig in s.get("signal", [])):
                    prob(w0, f"no background signal for {k}.{f['name']}")
            if k not in covered:
                prob(w0, f"no background signal for kind {k}")
    elif s.get("expect"):
        pass
    else:
        prob(w0, "a scenario should expect at least one incident")
    return s


# --------------------------------------------------------------------------------------
# simulation (approximate, see module docstring)


def sig_value(sig, t, start, end, rng):
    if "constant" in sig:
        v = sig["constant"]
    elif "linear" in sig:
        a, b = sig["linear"]
        v = a + (b - a) * ((t - start) / (end - start) if end > start else 0)
    else:
        v = None
        for at, x in sig["steps"]:
            if dur(at) <= t:
                v = x
    if isinstance(v, bool) or sig.get("noise") in (None, 0) or v is None:
        return v
    return v + rng.uniform(-sig["noise"], sig["noise"])


def messages(demo, name, s, horizon):
    """(t, device, {field: value}, source) for every message of scenario s up to horizon."""
    rng = random.Random(f"sim:{name}")
    D = min(dur(s["duration"]), horizon)
    out = []
    for i, sig in enumerate(s.get("signal", [])):
        every, start = dur(sig["every"]), dur(sig.get("start", "0s"))
        end = min(dur(sig["end"]) if "end" in sig else dur(s["duration"]), D)
        send = dur(sig["end"]) if "end" in sig else dur(s["duration"])
        for dev in signal_targets(demo, sig):
            t = start
            while t <= end:
                out.append((t, dev, {sig["field"]: sig_value(sig, t, start, send, rng)}, name))
                t += every
    for ev in s.get("event", []):
        at = dur(ev["at"])
        if at <= D:
            out.append((at, ev["device"], dict(ev["values"]), name))
    return out


def matches(body, value):
    if value is None:
        return False
    if "above" in body:
        return value > body["above"]
    if "below" in body:
        return value < body["below"]
    if "equals" in body:
        return value == body["equals"]
    if "not_equals" in body:
        return value != body["not_equals"]
    if "between" in body:
        return body["between"][0] <= value <= body["between"][1]
    if "outside" in body:
        return not body["outside"][0] <= value <= body["outside"][1]
    return False


def in_scope(demo, rule, dev):
    d = demo.devices[dev]
    site = demo.sites[d["site"]]
    if rule.get("kind") and d["kind"] != rule["kind"]:
        return False
    if "communes" in rule and site["commune"] not in rule["communes"]:
        return False
    if "site_kinds" in rule and site["kind"] not in rule["site_kinds"]:
        return False
    if "sites" in rule and site["id"] not in rule["sites"]:
        return False
    if "devices" in rule and dev not in rule["devices"]:
        return False
    return True


def simulate(demo, rules, scenarios: dict):
    """Returns {incident key: incident} for the scenarios played together."""
    horizon = max(dur(s["duration"]) for n, s in scenarios.items() if n != "background"
                  ) if len(scenarios) > 1 else dur(scenarios["background"]["duration"])
    msgs = []
    for name, s in scenarios.items():
        msgs += messages(demo, name, s, horizon)
    # silences: a scenario's silence hides the device from the *other* scenarios
    sil = []
    for name, s in scenarios.items():
        for si in s.get("silence", []):
            sil.append((name, si["device"], dur(si["from"]),
                        dur(si["to"]) if "to" in si else 10**9))
    if sil:
        by_dev = defaultdict(list)
        for name, dev, a, b in sil:
            by_dev[dev].append((name, a, b))
        msgs = [m for m in msgs if not any(
            src != m[3] and a <= m[0] <= b for src, a, b in by_dev.get(m[1], ()))]
    msgs.sort(key=lambda m: (m[0], m[1]))

    incidents = {}
    active = defaultdict(set)  # incident key -> devices whose condition is active

    def raise_alarm(rule, keyval, site, t, dev):
        k = (rule["id"], keyval)
        inc = incidents.get(k)
        if inc is None or inc["resolved"] is not None:
            incidents[k] = inc = {"rule": rule["id"], "category": rule["category"],
                                  "site": site, "opened": t, "severity": rule["severity"],
                                  "raised": t, "resolved": None, "key": keyval,
                                  "reopened": inc is not None, "sev_at": {rule["severity"]: t}}
        active[k].add(dev)

    def clear_alarm(rule, keyval, t, dev):
        k = (rule["id"], keyval)
        active[k].discard(dev)
        inc = incidents.get(k)
        if inc and not active[k] and rule.get("auto_resolve") and inc["resolved"] is None:
            inc["resolved"] = t

    def keyof(rule, dev):
        return demo.devices[dev]["site"] if rule["key"] == "site" else dev

    thr_since = {}
    last_seen = {d: 0 for d in demo.devices}
    rate_q = defaultdict(deque)
    corr_last = defaultdict(dict)  # (rule, i) -> {site: last time true}
    rule_list = list(rules.values())

    def tick(now):
        for rule in rule_list:
            if "absence" in rule:
                after = dur(rule["absence"].get("after", "")) or 3 * demo.kinds[rule["kind"]]["hb"]
                for dev in demo.by_kind[rule["kind"]]:
                    if not in_scope(demo, rule, dev):
                        continue
                    if now - last_seen[dev] >= after:
                        raise_alarm(rule, keyof(rule, dev), demo.devices[dev]["site"], now, dev)
                    else:
                        clear_alarm(rule, keyof(rule, dev), now, dev)
            for e in rule.get("escalate", []):
                for k, inc in incidents.items():
                    if k[0] != rule["id"] or inc["resolved"] is not None or not active[k]:
                        continue
                    if now - inc["raised"] >= dur(e["after"]) and (
                            SEVERITIES.index(e["severity"]) > SEVERITIES.index(inc["severity"])):
                        inc["severity"] = e["severity"]
                        inc["sev_at"][e["severity"]] = now

    next_tick = 0
    for t, dev, values, _src in msgs + [(horizon, None, {}, None)]:
        while next_tick <= t:
            tick(next_tick)
            next_tick += 60
        if dev is None:
            break
        last_seen[dev] = t
        d = demo.devices[dev]
        for rule in rule_list:
            if "threshold" in rule or "rate" in rule:
                body = rule.get("threshold") or rule.get("rate")
                if body["field"] not in values or not in_scope(demo, rule, dev):
                    continue
                ok = matches(body, values[body["field"]])
                kv = keyof(rule, dev)
                if "threshold" in rule:
                    if ok:
                        since = thr_since.setdefault((rule["id"], dev), t)
                        if t - since >= (dur(body.get("for", "0s")) or 0):
                            raise_alarm(rule, kv, d["site"], t, dev)
                    else:
                        thr_since.pop((rule["id"], dev), None)
                        clear_alarm(rule, kv, t, dev)
                else:
                    per = dev if body.get("per", "device") == "device" else d["site"]
                    q = rate_q[(rule["id"], per)]
                    if ok:
                        q.append(t)
                    while q and q[0] < t - dur(body["window"]):
                        q.popleft()
                    if len(q) >= body["count"]:
                        raise_alarm(rule, kv, d["site"], t, dev)
                    else:
                        clear_alarm(rule, kv, t, dev)
            elif "correlation" in rule:
                c = rule["correlation"]
                win = dur(c["window"])
                hit = False
                for i, wh in enumerate(c["when"]):
                    if wh["kind"] == d["kind"] and wh["field"] in values and matches(
                            wh, values[wh["field"]]):
                        corr_last[(rule["id"], i)][d["site"]] = t
                        hit = True
                if not hit:
                    continue
                site = demo.sites[d["site"]]

                def ok_for(i):
                    lt = corr_last[(rule["id"], i)]
                    if "radius_m" in c:
                        return any(t - ts <= win and dist_m(demo.sites[s]["pos"], site["pos"])
                                   <= c["radius_m"] for s, ts in lt.items())
                    return d["site"] in lt and t - lt[d["site"]] <= win

                if all(ok_for(i) for i in range(len(c["when"]))):
                    raise_alarm(rule, d["site"], d["site"], t, "corr")
    return incidents


def check_simulation(demo, rules, scen, prob, verbose):
    bg = scen["background"]
    inc = simulate(demo, rules, {"background": bg})
    if inc:
        for i in inc.values():
            prob("simulation background", f"unexpected incident {i['rule']} at {i['key']} "
                 f"(t={i['opened'] // 60}m)")
    elif verbose:
        print("  background alone: no incident")
    for name, s in scen.items():
        if name == "background":
            continue
        inc = simulate(demo, rules, {"background": bg, name: s})
        exps = s.get("expect", [])

        def fits(i, ex):
            return all(ex.get(k) in (None, i[k]) for k in ("rule", "category", "site"))

        firsts = []
        for n, ex in enumerate(exps):
            # This model knows the rules, not the anomaly detector: cyber expectations are
            # checked by crates/beffroi-engine/tests/scenarios.rs only.
            if ex.get("rule") in CYBER_RULES or ex.get("category") == "cyber":
                continue
            by = dur(ex.get("by", s["duration"]))
            ok = []
            for i in inc.values():
                if not fits(i, ex) or i["opened"] > by:
                    continue
                if "min_severity" in ex:
                    need = SEVERITIES.index(ex["min_severity"])
                    t = min((ts for sv, ts in i["sev_at"].items()
                             if SEVERITIES.index(sv) >= need), default=None)
                    if t is None or t > by:
                        continue
                ok.append(i)
            if not ok:
                prob(f"simulation {name}", f"expect #{n} {ex} not met")
            else:
                firsts.append(min(i["opened"] for i in ok))
        if s.get("exclusive"):
            for i in inc.values():
                if not any(fits(i, ex) for ex in exps):
                    prob(f"simulation {name}", f"unexpected incident {i['rule']} at {i['key']} "
                         f"(t={i['opened'] // 60}m)")
        if verbose:
            print(f"  {name}: {len(inc)} incident(s)")
            for i in sorted(inc.values(), key=lambda i: i["opened"]):
                sev = ", ".join(f"{k}@{v // 60}m" for k, v in i["sev_at"].items())
                print(f"    {i['opened'] // 60:>4}m {i['rule']:22} {i['key']:45} {sev}")
        if firsts and min(firsts) > 45 * 60:
            msg = f"first expected incident opens at {min(firsts) // 60}m (> 45m)"
            if name == "gauge-silent":
                print(f"  note: {name}: {msg} — inherent: 10m of life + 45m of absence")
            else:
                prob(f"simulation {name}", msg)


# --------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", nargs="?", type=Path,
                    default=Path(__file__).resolve().parent.parent / "demo")
    ap.add_argument("--simulate", action="store_true",
                    help="also play the scenarios through an approximate rule simulator")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    prob = Problems()
    root: Path = args.demo
    demo = check_territory(root / "territory", prob)
    procs = check_procedures(root / "procedures.toml", prob)
    rules = check_rules(root / "rules.toml", demo, procs, prob)
    check_operations(root, demo, prob)
    events = check_events(root / "events.toml", demo, procs, prob)
    scen = {}
    for p in sorted((root / "scenarios").glob("*.toml")):
        s = check_scenario(p, demo, rules, prob)
        if s is not None:
            scen[p.stem] = s
    if "background" not in scen:
        prob("scenarios", "background.toml is missing")
    # every device driven by a non-background scenario must be silenced for background
    for name, s in scen.items():
        if name == "background":
            continue
        silenced = {si["device"] for si in s.get("silence", []) if dur(si["from"]) == 0}
        driven = {sig["device"] for sig in s.get("signal", []) if "device" in sig}
        driven |= {ev["device"] for ev in s.get("event", [])}
        for d in sorted(driven - silenced):
            prob(f"scenarios/{name}.toml", f"drives {d} without silencing it for background")
    if not args.quiet:
        print(f"{len(demo.communes)} communes, {len(demo.zones)} zones, {len(demo.sites)} sites, "
              f"{len(demo.devices)} devices, {len(demo.kinds)} kinds, {len(rules)} rules, "
              f"{len(procs)} procedures, {len(scen)} scenarios, {len(events)} events")
    if args.simulate and not prob.items:
        check_simulation(demo, rules, scen, prob, not args.quiet)
    for p in prob.items:
        print("PROBLEM", p)
    if not args.quiet:
        print("OK" if not prob.items else f"{len(prob.items)} problem(s)")
    return 1 if prob.items else 0


if __name__ == "__main__":
    sys.exit(main())
