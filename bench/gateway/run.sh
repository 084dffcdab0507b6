#!/usr/bin/env bash
# Gateway benchmark: the latency custos adds and its throughput against going direct.
#
#   bench/gateway/run.sh [DURATION]        (default 15s per measurement)
#
# Starts bench-upstream (a fixed chat completion) on 127.0.0.1:9100 and custos on
# 127.0.0.1:9200 in front of it (authn, quota, idempotency and metrics on; a key with
# rpm/tpm limits so the quota layer does its full work), then loads both from a separate
# process with oha (installed from crates.io into a temporary folder unless $OHA is set):
#   (a) fixed rates of 1,000 and 5,000 requests/s: p50/p99 direct vs through custos;
#   (b) unthrottled, 64 connections: the highest throughput, direct vs through custos;
#   and both again through bench-forwarder (:9300), a proxy that does nothing, which is
#   the floor any proxy pays for the extra hop on this machine;
#   (c) with wrk (Debian's package, if present) and a unique Idempotency-Key per request;
#   (d) streaming: time to first byte over 500 sequential requests, direct vs custos;
# and reads custos' resident memory. Prints a Markdown summary; raw results stay in $WORK.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DUR=${1:-15s}
WORK=$(mktemp -d /tmp/custos-bench.XXXXXX)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}
UP_ADDR=127.0.0.1:9100
GW_ADDR=127.0.0.1:9200
FW_ADDR=127.0.0.1:9300

OHA=${OHA:-$(command -v oha || true)}
if [ -z "$OHA" ]; then
  echo "installing oha into $WORK/tools (crates.io)..." >&2
  cargo install --locked --quiet --root "$WORK/tools" oha
  OHA=$WORK/tools/bin/oha
fi
WRK=$(command -v wrk || true)

echo "building custos and bench-upstream (release)..." >&2
(cd "$ROOT" && cargo build --release --locked --quiet -p custos -p custos-bench-upstream)
BIN=$CARGO_TARGET_DIR/release

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$BIN/bench-upstream" "$UP_ADDR" 1 2>/dev/null & pids+=($!)
"$BIN/bench-forwarder" "$FW_ADDR" "$UP_ADDR" 2>/dev/null & pids+=($!)

cat > "$WORK/custos.toml" <<TOML
[server]
listen = "$GW_ADDR"
[database]
data_dir = "$WORK/data"
[log]
level = "warn"
[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://$UP_ADDR/v1"
[[models]]
name = "gpt-4o-mini"
provider = "upstream"
TOML
C=("$BIN/custos" --config "$WORK/custos.toml")
"${C[@]}" teams create bench >/dev/null 2>&1
"${C[@]}" apps create load --team bench >/dev/null 2>&1
KEY=$("${C[@]}" keys create --team bench --app load --rpm 1000000000 --tpm 2000000000 2>/dev/null)
"${C[@]}" serve ${CUSTOS_SERVE_ARGS:-} 2>"$WORK/custos.log" & CUSTOS=$!; pids+=($CUSTOS)
for _ in $(seq 1 100); do curl -sf "http://$GW_ADDR/readyz" >/dev/null && break; sleep 0.1; done

BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarize the benefits of rate limiting an AI gateway in two sentences."}]}'
load() { # name url extra-args...
  local name=$1 url=$2; shift 2
  "$OHA" --no-tui --output-format json -z "$DUR" -c 64 -m POST -T application/json -d "$BODY" "$@" "$url" > "$WORK/$name.json"
}
auth=(-H "Authorization: Bearer $KEY")
# Warm both paths (connection pools, caches).
"$OHA" --no-tui --output-format quiet -n 2000 -c 16 -m POST -T application/json -d "$BODY" "http://$UP_ADDR/v1/chat/completions"
"$OHA" --no-tui --output-format quiet -n 2000 -c 16 -m POST -T application/json -d "$BODY" "${auth[@]}" "http://$GW_ADDR/v1/chat/completions"

for rate in 1000 5000; do
  echo "fixed rate $rate/s ($DUR each)..." >&2
  load "direct-$rate" "http://$UP_ADDR/v1/chat/completions" -q "$rate" --latency-correction
  load "floor-$rate" "http://$FW_ADDR/v1/chat/completions" -q "$rate" --latency-correction
  load "custos-$rate" "http://$GW_ADDR/v1/chat/completions" -q "$rate" --latency-correction "${auth[@]}"
done
echo "maximum throughput ($DUR each)..." >&2
load direct-max "http://$UP_ADDR/v1/chat/completions"
load floor-max "http://$FW_ADDR/v1/chat/completions"
load custos-max "http://$GW_ADDR/v1/chat/completions" "${auth[@]}"

if [ -n "$WRK" ]; then
  echo "maximum throughput with a unique Idempotency-Key per request (wrk)..." >&2
  cat > "$WORK/idem.lua" <<LUA
local body = '$BODY'
local n = 0
local tid = tostring(math.random(1, 1e9))
request = function()
  n = n + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer $KEY",
    ["Idempotency-Key"] = tid .. "-" .. n,
  }, body)
end
LUA
  "$WRK" -t 1 -c 64 -d "$DUR" --latency -s "$WORK/idem.lua" "http://$GW_ADDR/v1/chat/completions" > "$WORK/wrk-idem.txt"
fi

echo "streaming time to first byte (500 sequential requests each)..." >&2
SBODY=${BODY%\}}',"stream":true}'
ttfb() { # url extra-curl-args...
  local url=$1; shift
  for _ in $(seq 1 500); do
    curl -s -o /dev/null -w '%{time_starttransfer}\n' -H 'Content-Type: application/json' "$@" -d "$SBODY" "$url"
  done
}
ttfb "http://$UP_ADDR/v1/chat/completions" > "$WORK/ttfb-direct.txt"
ttfb "http://$GW_ADDR/v1/chat/completions" -H "Authorization: Bearer $KEY" > "$WORK/ttfb-custos.txt"

grep -E '^Vm(HWM|RSS)' "/proc/$CUSTOS/status" > "$WORK/memory.txt"
curl -s "http://$GW_ADDR/metrics" > "$WORK/metrics.txt"

python3 "$ROOT/bench/gateway/summarize.py" "$WORK"
echo "raw results: $WORK" >&2
