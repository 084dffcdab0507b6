//! A statistical tagger for PERSON, LOCATION and ORGANIZATION: a greedy averaged perceptron
//! over hashed word, shape, affix, gazetteer and previous-tag features, whose weights ship in
//! `data/tagger.bin.gz` (how they were trained, on what and under which licences: `data/README.md`).
//!
//! It finds what lists and rules cannot: organizations without a legal form, names and places
//! the gazetteers lack, told apart by the words around them. Inference is a few hundred
//! additions per word and allocates only for capitalized words.

use std::io::Read;
use std::ops::Range;
use std::sync::OnceLock;

use crate::names::Gazetteers;

/// The labels, in weight order: outside, then begin/inside of each entity.
pub const LABELS: [&str; 7] = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"];
const N: usize = LABELS.len();
/// The entity each label's span is reported as (none for `O`).
const ENTITY: [&str; 4] = ["", "PERSON", "LOCATION", "ORGANIZATION"];
const MAGIC: &[u8; 8] = b"CUSTNER1";

/// One word or punctuation mark of the text.
#[derive(Clone, Debug)]
pub struct Token {
    pub span: Range<usize>,
    /// FNV-1a of the lower-cased token.
    lower: u64,
    shape: u64,
    prefix: u64,
    suffix: u64,
    /// Gazetteer and form bits (see the `F_` constants).
    flags: u32,
}

const F_CAP: u32 = 1;
const F_UPPER: u32 = 1 << 1;
const F_START: u32 = 1 << 2;
const F_FIRST: u32 = 1 << 3;
const F_LAST: u32 = 1 << 4;
const F_PLACE: u32 = 1 << 5;
const F_ORG: u32 = 1 << 6;
const F_WORD: u32 = 1 << 7;
const F_PUNCT: u32 = 1 << 8;
const F_DIGIT: u32 = 1 << 9;
/// A line break before the token: entities do not run across it.
const F_NL: u32 = 1 << 10;

