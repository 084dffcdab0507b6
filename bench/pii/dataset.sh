#!/usr/bin/env bash
# Memory and throughput of `custos pii dataset` anonymizing a large CSV.
# Usage: bench/pii/dataset.sh [MEGABYTES]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/../.."
MB="${1:-1000}"
WORK="${TMPDIR:-/tmp}/custos-pii-dataset"
mkdir -p "$WORK"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
CSV="$WORK/users-$MB.csv"
if [ ! -f "$CSV" ]; then
  python3 - "$CSV" "$MB" <<'PY'
import random, sys
random.seed(7)
first = ["James", "Mary", "Wei", "Aisha", "Olga", "Juan", "Priya", "Tom"]
last = ["Smith", "Garcia", "Chen", "Okafor", "Ivanova", "Patel", "Brown", "Roe"]
notes = ["renewal due", "call back {p}", "prefers email", "card ending {c}", "moved to Berlin", "VIP since 2019"]
target = int(sys.argv[2]) * 1_000_000
with open(sys.argv[1], "w") as f:
    f.write("id,name,email,phone,notes\n")
    size, i = 0, 0
    while size < target:
        fn, ln = random.choice(first), random.choice(last)
        p = f"({random.randint(200,989)}) {random.randint(200,999)}-{random.randint(0,9999):04d}"
        note = random.choice(notes).format(p=p, c=random.randint(1000, 9999))
        row = f'{i},{fn} {ln},{fn.lower()}.{ln.lower()}{i}@example.com,"{p}","{note}"\n'
        f.write(row); size += len(row); i += 1
PY
fi
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1); $(date -u +%F)"
echo "input: $(stat -c %s "$CSV") bytes"
/usr/bin/time -v "$BIN" pii dataset "$CSV" -o "$WORK/clean.csv" --report "$WORK/report.json" 2> "$WORK/time.txt"
grep -E "Elapsed|Maximum resident" "$WORK/time.txt"
