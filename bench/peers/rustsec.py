# Writes one set of advisories in two forms for a side-by-side run: a RustSec advisory-db
# (crates/<name>/RUSTSEC-*.md, for cargo-audit) and the same advisories as OSV records (as
# RustSec's own OSV export writes them: SEMVER ranges, informational kind in
# database_specific), for custos. Advisories target packages of the given Cargo.lock files,
# with version requirements placed around the locked versions so that boundaries are tested.
# Also writes the expected (package, version, advisory) hits by its own interval arithmetic.
# Usage: rustsec.py OUT_DIR SEED Cargo.lock...
import json, os, random, re, sys

out, seed, locks = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rnd = random.Random(seed)

packages = {}  # name -> set of versions
registry = set()  # (name, version) from crates.io: path and git packages match no advisory
for lock in locks:
    for block in open(lock, encoding="utf-8").read().split("[[package]]")[1:]:
        fields = dict(re.findall(r'^(name|version|source) = "(.+)"$', block, re.M))
        if "name" in fields and "version" in fields:
            packages.setdefault(fields["name"], set()).add(fields["version"])
            if fields.get("source", "").startswith("registry+"):
                registry.add((fields["name"], fields["version"]))


def parse(v):
    core, _, pre = v.split("+")[0].partition("-")
    parts = [int(x) for x in core.split(".")]
    return tuple(parts), pre


def fmt(t):
    return ".".join(str(x) for x in t)


def caret_upper(t):
    a, b, c = t
    if a > 0:
        return (a + 1, 0, 0)
    if b > 0:
        return (0, b + 1, 0)
    return (0, 0, c + 1)


INF = (10**9, 0, 0)
ZERO = (0, 0, 0)


def interval(req):
    """A requirement as a half-open interval [lo, hi) of release versions."""
    kind, x, y = req
    if kind == ">=":
        return (x, INF)
    if kind == "^":
        return (x, caret_upper(x))
    if kind == "~":
        return (x, (x[0], x[1] + 1, 0))
    if kind == "<":
        return (ZERO, x)
    if kind == "range":
        return (x, y)
    raise ValueError(kind)


def text(req):
    kind, x, y = req
    if kind == "range":
        return f">= {fmt(x)}, < {fmt(y)}"
    if kind == ">=":
        return f">= {fmt(x)}"
    if kind == "<":
        return f"< {fmt(x)}"
    return f"{kind}{fmt(x)}"


def around(t):
    a, b, c = t
    near = [t, (a, b, c + 1), (a, b + 1, 0), (a + 1, 0, 0)]
    if c > 0:
        near.append((a, b, c - 1))
    if b > 0:
        near.append((a, b - 1, 0))
    if a > 0:
        near.append((a - 1, 0, 0))
    return near


def make_req(t):
    kind = rnd.choice([">=", ">=", "^", "^", "~", "<", "range"])
    x = rnd.choice(around(t))
    if kind == "range":
        y = rnd.choice([v for v in around(t) if v > x] or [INF])
        return (kind, x, y)
    return (kind, x, None)


VECTORS = [
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H",
    "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
]

advisories = []
n = 0
names = sorted(packages)
for name in names:
    if rnd.random() > 0.5:
        continue
    versions = sorted(packages[name])
    base = parse(rnd.choice(versions))[0]
    if len(base) != 3:
        continue
    for _ in range(rnd.choice([1, 1, 2])):
        n += 1
        # RustSec refuses requirements whose ranges overlap: draw until they do not.
        chosen = []
        for _ in range(rnd.choice([0, 1, 1, 2, 2, 3])):
            for _attempt in range(20):
                r = make_req(base)
                lo, hi = interval(r)
                if lo < hi and all(hi <= a or lo >= b for a, b in map(interval, chosen)):
                    chosen.append(r)
                    break
        cut = rnd.randrange(len(chosen) + 1)
        patched, unaffected = chosen[:cut], chosen[cut:]
        informational = rnd.choice([None] * 8 + ["unmaintained", "unsound"])
        withdrawn = rnd.random() < 0.04
        advisories.append(
            dict(
                id=f"RUSTSEC-2099-{n:04d}",
                package=name,
                patched=patched,
                unaffected=unaffected,
                informational=informational,
                withdrawn=withdrawn,
                cvss=None if informational else rnd.choice(VECTORS + [None]),
                alias=f"CVE-2099-{n:05d}" if rnd.random() < 0.5 else None,
            )
        )

