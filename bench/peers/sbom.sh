#!/usr/bin/env bash
# custos sbom side by side with cargo-cyclonedx (crates.io) and cyclonedx-py (PyPI): the same
# projects, component sets compared by package URL (percent-decoded, qualifiers dropped).
# Rust: the cargo-fuzz and cargo-cyclonedx crates as published (Cargo.lock included), with
# cargo-cyclonedx asked for every target and feature. Python: a virtual environment (its
# site-packages) and the requirements.txt `pip freeze` writes for it.
# Every difference is labelled with its cause when the script can tell.
# Usage: bench/peers/sbom.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${TMPDIR:-/tmp}/custos-peers"
tools="$work/tools"
mkdir -p "$tools" "$work/sbom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
for t in cargo-cyclonedx cargo-fuzz; do
  if [ ! -x "$tools/bin/$t" ]; then
    CARGO_TARGET_DIR="$work/tools-target" cargo install -q --locked --root "$tools" "$t"
  fi
done
if [ ! -x "$work/venv/bin/cyclonedx-py" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q cvss cyclonedx-bom
fi
cargo build --release -q -p custos --manifest-path "$repo/Cargo.toml"
custos="$CARGO_TARGET_DIR/release/custos"
registry="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)"

compare() { # LABEL PEER_BOM CUSTOS_BOM [CARGO_DIR]
  python3 - "$@" <<'PY'
import json, subprocess, sys, urllib.parse
label, peer, mine = sys.argv[1:4]
cargo_dir = sys.argv[4] if len(sys.argv) > 4 else None
def purls(path):
    doc = json.load(open(path))
    out = set()
    def walk(cs):
        for c in cs:
            if c.get("purl"):
                out.add(urllib.parse.unquote(c["purl"].split("?")[0]))
            walk(c.get("components", []))
    walk(doc.get("components", []))
    return out
p, m = purls(peer), purls(mine)
why = {}
if cargo_dir:
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--manifest-path", f"{cargo_dir}/Cargo.toml"],
        stderr=subprocess.DEVNULL))
    pkgs = {x["id"]: x for x in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, todo = set(), [root]
    while todo:
        n = todo.pop()
        for d in nodes[n]["deps"]:
            kinds = {k["kind"] for k in d["dep_kinds"]}
            if kinds - {"dev"} and d["pkg"] not in seen:
                seen.add(d["pkg"]); todo.append(d["pkg"])
    for i, x in pkgs.items():
        purl = f"pkg:cargo/{x['name']}@{x['version']}"
        if i == root:
            why[purl] = "the project itself (cargo-cyclonedx puts it in metadata.component)"
        elif i not in seen:
            why[purl] = "dev-dependency only (in Cargo.lock; cargo-cyclonedx leaves dev out)"
print(f"{label}: peer {len(p)}, custos {len(m)}, both {len(p & m)}")
for x in sorted(p - m):
    print(f"  only peer:   {x}")
for x in sorted(m - p):
    print(f"  only custos: {x}  {why.get(x, '')}")
PY
}

for crate in cargo-fuzz cargo-cyclonedx; do
  src="$(ls -d "$registry$crate"-*/ | tail -1)"
  dir="$work/sbom/$crate"
  rm -rf "$dir" && cp -r "$src" "$dir"
  (cd "$dir" && "$tools/bin/cargo-cyclonedx" cyclonedx -f json --target all --all-features -qq)
  "$custos" sbom "$dir/Cargo.lock" -o "$work/sbom/$crate.custos.json" > /dev/null
  compare "$crate (Cargo.lock)" "$dir/$crate.cdx.json" "$work/sbom/$crate.custos.json" "$dir"
done

venv="$work/venv"
"$venv/bin/cyclonedx-py" environment --output-format JSON -o "$work/sbom/env.peer.json" "$venv" 2> /dev/null
"$custos" sbom "$venv" -o "$work/sbom/env.custos.json" > /dev/null
compare "Python environment ($venv)" "$work/sbom/env.peer.json" "$work/sbom/env.custos.json"
"$venv/bin/pip" freeze > "$work/sbom/requirements.txt"
"$venv/bin/cyclonedx-py" requirements --output-format JSON -o "$work/sbom/req.peer.json" "$work/sbom/requirements.txt" 2> /dev/null
"$custos" sbom "$work/sbom/requirements.txt" -o "$work/sbom/req.custos.json" > /dev/null
compare "requirements.txt (pip freeze)" "$work/sbom/req.peer.json" "$work/sbom/req.custos.json"
