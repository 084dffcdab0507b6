#!/usr/bin/env bash
# custos on sentences from Presidio's own evaluation generator (presidio-evaluator, PyPI), in a
# throwaway venv: two sets of 1,500 (seed 7, "dev", whose errors were read; seed 11, "test",
# never read), written in Presidio's evaluator JSON and scored with `custos pii eval`.
# Usage: bench/pii/presidio_synth.sh [COUNT]   (default 1500)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-1500}"
WORK="${TMPDIR:-/tmp}/custos-pii-presidio"
mkdir -p "$WORK"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
VENV="$WORK/venv"
[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import presidio_evaluator' 2> /dev/null \
  || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q presidio-evaluator; }
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1); $(date -u +%F)"
for SEED in 7 11; do
  OUT="$WORK/presidio-$SEED-$N.json"
  [ -f "$OUT" ] || "$VENV/bin/python" - "$SEED" "$N" "$OUT" <<'PY'
import json, sys
from presidio_evaluator.data_generator import PresidioSentenceFaker
seed, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
faker = PresidioSentenceFaker(locale="en_US", lower_case_ratio=0.05, random_seed=seed)
samples = faker.generate_new_fake_sentences(n)
json.dump([{"full_text": s.full_text,
            "spans": [{"entity_type": sp.entity_type, "entity_value": sp.entity_value,
                       "start_position": sp.start_position, "end_position": sp.end_position}
                      for sp in s.spans]} for s in samples], open(out, "w"))
PY
  echo "== seed $SEED ($N sentences)"
  "$BIN" pii eval "$OUT"
done
