#!/usr/bin/env bash
# custos iac scan side by side with Checkov on the same IaC files: the fixtures written for
# custos' rules (crates/custos/tests/fixtures/iac: a failing and a passing set of Terraform
# plans, CloudFormation, Kubernetes manifests and Dockerfiles) or any folders given.
# Checkov is installed from PyPI into a virtualenv outside the clone; custos is the release
# build. Prints, per custos rule, whether each tool flags the failing set and the passing set
# (Checkov through the checks that cover the same control), then Checkov's other findings.
#
# Usage: bench/iac/run.sh [FAIL_DIR PASS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
FAIL="${1:-crates/custos/tests/fixtures/iac/fail}"
PASS="${2:-crates/custos/tests/fixtures/iac/pass}"
VENV="${CUSTOS_CHECKOV_VENV:-$HOME/.cache/custos-checkov}"
if [ ! -x "$VENV/bin/checkov" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q checkov
fi
cargo build -q --release -p custos
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}/release/custos"
OUT="${TMPDIR:-/tmp}/custos-iac-bench"
rm -rf "$OUT" && mkdir -p "$OUT"
for set in fail pass; do
  dir=$FAIL; [ "$set" = pass ] && dir=$PASS
  "$BIN" iac scan "$dir" --require-tags Project,Env --fail-on none --format json > "$OUT/custos-$set.json"
  "$VENV/bin/checkov" -d "$dir" --framework terraform_plan cloudformation kubernetes dockerfile \
    -o json --quiet --compact --skip-download > "$OUT/checkov-$set.json" 2> "$OUT/checkov-$set.err" || true
done
"$VENV/bin/checkov" --version > "$OUT/checkov.version"
python3 bench/iac/compare.py "$OUT"
