#!/usr/bin/env bash
# Cost telemetry at scale: a showback report over N usage records (custos on SQLite against
# DuckDB on the same records as Parquet, in one run), and ingest of M FOCUS billing rows from
# Parquet and from CSV, with peak memory.
# Usage: bench/finops/run.sh [RECORDS] [BILLING_ROWS]   (default 10000000 10000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-10000000}"
M="${2:-10000000}"
WORK="${TMPDIR:-/tmp}/custos-finops-bench"
rm -rf "$WORK" && mkdir -p "$WORK/usage" "$WORK/billing"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN="$CARGO_TARGET_DIR/release/custos"
VENV="$WORK/venv"
python3 -m venv "$VENV" && "$VENV/bin/pip" install -q duckdb
PY="$VENV/bin/python"
secs() { local s; s=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $s" | bc; }

echo "== report over $N usage records"
(cd "$WORK/usage" && "$BIN" budgets list > /dev/null 2>&1)
python3 bench/finops/gen_usage.py "$WORK/usage/.custos/custos.db" "$N" 2026-10 2> /dev/null
# The rollup of records written behind custos' back is rebuilt as an upgrade would.
sqlite3_rebuild() {
  python3 - "$1" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("DELETE FROM usage_daily")
c.execute("""INSERT INTO usage_daily SELECT at / 86400000, tenant, team, app, env, key_id, provider, model, region,
 source, currency, tags, COUNT(*), SUM(calls), SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens),
 SUM(output_tokens), SUM(reasoning_tokens), SUM(documents), SUM(compute_ms), SUM(cost_nanos), SUM(1 - priced),
 SUM(untagged), SUM(untagged * cost_nanos), SUM(energy_mwh), SUM(co2e_mg) FROM usage_records
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12""")
c.commit()
PY
}
sqlite3_rebuild "$WORK/usage/.custos/custos.db"
cd "$WORK/usage"
for i in 1 2 3; do echo "custos cost report --by team,app,model (rollup): $(secs "$BIN" cost report --by team,app,model --period 2026-10) s"; done
# The same report with a day grouping in a zone east of UTC reads the records themselves.
printf '[finops]\ntime_zone = "Asia/Kolkata"\n' > custos.toml
echo "custos cost report --by team,day in Asia/Kolkata (records): $(secs "$BIN" cost report --by team,day --since 2026-10-01T00:00:00Z --until 2026-10-29T00:00:00Z) s"
rm custos.toml
cd - > /dev/null
"$PY" - "$WORK/usage/.custos/custos.db" "$WORK/usage/usage.parquet" <<'PY'
import sqlite3, sys, duckdb, time
db, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
src = sqlite3.connect(db)
cur = src.execute("SELECT at, team, app, model, calls, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos FROM usage_records")
import csv, os
tmp = out + ".csv"
with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["at", "team", "app", "model", "calls", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cost_nanos"])
    while True:
        rows = cur.fetchmany(100_000)
        if not rows:
            break
        w.writerows(rows)
con.execute(f"COPY (SELECT * FROM read_csv('{tmp}')) TO '{out}' (FORMAT parquet)")
os.remove(tmp)
q = f"""SELECT team, app, model, SUM(cost_nanos) AS cost, SUM(calls), SUM(input_tokens + cached_input_tokens + output_tokens + reasoning_tokens)
        FROM '{out}' WHERE "at" >= 1790812800000 AND "at" < 1793491200000 GROUP BY 1, 2, 3 ORDER BY cost DESC"""
for i in range(3):
    t = time.time(); con.execute(q).fetchall(); print(f"duckdb {duckdb.__version__} same report over Parquet: {time.time() - t:.3f} s")
PY

echo "== ingest of $M FOCUS rows"
python3 bench/finops/gen_focus.py "$WORK/billing/focus.csv" "$M"
"$PY" -c "import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_csv('$WORK/billing/focus.csv')) TO '$WORK/billing/focus.parquet' (FORMAT parquet, COMPRESSION snappy)\")"
ls -la "$WORK/billing"
for f in focus.parquet focus.csv; do
  rm -rf "$WORK/billing/db" && mkdir "$WORK/billing/db"
  (cd "$WORK/billing/db" && /usr/bin/time -f "custos cost ingest $f: %e s, peak RSS %M KB" "$BIN" cost ingest "../$f" 2>&1 | tail -2)
done
