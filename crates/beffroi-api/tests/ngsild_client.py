"""Drives Beffroi's NGSI-LD API with the ngsildclient library (PyPI).

Usage: ngsild_client.py PORT TOKEN
Connects, counts and lists entities by type, runs a geo-query, subscribes to alerts with
an HTTP endpoint of its own, prints `subscribed`, then waits (up to 60 s) for a
notification and prints one JSON line: the report the Rust test reads.
"""

import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import requests
from ngsildclient import Client
from ngsildclient.api.helper.subscription import SubscriptionBuilder

port, token = int(sys.argv[1]), sys.argv[2]


class Bearer(requests.auth.AuthBase):
    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {token}"
        return r


received = []


class Notified(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        received.append(
            {"content_type": self.headers.get("Content-Type"), "body": json.loads(self.rfile.read(n))}
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


endpoint = HTTPServer(("127.0.0.1", 0), Notified)
threading.Thread(target=endpoint.serve_forever, daemon=True).start()

client = Client(hostname="127.0.0.1", port=port, custom_auth=Bearer())
report = {"connected": client.is_connected()}
report["devices"] = client.entities.count(type="Device")
report["buildings"] = client.entities.count(type="Building")
buildings = client.query(type="Building")
report["buildings_listed"] = len(buildings)
report["building_types"] = sorted({b.type for b in buildings})

# Devices within 1.5 km of Dijon's town hall, then within 5 km.
centre = (5.0415, 47.322)


def near(metres):
    gq = f"georel=near;maxDistance=={metres}&geometry=Point&coordinates=[{centre[0]},{centre[1]}]"
    return client.entities.count(type="Device", gq=gq), client.query(type="Device", gq=gq)


def distance(lon, lat):
    r = 6371008.8
    p1, p2 = math.radians(centre[1]), math.radians(lat)
    dp, dl = p2 - p1, math.radians(lon - centre[0])
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


report["near_1500"], found = near(1500)
report["near_5000"], _ = near(5000)
report["farthest_near_1500"] = max(
    (distance(*e["location"]["value"]["coordinates"]) for e in (f.to_dict() for f in found)), default=0
)

sub = SubscriptionBuilder(f"http://127.0.0.1:{endpoint.server_port}/notify").select_type("Alert").build()
report["subscription"] = client.subscriptions.create(sub)
print("subscribed", flush=True)

deadline = time.time() + 60
while not received and time.time() < deadline:
    time.sleep(0.05)
report["notifications"] = received
print(json.dumps(report), flush=True)
