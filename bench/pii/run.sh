#!/usr/bin/env bash
# PII engine side by side with Microsoft Presidio (pattern recognizers, no-op NLP engine)
# on the same input in one run: throughput, and accuracy on the same labeled samples.
# Presidio is installed from PyPI into a throwaway virtualenv, never a custos dependency.
# Usage: bench/pii/run.sh [SAMPLES]   (default 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-2000}"
WORK="${TMPDIR:-/tmp}/custos-pii-bench"
VENV="$WORK/venv"
mkdir -p "$WORK"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q presidio-analyzer
fi
"$BIN" pii generate --count "$N" --seed 7 -o "$WORK/samples.json"
# A text file: every sample on its own line, repeated to ~4 MB.
"$VENV/bin/python" - "$WORK/samples.json" "$WORK/text.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lines = [x["full_text"] for x in s]
out, size = [], 0
while size < 4_000_000:
    for l in lines:
        out.append(l); size += len(l) + 1
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1); $(date -u +%F)"
start=$(date +%s.%N)
"$BIN" --json pii analyze "$WORK/text.txt" > "$WORK/custos.json"
end=$(date +%s.%N)
bytes=$(stat -c %s "$WORK/text.txt")
echo "custos: $(echo "$bytes / ($end - $start) / 1000000" | bc -l | cut -c1-6) MB/s (one process, one core, whole file, incl. start-up)"
# tldextract tries to fetch the public suffix list, fails offline and falls back to its snapshot.
"$VENV/bin/python" bench/pii/presidio_run.py "$WORK/text.txt" "$WORK/samples.json" "$WORK/presidio.json" 2> "$WORK/presidio.stderr"
echo "--- custos accuracy"
"$BIN" pii eval "$WORK/samples.json" | tail -n +1
echo "--- presidio accuracy (same samples, same token matching)"
"$VENV/bin/python" - "$WORK/samples.json" "$WORK/presidio.json" <<'PY'
import json, re, sys
samples = json.load(open(sys.argv[1])); preds = json.load(open(sys.argv[2]))["predictions"]
def toks(t):
    return [(m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", t)]
counts = {}
for s, p in zip(samples, preds):
    ts = toks(s["full_text"])
    lab = lambda spans, a, b: next((e for (x, y, e) in spans if x < b and a < y), None)
    g = [(x["start_position"], x["end_position"], x["entity_type"]) for x in s["spans"]]
    q = [(x["start"], x["end"], x["entity_type"]) for x in p]
    for a, b in ts:
        ge, pe = lab(g, a, b), lab(q, a, b)
        if ge and ge == pe: counts.setdefault(ge, [0,0,0])[0] += 1
        else:
            if ge: counts.setdefault(ge, [0,0,0])[2] += 1
            if pe: counts.setdefault(pe, [0,0,0])[1] += 1
T = [0,0,0]
for e, (tp, fp, fn) in sorted(counts.items()):
    p = tp/(tp+fp) if tp+fp else 0; r = tp/(tp+fn) if tp+fn else 0
    f = 2*p*r/(p+r) if p+r else 0
    print(f"{e:20} P={p:.3f} R={r:.3f} F1={f:.3f}")
    T = [T[0]+tp, T[1]+fp, T[2]+fn]
p = T[0]/(T[0]+T[1]); r = T[0]/(T[0]+T[2]); print(f"{'OVERALL':20} P={p:.3f} R={r:.3f} F1={2*p*r/(p+r):.3f}")
PY
