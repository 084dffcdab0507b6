#!/usr/bin/env bash
# Secret scanning side by side, on the same inputs, in one run:
#   - a directory corpus of at least 1 GB of real text (crates' sources, Python's stdlib and
#     site-packages from this machine), scanned by custos, ripsecrets (crates.io) and
#     detect-secrets (PyPI), each installed into a throwaway folder;
#   - a git history of 10,000 commits built with `git fast-import`, scanned by custos.
# Usage: bench/secrets/run.sh [COMMITS]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/../.."
COMMITS="${1:-10000}"
WORK="${TMPDIR:-/tmp}/custos-secrets-bench"
TOOLS="${TMPDIR:-/tmp}/bench-tools"
mkdir -p "$WORK" "$TOOLS"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
[ -x "$TOOLS/bin/ripsecrets" ] || cargo install -q --locked --root "$TOOLS" ripsecrets
[ -x "$WORK/venv/bin/detect-secrets" ] || { python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" install -q detect-secrets; }

CORPUS="$WORK/corpus"
if [ ! -d "$CORPUS" ]; then
  mkdir -p "$CORPUS"
  cp -r "$HOME/.cargo/registry/src" "$CORPUS/crates"
  cp -r "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" "$CORPUS/python"
  cp -r /usr/share/doc "$CORPUS/doc" 2>/dev/null || true
fi
SIZE=$(du -sb "$CORPUS" | cut -f1)
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1); $(date -u +%F)"
echo "corpus: $SIZE bytes, $(find "$CORPUS" -type f | wc -l) files"
t() { local s e; s=$(date +%s.%N); "$@" > "$WORK/out.txt" 2> "$WORK/err.txt" || true; e=$(date +%s.%N); echo "$(echo "$e - $s" | bc)"; }
sync
cat "$(find "$CORPUS" -type f | head -1)" > /dev/null
secs=$(t "$BIN" secrets scan "$CORPUS" --format json -o "$WORK/custos.json")
echo "custos:        $secs s, $(echo "$SIZE / $secs / 1000000" | bc) MB/s, $(python3 -c "import json; print(len(json.load(open('$WORK/custos.json'))['findings']))") findings"
secs=$(t "$TOOLS/bin/ripsecrets" "$CORPUS")
echo "ripsecrets:    $secs s, $(echo "$SIZE / $secs / 1000000" | bc) MB/s, $(wc -l < "$WORK/out.txt") findings"
# detect-secrets runs at a few MB/s: compare it with custos on a subset (some of Python's
# stdlib packages), both on the same files in this run.
SUB="$WORK/subset"
if [ ! -d "$SUB" ]; then
  mkdir -p "$SUB"
  for p in email http json urllib logging; do cp -r "$CORPUS/python/$p" "$SUB/"; done
fi
SUBSIZE=$(du -sb "$SUB" | cut -f1)
secs=$(t "$WORK/venv/bin/detect-secrets" scan --all-files "$SUB")
echo "detect-secrets (subset, $SUBSIZE bytes): $secs s, $(python3 -c "import json; print(sum(len(v) for v in json.load(open('$WORK/out.txt'))['results'].values()))") findings"
secs=$(t "$BIN" secrets scan "$SUB" --format json -o "$WORK/custos-subset.json")
echo "custos (same subset): $secs s, $(python3 -c "import json; print(len(json.load(open('$WORK/custos-subset.json'))['findings']))") findings"

# A history of COMMITS commits touching a small tree, built in one fast-import stream.
REPO="$WORK/history"
if [ ! -d "$REPO" ]; then
  git init -q "$REPO"
  python3 - "$COMMITS" <<'PY' | git -C "$REPO" fast-import --quiet
import random, sys
n = int(sys.argv[1]); random.seed(5)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"
out = sys.stdout
mark = 0
for i in range(n):
    mark += 1
    body = "\n".join(f"line {j} value {random.random()}" for j in range(40)) + "\n"
    if i % 997 == 0:
        # A planted secret made here, so this script holds no key (not even AWS's example).
        planted = "".join(random.choice(ALPHABET) for _ in range(40))
        body += f"aws_secret_access_key = '{planted}'\n"
    data = body.encode()
    out.write(f"blob\nmark :{mark}\ndata {len(data)}\n"); out.flush()
    sys.stdout.buffer.write(data); out.write("\n")
    out.write(f"commit refs/heads/main\ncommitter Bench <b@example.com> {1700000000 + i * 60} +0000\n")
    msg = f"commit {i}"
    out.write(f"data {len(msg)}\n{msg}\n")
    out.write(f"M 100644 :{mark} src/file{i % 200}.txt\n\n")
PY
fi
secs=$(t "$BIN" secrets git "$REPO" --format json -o "$WORK/history.json")
echo "custos git history ($COMMITS commits): $secs s, $(python3 -c "import json; d=json.load(open('$WORK/history.json')); print(len(d['findings']), 'findings in', d['files'], 'blobs')")"
