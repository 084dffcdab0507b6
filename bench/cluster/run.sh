#!/usr/bin/env bash
# What sharing state through Redis costs a call: latency at a fixed 1,000 requests/s through
# two custos gateways over the same upstream, one keeping its rate limits, budget holds and
# idempotency state in memory (the embedded default) and one sharing them through Redis
# ([cluster] redis_url). Both run the same scenario as the replicas test: a key with rpm/tpm
# limits, a price, and a blocking budget on its team, so every call takes one GCRA decision
# and one budget hold (two round trips to Redis) and settles its cost afterwards. Alternates
# the two ROUNDS times so drift on the machine hits both alike; prints p50/p90/p99 per round
# and the medians, then what Redis answered.
#
#   bench/cluster/run.sh [DURATION] [ROUNDS]     (default 10s, 3)
#
# Needs redis-server (Debian's package; a private one is started on 127.0.0.1:9379) and oha
# (crates.io; installed into a temporary folder unless $OHA is set). Every server binds
# 127.0.0.1; every load is bounded by DURATION.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DUR=${1:-10s}
ROUNDS=${2:-3}
WORK=$(mktemp -d /tmp/custos-cluster-bench.XXXXXX)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}
UP_ADDR=127.0.0.1:9102
REDIS_PORT=9379

command -v redis-server >/dev/null || { echo "error: redis-server is not installed (apt install redis-server)" >&2; exit 2; }
OHA=${OHA:-$(command -v oha || true)}
if [ -z "$OHA" ]; then
  echo "installing oha into $WORK/tools (crates.io)..." >&2
  cargo install --locked --quiet --root "$WORK/tools" oha
  OHA=$WORK/tools/bin/oha
fi
# CUSTOS_BENCH_NO_BUILD=1 measures the release binaries already built.
[ -n "${CUSTOS_BENCH_NO_BUILD:-}" ] ||
  (cd "$ROOT" && cargo build --release --locked --quiet -p custos -p custos-bench-upstream)
BIN=$CARGO_TARGET_DIR/release

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$BIN/bench-upstream" "$UP_ADDR" 1 2>/dev/null & pids+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" & pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

BODY='{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":"Summarize the benefits of rate limiting an AI gateway in two sentences."}]}'
declare -A KEYS PORTS=([embedded]=9203 [redis]=9204)
for mode in embedded redis; do
  dir=$WORK/$mode
  mkdir -p "$dir"
  cluster=""
  [ "$mode" = redis ] && cluster=$'[cluster]\nredis_url = "redis://127.0.0.1:'"$REDIS_PORT"$'"'
  cat > "$dir/custos.toml" <<TOML
[server]
listen = "127.0.0.1:${PORTS[$mode]}"
[database]
data_dir = "$dir/data"
[log]
level = "warn"
[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://$UP_ADDR/v1"
[[models]]
name = "gpt-4o-mini"
provider = "upstream"
$cluster
TOML
  C=("$BIN/custos" --config "$dir/custos.toml")
  "${C[@]}" teams create bench >/dev/null 2>&1
  "${C[@]}" apps create load --team bench >/dev/null 2>&1
  "${C[@]}" prices set --provider upstream --model gpt-4o-mini --input 0.15 --output 0.60 >/dev/null 2>&1
  "${C[@]}" budgets create bench-cap --scope team:bench --amount 1000000 --action block >/dev/null 2>&1
  KEYS[$mode]=$("${C[@]}" keys create --team bench --app load --rpm 1000000000 --tpm 2000000000 2>/dev/null)
  "${C[@]}" serve 2>"$dir/custos.log" & pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:${PORTS[$mode]}/readyz" >/dev/null && break; sleep 0.1; done
  "$OHA" --no-tui --output-format quiet -n 2000 -c 16 -m POST -T application/json -d "$BODY" \
    -H "Authorization: Bearer ${KEYS[$mode]}" "http://127.0.0.1:${PORTS[$mode]}/v1/chat/completions"
done

for round in $(seq 1 "$ROUNDS"); do
  for mode in embedded redis; do
    echo "round $round: $mode at 1,000 req/s for $DUR..." >&2
    "$OHA" --no-tui --output-format json -z "$DUR" -c 64 -q 1000 --latency-correction -m POST \
      -T application/json -d "$BODY" -H "Authorization: Bearer ${KEYS[$mode]}" \
      "http://127.0.0.1:${PORTS[$mode]}/v1/chat/completions" > "$WORK/$mode-$round.json"
  done
done
curl -s "http://127.0.0.1:${PORTS[redis]}/metrics" > "$WORK/metrics-redis.txt"
redis-cli -p "$REDIS_PORT" info commandstats > "$WORK/redis-commands.txt"

python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def pct(d, p):
    return d["latencyPercentiles"][p] * 1e6
print("| round | state | p50 µs | p90 µs | p99 µs | req/s | not 200 |")
print("|---|---|---|---|---|---|---|")
agg = {"embedded": [], "redis": []}
for r in range(1, rounds + 1):
    for mode in ("embedded", "redis"):
        d = json.load(open(f"{work}/{mode}-{r}.json"))
        codes = d.get("statusCodeDistribution", {})
        # Requests still in flight when the duration ends are cut off by oha, not failed.
        errors = {k: v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
        bad = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
        row = (pct(d, "p50"), pct(d, "p90"), pct(d, "p99"))
        agg[mode].append(row)
        print(f"| {r} | {mode} | {row[0]:.0f} | {row[1]:.0f} | {row[2]:.0f} | {d['summary']['requestsPerSec']:.0f} | {bad} |")
for mode in ("embedded", "redis"):
    m = [statistics.median(x[i] for x in agg[mode]) for i in range(3)]
    print(f"| median | {mode} | {m[0]:.0f} | {m[1]:.0f} | {m[2]:.0f} | | |")
fallbacks = [l for l in open(f"{work}/metrics-redis.txt") if l.startswith("custos_shared_state_fallbacks_total")]
print("\ndecisions taken without Redis:", sum(float(l.split()[-1]) for l in fallbacks))
print("Redis commands (calls):", ", ".join(
    l.split(":")[0].removeprefix("cmdstat_") + " " + l.split("calls=")[1].split(",")[0]
    for l in open(f"{work}/redis-commands.txt") if l.startswith("cmdstat_")))
PY
echo "raw results: $WORK" >&2