const FNV: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_char(h: u64, c: char) -> u64 {
    let mut buf = [0u8; 4];
    let mut h = h;
    for &b in c.encode_utf8(&mut buf).as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn shape_class(c: char) -> char {
    if c.is_uppercase() {
        'X'
    } else if c.is_lowercase() {
        'x'
    } else if c.is_numeric() {
        'd'
    } else {
        c
    }
}

/// Splits `text` into words (letters and digits, with inner apostrophes and hyphens; a
/// possessive `'s` apart) and single punctuation marks.
pub fn tokenize(text: &str) -> Vec<Token> {
    let g = Gazetteers::get();
    let mut out: Vec<Token> = Vec::with_capacity(text.len() / 5 + 4);
    let mut it = text.char_indices().peekable();
    let mut newline_since = true;
    while let Some((i, c)) = it.next() {
        if c.is_whitespace() {
            newline_since |= c == '\n';
            continue;
        }
        let after_break = newline_since;
        let start_of_sentence = newline_since
            || out.last().is_none_or(|t| {
                t.flags & F_PUNCT != 0
                    && matches!(&text[t.span.clone()], "." | "!" | "?" | ":" | "\"" | "“")
            });
        newline_since = false;
        let mut end = i + c.len_utf8();
        if c.is_alphanumeric() {
            while let Some(&(j, d)) = it.peek() {
                if d.is_alphanumeric() {
                    end = j + d.len_utf8();
                    it.next();
                } else if matches!(d, '\'' | '’' | '-' | '.') {
                    // Inner marks: "O'Brien", "Smith-Jones", "U.S"; not a possessive "'s".
                    let rest = &text[j + d.len_utf8()..];
                    let next = rest.chars().next();
                    let possessive = d != '-'
                        && d != '.'
                        && rest.starts_with('s')
                        && !rest[1..].starts_with(char::is_alphanumeric);
                    if next.is_some_and(char::is_alphanumeric) && !possessive {
                        end = j + d.len_utf8();
                        it.next();
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
        } else if matches!(c, '\'' | '’') && text[end..].starts_with('s') {
            // The possessive as one token.
            let after = &text[end + 1..];
            if !after.starts_with(char::is_alphanumeric) {
                end += 1;
                it.next();
            }
        }
        let word = &text[i..end];
        let mut lower = FNV;
        let mut shape = FNV;
        let mut last_class = ' ';
        let mut run = 0;
        let (mut upper, mut lowercase, mut digit) = (0, 0, 0);
        for ch in word.chars() {
            for l in ch.to_lowercase() {
                lower = fnv_char(lower, l);
            }
            let cl = shape_class(ch);
            match cl {
                'X' => upper += 1,
                'x' => lowercase += 1,
                'd' => digit += 1,
                _ => {}
            }
            if cl == last_class {
                run += 1;
            } else {
                run = 1;
                last_class = cl;
            }
            if run <= 2 {
                shape = fnv_char(shape, cl);
            }
        }
        let prefix = word
            .chars()
            .take(3)
            .flat_map(char::to_lowercase)
            .fold(FNV, fnv_char);
        let mut last3 = [' '; 3];
        let mut n = 0;
        for ch in word.chars().rev().take(3) {
            n += 1;
            last3[3 - n] = ch;
        }
        let suffix = last3[3 - n..]
            .iter()
            .flat_map(|c| c.to_lowercase())
            .fold(FNV, fnv_char);
        let mut flags = 0;
        if !c.is_alphanumeric() {
            flags |= F_PUNCT;
        }
        if digit > 0 {
            flags |= F_DIGIT;
        }
        if start_of_sentence {
            flags |= F_START;
        }
        if after_break {
            flags |= F_NL;
        }
        if c.is_uppercase() {
            flags |= F_CAP;
            if lowercase == 0 && upper > 1 {
                flags |= F_UPPER;
            }
            let l = word.to_lowercase();
            if g.first.contains(l.as_str()) {
                flags |= F_FIRST;
            }
            if g.last.contains(l.as_str()) {
                flags |= F_LAST;
            }
            if g.places.contains(l.as_str()) {
                flags |= F_PLACE;
            }
            if g.orgs.contains(l.as_str()) {
                flags |= F_ORG;
            }
            if g.english.contains(l.as_str()) {
                flags |= F_WORD;
            }
        }
        out.push(Token {
            span: i..end,
            lower,
            shape,
            prefix,
            suffix,
            flags,
        });
    }
    out
}

fn mix(template: u64, value: u64) -> u64 {
    let h =
        (value ^ template.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 29)
}

const PAD: u64 = 0x5bd1_e995;

/// The feature hashes of token `i`, given the two labels before it.
pub fn features(toks: &[Token], i: usize, prev: usize, prev2: usize, out: &mut Vec<u64>) {
    out.clear();
    let at = |k: isize| -> Option<&Token> {
        let j = i as isize + k;
        if j < 0 {
            None
        } else {
            toks.get(j as usize)
        }
    };
    let lower = |k: isize| at(k).map_or(PAD, |t| t.lower);
    let shape = |k: isize| at(k).map_or(PAD, |t| t.shape);
    let flags = |k: isize| at(k).map_or(0, |t| t.flags);
    let t = &toks[i];
    out.push(mix(1, 0));
    out.push(mix(2, t.lower));
    out.push(mix(3, lower(-1)));
    out.push(mix(4, lower(1)));
    out.push(mix(5, lower(-2)));
    out.push(mix(6, lower(2)));
    out.push(mix(7, t.shape));
    out.push(mix(8, shape(-1)));
    out.push(mix(9, shape(1)));
    out.push(mix(10, t.prefix));
    out.push(mix(11, t.suffix));
    out.push(mix(12, u64::from(t.flags)));
    out.push(mix(13, u64::from(flags(-1))));
    out.push(mix(14, u64::from(flags(1))));
    out.push(mix(15, prev as u64));
    out.push(mix(16, (prev as u64) << 32 ^ t.shape));
    out.push(mix(17, (prev2 as u64) << 8 | prev as u64));
    out.push(mix(18, lower(-1).rotate_left(7) ^ t.lower));
    out.push(mix(19, t.lower.rotate_left(7) ^ lower(1)));
    out.push(mix(20, (prev as u64) << 32 ^ t.lower));
    out.push(mix(21, u64::from(flags(2))));
    out.push(mix(
        22,
        shape(-1).rotate_left(5) ^ t.shape ^ shape(1).rotate_left(11),
    ));
    out.push(mix(23, u64::from(t.flags) << 16 ^ u64::from(flags(1))));
}

/// Perceptron weights, quantized to 16 bits: `N` per hashed feature bucket (3.5 MiB at the
/// shipped 2^18 buckets).
pub struct Weights {
    bits: u32,
    w: Vec<i16>,
}

fn bucket(bits: u32, f: u64) -> usize {
    (f >> (64 - bits)) as usize * N
}

impl Weights {
    /// The score of each label for these features.
    pub fn scores(&self, feats: &[u64]) -> [i32; N] {
        let mut s = [0i32; N];
        for &f in feats {
            let b = bucket(self.bits, f);
            for (k, v) in s.iter_mut().enumerate() {
                *v += i32::from(self.w[b + k]);
            }
        }
        s
    }

    /// The shipped weights, loaded once; `None` if they cannot be read (never in a build
    /// from this repository: a test checks they load).
    pub fn shipped() -> Option<&'static Weights> {
        static W: OnceLock<Option<Weights>> = OnceLock::new();
        W.get_or_init(|| Weights::decode(include_bytes!("../data/tagger.bin.gz")).ok())
            .as_ref()
    }

    /// Quantizes trained weights to 16 bits.
    fn quantize(bits: u32, w: &[f32]) -> Self {
        let max = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-9);
        let scale = 32767.0 / max;
        Weights {
            bits,
            w: w.iter().map(|v| (v * scale).round() as i16).collect(),
        }
    }

    /// Writes the weights gzip-compressed.
    pub fn encode(&self) -> Vec<u8> {
        use std::io::Write;
        let mut raw = Vec::with_capacity(12 + self.w.len() * 2);
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&self.bits.to_le_bytes());
        for v in &self.w {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let _ = gz.write_all(&raw);
        gz.finish().unwrap_or_default()
    }

    /// Reads what `encode` wrote.
    pub fn decode(gz: &[u8]) -> Result<Self, String> {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .take(64 << 20)
            .read_to_end(&mut raw)
            .map_err(|e| format!("tagger weights: {e}"))?;
        if raw.len() < 12 || &raw[..8] != MAGIC {
            return Err("tagger weights: not a custos tagger file".into());
        }
        let bits = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        if !(8..=24).contains(&bits) {
            return Err("tagger weights: bad header".into());
        }
        let n = (1usize << bits) * N;
        if raw.len() != 12 + n * 2 {
            return Err("tagger weights: truncated".into());
        }
        let w = raw[12..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(Weights { bits, w })
    }
}

/// Whether label `l` may follow `prev`: an inside label continues its own entity only.
fn allowed(prev: usize, l: usize) -> bool {
    l == 0 || l % 2 == 1 || prev == l || prev + 1 == l
}

/// The best label sequence, greedily left to right.
pub fn decode(w: &Weights, toks: &[Token]) -> Vec<usize> {
    decode_with_margins(w, toks)
        .into_iter()
        .map(|(l, _)| l)
        .collect()
}

/// The best label of each token with its margin over the runner-up (in weight units).
pub fn decode_with_margins(w: &Weights, toks: &[Token]) -> Vec<(usize, i32)> {
    let mut labels = Vec::with_capacity(toks.len());
    let mut feats = Vec::with_capacity(32);
    let (mut p1, mut p2) = (0usize, 0usize);
    for i in 0..toks.len() {
        // A lower-case word outside an entity, before another: read as outside without
        // scoring it (most of prose; spans need a capitalized word anyway).
        let quiet = |t: Option<&Token>| t.is_none_or(|t| t.flags & F_CAP == 0);
        if p1 == 0 && quiet(toks.get(i)) && quiet(toks.get(i + 1)) {
            labels.push((0, i32::MAX));
            p2 = p1;
            p1 = 0;
            continue;
        }
        features(toks, i, p1, p2, &mut feats);
        let s = w.scores(&feats);
        let mut best = 0;
        for l in 1..N {
            if allowed(p1, l) && s[l] > s[best] {
                best = l;
            }
        }
        let second = (0..N)
            .filter(|&l| l != best && allowed(p1, l))
            .map(|l| s[l])
            .max()
            .unwrap_or(i32::MIN);
        labels.push((best, s[best].saturating_sub(second)));
        p2 = p1;
        p1 = best;
    }
    labels
}

/// Entity spans `(entity, byte range)` from a label sequence.
pub fn spans(toks: &[Token], labels: &[usize]) -> Vec<(&'static str, Range<usize>)> {
    token_spans(toks, labels)
        .into_iter()
        .map(|(e, r)| (e, toks[r.start].span.start..toks[r.end - 1].span.end))
        .collect()
}

/// Entity spans as ranges of token indices: an inside label continues the span before it,
/// never across a line break.
fn token_spans(toks: &[Token], labels: &[usize]) -> Vec<(&'static str, Range<usize>)> {
    let mut out: Vec<(&'static str, Range<usize>)> = Vec::new();
    for (i, (t, &l)) in toks.iter().zip(labels).enumerate() {
        if l == 0 {
            continue;
        }
        let e = ENTITY[l.div_ceil(2)];
        let inside = l % 2 == 0;
        match out.last_mut() {
            Some((prev, r)) if inside && *prev == e && r.end == i && t.flags & F_NL == 0 => {
                r.end = i + 1
            }
            _ => out.push((e, i..i + 1)),
        }
    }
    out
}

/// Averaged-perceptron training state.
pub struct Trainer {
    bits: u32,
    w: Vec<f32>,
    total: Vec<f32>,
    stamp: Vec<u32>,
    step: u32,
}

impl Trainer {
    pub fn new(bits: u32) -> Self {
        let n = (1usize << bits) * N;
        Trainer {
            bits,
            w: vec![0.0; n],
            total: vec![0.0; n],
            stamp: vec![0; n],
            step: 0,
        }
    }

    fn bump(&mut self, f: u64, label: usize, by: f32) {
        let i = bucket(self.bits, f) + label;
        self.total[i] += (self.step - self.stamp[i]) as f32 * self.w[i];
        self.stamp[i] = self.step;
        self.w[i] += by;
    }

    /// One pass over a paragraph with its gold labels; returns the tokens it got wrong.
    pub fn learn(&mut self, toks: &[Token], gold: &[usize]) -> usize {
        let mut feats = Vec::with_capacity(32);
        let (mut p1, mut p2) = (0usize, 0usize);
        let mut wrong = 0;
        for (i, &want) in gold.iter().enumerate().take(toks.len()) {
            self.step += 1;
            features(toks, i, p1, p2, &mut feats);
            let mut s = [0f32; N];
            for &f in &feats {
                let b = bucket(self.bits, f);
                for (k, v) in s.iter_mut().enumerate() {
                    *v += self.w[b + k];
                }
            }
            let mut guess = 0;
            for l in 1..N {
                if allowed(p1, l) && s[l] > s[guess] {
                    guess = l;
                }
            }
            if guess != want {
                wrong += 1;
                for &f in &feats {
                    self.bump(f, want, 1.0);
                    self.bump(f, guess, -1.0);
                }
            }
            p2 = p1;
            p1 = guess;
        }
        wrong
    }

    /// The averaged weights, quantized.
    pub fn finish(mut self) -> Weights {
        for i in 0..self.w.len() {
            self.total[i] += (self.step - self.stamp[i]) as f32 * self.w[i];
            self.w[i] = self.total[i] / self.step.max(1) as f32;
        }
        Weights::quantize(self.bits, &self.w)
    }
}

/// Gold labels of tokens from entity spans `(start, end, entity)` in bytes.
pub fn gold_labels(toks: &[Token], spans: &[(usize, usize, &str)]) -> Vec<usize> {
    let mut labels = vec![0; toks.len()];
    for &(s, e, ent) in spans {
        let Some(k) = ENTITY.iter().position(|x| *x == ent).filter(|k| *k > 0) else {
            continue;
        };
        let mut first = true;
        for (t, l) in toks.iter().zip(labels.iter_mut()) {
            if t.span.start >= s && t.span.end <= e {
                *l = if first { 2 * k - 1 } else { 2 * k };
                first = false;
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_possessives_and_punctuation_are_tokens() {
        let text = "O'Brien's U.S. trip, with Smith-Jones.";
        let words: Vec<&str> = tokenize(text)
            .iter()
            .map(|t| &text[t.span.clone()])
            .collect();
        assert_eq!(
            words,
            [
                "O'Brien",
                "'s",
                "U.S",
                ".",
                "trip",
                ",",
                "with",
                "Smith-Jones",
                "."
            ]
        );
    }

    #[test]
    fn labels_round_trip_through_spans() {
        let text = "Ann Lee joined Acme Corp in Paris.";
        let toks = tokenize(text);
        let gold = gold_labels(
            &toks,
            &[
                (0, 7, "PERSON"),
                (15, 24, "ORGANIZATION"),
                (28, 33, "LOCATION"),
            ],
        );
        let got: Vec<(&str, &str)> = spans(&toks, &gold)
            .into_iter()
            .map(|(e, r)| (e, &text[r]))
            .collect();
        assert_eq!(
            got,
            [
                ("PERSON", "Ann Lee"),
                ("ORGANIZATION", "Acme Corp"),
                ("LOCATION", "Paris")
            ]
        );
    }

    #[test]
    fn a_perceptron_learns_a_separable_pattern_and_survives_encoding() {
        let mut t = Trainer::new(12);
        let text = "Yesterday Zorblat Industries hired Quentin Vale.";
        let toks = tokenize(text);
        let gold = gold_labels(&toks, &[(10, 28, "ORGANIZATION"), (35, 47, "PERSON")]);
        for _ in 0..10 {
            t.learn(&toks, &gold);
        }
        let w = Weights::decode(&t.finish().encode()).unwrap();
        assert_eq!(decode(&w, &toks), gold);
    }

    #[test]
    fn the_shipped_weights_load() {
        assert!(Weights::shipped().is_some());
    }

    #[test]
    fn broken_weight_files_are_refused() {
        assert!(Weights::decode(b"not gzip").is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"CUSTNER1\x10\0\0\0\0\0").unwrap();
        assert!(Weights::decode(&gz.finish().unwrap()).is_err(), "truncated");
    }
}

/// The tagger's findings score just above the default threshold: a rule's confident reading
/// of the same words (a listed place, a legal form) wins, its weak guesses do not.
const SCORE: f32 = 0.55;
/// The least margin (in weight units) of a span's words over their runner-up label. Chosen
/// on held-out text beside Presidio's generator sets: lower finds more in news and loses
/// precision in forms and chat (bench/RESULTS.md, issue 26).
const MIN_MARGIN: i32 = 50;

/// Acronyms of technical and business prose that the news-trained tagger would take for
/// organizations ("The API returns 404"); sorted for binary search.
const TECHNICAL: &[&str] = &[
    "AI", "API", "ASAP", "CEO", "CFO", "CLI", "COO", "CPU", "CSS", "CSV", "CTO", "DB", "DNS",
    "ETA", "FAQ", "FYI", "GDPR", "GPU", "HIPAA", "HR", "HTML", "HTTP", "HTTPS", "ID", "IP", "IT",
    "JSON", "JWT", "KPI", "LLM", "ML", "OK", "OS", "PDF", "PHI", "PII", "PR", "QA", "RAM", "REST",
    "ROI", "SDK", "SLA", "SLO", "SQL", "SSH", "SSL", "SSO", "TBD", "TCP", "TLS", "TOML", "UDP",
    "UI", "URL", "USB", "UX", "VPN", "XML", "YAML",
];

/// Whether a finding of this type leaves room for the tagger's reading of the same words.
fn names_kind(entity: &str) -> bool {
    matches!(entity, "PERSON" | "LOCATION" | "ORGANIZATION")
}

/// Appends the tagger's PERSON, LOCATION and ORGANIZATION spans for `text`, where `out`
/// (the other recognizers' findings) holds no pattern-based entity over the same words.
/// Spans are trimmed to words, need a capitalized word, and need the tagger's margin.
pub fn analyze(text: &str, out: &mut Vec<crate::finding::Finding>) {
    let Some(w) = Weights::shipped() else {
        return;
    };
    let mut blocked: Vec<Range<usize>> = out
        .iter()
        .filter(|f| !names_kind(&f.entity_type))
        .map(|f| f.start..f.end)
        .collect();
    // The rules' own names, by start, so each span finds those it overlaps by binary search.
    let mut rules: Vec<(usize, usize, f32)> = out
        .iter()
        .filter(|f| names_kind(&f.entity_type))
        .map(|f| (f.start, f.end, f.score))
        .collect();
    rules.sort_by_key(|r| r.0);
    let longest = rules.iter().map(|r| r.1 - r.0).max().unwrap_or(0);
    // Merged into disjoint, sorted ranges so each span's check is a binary search.
    blocked.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(blocked.len());
    for r in blocked {
        match merged.last_mut() {
            Some(m) if r.start <= m.end => m.end = m.end.max(r.end),
            _ => merged.push(r),
        }
    }
    for Range { start, end } in crate::names::segments(text) {
        let seg = &text[start..end];
        let toks = tokenize(seg);
        // Text in capitals (a shout, a headline block) gives the tagger no case to read.
        let words = toks.iter().filter(|t| t.flags & F_PUNCT == 0).count();
        let shouted = toks.iter().filter(|t| t.flags & F_UPPER != 0).count();
        if words == 0 || shouted * 2 > words {
            continue;
        }
        let decoded = decode_with_margins(w, &toks);
        let labels: Vec<usize> = decoded.iter().map(|(l, _)| *l).collect();
        for (e, inner) in token_spans(&toks, &labels) {
            // Trim marks at the edges; keep spans with a capitalized word.
            let words: Vec<usize> = inner
                .clone()
                .filter(|&k| toks[k].flags & F_PUNCT == 0)
                .collect();
            // A determiner the teacher's spans sometimes take ("the Red Cross") is no part of
            // the name.
            let words: Vec<usize> = match words.split_first() {
                Some((&k, rest))
                    if !rest.is_empty()
                        && matches!(&seg[toks[k].span.clone()], "the" | "a" | "an") =>
                {
                    rest.to_vec()
                }
                _ => words,
            };
            let (Some(&first), Some(&last)) = (words.first(), words.last()) else {
                continue;
            };
            if !words
                .iter()
                .any(|&k| toks[k].flags & F_CAP != 0 && toks[k].flags & F_DIGIT == 0)
            {
                continue;
            }
            if inner.clone().map(|k| decoded[k].1).min().unwrap_or(0) < MIN_MARGIN {
                continue;
            }
            if first == last {
                let f = toks[first].flags;
                let word = &seg[toks[first].span.clone()];
                if f & F_UPPER != 0 && TECHNICAL.binary_search(&word).is_ok() {
                    continue;
                }
                // An ordinary word opening a sentence or in capitals ("Please", "CAN"), or a
                // label before a colon ("User:", "Address:").
                let ordinary = f & F_WORD != 0 && f & (F_START | F_UPPER) != 0;
                let label = f & F_START != 0 && seg[toks[first].span.end..].starts_with(':');
                if ordinary || label {
                    continue;
                }
            }
            let (a, b) = (start + toks[first].span.start, start + toks[last].span.end);
            let i = merged.partition_point(|x| x.end <= a);
            if merged.get(i).is_some_and(|x| x.start < b) {
                continue;
            }
            // A longer reading that holds a rule's shorter one ("New South Wales Rural Fire
            // Service" over the place "New South Wales") is the better one.
            let mut score = SCORE;
            let from = rules.partition_point(|r| r.0 + longest <= a);
            let to = rules.partition_point(|r| r.0 < b);
            for &(start, end, rule_score) in &rules[from..to.max(from)] {
                if end > a {
                    if start >= a && end <= b && end - start < b - a {
                        score = score.max((rule_score + 0.01).min(1.0));
                    } else {
                        score = SCORE;
                        break;
                    }
                }
            }
            out.push(crate::finding::Finding::new(e, a, b, score, "NerTagger"));
        }
    }
}

#[cfg(test)]
mod shipped_tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_gives_ordered_spans_on_char_boundaries(text in "\\PC{0,200}") {
            let toks = tokenize(&text);
            let mut end = 0;
            for t in &toks {
                proptest::prop_assert!(t.span.start >= end && t.span.start < t.span.end);
                proptest::prop_assert!(text.is_char_boundary(t.span.start) && text.is_char_boundary(t.span.end));
                end = t.span.end;
            }
            let mut out = Vec::new();
            analyze(&text, &mut out);
            for f in out {
                proptest::prop_assert!(f.start < f.end && f.end <= text.len());
                proptest::prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            }
        }
    }

    fn found(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        analyze(text, &mut out);
        out.into_iter()
            .map(|f| (f.entity_type.to_string(), text[f.start..f.end].to_owned()))
            .collect()
    }

    #[test]
    fn the_shipped_tagger_reads_news_prose() {
        let f = found(
            "Meanwhile, the Rural Fire Service says crews from Wollongong have been sent north, \
             and Premier Bob Carr will visit the area tomorrow.",
        );
        assert!(
            f.iter().any(|(e, v)| e == "PERSON" && v == "Bob Carr"),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|(e, v)| e == "ORGANIZATION" && v == "Rural Fire Service"),
            "{f:?}"
        );
    }

    #[test]
    fn shouting_sentence_openers_and_labels_are_not_entities() {
        assert_eq!(found("CAN I SPEAK TO A REAL PERSON?!?!"), Vec::new());
        let f = found("Please have the manager call me.\nUser: Can I pay now?");
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn technical_acronyms_are_not_organizations() {
        assert!(TECHNICAL.windows(2).all(|w| w[0] < w[1]), "sorted");
        let f = found("The API returns 404 when the resource is missing.");
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn pattern_findings_keep_their_words() {
        let text = "Send it to 42 Baker Street, London.";
        let mut out = vec![crate::finding::Finding::new(
            "STREET_ADDRESS",
            11,
            26,
            0.9,
            "test",
        )];
        analyze(text, &mut out);
        assert!(
            out[1..].iter().all(|f| f.end <= 11 || f.start >= 26),
            "{out:?}"
        );
    }
}
