# Writes N random CVSS v3.x and N random v2 vectors with their reference scores. Used by cvss.sh.
import sys, random
# Run with the interpreter of a venv that has Red Hat's cvss package (cvss.sh makes one).
from cvss import CVSS3, CVSS2
rnd = random.Random(int(sys.argv[2]))
n = int(sys.argv[1])
v3b = [("AV","NALP"),("AC","LH"),("PR","NLH"),("UI","NR"),("S","UC"),("C","HLN"),("I","HLN"),("A","HLN")]
v3o = [("E","XUPFH"),("RL","XOTWU"),("RC","XURC"),("CR","XLMH"),("MAV","XNALP")]
v2b = [("AV","LAN"),("AC","HML"),("Au","MSN"),("C","NPC"),("I","NPC"),("A","NPC")]
out=[]
for i in range(n):
    p = [f"{k}:{rnd.choice(v)}" for k,v in v3b]
    if rnd.random()<0.3:
        p += [f"{k}:{rnd.choice(v)}" for k,v in v3o if rnd.random()<0.5]
    v = f"CVSS:3.{rnd.choice('01')}/" + "/".join(p)
    out.append(f"{v} {CVSS3(v).base_score}")
for i in range(n):
    p = [f"{k}:{rnd.choice(v)}" for k,v in v2b]
    v = "/".join(p)
    out.append(f"{v} {CVSS2(v).base_score}")
open(sys.argv[3],"w").write("\n".join(out)+"\n")
