#!/usr/bin/env bash
# Checks custos' CVSS scores against the reference calculator (Red Hat's `cvss` package on
# PyPI, a port of FIRST's v4.0 calculator) over every CVSS v4.0 base vector (104,976),
# 100,000 random v4.0 vectors with threat and environmental metrics, and 40,000 random v3.x
# and v2 vectors. Also rewrites the sample the unit test ships with (--sample).
# Usage: bench/peers/cvss.sh [--sample]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${TMPDIR:-/tmp}/custos-peers"
mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q cvss
fi
py="$work/venv/bin/python"
"$py" "$here/cvss4_reference.py" all 0 "$work/v4_all.txt"
"$py" "$here/cvss4_reference.py" random 100000 "$work/v4_random.txt" 11
"$py" "$here/cvss23_reference.py" 20000 5 "$work/v23_random.txt"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
for f in v4_all v4_random v23_random; do
  echo "== $f: $(wc -l < "$work/$f.txt") vectors"
  CUSTOS_CVSS_REFERENCE="$work/$f.txt" cargo test -q --manifest-path "$repo/Cargo.toml" \
    -p custos-scan --lib scores_agree_with_the_reference_calculator 2>&1 | grep -E "test result|differ"
done
if [ "${1:-}" = "--sample" ]; then
  "$py" "$here/cvss4_reference.py" random 1200 "$work/v4_fix.txt" 23
  "$py" "$here/cvss23_reference.py" 200 29 "$work/v23_fix.txt"
  {
    echo "# CVSS vectors and the score the reference calculator gives (Red Hat's cvss package, a port of"
    echo "# FIRST's calculator), for crates/custos-scan/src/vuln/cvss.rs. Regenerate: bench/peers/cvss.sh."
    cat "$work/v4_fix.txt" "$work/v23_fix.txt"
  } > "$repo/crates/custos-scan/tests/data/cvss-reference.txt"
fi
