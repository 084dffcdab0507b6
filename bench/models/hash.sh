#!/usr/bin/env bash
# Model hashing side by side: `custos models sign` against OpenSSF's `model_signing sign key`
# (PyPI, in a throwaway venv) on the same multi-GB model folder, same key, alternating runs.
# The folder mimics a sharded checkpoint: N large safetensors-sized files of random bytes
# plus config, tokenizer and a few small files. The page cache holds it after the first run,
# so the figures are hashing throughput, not the disk's.
# Usage: bench/models/hash.sh [GIB] [RUNS]   (default 4 GiB, 3 runs each)
set -euo pipefail
cd "$(dirname "$0")/../.."
GIB="${1:-4}"
RUNS="${2:-3}"
WORK="${TMPDIR:-/tmp}/custos-models-bench"
mkdir -p "$WORK"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
VENV="$WORK/venv"
[ -x "$VENV/bin/model_signing" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'model-signing==1.1.1' pyopenssl; }

MODEL="$WORK/model-${GIB}g"
if [ ! -d "$MODEL" ]; then
  mkdir -p "$MODEL/tokenizer"
  # Shards of 1 GiB, the last one partial when GIB is not whole.
  i=0
  left=$((GIB * 1024))
  while [ "$left" -gt 0 ]; do
    n=$(( left < 1024 ? left : 1024 ))
    i=$((i + 1))
    head -c "$((n * 1024 * 1024))" /dev/urandom > "$MODEL/model-0000$i-of-shards.safetensors"
    left=$((left - n))
  done
  echo '{"architectures":["LlamaForCausalLM"],"hidden_size":4096}' > "$MODEL/config.json"
  head -c 2000000 /dev/urandom | base64 > "$MODEL/tokenizer/tokenizer.json"
  for f in generation_config.json special_tokens_map.json tokenizer_config.json; do echo '{}' > "$MODEL/$f"; done
fi
[ -f "$WORK/key.pem" ] || "$BIN" models keygen --out "$WORK/key.pem" --force 2>/dev/null
SIZE=$(du -sb "$MODEL" | cut -f1)
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p' | head -1), $(free -g | awk '/Mem:/{print $2}') GiB RAM; $(date -u +%F)"
echo "model: $SIZE bytes in $(find "$MODEL" -type f | wc -l) files"
cat "$MODEL"/* > /dev/null 2>&1 || true

t() { local s e; s=$(date +%s.%N); "$@" > /dev/null 2> "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -a C M
for r in $(seq "$RUNS"); do
  C+=("$(t "$BIN" models sign "$MODEL" --key "$WORK/key.pem" --signature "$WORK/custos.sig")")
  M+=("$(t "$VENV/bin/model_signing" sign key "$MODEL" --private_key "$WORK/key.pem" --signature "$WORK/ms.sig")")
  S="$(t "$BIN" models sign "$MODEL" --key "$WORK/key.pem" --signature "$WORK/custos-shards.sig" --shard-size 268435456)"
  echo "run $r: custos ${C[-1]} s, model_signing ${M[-1]} s, custos --shard-size 256MiB $S s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mc=$(median "${C[@]}"); mm=$(median "${M[@]}")
echo "median: custos $mc s ($(echo "$SIZE / $mc / 1048576" | bc) MiB/s), model_signing $mm s ($(echo "$SIZE / $mm / 1048576" | bc) MiB/s); model_signing/custos = $(echo "scale=2; $mm / $mc" | bc)"
# Cold cache (when this user may drop the page cache): the disk's speed is then the bound;
# `cat` of the same files, two readers, shows what the disk gives.
if (sync && echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
  c=$(t "$BIN" models sign "$MODEL" --key "$WORK/key.pem" --signature "$WORK/custos.sig")
  sync; echo 3 > /proc/sys/vm/drop_caches
  m=$(t "$VENV/bin/model_signing" sign key "$MODEL" --private_key "$WORK/key.pem" --signature "$WORK/ms.sig")
  sync; echo 3 > /proc/sys/vm/drop_caches
  s=$(date +%s.%N)
  files=("$MODEL"/*.safetensors); half=$(( ${#files[@]} / 2 ))
  cat "${files[@]:0:$half}" > /dev/null & cat "${files[@]:$half}" > /dev/null; wait
  d=$(echo "$(date +%s.%N) - $s" | bc)
  echo "cold cache: custos $c s, model_signing $m s; reading the weights with two cat processes $d s"
fi
# Both sign the same manifest: the digests must agree.
python3 - "$WORK/custos.sig" "$WORK/ms.sig" <<'PY'
import base64, json, sys
d = [json.loads(base64.b64decode(json.load(open(p))["dsseEnvelope"]["payload"]))["subject"][0]["digest"]["sha256"] for p in sys.argv[1:]]
print("same manifest digest:", d[0] == d[1], d[0])
PY
"$VENV/bin/model_signing" verify key "$MODEL" --signature "$WORK/custos.sig" --public_key "$WORK/key.pem.pub"
