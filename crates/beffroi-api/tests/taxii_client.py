"""Reads a Beffroi TAXII 2.1 server with the reference client (taxii2-client) and
validates the STIX it returns with the reference validator (stix2-validator).

Usage: taxii_client.py DISCOVERY_URL USER TOKEN
Prints the validator's messages, then one JSON line: the report the Rust test reads.
"""

import json
import sys
import uuid

from stix2validator import ValidationOptions, print_results, validate_instance
from taxii2client.v21 import Server, as_pages

url, user, token = sys.argv[1:4]
server = Server(url, user=user, password=token)
roots = server.api_roots
assert [r.url.rstrip("/").rsplit("/", 1)[-1] for r in roots] == ["csirt"], [r.url for r in roots]
root = roots[0]
assert "application/taxii+json;version=2.1" in root.versions, root.versions
collections = root.collections
assert len(collections) == 1, collections
collection = collections[0]
assert collection.can_read and not collection.can_write

objects = []
pages = 0
for envelope in as_pages(collection.get_objects, per_request=2):
    pages += 1
    objects.extend(envelope.get("objects", []))
ids = [o["id"] for o in objects]
assert len(ids) == len(set(ids)), "an object came twice"

manifest = collection.get_manifest()
assert len(manifest.get("objects", [])) == len(objects), manifest

indicator = next(o for o in objects if o["type"] == "indicator")
one = collection.get_object(indicator["id"])
assert one["objects"][0]["id"] == indicator["id"], one
versions = collection.object_versions(indicator["id"])
assert versions["versions"] == [indicator["modified"]], versions

bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
results = validate_instance(bundle, ValidationOptions(version="2.1"))
print_results(results)
print(
    json.dumps(
        {
            "valid": results.is_valid,
            "objects": len(objects),
            "pages": pages,
            "indicators": sum(o["type"] == "indicator" for o in objects),
            "sightings": sum(o["type"] == "sighting" for o in objects),
        }
    )
)
