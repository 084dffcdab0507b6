"""Summarizes bench/gateway/peers.sh: one Markdown table, ratios against nginx and LiteLLM.

Usage: peers_summary.py WORK ROW...
"""
import json
import os
import pathlib
import re
import sys

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}
TICKS = os.sysconf("SC_CLK_TCK")


def wrk(path):
    """Requests/s, p50 and p99 in µs, and non-2xx count from wrk --latency output."""
    text = path.read_text()
    pct = {}
    for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        pct[m.group(1)] = float(m.group(2)) * UNITS[m.group(3)]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {
        "rps": rps,
        "p50": pct.get("50"),
        "p99": pct.get("99"),
        "bad": int(bad.group(1)) if bad else 0,
        "socket": errors.group(0) if errors else "",
    }


def wrk_calls(path):
    """How many calls a wrk run completed."""
    m = re.search(r"(\d+) requests in", path.read_text())
    return int(m.group(1)) if m else 0


def oha(path):
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    p = d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    return {
        "rps": d["summary"]["requestsPerSec"],
        "p50": p["p50"] * 1e6,
        "p99": p["p99"] * 1e6,
        "ok": ok,
        "all": sum(codes.values()),
    }


def fmt(us):
    if us is None:
        return "–"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def main():
    work = pathlib.Path(sys.argv[1])
    rows = sys.argv[2:]
    res = {}
    for row in rows:
        res[row] = {
            "c1": wrk(work / f"{row}-c1.txt"),
            "c32": wrk(work / f"{row}-c32.txt"),
            "paced": oha(work / f"{row}-paced.json"),
        }
        ticks = work / f"{row}-c32.cpu"
        calls = wrk_calls(work / f"{row}-c32.txt")
        res[row]["cpu"] = (
            int(ticks.read_text()) * 1e6 / TICKS / calls if ticks.exists() and calls else None
        )
    print(
        "| path | c=1 p50 | c=1 p99 | c=32 req/s | CPU per call at c=32 "
        "| 1,000 req/s paced p50 / p99 | non-2xx |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        r = res[row]
        paced = r["paced"]
        paced_s = f"{fmt(paced['p50'])} / {fmt(paced['p99'])}" if paced else "–"
        bad = r["c1"]["bad"] + r["c32"]["bad"]
        if paced:
            bad += paced["all"] - paced["ok"]
        print(
            f"| {row} | {fmt(r['c1']['p50'])} | {fmt(r['c1']['p99'])} | "
            f"{r['c32']['rps']:,.0f} | {fmt(r['cpu'])} | {paced_s} | {bad} |"
        )
    print()
    direct = res.get("direct")
    nginx = res.get("nginx")
    if direct and nginx:
        nginx_added = nginx["c1"]["p50"] - direct["c1"]["p50"]
        print(f"- nginx adds {nginx_added:.0f} µs at p50, one connection")
        for row in rows:
            if not row.startswith("custos"):
                continue
            r = res[row]
            added = r["c1"]["p50"] - direct["c1"]["p50"]
            share = r["c32"]["rps"] / nginx["c32"]["rps"] * 100
            line = (
                f"- {row}: adds {added:.0f} µs at p50 ({added - nginx_added:+.0f} µs beside "
                f"nginx; target ≤ +40), p99 {fmt(r['c1']['p99'])} at one connection "
                f"(target ≤ 500 µs), {share:.0f}% of nginx's throughput (target ≥ 50%)"
            )
            if r["cpu"] and nginx.get("cpu"):
                line += f", {fmt(r['cpu'])} of CPU per call (nginx {fmt(nginx['cpu'])})"
            if r["paced"]:
                line += f", paced p99 {fmt(r['paced']['p99'])} (target ≤ 1 ms)"
            if "litellm" in res:
                line += f", {r['c32']['rps'] / res['litellm']['c32']['rps']:.0f}× LiteLLM"
            mem = work / f"{row}-memory.txt"
            if mem.exists() and mem.read_text().strip():
                line += f"; peak RSS {mem.read_text().split()[1]} kB"
            print(line)
    for row in rows:
        for load in ("c1", "c32"):
            if res[row][load]["socket"]:
                print(f"- {row} {load}: {res[row][load]['socket']}")


if __name__ == "__main__":
    main()
