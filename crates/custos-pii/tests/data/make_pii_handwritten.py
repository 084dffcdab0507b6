"""Turns pii_handwritten.txt ({{TYPE|text}} markup) into Presidio evaluator JSON.

python3 make_pii_handwritten.py  (writes pii_handwritten.json beside it)
"""
import json, os, re

here = os.path.dirname(os.path.abspath(__file__))
MARK = re.compile(r"\{\{([A-Z_]+)\|(.*?)\}\}")
samples = []
for line in open(os.path.join(here, "pii_handwritten.txt"), encoding="utf-8"):
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        continue
    text, spans, at = "", [], 0
    for m in MARK.finditer(line):
        text += line[at:m.start()]
        start = len(text)
        text += m.group(2)
        spans.append({"entity_type": m.group(1), "entity_value": m.group(2),
                      "start_position": start, "end_position": len(text)})
        at = m.end()
    text += line[at:]
    samples.append({"full_text": text, "spans": spans})
with open(os.path.join(here, "pii_handwritten.json"), "w", encoding="utf-8") as f:
    json.dump(samples, f, ensure_ascii=False, indent=1)
print(len(samples), "samples,", sum(len(s["spans"]) for s in samples), "spans")
