"""Compares custos iac scan and Checkov findings (see run.sh): per custos rule, which tool
flags the failing and the passing set, Checkov through the checks covering the same control."""
import json
import sys
from collections import defaultdict
from pathlib import Path

# custos rule -> the Checkov checks that cover the same control.
CHECKOV = {
    "CUSTOS-AWS-001": ["CKV_AWS_19", "CKV_AWS_145"],
    "CUSTOS-AWS-002": ["CKV_AWS_3"],
    "CUSTOS-AWS-003": ["CKV_AWS_8"],
    "CUSTOS-AWS-004": ["CKV_AWS_16", "CKV_AWS_96"],
    "CUSTOS-AWS-010": ["CKV_AWS_103"],
    "CUSTOS-AWS-011": ["CKV_AWS_2"],
    "CUSTOS-AWS-012": ["CKV_AWS_174"],
    "CUSTOS-AWS-020": ["CKV_AWS_24", "CKV_AWS_25", "CKV_AWS_260", "CKV_AWS_277"],
    "CUSTOS-AWS-021": ["CKV_AWS_24", "CKV_AWS_25", "CKV_AWS_260", "CKV_AWS_277"],
    "CUSTOS-AWS-022": ["CKV_AWS_24", "CKV_AWS_25", "CKV_AWS_260", "CKV_AWS_277"],
    "CUSTOS-AWS-023": ["CKV_AWS_38", "CKV_AWS_39"],
    "CUSTOS-AWS-024": ["CKV_AWS_88"],
    "CUSTOS-AWS-025": ["CKV_AWS_88"],
    "CUSTOS-AWS-030": ["CKV_AWS_20", "CKV_AWS_57"],
    "CUSTOS-AWS-031": ["CKV_AWS_53", "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56"],
    "CUSTOS-K8S-001": ["CKV_K8S_23", "CKV_K8S_40"],
    "CUSTOS-K8S-002": ["CKV_K8S_22"],
    "CUSTOS-K8S-003": ["CKV_K8S_28", "CKV_K8S_37"],
    "CUSTOS-K8S-004": ["CKV_K8S_31"],
    "CUSTOS-K8S-005": ["CKV_K8S_11", "CKV_K8S_13"],
    "CUSTOS-K8S-006": ["CKV_K8S_16"],
    "CUSTOS-K8S-007": ["CKV_K8S_20"],
    "CUSTOS-K8S-008": ["CKV_K8S_17", "CKV_K8S_19"],
    "CUSTOS-DOCKER-001": ["CKV_DOCKER_3", "CKV_DOCKER_8"],
    "CUSTOS-DOCKER-002": ["CKV_DOCKER_7"],
    "CUSTOS-DOCKER-003": ["CKV_DOCKER_4"],
    "CUSTOS-COST-001": [],
}


def checkov_failed(path):
    text = Path(path).read_text() or "[]"
    data = json.loads(text)
    reports = data if isinstance(data, list) else [data]
    out = defaultdict(set)
    for r in reports:
        for f in r.get("results", {}).get("failed_checks", []):
            out[f["check_id"]].add((f.get("file_path", "").lstrip("/"), f.get("resource", "")))
    return out


def custos_failed(path):
    out = defaultdict(set)
    for f in json.loads(Path(path).read_text())["findings"]:
        out[f["rule_id"]].add((f["file"], f["resource"]))
    return out


def main(out):
    out = Path(out)
    c = {s: custos_failed(out / f"custos-{s}.json") for s in ("fail", "pass")}
    k = {s: checkov_failed(out / f"checkov-{s}.json") for s in ("fail", "pass")}
    print(f"checkov {(out / 'checkov.version').read_text().strip()}")
    print("| custos rule | Checkov checks | custos on fail set | Checkov on fail set | custos on pass set | Checkov on pass set |")
    print("|---|---|---|---|---|---|")
    for rule, checks in CHECKOV.items():
        kf = sorted({x for ch in checks for x in k["fail"].get(ch, ())})
        kp = sorted({x for ch in checks for x in k["pass"].get(ch, ())})
        fired = lambda d: ", ".join(sorted(ch for ch in checks if d.get(ch))) or "-"
        print(f"| {rule} | {', '.join(checks) or '(none)'} | {len(c['fail'].get(rule, ()))} | "
              f"{len(kf)} ({fired(k['fail'])}) | {len(c['pass'].get(rule, ()))} | {len(kp)} ({fired(k['pass'])}) |")
    mapped = {ch for checks in CHECKOV.values() for ch in checks}
    for s in ("fail", "pass"):
        other = sorted((ch, len(v)) for ch, v in k[s].items() if ch not in mapped)
        print(f"\nCheckov checks outside the mapping that fail on the {s} set ({len(other)}): "
              + ", ".join(f"{ch}×{n}" for ch, n in other))


if __name__ == "__main__":
    main(sys.argv[1])
