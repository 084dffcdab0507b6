#!/usr/bin/env bash
# Accuracy side by side on labeled samples: each sample of a JSON-lines set (the format of
# `custos secrets eval`) is written as a file of its own (its `path`, in a folder per sample),
# and custos, detect-secrets and Kingfisher scan the same tree in one run. A sample counts as
# flagged when a tool reports anything in its folder. Peers are installed into a throwaway
# venv; nothing is validated online (Kingfisher runs with --no-validate).
# Usage: bench/secrets/eval.sh [SET.jsonl ...]   (default: the three sets in crates/custos-scan/tests/data)
set -euo pipefail
cd "$(dirname "$0")/../.."
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(crates/custos-scan/tests/data/secrets_eval.jsonl crates/custos-scan/tests/data/secrets_eval_blind.jsonl crates/custos-scan/tests/data/secrets_eval_blind2.jsonl)
WORK="${TMPDIR:-/tmp}/custos-secrets-eval"
mkdir -p "$WORK"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
VENV="$WORK/venv"
[ -x "$VENV/bin/kingfisher" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q detect-secrets kingfisher-bin; }
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1); $(date -u +%F)"
echo "detect-secrets $("$VENV/bin/detect-secrets" --version), $("$VENV/bin/kingfisher" --version)"
for SET in "${SETS[@]}"; do
  TREE="$WORK/tree"
  rm -rf "$TREE" && mkdir -p "$TREE"
  python3 - "$SET" "$TREE" <<'PY'
import json, os, sys
src, tree = sys.argv[1], sys.argv[2]
labels = {}
for i, line in enumerate(open(src, encoding="utf-8")):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    s = json.loads(line)
    d = f"s{i + 1:05d}"
    name = os.path.basename(s.get("path") or "sample.txt") or "sample.txt"
    os.makedirs(os.path.join(tree, d))
    with open(os.path.join(tree, d, name), "w", encoding="utf-8") as f:
        f.write(s["text"] + "\n")
    labels[d] = bool(s["secret"])
json.dump(labels, open(os.path.join(tree, "..", "labels.json"), "w"))
PY
  "$BIN" secrets scan "$TREE" --format json -o "$WORK/custos.json" > /dev/null 2>&1 || true
  (cd "$TREE" && "$VENV/bin/detect-secrets" scan --all-files . > "$WORK/detect-secrets.json" 2> /dev/null) || true
  "$VENV/bin/kingfisher" scan "$TREE" --no-validate --no-dedup --format json -o "$WORK/kingfisher.json" > /dev/null 2>&1 || true
  python3 - "$WORK" "$SET" <<'PY'
import json, os, re, sys
work, name = sys.argv[1], sys.argv[2]
labels = json.load(open(os.path.join(work, "labels.json")))
def dirs_in(obj, out):
    # Every string naming a sample folder, wherever the tool's JSON puts the path.
    if isinstance(obj, dict):
        for v in obj.values(): dirs_in(v, out)
    elif isinstance(obj, list):
        for v in obj: dirs_in(v, out)
    elif isinstance(obj, str):
        out.update(re.findall(r"(?:^|[/\\])(s\d{5})[/\\]", obj))
def load(path):
    text = open(path, encoding="utf-8", errors="replace").read().strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # JSON lines
        return [json.loads(l) for l in text.splitlines() if l.strip().startswith("{")]
pos = sum(labels.values()); neg = len(labels) - pos
print(f"\n{os.path.basename(name)}: {pos} secrets, {neg} negatives")
print(f"{'tool':16} {'recall':>8} {'negatives flagged':>18}")
for tool in ("custos", "detect-secrets", "kingfisher"):
    flagged = set()
    try:
        dirs_in(load(os.path.join(work, f"{tool}.json")), flagged)
    except (OSError, ValueError) as e:
        print(f"{tool:16} unreadable output: {e}"); continue
    tp = sum(1 for d in flagged if labels.get(d) is True)
    fp = sum(1 for d in flagged if labels.get(d) is False)
    print(f"{tool:16} {tp / pos:8.3f} {fp / neg:18.3f}   ({tp}/{pos} found, {fp}/{neg} flagged)")
PY
done