# Pre-releases of advisory crates, in a lockfile of their own: SemVer orders 1.2.0-rc.1
# before 1.2.0, while Cargo's requirement matching never lets `>= 1.0.0` match a pre-release.
pre_lock = os.path.join(out, "prerelease", "Cargo.lock")
os.makedirs(os.path.dirname(pre_lock), exist_ok=True)
with open(pre_lock, "w") as f:
    f.write("version = 3\n")
    for name in sorted({a["package"] for a in advisories}):
        base = parse(sorted(packages[name])[0])[0]
        if len(base) != 3:
            continue
        a, b, c = base
        for v in [f"{a}.{b}.{c}-alpha.1", f"{a}.{b}.{c + 1}-rc.1", f"{a}.{b + 1}.0-beta"]:
            packages[name].add(v)
            registry.add((name, v))
            f.write(f'\n[[package]]\nname = "{name}"\nversion = "{v}"\n'
                    'source = "registry+https://github.com/rust-lang/crates.io-index"\n')


def inside(v, lo, hi):
    """SemVer order: a pre-release sorts before its release."""
    t, pre = parse(v)
    above = t > lo or (t == lo and not pre)
    below = t < hi or (t == hi and bool(pre))
    return above and below


db = os.path.join(out, "advisory-db")
osv = os.path.join(out, "osv")
os.makedirs(osv, exist_ok=True)
expected = []
for a in advisories:
    d = os.path.join(db, "crates", a["package"])
    os.makedirs(d, exist_ok=True)
    toml = [
        "```toml",
        "[advisory]",
        f'id = "{a["id"]}"',
        f'package = "{a["package"]}"',
        'date = "2099-01-01"',
        f'url = "https://example.invalid/{a["id"]}"',
    ]
    if a["alias"]:
        toml.append(f'aliases = ["{a["alias"]}"]')
    if a["cvss"]:
        toml.append(f'cvss = "{a["cvss"]}"')
    if a["informational"]:
        toml.append(f'informational = "{a["informational"]}"')
    if a["withdrawn"]:
        toml.append('withdrawn = "2099-02-01"')
    toml += [
        "",
        "[versions]",
        "patched = [" + ", ".join(f'"{text(r)}"' for r in a["patched"]) + "]",
        "unaffected = [" + ", ".join(f'"{text(r)}"' for r in a["unaffected"]) + "]",
        "```",
        "",
        f"# Synthetic advisory {a['id']} for {a['package']}",
        "",
        "Written by bench/peers/rustsec.py for a side-by-side run.",
        "",
    ]
    open(os.path.join(d, a["id"] + ".md"), "w").write("\n".join(toml))

    # Not affected: the union of patched and unaffected; affected: its complement.
    safe = sorted(interval(r) for r in a["patched"] + a["unaffected"])
    merged = []
    for lo, hi in safe:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    events, cursor = [], ZERO
    for lo, hi in merged:
        if lo > cursor:
            events += [{"introduced": fmt(cursor) if cursor != ZERO else "0"}, {"fixed": fmt(lo)}]
        cursor = max(cursor, hi)
    if cursor < INF:
        events.append({"introduced": fmt(cursor) if cursor != ZERO else "0"})
    record = {
        "schema_version": "1.5.0",
        "id": a["id"],
        "modified": "2099-01-01T00:00:00Z",
        "published": "2099-01-01T00:00:00Z",
        "aliases": [a["alias"]] if a["alias"] else [],
        "summary": f"Synthetic advisory {a['id']} for {a['package']}",
        "severity": [{"type": "CVSS_V3", "score": a["cvss"]}] if a["cvss"] else [],
        "affected": [
            {
                "package": {"ecosystem": "crates.io", "name": a["package"], "purl": f"pkg:cargo/{a['package']}"},
                "ranges": [{"type": "SEMVER", "events": events}] if events else [],
            }
        ],
        "database_specific": {"informational": a["informational"], "categories": [], "cvss": a["cvss"]},
    }
    if a["withdrawn"]:
        record["withdrawn"] = "2099-02-01T00:00:00Z"
    if not events:
        record["affected"][0]["versions"] = []
    json.dump(record, open(os.path.join(osv, a["id"] + ".json"), "w"))
    if a["withdrawn"]:
        continue
    for v in sorted(packages[a["package"]]):
        if len(parse(v)[0]) != 3 or (a["package"], v) not in registry:
            continue
        if not any(inside(v, lo, hi) for lo, hi in merged):
            expected.append({"id": a["id"], "package": a["package"], "version": v,
                             "informational": a["informational"]})
json.dump(expected, open(os.path.join(out, "expected.json"), "w"), indent=1)
print(f"{len(advisories)} advisories over {len(names)} crates; {len(expected)} expected hits")
