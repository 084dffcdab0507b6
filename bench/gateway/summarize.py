"""Summarizes a bench/gateway/run.sh result folder as Markdown."""
import json
import pathlib
import re
import statistics
import sys

work = pathlib.Path(sys.argv[1])


def oha(name):
    d = json.loads((work / f"{name}.json").read_text())
    s = d["summary"]
    p = d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values())
    return {
        "rps": s["requestsPerSec"],
        "p50": p["p50"] * 1e6,
        "p99": p["p99"] * 1e6,
        "ok": ok,
        "total": total,
    }


print("| load | path | achieved req/s | p50 µs | p99 µs | 2xx / all |")
print("|---|---|---:|---:|---:|---:|")
rows = {}
for load in ["1000", "5000", "max"]:
    for path in ["direct", "floor", "custos"]:
        if not (work / f"{path}-{load}.json").exists():
            continue
        r = oha(f"{path}-{load}")
        rows[(load, path)] = r
        print(f"| {load} | {path} | {r['rps']:.0f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['ok']} / {r['total']} |")
print()
for load in ["1000", "5000"]:
    d, c = rows[(load, "direct")], rows[(load, "custos")]
    line = f"- at {load} req/s custos adds p50 {c['p50'] - d['p50']:.0f} µs, p99 {c['p99'] - d['p99']:.0f} µs"
    if (load, "floor") in rows:
        f = rows[(load, "floor")]
        line += f" (a do-nothing forwarder adds p50 {f['p50'] - d['p50']:.0f} µs, p99 {f['p99'] - d['p99']:.0f} µs)"
    print(line)
d, c = rows[("max", "direct")], rows[("max", "custos")]
line = f"- maximum throughput through custos: {c['rps']:.0f} req/s = {100 * c['rps'] / d['rps']:.0f}% of direct ({d['rps']:.0f} req/s)"
if ("max", "floor") in rows:
    f = rows[("max", "floor")]
    line += f"; the do-nothing forwarder: {f['rps']:.0f} req/s = {100 * f['rps'] / d['rps']:.0f}% of direct, so custos keeps {100 * c['rps'] / f['rps']:.0f}% of what any proxy can get here"
print(line)

wrk = work / "wrk-idem.txt"
if wrk.exists():
    text = wrk.read_text()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = re.search(r"50%\s+(\S+)", text)
    lat99 = re.search(r"99%\s+(\S+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx:
        print(f"- WARNING: the wrk run got {non2xx.group(1)} non-2xx responses; its figures are not valid")
    if m:
        print(f"- with a unique Idempotency-Key per request (wrk, 64 connections): {float(m.group(1)):.0f} req/s, p50 {lat.group(1) if lat else '?'}, p99 {lat99.group(1) if lat99 else '?'}")


def ttfb(name):
    v = sorted(float(x) * 1e6 for x in (work / f"ttfb-{name}.txt").read_text().split())
    return statistics.median(v), v[int(len(v) * 0.99) - 1]


d50, d99 = ttfb("direct")
c50, c99 = ttfb("custos")
print(f"- streaming time to first byte (curl, sequential): direct p50 {d50:.0f} µs / p99 {d99:.0f} µs; through custos p50 {c50:.0f} µs / p99 {c99:.0f} µs (adds {c50 - d50:.0f} µs at p50)")

mem = dict(line.split(":", 1) for line in (work / "memory.txt").read_text().splitlines())
print(f"- custos resident memory: peak {mem['VmHWM'].strip()}, after the runs {mem['VmRSS'].strip()}")

metrics = (work / "metrics.txt").read_text()
buckets = [(float(le), int(v)) for le, v in re.findall(r'custos_overhead_seconds_bucket\{route="/v1/chat/completions",le="([\d.e-]+)"\} (\d+)', metrics)]
count = re.search(r'custos_overhead_seconds_count\{route="/v1/chat/completions"\} (\d+)', metrics)
if buckets and count:
    n = int(count.group(1))
    def q(frac):
        for le, v in buckets:
            if v >= frac * n:
                return le * 1e6
        return float("inf")
    print(f"- custos' own histogram of the time it adds (`custos_overhead_seconds`, {n} requests): p50 ≤ {q(0.5):.0f} µs, p99 ≤ {q(0.99):.0f} µs (bucket bounds)")
