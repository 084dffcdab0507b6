#!/usr/bin/env bash
# The gateway beside its peers, in one run: the same upstream reached directly, through nginx
# (the floor a proxy can reach), through custos with every control on (audit async and
# strict), and through LiteLLM. Ratios between rows of one run carry the claim; absolute
# times move from machine to machine and run to run.
#
#   bench/gateway/peers.sh [DURATION]        (default 10s per row and load)
#
# Loads, all from a separate process on 127.0.0.1:
#   c=1     one connection, back to back (wrk -c1): p50 / p99 latency;
#   c=32    32 connections, unthrottled (wrk -c32): throughput, and the CPU time the server
#           process (its threads and children: nginx's worker) spent per call;
#   paced   1,000 requests/s on 32 connections with latency correction (oha -q 1000): p99.
# custos runs with authn (an API key), Cedar authz, quota (rpm/tpm limits), the tools layer,
# injection screening (defaults), idempotency, metering with a price, a budget and the audit
# ledger on; PII redaction off and on are separate rows, and so is `[server] io_threads`
# (connections on one single-threaded runtime per core).
#
# Peers come from Debian (nginx-light, wrk) and from PyPI into a temporary venv (LiteLLM,
# skipped with CUSTOS_BENCH_NO_LITELLM=1); oha from crates.io into a temporary folder unless
# $OHA is set. None is a custos dependency. CUSTOS_BENCH_NO_BUILD=1 measures the release
# binaries already built; CUSTOS_BENCH_COMPARE=/path/to/custos adds a row for another custos
# binary (an earlier build, say) with audit async. Prints a Markdown table; raw results stay
# in $WORK.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DUR=${1:-10s}
WORK=$(mktemp -d /tmp/custos-peers.XXXXXX)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}
UP=127.0.0.1:9110
NGINX=127.0.0.1:9111
LITELLM=127.0.0.1:9112
declare -A PORT=([custos-async]=9113 [custos-strict]=9114 [custos-pii]=9115 [custos-compare]=9116 [custos-threads]=9117)
CUSTOS_ROWS=(custos-async custos-threads custos-strict custos-pii)
[ -z "${CUSTOS_BENCH_COMPARE:-}" ] || CUSTOS_ROWS+=(custos-compare)

need_deb() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { echo "$1 missing: apt-get install $2" >&2; exit 2; }
  echo "installing $2 (Debian)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
}
need_deb wrk wrk
[ -x /usr/sbin/nginx ] || need_deb nginx nginx-light
OHA=${OHA:-$(command -v oha || true)}
if [ -z "$OHA" ]; then
  echo "installing oha into $WORK/tools (crates.io)..." >&2
  cargo install --locked --quiet --root "$WORK/tools" oha
  OHA=$WORK/tools/bin/oha
fi
[ -n "${CUSTOS_BENCH_NO_BUILD:-}" ] ||
  (cd "$ROOT" && cargo build --release --locked --quiet -p custos -p custos-bench-upstream)
BIN=$CARGO_TARGET_DIR/release

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_up() { # url [tenths of a second]
  for _ in $(seq 1 "${2:-200}"); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "nothing answers at $1" >&2; exit 1
}

"$BIN/bench-upstream" "$UP" 1 2>/dev/null & pids+=($!)
UPSTREAM_PID=$!

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  upstream model { server $UP; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
/usr/sbin/nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>>"$WORK/nginx/error.log" & pids+=($!)
NGINX_PID=$!

for row in "${CUSTOS_ROWS[@]}"; do
  dir=$WORK/$row
  mkdir -p "$dir"
  durability=strict
  case $row in custos-async|custos-compare|custos-threads) durability=async ;; esac
  # custos-threads: audit async, connections on one single-threaded runtime per core.
  threads=0
  [ "$row" != custos-threads ] || threads=$(nproc)
  custos=$BIN/custos
  [ "$row" != custos-compare ] || custos=$CUSTOS_BENCH_COMPARE
  pii=""
  [ "$row" = custos-pii ] && pii=$'[pii.guard]\nprompt = "redact"\nresponse = "redact"'
  cat > "$dir/custos.toml" <<TOML
