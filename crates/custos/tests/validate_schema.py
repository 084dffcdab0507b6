"""Validates a JSON document against an official schema folder (CycloneDX 1.6 or SPDX 2.3).
Usage: validate_schema.py SCHEMA_DIR MAIN_SCHEMA DOCUMENT. Exit 0 when valid; 1, with the
errors printed, when not."""
import json, os, sys

import jsonschema
from referencing import Registry, Resource

folder, main, doc = sys.argv[1:4]
resources = []
for f in os.listdir(folder):
    if f.endswith(".json"):
        s = json.load(open(os.path.join(folder, f)))
        resources.append((f, Resource.from_contents(s)))
        if "$id" in s:
            resources.append((s["$id"], Resource.from_contents(s)))
schema = json.load(open(os.path.join(folder, main)))
cls = jsonschema.validators.validator_for(schema)
errors = list(cls(schema, registry=Registry().with_resources(resources)).iter_errors(json.load(open(doc))))
for e in errors[:20]:
    print(f"{list(e.absolute_path)}: {e.message[:300]}")
sys.exit(1 if errors else 0)
