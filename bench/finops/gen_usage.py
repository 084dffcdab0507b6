"""Fills a custos SQLite database with N gateway-shaped usage records spread over a month.

usage: gen_usage.py DB N YYYY-MM
The database must already carry custos' schema (run any custos command against it first).
Deterministic (seeded), so runs compare.
"""
import random
import sqlite3
import sys
import time

db, n, month = sys.argv[1], int(sys.argv[2]), sys.argv[3]
y, m = map(int, month.split("-"))
start = int(time.mktime((y, m, 1, 0, 0, 0, 0, 0, 0)) - time.timezone) * 1000
span = 28 * 86_400_000
random.seed(7)
teams = [f"team{i:02d}" for i in range(20)]
apps = [f"app{i:02d}" for i in range(10)]
models = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "claude-sonnet-4", "text-embedding-3-small", "o3-mini"]
conn = sqlite3.connect(db)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=OFF")
cols = ("id, at, source, tenant, team, app, env, key_id, provider, model, region, input_tokens, "
        "cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, images, duration_ms, "
        "compute_ms, calls, documents, latency_ms, cost_nanos, currency, priced, energy_mwh, co2e_mg, tags, "
        "untagged, request_id, status, detail")
sql = f"INSERT INTO usage_records ({cols}) VALUES ({', '.join('?' * 32)})"


def rows(lo, hi):
    for i in range(lo, hi):
        t = random.randrange(len(teams))
        inp = random.randrange(50, 4000)
        out = random.randrange(10, 800)
        cost = inp * 2500 // 1000 + out * 10000 // 1000
        yield (f"use_{i:012d}", start + (i * span) // n, "gateway", "acme", teams[t],
               apps[(t + i) % len(apps)], "prod" if i % 3 else "dev", f"key_{t:04d}", "openai",
               models[i % len(models)], "us-east", inp, inp // 4, 0, out, out // 8, 0, 0, 0, 1, 0,
               random.randrange(100, 3000), cost, "USD", 1, 0, 0,
               '{"Project":"p%d"}' % (t % 5), 0, None, 200, None)


step = 200_000
t0 = time.time()
for lo in range(0, n, step):
    conn.executemany(sql, rows(lo, min(n, lo + step)))
    conn.commit()
    print(f"  {min(n, lo + step):,} records ({time.time() - t0:.0f} s)", file=sys.stderr)
conn.close()
