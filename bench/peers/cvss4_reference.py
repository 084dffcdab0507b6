# Writes CVSS v4.0 vectors and their reference scores: `all` (every base vector) or `random N FILE SEED`
# (base plus random threat and environmental metrics). Used by cvss.sh.
import sys, random, itertools
# Run with the interpreter of a venv that has Red Hat's cvss package (cvss.sh makes one).
from cvss import CVSS4
from cvss.constants4 import METRICS_VALUE_NAMES as M
mode, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = ["AV","AC","AT","PR","UI","VC","VI","VA","SC","SI","SA"]
lines=[]
if mode == "all":
    for combo in itertools.product(*[list(M[k].keys()) for k in base]):
        v = "CVSS:4.0/" + "/".join(f"{k}:{x}" for k,x in zip(base, combo))
        lines.append(f"{v} {CVSS4(v).base_score}")
else:
    rnd = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 7)
    opt = [k for k in M if k not in base]
    for _ in range(n):
        parts = [f"{k}:{rnd.choice(list(M[k].keys()))}" for k in base]
        for k in opt:
            if rnd.random() < 0.35:
                parts.append(f"{k}:{rnd.choice(list(M[k].keys()))}")
        v = "CVSS:4.0/" + "/".join(parts)
        lines.append(f"{v} {CVSS4(v).base_score}")
open(out,"w").write("\n".join(lines)+"\n")
