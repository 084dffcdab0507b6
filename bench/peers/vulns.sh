#!/usr/bin/env bash
# custos vulns side by side with cargo-audit: the same advisories (written by rustsec.py as a
# RustSec advisory-db for cargo-audit and as OSV records for custos), the same real Cargo.lock
# files (custos' own and those cargo-audit, cargo-cyclonedx and cargo-fuzz ship with), no
# fetching. Prints, per lockfile, the findings both report, and those only one does, against
# the interval arithmetic rustsec.py did on its own.
# Usage: bench/peers/vulns.sh [SEED]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
seed="${1:-7}"
work="${TMPDIR:-/tmp}/custos-peers"
tools="$work/tools"
mkdir -p "$tools"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
for t in cargo-audit cargo-cyclonedx cargo-fuzz; do
  if [ ! -x "$tools/bin/$t" ]; then
    CARGO_TARGET_DIR="$work/tools-target" cargo install -q --locked --root "$tools" "$t"
  fi
done
cargo build --release -q -p custos --manifest-path "$repo/Cargo.toml"
custos="$CARGO_TARGET_DIR/release/custos"
registry="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)"
locks=("$repo/Cargo.lock")
for t in cargo-audit cargo-cyclonedx cargo-fuzz; do
  locks+=("$(ls -d "$registry$t"-*/Cargo.lock | tail -1)")
done

rm -rf "$work/rustsec" && mkdir -p "$work/rustsec"
python3 "$here/rustsec.py" "$work/rustsec" "$seed" "${locks[@]}"
locks+=("$work/rustsec/prerelease/Cargo.lock")
(cd "$work/rustsec/advisory-db" && git init -q && git add -A &&
  git -c user.name=bench -c user.email=bench@localhost commit -qm advisories)
rm -f "$work/rustsec/custos.sqlite"
"$custos" vulns db import "$work/rustsec/osv" --db "$work/rustsec/custos.sqlite" > /dev/null

for lock in "${locks[@]}"; do
  name="$(basename "$(dirname "$lock")")"
  "$tools/bin/cargo-audit" audit --db "$work/rustsec/advisory-db" --no-fetch --stale \
    --no-yanked --json -f "$lock" > "$work/rustsec/$name.audit.json" || true
  "$custos" vulns scan "$lock" --db "$work/rustsec/custos.sqlite" --format json \
    --fail-on none --warn-db-age 9999d > "$work/rustsec/$name.custos.json"
  python3 - "$work/rustsec" "$name" "$lock" <<'PY'
import json, sys
d, name, lock = sys.argv[1:]
audit = json.load(open(f"{d}/{name}.audit.json"))
mine = json.load(open(f"{d}/{name}.custos.json"))
locked = set()
cur = None
for line in open(lock):
    line = line.strip()
    if line.startswith('name = "'):
        cur = line[8:-1]
    elif line.startswith('version = "') and cur:
        locked.add((cur, line[11:-1]))
        cur = None
def key(id, pkg, ver):
    return (id, pkg, ver)
a_vuln = {key(v["advisory"]["id"], v["package"]["name"], v["package"]["version"]) for v in audit["vulnerabilities"]["list"]}
a_info = set()
for kind, items in audit.get("warnings", {}).items():
    for w in items:
        if w.get("advisory"):
            a_info.add(key(w["advisory"]["id"], w["package"]["name"], w["package"]["version"]))
ids = lambda f: {f["id"], *f["aliases"]}
c_vuln, c_info = set(), set()
for f in mine["findings"]:
    rid = next(i for i in sorted(ids(f)) if i.startswith("RUSTSEC"))
    (c_info if f.get("informational") else c_vuln).add(key(rid, f["package"], f["version"]))
exp = json.load(open(f"{d}/expected.json"))
e_vuln = {key(e["id"], e["package"], e["version"]) for e in exp if not e["informational"] and (e["package"], e["version"]) in locked}
e_info = {key(e["id"], e["package"], e["version"]) for e in exp if e["informational"] and (e["package"], e["version"]) in locked}
print(f"{name}: {len(locked)} packages")
for label, a, c, e in [("vulnerabilities", a_vuln, c_vuln, e_vuln), ("informational", a_info, c_info, e_info)]:
    print(f"  {label}: cargo-audit {len(a)}, custos {len(c)}, both {len(a & c)}, expected {len(e)}")
    for k in sorted(a - c):
        print(f"    only cargo-audit: {k} {'(expected)' if k in e else '(not expected)'}")
    for k in sorted(c - a):
        print(f"    only custos: {k} {'(expected)' if k in e else '(not expected)'}")
PY
done
