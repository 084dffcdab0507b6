"""Presidio's pattern recognizers with a no-op NLP engine (no spaCy model can be
installed here) over a text file and a labeled set: throughput and findings.
Usage: presidio_run.py TEXT_FILE SAMPLES_JSON OUT_JSON"""
import json, sys, time
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngine, NlpArtifacts


class NoOpNlpEngine(NlpEngine):
    def load(self): pass
    def is_loaded(self): return True
    def process_text(self, text, language):
        return NlpArtifacts(entities=[], tokens=[], tokens_indices=[], lemmas=[], nlp_engine=self, language=language)
    def process_batch(self, texts, language, **kw):
        for t in texts:
            yield t, self.process_text(t, language)
    def is_stopword(self, word, language): return False
    def is_punct(self, word, language): return False
    def get_supported_entities(self): return []
    def get_supported_languages(self): return ["en"]


registry = RecognizerRegistry()
registry.load_predefined_recognizers()
engine = AnalyzerEngine(registry=registry, nlp_engine=NoOpNlpEngine(), supported_languages=["en"])
text = open(sys.argv[1], encoding="utf-8").read()
engine.analyze(text="warm up 212-555-0147", language="en")
# Presidio's cost grows with text length per call; analyze line by line as users do.
lines = text.splitlines()
t0 = time.perf_counter()
n = 0
for line in lines:
    n += len(engine.analyze(text=line, language="en"))
dt = time.perf_counter() - t0
samples = json.load(open(sys.argv[2]))
preds = []
for s in samples:
    rs = engine.analyze(text=s["full_text"], language="en", score_threshold=0.5)
    preds.append([{"entity_type": r.entity_type, "start": r.start, "end": r.end} for r in rs])
json.dump({"bytes": len(text.encode()), "seconds": dt, "findings": n, "predictions": preds}, open(sys.argv[3], "w"))
print(f"presidio: {len(text.encode())/dt/1e6:.3f} MB/s over {len(lines)} lines, {n} findings")
