#!/usr/bin/env bash
# Kingfisher as an oracle, two ways, in one run:
#   1. coverage of provider formats: for each rule Kingfisher lists (`kingfisher rules list`),
#      up to three strings its pattern matches are generated (exrex) and written as
#      `value = "<token>"` samples, scored with `custos secrets eval` by Kingfisher rule;
#   2. a real tree (default: this machine's crate sources, a site-packages and Python's stdlib):
#      every finding Kingfisher reports on a line custos does not is listed for a person to
#      explain or to turn into a rule.
# Generated strings follow Kingfisher's regexes, which are often looser than the providers'
# formats (mixed-case hex, any length in a range): a miss on them is a lead, not a verdict.
# Kingfisher and exrex are installed into a throwaway venv; nothing is validated online.
# Usage: bench/secrets/oracle.sh [DIR ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${TMPDIR:-/tmp}/custos-secrets-oracle"
mkdir -p "$WORK"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
VENV="$WORK/venv"
[ -x "$VENV/bin/kingfisher" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q kingfisher-bin exrex; }
DIRS=("$@")
if [ ${#DIRS[@]} -eq 0 ]; then
  DIRS=("$HOME/.cargo/registry/src" "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')")
fi
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1); $(date -u +%F)"
echo "$("$VENV/bin/kingfisher" --version)"
"$VENV/bin/kingfisher" rules list --no-update-check -f json -o "$WORK/rules.json" > /dev/null 2>&1 \
  || "$VENV/bin/kingfisher" rules list -f json -o "$WORK/rules.json" > /dev/null 2>&1
"$VENV/bin/python" - "$WORK/rules.json" "$WORK/generated.jsonl" <<'PY' 2> /dev/null
import json, random, re, sys, exrex
random.seed(3)
rules = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as out:
    for r in rules:
        try:
            rx = re.compile(r["pattern"])
        except re.error:
            continue  # Rust-only syntax
        for _ in range(3):
            try:
                m = rx.search(exrex.getone(r["pattern"], limit=24))
            except Exception:
                break
            if not m:
                continue
            s = m.group(0).strip()
            if not s.isprintable() or not s.isascii():
                continue
            out.write(json.dumps({"text": 'value = "%s"\n' % s.replace('"', ""), "secret": True,
                                  "category": r["id"], "path": "settings.py"}) + "\n")
PY
"$BIN" secrets eval "$WORK/generated.jsonl" --json > "$WORK/eval.json"
python3 - "$WORK/eval.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
o = d["overall"]
cats = d["by_category"]
print(f"\nKingfisher-generated samples: {o['found']}/{o['positives']} found (recall {o['recall']:.3f}), "
      f"{len(cats)} Kingfisher rules, {sum(1 for c in cats if c['found'] == 0)} with nothing found:")
print("  " + " ".join(sorted(c["category"].split(".", 1)[-1] for c in cats if c["found"] == 0)))
PY
"$BIN" secrets scan "${DIRS[@]}" --format json -o "$WORK/custos.json" > /dev/null 2>&1 || true
"$VENV/bin/kingfisher" scan "${DIRS[@]}" --no-validate --no-dedup --no-update-check --format json -o "$WORK/kingfisher.json" > /dev/null 2>&1 || true
python3 - "$WORK/custos.json" "$WORK/kingfisher.json" <<'PY'
import json, os, sys, collections
cu = json.load(open(sys.argv[1]))["findings"]
kf = json.load(open(sys.argv[2]))["findings"]
# custos reports paths relative to the scanned root: match on file name and line.
seen = {(os.path.basename(f["path"]), f["line"]) for f in cu}
only = [k for k in kf if (os.path.basename(k["finding"]["path"]), k["finding"]["line"]) not in seen]
print(f"\nreal tree: custos {len(cu)} findings, Kingfisher {len(kf)}, Kingfisher's alone {len(only)}")
print("  by rule:", dict(collections.Counter(k["rule"]["id"] for k in kf)))
for k in only:
    f = k["finding"]
    print(f"  {k['rule']['id']}: {f['path']}:{f['line']}")
PY