[server]
listen = "127.0.0.1:${PORT[$row]}"
io_threads = $threads
[database]
data_dir = "$dir/data"
[log]
level = "warn"
[audit]
durability = "$durability"
$pii
[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://$UP/v1"
[[models]]
name = "gpt-4o-mini"
provider = "upstream"
TOML
  C=("$custos" --config "$dir/custos.toml")
  "${C[@]}" teams create bench >/dev/null 2>&1
  "${C[@]}" apps create load --team bench >/dev/null 2>&1
  "${C[@]}" prices set --provider upstream --model gpt-4o-mini --input 0.15 --output 0.60 >/dev/null 2>&1
  "${C[@]}" budgets create bench-monthly --scope team:bench --amount 1000000 --action block >/dev/null 2>&1
  "${C[@]}" keys create --team bench --app load --rpm 1000000000 --tpm 2000000000 2>/dev/null |
    tail -1 > "$dir/key"
  "${C[@]}" serve 2>"$dir/custos.log" & pids+=($!)
  echo $! > "$dir/pid"
done

LITELLM_OK=""
if [ -z "${CUSTOS_BENCH_NO_LITELLM:-}" ]; then
  VENV=${CUSTOS_BENCH_LITELLM_VENV:-$WORK/litellm-venv}
  if [ ! -x "$VENV/bin/litellm" ]; then
    echo "installing LiteLLM into $VENV (PyPI)..." >&2
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'litellm[proxy]' >/dev/null
  fi
  cat > "$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://$UP/v1
      api_key: unused
YAML
  # LiteLLM refuses to start without a master key; one made for this run only.
  LITELLM_KEY="sk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  LITELLM_MASTER_KEY=$LITELLM_KEY "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "${LITELLM##*:}" \
    --num_workers 1 >"$WORK/litellm.log" 2>&1 & pids+=($!)
  LITELLM_PID=$!
  LITELLM_OK=1
fi

wait_up "http://$UP/v1/models"
wait_up "http://$NGINX/v1/models"
for row in "${CUSTOS_ROWS[@]}"; do wait_up "http://127.0.0.1:${PORT[$row]}/readyz"; done
[ -z "$LITELLM_OK" ] || wait_up "http://$LITELLM/health/liveliness" 1200

BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarize the benefits of rate limiting an AI gateway in two sentences."}]}'
lua() { # key -> a wrk script posting BODY
  cat <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $1"
LUA
}
declare -A URL KEY
URL[direct]=http://$UP/v1/chat/completions; KEY[direct]=none
URL[nginx]=http://$NGINX/v1/chat/completions; KEY[nginx]=none
for row in "${CUSTOS_ROWS[@]}"; do
  URL[$row]=http://127.0.0.1:${PORT[$row]}/v1/chat/completions; KEY[$row]=$(cat "$WORK/$row/key")
done
ROWS=(direct nginx "${CUSTOS_ROWS[@]}")
if [ -n "$LITELLM_OK" ]; then
  URL[litellm]=http://$LITELLM/v1/chat/completions; KEY[litellm]=$LITELLM_KEY; ROWS+=(litellm)
fi

# CPU time (user + system, in clock ticks) of a process and its threads and children: the
# per-call CPU budget is this over the calls of the c=32 run.
cpu_ticks() { # pids...
  local t=0 p
  for p in "$@"; do
    for q in $p $(pgrep -P "$p" || true); do
      t=$((t + $(awk '{print $14 + $15}' "/proc/$q/stat" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}
declare -A SERVER
SERVER[direct]=$UPSTREAM_PID
SERVER[nginx]=$NGINX_PID
for row in "${CUSTOS_ROWS[@]}"; do SERVER[$row]=$(cat "$WORK/$row/pid"); done
[ -z "$LITELLM_OK" ] || SERVER[litellm]=$LITELLM_PID
for row in "${ROWS[@]}"; do
  lua "${KEY[$row]}" > "$WORK/$row.lua"
  # Warm pools, caches and LiteLLM's lazy imports.
  wrk -t1 -c4 -d2s -s "$WORK/$row.lua" "${URL[$row]}" >/dev/null
done
for row in "${ROWS[@]}"; do
  echo "$row: one connection ($DUR)..." >&2
  wrk -t1 -c1 -d "$DUR" --latency -s "$WORK/$row.lua" "${URL[$row]}" > "$WORK/$row-c1.txt"
  echo "$row: 32 connections ($DUR)..." >&2
  before=$(cpu_ticks "${SERVER[$row]}")
  wrk -t1 -c32 -d "$DUR" --latency -s "$WORK/$row.lua" "${URL[$row]}" > "$WORK/$row-c32.txt"
  echo $(($(cpu_ticks "${SERVER[$row]}") - before)) > "$WORK/$row-c32.cpu"
  if [ "$row" != litellm ]; then
    echo "$row: paced at 1,000 req/s ($DUR)..." >&2
    "$OHA" --no-tui --output-format json -z "$DUR" -c 32 -q 1000 --latency-correction -m POST \
      -T application/json -d "$BODY" -H "Authorization: Bearer ${KEY[$row]}" "${URL[$row]}" \
      > "$WORK/$row-paced.json"
  fi
done
for row in "${CUSTOS_ROWS[@]}"; do
  grep -E '^VmHWM' "/proc/$(cat "$WORK/$row/pid")/status" > "$WORK/$row-memory.txt" || true
done

python3 "$ROOT/bench/gateway/peers_summary.py" "$WORK" "${ROWS[@]}"
echo "raw results: $WORK" >&2
