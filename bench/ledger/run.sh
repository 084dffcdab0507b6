#!/usr/bin/env bash
# Ledger benchmark on the real SQLite file: durable append rate in the gateway writer's batch
# size, then `custos audit verify` over the whole log and `custos audit prove` of one entry,
# each as the CLI runs them (process start included).
#
#   bench/ledger/run.sh [EVENTS]      default 1,000,000
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=${1:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}
cargo build --release -q -p custos --bin custos
cargo build --release -q -p custos-store --example ledger_fill
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$BIN/custos" audit keygen --out keys >/dev/null 2>&1
"$BIN/custos" tenants create bench >/dev/null 2>&1   # creates and migrates .custos/custos.db
URL="sqlite://$WORK/.custos/custos.db"

echo "== append: $EVENTS events in batches of 1024 (SQLite WAL, one transaction per batch)"
"$BIN/examples/ledger_fill" "$URL" "$EVENTS" 1024
echo "== database size"
du -sh .custos
echo "== checkpoint (verifies everything first, then signs)"
/usr/bin/time -f "wall %e s, max RSS %M KB" "$BIN/custos" audit checkpoint --key-file keys/ledger.key >/dev/null
echo "== verify $EVENTS events (3 runs)"
for _ in 1 2 3; do
  /usr/bin/time -f "wall %e s, max RSS %M KB" "$BIN/custos" audit verify --public-key keys/ledger.pub
done
echo "== prove one entry, as the CLI runs it (5 runs)"
for _ in 1 2 3 4 5; do
  /usr/bin/time -f "wall %e s, max RSS %M KB" "$BIN/custos" audit prove --index $((EVENTS / 2 + 7)) >/dev/null
done
