#!/usr/bin/env bash
# Import and scan speed of `custos vulns`: N synthetic OSV records (zipped, as OSV ships
# them) over crates.io, npm and PyPI, and a tree of lockfiles with P packages.
# Usage: bench/vulns/run.sh [RECORDS] [PACKAGES]   (default 100000 5000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-100000}"
P="${2:-5000}"
WORK="${TMPDIR:-/tmp}/custos-vulns-bench"
rm -rf "$WORK" && mkdir -p "$WORK/tree/rust" "$WORK/tree/web" "$WORK/tree/py"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
python3 - "$WORK" "$N" "$P" <<'PY'
import json, random, sys, zipfile
work, n, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(11)
ecos = [("crates.io", "crate"), ("npm", "pkg"), ("PyPI", "py")]
with zipfile.ZipFile(f"{work}/all.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(n):
        eco, prefix = ecos[i % 3]
        name = f"{prefix}{random.randrange(p * 4)}"
        fixed = f"{random.randrange(1, 5)}.{random.randrange(10)}.0"
        rec = {"id": f"BENCH-{i}", "modified": "2026-01-01T00:00:00Z", "aliases": [f"CVE-2026-{i}"],
               "summary": "synthetic", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:L/A:N"}],
               "affected": [{"package": {"ecosystem": eco, "name": name},
                             "ranges": [{"type": "SEMVER" if eco != "PyPI" else "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]}
        z.writestr(f"{rec['id']}.json", json.dumps(rec))
third = p // 3
with open(f"{work}/tree/rust/Cargo.lock", "w") as f:
    f.write("version = 3\n")
    for i in range(third):
        f.write(f'\n[[package]]\nname = "crate{i}"\nversion = "{random.randrange(6)}.{random.randrange(10)}.{random.randrange(10)}"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n')
pk = {"": {"name": "web", "dependencies": {}}}
for i in range(third):
    pk[f"node_modules/pkg{i}"] = {"version": f"{random.randrange(6)}.{random.randrange(10)}.0"}
json.dump({"lockfileVersion": 3, "packages": pk}, open(f"{work}/tree/web/package-lock.json", "w"))
with open(f"{work}/tree/py/requirements.txt", "w") as f:
    for i in range(p - 2 * third):
        f.write(f"py{i}=={random.randrange(6)}.{random.randrange(10)}\n")
PY
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1); $(date -u +%F)"
echo "records: $N in $(stat -c %s "$WORK/all.zip") bytes of zip; packages: $P"
/usr/bin/time -f "import: %e s, %M KB peak RSS" "$BIN" vulns db import "$WORK/all.zip" --db "$WORK/db.sqlite" > /dev/null
for i in 1 2 3; do
  /usr/bin/time -f "scan: %e s, %M KB peak RSS" "$BIN" vulns scan "$WORK/tree" --db "$WORK/db.sqlite" --fail-on none --format json > "$WORK/findings.json"
done
python3 -c "import json; d=json.load(open('$WORK/findings.json')); print('packages', d['packages'], 'findings', len(d['findings']))"
