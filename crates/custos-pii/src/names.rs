//! PERSON, LOCATION and ORGANIZATION without a model: gazetteers shipped in
//! `data/` (see its README for sources) combined with capitalization, titles,
//! organization suffixes, sentence position and nearby prepositions.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::OnceLock;

use crate::finding::Finding;

/// FNV-1a: the gazetteers are fixed, shipped data, so a DoS-resistant hash
/// buys nothing and SipHash costs a fifth of the analysis time.
#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub(crate) type Set = HashSet<Box<str>, BuildHasherDefault<Fnv>>;

/// The shipped word lists, lower-cased, loaded once per process.
pub struct Gazetteers {
    pub(crate) first: Set,
    pub(crate) last: Set,
    pub(crate) places: Set,
    pub(crate) orgs: Set,
    /// Lower-case text: places and first names read as such after a cue.
    major_places: Set,
    common_first: Set,
    pub(crate) english: Set,
}

fn load(data: &str) -> Set {
    data.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.to_lowercase().into_boxed_str())
        .collect()
}

impl Gazetteers {
    pub fn get() -> &'static Gazetteers {
        static G: OnceLock<Gazetteers> = OnceLock::new();
        G.get_or_init(|| Gazetteers {
            first: load(include_str!("../data/first_names.txt")),
            last: load(include_str!("../data/last_names.txt")),
            places: load(include_str!("../data/locations.txt")),
            orgs: {
                let mut orgs = load(include_str!("../data/organizations.txt"));
                orgs.extend(load(include_str!("../data/organizations_news.txt")));
                orgs
            },
            major_places: load(include_str!("../data/major_places.txt")),
            common_first: load(include_str!("../data/common_first_names.txt")),
            english: load(include_str!("../data/english_words.txt")),
        })
    }
}

/// Words before a name that are not part of it. The first `HONORIFICS` of them are forms of
/// address, reported as a TITLE of their own; the rest ("President", "Officer") name a role.
const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "dr",
    "prof",
    "professor",
    "doctor",
    "sir",
    "dame",
    "lord",
    "lady",
    "madam",
    "mister",
    "rev",
    "reverend",
    "fr",
    "hon", // forms of address
    "father",
    "capt",
    "captain",
    "sgt",
    "sergeant",
    "officer",
    "judge",
    "president",
    "senator",
    "governor",
    "mayor",
    "uncle",
    "aunt",
    "grandma",
    "grandpa",
    "coach",
    "nurse",
];
const HONORIFICS: usize = 19;

fn honorific(w: &str) -> bool {
    TITLES[..HONORIFICS].contains(&w)
}

/// Capitalized words that start sentences or headings and are never names
/// on their own there.
const FUNCTION_WORDS: &[&str] = &[
    "the",
    "a",
    "an",
    "this",
    "that",
    "these",
    "those",
    "i",
    "i'm",
    "i've",
    "i'd",
    "i'll",
    "we",
    "you",
    "he",
    "she",
    "it",
    "they",
    "my",
    "our",
    "your",
    "his",
    "her",
    "their",
    "its",
    "in",
    "on",
    "at",
    "for",
    "from",
    "to",
    "with",
    "by",
    "of",
    "and",
    "but",
    "or",
    "if",
    "when",
    "where",
    "what",
    "who",
    "why",
    "how",
    "please",
    "thanks",
    "thank",
    "dear",
    "hi",
    "hello",
    "hey",
    "yes",
    "no",
    "not",
    "all",
    "any",
    "some",
    "each",
    "every",
    "after",
    "before",
    "during",
    "since",
    "until",
    "while",
    "as",
    "so",
    "then",
    "there",
    "here",
    "also",
    "just",
    "only",
    "our",
    "let",
    "can",
    "could",
    "would",
    "should",
    "will",
    "may",
    "might",
    "must",
    "do",
    "does",
    "did",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "have",
    "has",
    "had",
    "regards",
    "best",
    "sincerely",
    "cheers",
    "note",
    "subject",
    "re",
    "fw",
    "fwd",
    "attn",
    "via",
    "about",
    "above",
    "below",
    "under",
    "over",
    "into",
    "onto",
    "upon",
    "between",
    "among",
    "through",
    "per",
    "today",
    "tomorrow",
    "yesterday",
    "name",
    "address",
    "phone",
    "email",
    "date",
    "street",
    "city",
    "state",
    "country",
    "customer",
    "client",
    "patient",
    "user",
    "account",
    "card",
    "number",
    "id",
    "mobile",
    "home",
    "work",
    "new",
    "old",
    "north",
    "south",
    "east",
    "west",
    "central",
    "united",
    "great",
    "saint",
    "st",
];

fn function_word(w: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str, BuildHasherDefault<Fnv>>> = OnceLock::new();
    SET.get_or_init(|| FUNCTION_WORDS.iter().copied().collect())
        .contains(w)
}

/// Demonyms, religions and political affiliations, lower case.
const NRP: &str = "afghan albanian algerian american andorran angolan argentine argentinian armenian australian austrian azerbaijani bahamian bahraini bangladeshi barbadian belarusian belgian belizean beninese bhutanese bolivian bosnian botswanan brazilian british bruneian bulgarian burkinabe burmese burundian cambodian cameroonian canadian chadian chilean chinese colombian congolese croatian cuban cypriot czech danish djiboutian dominican dutch ecuadorian egyptian emirati english eritrean estonian ethiopian fijian filipino finnish french gabonese gambian georgian german ghanaian greek grenadian guatemalan guinean guyanese haitian honduran hungarian icelandic indian indonesian iranian iraqi irish israeli italian ivorian jamaican japanese jordanian kazakh kenyan korean kosovar kuwaiti kyrgyz lao laotian latvian lebanese liberian libyan lithuanian luxembourgish macedonian malagasy malawian malaysian maldivian malian maltese mauritanian mauritian mexican moldovan monegasque mongolian montenegrin moroccan mozambican namibian nepalese nepali nicaraguan nigerian nigerien norwegian omani pakistani palestinian panamanian paraguayan peruvian polish portuguese qatari romanian russian rwandan salvadoran samoan saudi scottish senegalese serbian singaporean slovak slovakian slovenian somali spanish sudanese surinamese swazi swedish swiss syrian taiwanese tajik tanzanian thai togolese tongan trinidadian tunisian turkish turkmen ugandan ukrainian uruguayan uzbek venezuelan vietnamese welsh yemeni zambian zimbabwean european african asian arab arabic hispanic latino latina latinx caucasian kurdish pashtun punjabi tamil bengali gujarati sikh hindu muslim christian catholic protestant jewish buddhist jain mormon evangelical lutheran methodist baptist anglican presbyterian sunni shia shiite atheist agnostic democrat democrats republican republicans socialist socialists communist communists libertarian";

fn nrp_word(w: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str, BuildHasherDefault<Fnv>>> = OnceLock::new();
    SET.get_or_init(|| NRP.split(' ').collect()).contains(w)
}

const CONNECTORS: &[&str] = &[
    "van", "von", "de", "der", "den", "da", "del", "della", "di", "du", "des", "do", "la", "le",
    "bin", "al", "el", "ter", "ten", "dos", "das", "of", "e", "y",
];

const ORG_SUFFIXES: &[&str] = &[
    "inc",
    "llc",
    "llp",
    "pllc",
    "ltd",
    "plc",
    "corp",
    "corporation",
    "company",
    "co",
    "group",
    "holdings",
    "holding",
    "bancorporation",
    "bank",
    "university",
    "institute",
    "foundation",
    "association",
    "partners",
    "technologies",
    "solutions",
    "systems",
    "labs",
    "laboratories",
    "gmbh",
    "ag",
    "sa",
    "bv",
    "nv",
    "srl",
    "spa",
    "pty",
    "limited",
    "incorporated",
    "agency",
    "enterprises",
    "industries",
    "international",
    "consulting",
    "services",
    "college",
    "hospital",
    "clinic",
    "party",
    "council",
    "committee",
    "commission",
    "ministry",
    "department",
    "authority",
    "federation",
    "league",
    "union",
    "parliament",
    "congress",
    "army",
    "police",
    "church",
    "museum",
    "academy",
    "airlines",
    "airways",
    "motors",
    "pharmaceuticals",
    "media",
    "times",
    "journal",
    "club",
    "fc",
    "rovers",
    "athletic",
    "organization",
    "organisation",
    "trust",
    "fund",
    "exchange",
    "society",
    "institution",
    "insurance",
    "energy",
    "capital",
    "bancorp",
    "motor",
    "studios",
    "records",
    "network",
    "reserve",
    "oy",
    "ab",
    "kg",
    "aktiengesellschaft",
];

/// Legal forms written after a company's name, often abbreviated with a period.
const LEGAL_FORMS: &[&str] = &[
    "inc",
    "llc",
    "llp",
    "ltd",
    "plc",
    "corp",
    "co",
    "gmbh",
    "ag",
    "sa",
    "nv",
    "bv",
    "pty",
    "srl",
    "spa",
    "oy",
    "ab",
    "as",
    "kg",
    "se",
    "limited",
    "aktiengesellschaft",
];

/// The firm word of "and Company", "& Sons" and the like after the run ending before
/// `words[b]`: "Becton Dickinson and Company", "Smith & Sons".
fn firm_word_after(text: &str, words: &[Word], b: usize) -> Option<usize> {
    let firm = |k: usize| {
        words.get(k).is_some_and(|w| {
            matches!(
                &text[w.span.clone()],
                "Company" | "Co" | "Sons" | "Partners" | "Associates" | "Brothers"
            ) && !text[w.span.end..].starts_with(|c: char| c.is_alphanumeric())
        })
    };
    let gap = |k: usize| &text[words[k].gap_before.clone()];
    if firm(b) && gap(b) == " & " {
        return Some(b);
    }
    (words.get(b).is_some_and(|w| w.lower == "and")
        && gap(b) == " "
        && firm(b + 1)
        && gap(b + 1) == " ")
        .then_some(b + 1)
}

/// An acronym defined in parentheses after an organization's name ("Patriotic Union of
/// Kurdistan (PUK)") is that organization, there and wherever else the text uses it.
fn acronyms(text: &str, orgs: &[Range<usize>], out: &mut Vec<Finding>) {
    let mut defined: Vec<&str> = Vec::new();
    for f in orgs {
        let Some(rest) = text[f.end..].strip_prefix(" (") else {
            continue;
        };
        let Some(close) = rest.find(')').filter(|&c| (2..=8).contains(&c)) else {
            continue;
        };
        let acronym = &rest[..close];
        let initials: String = text[f.start..f.end]
            .split([' ', '-'])
            .filter_map(|w| w.chars().next().filter(|c| c.is_uppercase()))
            .collect();
        let shaped = acronym.chars().all(|c| c.is_ascii_uppercase() || c == '&')
            && acronym.chars().next() == initials.chars().next()
            && acronym.len() <= initials.chars().count() + 1;
        if shaped && !defined.contains(&acronym) {
            defined.push(acronym);
        }
    }
    for acronym in defined {
        for (at, _) in text.match_indices(acronym) {
            let end = at + acronym.len();
            let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
            if !glued(text[..at].chars().next_back()) && !glued(text[end..].chars().next()) {
                out.push(Finding::new(
                    "ORGANIZATION",
                    at,
                    end,
                    0.75,
                    "OrganizationRecognizer",
                ));
            }
        }
    }
}

/// Words that close a company's name written in capitals, besides the legal forms.
const CAPS_ORG_ENDS: &[&str] = &[
    "corporation",
    "company",
    "holdings",
    "industries",
    "incorporated",
    "group",
];

/// Where a legal form that ends at `end` really ends: the "Ltd." of "Co.,Ltd.", "Co., Ltd."
/// and "CO.LTD." joined to it, and the abbreviation's own period unless a sentence follows.
fn legal_form_end(text: &str, end: usize) -> usize {
    let rest = &text[end..];
    let joined = [".,", ".", ","].iter().find_map(|sep| {
        let r = rest.strip_prefix(sep)?;
        let space = usize::from(r.starts_with(' '));
        let r = &r[space..];
        ["LTD", "Ltd", "INC", "Inc"]
            .iter()
            .find(|f| r.starts_with(**f) && !r[f.len()..].starts_with(char::is_alphanumeric))
            .map(|f| end + sep.len() + space + f.len())
    });
    let end = joined.unwrap_or(end);
    let next_sentence = text[end..]
        .strip_prefix('.')
        .is_some_and(|r| r.trim_start().starts_with(char::is_uppercase) && r.starts_with(' '));
    end + usize::from(text[end..].starts_with('.') && !next_sentence)
}

/// Legal forms written with a period after each letter.
const DOTTED_FORMS: &[&str] = &[
    "N.V.", "B.V.", "S.A.", "N.A.", "S.p.A.", "S.A.S.", "S.L.", "S.R.L.", "S.r.l.", "A.G.",
    "P.L.C.", "L.L.C.", "L.P.", "K.K.", "A.S.", "S.E.", "O.Y.", "A.B.", "S.C.A.", "S.C.",
];

/// Words that name an institution when "of" follows ("Bank of England").
const ORG_HEADS: &[&str] = &[
    "university",
    "bank",
    "ministry",
    "department",
    "institute",
    "college",
    "school",
    "academy",
    "museum",
    "church",
    "council",
    "court",
    "board",
    "office",
    "bureau",
    "agency",
    "commission",
    "committee",
    "federation",
    "association",
    "society",
    "union",
    "league",
    "party",
    "house",
    "chamber",
    "corporation",
    "company",
    "order",
    "federal",
    "national",
    "royal",
    "republic",
];

const LOCATION_CUES: &[&str] = &[
    "in", "from", "at", "to", "near", "of", "around", "outside", "inside", "visit", "visited",
    "city", "town", "moved", "born", "lives", "live", "living", "based", "across", "toward",
    "towards",
];

const PERSON_CUES: &[&str] = &[
    "name",
    "named",
    "called",
    "dear",
    "hi",
    "hello",
    "hey",
    "thanks",
    "regards",
    "sincerely",
    "by",
    "with",
    "contact",
    "ask",
    "tell",
    "met",
    "meet",
    "patient",
    "customer",
    "client",
    "employee",
    "user",
    "mr",
    "mrs",
    "ms",
    "dr",
    "signed",
    "cc",
    "attn",
];

const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: &[&str] = &[
    "january",
    "february",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

#[derive(Debug, Clone)]
struct Word<'a> {
    span: Range<usize>,
    /// Borrowed unless the word has capitals: most words need no allocation.
    lower: Cow<'a, str>,
    capitalized: bool,
    /// First word of a sentence, line or quoted heading.
    sentence_start: bool,
    /// Text between the previous word and this one (punctuation, spaces).
    gap_before: Range<usize>,
}

/// The char at byte `i` of `text` (a char boundary) and its length.
fn char_at(text: &str, i: usize) -> (char, usize) {
    let c = text[i..].chars().next().unwrap_or(' ');
    (c, c.len_utf8())
}

fn tokenize(text: &str) -> Vec<Word<'_>> {
    // Byte loop with an ASCII fast path: most text is ASCII, and this pass
    // sees every word of every prompt.
    let b = text.as_bytes();
    // Prose averages a word per five or six bytes: room for one per four means the vector is
    // never copied as it grows (a 4 KB prompt's words are ~40 KB).
    let mut words = Vec::with_capacity(b.len() / 4 + 8);
    let mut prev_end = 0;
    let mut i = 0;
    while i < b.len() {
        let (c, len) = if b[i] < 0x80 {
            (char::from(b[i]), 1)
        } else {
            char_at(text, i)
        };
        if !c.is_alphanumeric() {
            i += len;
            continue;
        }
        let start = i;
        let mut has_upper = c.is_uppercase();
        let mut has_digit = c.is_numeric();
        i += len;
        while i < b.len() {
            let (d, dlen) = if b[i] < 0x80 {
                (char::from(b[i]), 1)
            } else {
                char_at(text, i)
            };
            if d.is_alphanumeric() {
                has_upper |= d.is_uppercase();
                has_digit |= d.is_numeric();
                i += dlen;
            } else if matches!(d, '\'' | '’' | '-') {
                // Keep "O'Brien" and "Smith-Jones" whole; drop possessive "'s".
                let after = &text[i + dlen..];
                let next_alpha = after.chars().next().is_some_and(char::is_alphabetic);
                let possessive = d != '-'
                    && after.starts_with('s')
                    && !after[1..].starts_with(char::is_alphabetic);
                if next_alpha && !possessive {
                    i += dlen;
                } else {
                    break;
                }
            } else {
                break;
            }
        }
        let end = i;
        let word = &text[start..end];
        let gap = &text[prev_end..start];
        let sentence_start =
            words.is_empty() || breaks_sentence(gap) && !gap_is_initial(&words, text);
        words.push(Word {
            span: start..end,
            lower: if has_upper {
                Cow::Owned(word.to_lowercase())
            } else {
                Cow::Borrowed(word)
            },
            // "Ed25519" and "x86" are identifiers, never names or places.
            capitalized: c.is_uppercase() && !has_digit,
            sentence_start,
            gap_before: prev_end..start,
        });
        prev_end = end;
    }
    words
}

/// "Okafor", "O'Brien", "Smith-Jones": a capital, then lower case except
/// after an apostrophe or hyphen ("OpenAI" and "GitHub" are not names).
fn name_like(w: &str) -> bool {
    let mut prev = ' ';
    w.chars().enumerate().all(|(i, c)| {
        let ok = i == 0 && c.is_uppercase()
            || c.is_lowercase()
            || matches!(c, '\'' | '’' | '-')
            || c.is_uppercase() && matches!(prev, '\'' | '’' | '-');
        prev = c;
        ok
    })
}

/// Punctuation between two words that starts a new sentence, line or item.
fn breaks_sentence(gap: &str) -> bool {
    gap.bytes().any(|b| {
        matches!(
            b,
            b'.' | b'!' | b'?' | b'\n' | b':' | b'"' | b'*' | b'#' | b'>' | b'('
        )
    }) || !gap.is_ascii() && gap.contains(['“', '•'])
}

/// "J. Smith": a period after a single-letter word does not start a sentence.
fn gap_is_initial(words: &[Word], text: &str) -> bool {
    words
        .last()
        .is_some_and(|w| w.span.len() == 1 && text[w.span.end..].starts_with(". "))
}

/// Byte ranges that cut `text` into pieces of at most ~64 KiB at line, sentence or word ends:
/// word lists cost ~60 bytes a word, so a 100 MB line is read a piece at a time.
pub(crate) fn segments(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    const SEGMENT: usize = 1 << 16;
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let mut end = (start + SEGMENT).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if end < text.len() {
            let mut lo = end.saturating_sub(4096).max(start);
            while !text.is_char_boundary(lo) {
                lo += 1;
            }
            let tail = &text[lo..end];
            let cut = tail
                .rfind('\n')
                .map(|i| i + 1)
                .or_else(|| tail.rfind(". ").map(|i| i + 2))
                .or_else(|| tail.rfind(char::is_whitespace).map(|i| i + 1));
            if let Some(c) = cut.filter(|&c| lo + c > start) {
                end = lo + c;
            }
        }
        let r = start..end;
        start = end;
        Some(r)
    })
}

/// Appends PERSON, LOCATION, ORGANIZATION and DATE_TIME (weekday and month
/// names) findings for `text`.
pub fn analyze(text: &str, out: &mut Vec<Finding>) {
    for Range { start, end } in segments(text) {
        let before = out.len();
        analyze_segment(&text[start..end], out);
        for f in &mut out[before..] {
            f.start += start;
            f.end += start;
        }
    }
}

/// US state and territory codes, for "Springfield, IL".
const US_STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

const ORG_CUES: &[&str] = &[
    "at", "for", "joined", "company", "employer", "firm", "with", "by", "from", "client", "vendor",
    "partner",
];

fn analyze_segment(text: &str, out: &mut Vec<Finding>) {
    let before = out.len();
    analyze_runs(text, out);
    let g = Gazetteers::get();
    // "Springfield, IL": the state code belongs to the place.
    for f in &mut out[before..] {
        if f.entity_type == "LOCATION" {
            let rest = &text[f.end..];
            if let Some(code) = rest.strip_prefix(", ").and_then(|r| r.get(..2)) {
                let ends = rest
                    .as_bytes()
                    .get(4)
                    .is_none_or(|c| !c.is_ascii_alphanumeric());
                if ends && US_STATES.contains(&code) {
                    f.end += 4;
                }
            }
        }
    }
    if text.contains(" (") {
        let orgs: Vec<Range<usize>> = out[before..]
            .iter()
            .filter(|f| f.entity_type == "ORGANIZATION")
            .map(|f| f.start..f.end)
            .collect();
        acronyms(text, &orgs, out);
    }
    // "U.S." and "U.K." with their periods: the tokenizer sees two initials.
    for (at, _) in text.match_indices("U.") {
        let rest = &text[at..];
        let Some(form) = ["U.S.A.", "U.S.", "U.K."]
            .iter()
            .find(|f| rest.starts_with(**f))
        else {
            continue;
        };
        let glued = text[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
            || rest[form.len()..].starts_with(char::is_alphanumeric);
        if !glued {
            out.push(Finding::new(
                "LOCATION",
                at,
                at + form.len(),
                0.7,
                "LocationRecognizer",
            ));
        }
    }
    // "Smith, Jones and Brown": three surnames in that shape name a firm.
    if text.contains(" and ") {
        static FIRM: OnceLock<regex::Regex> = OnceLock::new();
        let re = FIRM.get_or_init(|| {
            regex::Regex::new(
                r"\b(\p{Lu}[\p{Ll}'\-]+), (\p{Lu}[\p{Ll}'\-]+),? and (\p{Lu}[\p{Ll}'\-]+)(?: (LLP|LLC|Inc|Ltd|PLC|Group|Partners|& Co))?\b",
            )
            .unwrap_or_else(|e| panic!("firm pattern: {e}"))
        });
        for c in re.captures_iter(text) {
            let all_surnames = (1..=3).all(|i| {
                c.get(i)
                    .is_some_and(|m| g.last.contains(m.as_str().to_lowercase().as_str()))
            });
            // Three given names are a list of people ("Christopher, Dana and Derrick") unless
            // a legal form closes them.
            let given = (1..=3).all(|i| {
                c.get(i)
                    .is_some_and(|m| g.common_first.contains(m.as_str().to_lowercase().as_str()))
            });
            let all_surnames = all_surnames && (!given || c.get(4).is_some());
            if let (true, Some(m)) = (all_surnames, c.get(0)) {
                out.push(Finding::new(
                    "ORGANIZATION",
                    m.start(),
                    m.end(),
                    0.8,
                    "OrganizationRecognizer",
                ));
            }
        }
    }
}

fn analyze_runs(text: &str, out: &mut Vec<Finding>) {
    let g = Gazetteers::get();
    let words = tokenize(text);
    let mut i = 0;
    while i < words.len() {
        if !words[i].capitalized {
            i += 1;
            continue;
        }
        // A run of capitalized words joined by single spaces (or an
        // initial's ". "), allowing lower-case particles like "van".
        let mut j = i + 1;
        while j < words.len() {
            let gap = &text[words[j].gap_before.clone()];
            let joined = gap == " " || gap == ". " && words[j - 1].span.len() == 1 || gap == "-";
            if !joined {
                break;
            }
            if words[j].capitalized {
                j += 1;
            } else if CONNECTORS.contains(&words[j].lower.as_ref())
                && words
                    .get(j + 1)
                    .is_some_and(|w| w.capitalized && &text[w.gap_before.clone()] == " ")
            {
                j += 2;
            } else {
                break;
            }
        }
        let before = out.len();
        run(text, &words, i, j, g, out);
        // The honorifics right before a name found here are TITLEs of their own, each with its
        // period: "Mr Roe", "Prof. Dr. Okonkwo" (whose periods end runs).
        let named: Vec<usize> = out[before..]
            .iter()
            .filter(|f| f.entity_type == "PERSON")
            .filter_map(|f| words.binary_search_by_key(&f.start, |w| w.span.start).ok())
            .collect();
        for mut k in named {
            while k > 0
                && honorific(&words[k - 1].lower)
                && matches!(&text[words[k].gap_before.clone()], ". " | " ")
            {
                let t = &words[k - 1].span;
                let end = t.end + usize::from(text[t.end..].starts_with('.'));
                out.push(Finding::new("TITLE", t.start, end, 0.8, "TitleRecognizer"));
                k -= 1;
            }
        }
        i = j;
    }
    lower_case(text, &words, g, out);
}

/// Words before a lower-case first name that make it one ("hi jake", "my name is maria").
const LOWER_PERSON_CUES: &[&str] = &[
    "hi", "hey", "hello", "dear", "thanks", "thx", "ty", "ask", "tell", "call", "met", "named",
    "called", "cc", "attn", "im", "i'm",
];
/// Words before a lower-case place that make it one ("moving to boston", "in tokyo").
const LOWER_PLACE_CUES: &[&str] = &[
    "in", "from", "to", "near", "visit", "visited", "visiting", "around", "outside", "leaving",
    "via",
];

/// Names and places typed in lower case, as chat and search boxes have them: only the common
/// ones (the census' most frequent first names, major places) and only after a cue, because
/// lower case says nothing else.
fn lower_case(text: &str, words: &[Word], g: &Gazetteers, out: &mut Vec<Finding>) {
    let typed_lower = |k: usize| {
        words.get(k).is_some_and(|w| {
            matches!(w.lower, Cow::Borrowed(_)) && {
                let b = w.lower.as_bytes();
                if b.is_ascii() {
                    b.iter().all(u8::is_ascii_alphabetic)
                } else {
                    w.lower.chars().all(char::is_alphabetic)
                }
            }
        })
    };
    // Most words follow no cue: a table of (first letter, length) pairs of the cues rejects
    // them before the lists are read.
    static CUE_SHAPES: OnceLock<[u32; 26]> = OnceLock::new();
    let shapes = CUE_SHAPES.get_or_init(|| {
        let mut t = [0u32; 26];
        for c in LOWER_PERSON_CUES
            .iter()
            .chain(LOWER_PLACE_CUES)
            .chain(&["is"])
        {
            if let Some(&f) = c.as_bytes().first().filter(|f| f.is_ascii_lowercase()) {
                t[usize::from(f - b'a')] |= 1 << c.len().min(31);
            }
        }
        t
    });
    let may_be_cue = |w: &str| {
        w.as_bytes().first().is_some_and(|&f| {
            f.is_ascii_lowercase() && shapes[usize::from(f - b'a')] & (1 << w.len().min(31)) != 0
        })
    };
    let glued = |k: usize| &text[words[k].gap_before.clone()] == " ";
    let mut i = 1;
    while i < words.len() {
        let prev = words[i - 1].lower.as_ref();
        if words[i].lower.len() < 3 || !may_be_cue(prev) || !typed_lower(i) {
            i += 1;
            continue;
        }
        let name_is = prev == "is" && i >= 2 && words[i - 2].lower == "name";
        if (LOWER_PERSON_CUES.contains(&prev) || name_is)
            && g.common_first.contains(words[i].lower.as_ref())
        {
            // A surname after it, typed the same way: "kevin o'brien", "maria lopez".
            let mut end = i + 1;
            if typed_lower(end)
                && glued(end)
                && g.last.contains(words[end].lower.as_ref())
                && !function_word(&words[end].lower)
            {
                end += 1;
            }
            out.push(Finding::new(
                "PERSON",
                words[i].span.start,
                words[end - 1].span.end,
                0.6,
                "PersonRecognizer",
            ));
            i = end;
            continue;
        }
        if LOWER_PLACE_CUES.contains(&prev) {
            // The longest major place starting here: "new york", "hong kong", "rio de janeiro".
            let mut found = None;
            let mut name = String::new();
            for (k, w) in words.iter().enumerate().skip(i).take(4) {
                if !typed_lower(k) || k > i && !glued(k) {
                    break;
                }
                if k > i {
                    name.push(' ');
                }
                name.push_str(&w.lower);
                if g.major_places.contains(name.as_str()) {
                    found = Some(k + 1);
                }
            }
            if let Some(end) = found {
                out.push(Finding::new(
                    "LOCATION",
                    words[i].span.start,
                    words[end - 1].span.end,
                    0.6,
                    "LocationRecognizer",
                ));
                i = end;
                continue;
            }
        }
        i += 1;
    }
}

/// Phrases a place follows and a person or company seldom does, lower case.
const PLACE_PHRASES: &[&str] = &[
    "lives in",
    "live in",
    "living in",
    "lived in",
    "reside in",
    "resides in",
    "residing in",
    "moved to",
    "moved from",
    "moved here from",
    "moving to",
    "moving from",
    "relocated to",
    "relocating to",
    "flew to",
    "flew from",
    "flying to",
    "flight to",
    "flight from",
    "returned to",
    "returning to",
    "travelling to",
    "traveling to",
    "travelled to",
    "traveled to",
    "trip to",
    "drove to",
    "driving to",
    "based in",
    "headquartered in",
    "located in",
    "stationed in",
    "born in",
    "raised in",
    "grew up in",
    "originally from",
    "arrived in",
    "i'm in",
    "i’m in",
    "im in",
    "i am in",
    "we're in",
    "we are in",
    "staying in",
    "stayed in",
    "vacation in",
    "holiday in",
    "home city",
    "home town",
    "hometown",
];

/// Words that end a place's name ("Bottle Lake", "Silicon Valley").
const PLACE_WORDS: &[&str] = &[
    "lake",
    "lakes",
    "river",
    "bay",
    "city",
    "town",
    "village",
    "beach",
    "hill",
    "hills",
    "island",
    "islands",
    "springs",
    "falls",
    "valley",
    "heights",
    "harbor",
    "harbour",
    "port",
    "point",
    "creek",
    "mountain",
    "mountains",
    "park",
    "county",
    "province",
    "region",
    "coast",
];

/// Whether the run `words[a..b]` follows one of [`PLACE_PHRASES`] and reads as a place's name:
/// not a date word, and not ordinary words ("I'm in Marketing") unless they are a known place
/// or end with a place word.
fn after_place_phrase(text: &str, words: &[Word], a: usize, b: usize, g: &Gazetteers) -> bool {
    if a == 0 || &text[words[a].gap_before.clone()] != " " {
        return false;
    }
    // Every phrase ends with one of these: most runs are rejected before anything is built.
    if !matches!(
        words[a - 1].lower.as_ref(),
        "in" | "to" | "from" | "city" | "town" | "hometown"
    ) {
        return false;
    }
    // The one to three words before, joined by single spaces, shortest first.
    let mut phrase = String::new();
    let mut found = false;
    for k in (a.saturating_sub(3)..a).rev() {
        if k + 1 < a && &text[words[k + 1].gap_before.clone()] != " " {
            break;
        }
        phrase = if phrase.is_empty() {
            words[k].lower.to_string()
        } else {
            format!("{} {phrase}", words[k].lower)
        };
        if PLACE_PHRASES.contains(&phrase.as_str()) {
            found = true;
            break;
        }
    }
    if !found {
        return false;
    }
    let lw = |k: usize| words[k].lower.as_ref();
    if (a..b).any(|k| is_title(&words[k]))
        || WEEKDAYS.contains(&lw(a))
        || MONTHS.contains(&lw(a))
        || matches!(lw(a), "may" | "march")
    {
        return false;
    }
    let name: String = (a..b).map(lw).collect::<Vec<_>>().join(" ");
    if g.places.contains(name.as_str()) {
        return true;
    }
    let shouted = !text[words[a].span.start..words[b - 1].span.end]
        .chars()
        .any(char::is_lowercase);
    if b - a == 1 {
        let len = text[words[a].span.clone()].chars().count();
        return len >= 3 && (shouted || !g.english.contains(lw(a)));
    }
    !(a..b).all(|k| g.english.contains(lw(k)) || function_word(lw(k)))
        || PLACE_WORDS.contains(&lw(b - 1))
}

fn is_title(w: &Word) -> bool {
    TITLES.contains(&w.lower.as_ref())
}

fn previous_word<'a>(words: &'a [Word<'_>], i: usize) -> Option<&'a str> {
    i.checked_sub(1).map(|p| words[p].lower.as_ref())
}

/// Classifies the run `words[a..b]`.
fn run(text: &str, words: &[Word], mut a: usize, b: usize, g: &Gazetteers, out: &mut Vec<Finding>) {
    let joined = |a: usize| {
        (a..b)
            .map(|k| words[k].lower.as_ref())
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Known organizations, whole ("Goldman Sachs", "Bank of America", "The Beatles").
    let start = (a..b)
        .find(|&k| !function_word(&words[k].lower))
        .unwrap_or(b);
    // One word goes the single-word way, where dictionary words are weighed.
    let known = [a, start]
        .into_iter()
        .find(|&s| b.saturating_sub(s) >= 2 && g.orgs.contains(joined(s).as_str()));
    // "University of Nairobi", "Ministry of Defence", "Bank of England": an institution's
    // head word before "of" makes the whole run one organization.
    let headed = (a + 1..b.saturating_sub(1))
        .find(|&k| words[k].lower == "of")
        .filter(|&k| ORG_HEADS.contains(&words[k - 1].lower.as_ref()))
        .map(|k| start.min(k - 1));
    if let Some(s) = known.or(headed) {
        out.push(Finding::new(
            "ORGANIZATION",
            words[s].span.start,
            words[b - 1].span.end,
            0.8,
            "OrganizationRecognizer",
        ));
        return;
    }
    // A legal form written with periods ends the run at its first letter ("Ebusco Holding
    // N.V.", "Trinseo S.A."): the name before it is a company's.
    if b - start >= 2 && words[b - 1].span.len() == 1 {
        let form_at = words[b - 1].span.start;
        let form = DOTTED_FORMS
            .iter()
            .find(|f| text[form_at..].starts_with(**f))
            .filter(|f| !text[form_at + f.len()..].starts_with(char::is_alphanumeric));
        if let Some(f) = form {
            out.push(Finding::new(
                "ORGANIZATION",
                words[start].span.start,
                form_at + f.len(),
                0.8,
                "OrganizationRecognizer",
            ));
            return;
        }
    }
    // "lives in Várbalog", "flew to Toi Toi", "originally from WALTERSTONE": after a phrase
    // only a place follows, a capitalized name is one, in a list or not.
    if after_place_phrase(text, words, a, b, g) {
        out.push(Finding::new(
            "LOCATION",
            words[a].span.start,
            words[b - 1].span.end,
            0.8,
            "LocationRecognizer",
        ));
        return;
    }
    // A headline in capitals ("PRESIDENT OF FRANCE ARRIVED IN BERLIN") says nothing by its
    // case: only known places and organizations are read in it, word by word or whole.
    if b - a >= 2 && (a..b).all(|k| !text[words[k].span.clone()].chars().any(char::is_lowercase)) {
        // A company's name in capitals closes with its legal form ("KURODA PRECISION
        // INDUSTRIES LTD.", "SUN-WA TECHNOS CORPORATION", "TOKYO GAS CO.,LTD.").
        let last = words[b - 1].lower.as_ref();
        if (a..b).all(|k| !function_word(&words[k].lower))
            && (LEGAL_FORMS.contains(&last) || CAPS_ORG_ENDS.contains(&last))
        {
            out.push(Finding::new(
                "ORGANIZATION",
                words[a].span.start,
                legal_form_end(text, words[b - 1].span.end),
                0.75,
                "OrganizationRecognizer",
            ));
            return;
        }
        let mut k = a;
        while k < b {
            let hit = (k + 1..=(k + 3).min(b)).rev().find_map(|e| {
                let name = (k..e)
                    .map(|x| words[x].lower.as_ref())
                    .collect::<Vec<_>>()
                    .join(" ");
                if g.major_places.contains(name.as_str())
                    || e - k >= 2 && g.places.contains(name.as_str())
                {
                    Some((e, "LOCATION", "LocationRecognizer"))
                } else if g.orgs.contains(name.as_str()) && (e - k >= 2 || words[k].span.len() >= 3)
                {
                    Some((e, "ORGANIZATION", "OrganizationRecognizer"))
                } else {
                    None
                }
            });
            match hit {
                Some((e, entity, by)) => {
                    out.push(Finding::new(
                        entity,
                        words[k].span.start,
                        words[e - 1].span.end,
                        0.6,
                        by,
                    ));
                    k = e;
                }
                None => k += 1,
            }
        }
        return;
    }
    // "Dr. Jane Roe of Acme Corp": "of" joins two names unless the whole
    // run is one place ("City of London").
    if let Some(k) = (a + 1..b.saturating_sub(1)).find(|&k| words[k].lower == "of") {
        if !(a..k).any(|s| g.places.contains(joined(s).as_str())) {
            run(text, words, a, k, g, out);
            run(text, words, k + 1, b, g, out);
            return;
        }
    }
    // Leading sentence words ("The", "Yesterday", "Dear") are not part of a name.
    let mut title = false;
    let mut title_at = a;
    while a < b {
        let w = &words[a];
        if b - a >= 2 && !title && g.places.contains(joined(a).as_str()) {
            break;
        }
        if is_title(w) {
            if !title {
                title_at = a;
            }
            title = true;
            a += 1;
        } else if function_word(&w.lower)
            || w.sentence_start
                && g.english.contains(w.lower.as_ref())
                && !g.first.contains(w.lower.as_ref())
                && b - a > 1
        {
            a += 1;
        } else {
            break;
        }
    }
    if a >= b {
        return;
    }
    let span = words[a].span.start..words[b - 1].span.end;
    let n = b - a;
    let lw = |k: usize| words[a + k].lower.as_ref();
    let prev = previous_word(words, a);
    let cue = |list: &[&str]| prev.is_some_and(|p| list.contains(&p));

    // Nationalities, religions and political groups (Presidio's NRP).
    if n == 1 && nrp_word(lw(0)) {
        let score = if words[a].sentence_start { 0.6 } else { 0.7 };
        out.push(Finding::new(
            "NRP",
            span.start,
            span.end,
            score,
            "NrpRecognizer",
        ));
        return;
    }
    // Dates spelled as words.
    if n == 1 && (WEEKDAYS.contains(&lw(0)) || MONTHS.contains(&lw(0))) {
        out.push(Finding::new(
            "DATE_TIME",
            span.start,
            span.end,
            0.6,
            "DateWordRecognizer",
        ));
        return;
    }
    // "works at Miller-Hayes": hyphenated surnames after an employer cue.
    if n == 1 && cue(ORG_CUES) && !title {
        let w = lw(0);
        if let Some((x, y)) = w.split_once('-') {
            if g.last.contains(x) && g.last.contains(y) {
                out.push(Finding::new(
                    "ORGANIZATION",
                    span.start,
                    span.end,
                    0.7,
                    "OrganizationRecognizer",
                ));
                return;
            }
        }
    }
    // Whole-run places: "New York", "United Kingdom", "San Francisco"; before the
    // suffixes, so "West Bank" stays a place.
    if !title && n >= 2 && g.places.contains(joined(a).as_str()) {
        out.push(Finding::new(
            "LOCATION",
            span.start,
            span.end,
            0.85,
            "LocationRecognizer",
        ));
        return;
    }
    // Organizations by suffix: "Acme Corp", "Smith and Sons", and a legal form written in
    // lower case after the name ("Tribal Group plc"); an abbreviation keeps its period
    // ("Zendesk Inc.").
    // A legal form in capitals closes a company's name, a title's too ("Sixt SE", "Dr
    // Hoenle AG", "Equinor AS").
    let caps_form = n >= 2 && {
        let w = &text[words[b - 1].span.clone()];
        w.len() >= 2
            && !w.chars().any(char::is_lowercase)
            && LEGAL_FORMS.contains(&lw(n - 1))
            && !(title && matches!(lw(n - 1), "as" | "co"))
    };
    let firm = firm_word_after(text, words, b);
    if caps_form || firm.is_some() {
        let from = if title { title_at } else { a };
        let end = match firm {
            Some(k) if !caps_form => legal_form_end(text, words[k].span.end),
            _ => legal_form_end(text, words[b - 1].span.end),
        };
        out.push(Finding::new(
            "ORGANIZATION",
            words[from].span.start,
            end,
            0.75,
            "OrganizationRecognizer",
        ));
        return;
    }
    // "Aquila, Inc.", "Broadwing, Inc.": the form after a comma.
    if let Some(w) = words.get(b).filter(|w| {
        &text[w.gap_before.clone()] == ", "
            && matches!(
                &text[w.span.clone()],
                "Inc" | "LLC" | "Ltd" | "LLP" | "PLC" | "GmbH" | "AG"
            )
    }) {
        out.push(Finding::new(
            "ORGANIZATION",
            span.start,
            legal_form_end(text, w.span.end),
            0.75,
            "OrganizationRecognizer",
        ));
        return;
    }
    // Not the forms that are also English words ("add Simone Nilsson as a beneficiary").
    let lower_form = words.get(b).filter(|w| {
        LEGAL_FORMS.contains(&w.lower.as_ref())
            && !matches!(
                w.lower.as_ref(),
                "as" | "co" | "se" | "ab" | "sa" | "ag" | "oy" | "kg" | "spa" | "limited"
            )
            && &text[w.gap_before.clone()] == " "
    });
    if !title && (n >= 2 && ORG_SUFFIXES.contains(&lw(n - 1)) || lower_form.is_some()) {
        let last = lower_form.map_or(words[b - 1].span.end, |w| w.span.end);
        let form = lower_form.map_or(lw(n - 1), |w| w.lower.as_ref());
        // Not the period that ends a sentence before the next one ("… Corp. The board").
        let next_sentence = text[last..]
            .strip_prefix('.')
            .map(str::trim_start)
            .is_some_and(|r| r.starts_with(char::is_uppercase));
        let end = if form == "co" {
            legal_form_end(text, last)
        } else {
            last + usize::from(
                LEGAL_FORMS.contains(&form) && text[last..].starts_with('.') && !next_sentence,
            )
        };
        out.push(Finding::new(
            "ORGANIZATION",
            span.start,
            end,
            0.75,
            "OrganizationRecognizer",
        ));
        return;
    }
    // A holiday ("Labor Day", "Memorial Day") or a rank with an ordinary word ("the Princess
    // Royal", "the Queen Mother"), not a person; "Doris Day" and "Queen Elizabeth" still are.
    if !title && n == 2 {
        let ordinary = |k: usize| g.english.contains(lw(k)) && !g.common_first.contains(lw(k));
        let holiday = lw(1) == "day" && !g.common_first.contains(lw(0));
        let rank = matches!(
            lw(0),
            "prince"
                | "princess"
                | "king"
                | "queen"
                | "duke"
                | "duchess"
                | "earl"
                | "emperor"
                | "empress"
        ) && ordinary(1);
        if holiday || rank {
            return;
        }
    }
    if title {
        out.push(Finding::new(
            "PERSON",
            span.start,
            span.end,
            0.9,
            "PersonRecognizer",
        ));
        return;
    }
    let first = |k: usize| g.first.contains(lw(k));
    let last = |k: usize| g.last.contains(lw(k));
    // The dictionary lists many given names ("kevin", "amy"); a frequent given name that is
    // not also an ordinary word counts as a name, not a word.
    let english = |k: usize| {
        g.english.contains(lw(k)) && !g.common_first.contains(lw(k)) || function_word(lw(k))
    };
    let initial = |k: usize| words[a + k].span.len() == 1;
    if n >= 2 {
        let names = (0..n)
            .filter(|&k| first(k) || last(k) || initial(k))
            .count();
        // Unknown names still read as names: capitalized, then lower-case
        // only, not dictionary words, after a cue ("name is", "Dear") or in
        // the middle of a sentence.
        let name_shaped = |k: usize| {
            let t = &text[words[a + k].span.clone()];
            initial(k)
                || t.chars().count() >= 2
                    && t.chars()
                        .skip(1)
                        .all(|c| c.is_lowercase() || c == '\'' || c == '-')
                    && !english(k)
        };
        let shaped = n <= 4 && (0..n).all(name_shaped);
        let score = if first(0) && (last(n - 1) || !english(n - 1)) && names >= n - 1 {
            0.9
        } else if (first(0) || !english(0)) && last(n - 1) && names >= n - 1 {
            0.8
        } else if names == n {
            0.7
        } else if first(0) && !english(0) {
            // "Jane Unknownname": a clear first name and another capital.
            0.65
        } else if shaped && (cue(PERSON_CUES) || !words[a].sentence_start) {
            0.6
        } else {
            0.0
        };
        if score > 0.0 {
            out.push(Finding::new(
                "PERSON",
                span.start,
                span.end,
                score,
                "PersonRecognizer",
            ));
            return;
        }
        // Try each word alone (headline case, lists of places).
        for k in a..b {
            run(text, words, k, k + 1, g, out);
        }
        return;
    }
    // A single word.
    let w = &words[a];
    let is_person = first(0) || last(0);
    let is_place = g.places.contains(lw(0));
    let common = english(0);
    let all_caps = text[span.clone()].chars().all(|c| !c.is_lowercase());
    if g.orgs.contains(lw(0)) && !is_place && (all_caps || !common) {
        out.push(Finding::new(
            "ORGANIZATION",
            span.start,
            span.end,
            if all_caps { 0.75 } else { 0.7 },
            "OrganizationRecognizer",
        ));
        return;
    }
    // "in March", "since May": the months that are also places and words, read as months
    // after a word that puts a time.
    if matches!(lw(0), "march" | "may")
        && prev.is_some_and(|p| {
            matches!(
                p,
                "in" | "since"
                    | "until"
                    | "till"
                    | "by"
                    | "last"
                    | "next"
                    | "early"
                    | "late"
                    | "mid"
                    | "before"
                    | "after"
                    | "during"
                    | "from"
                    | "through"
            )
        })
    {
        out.push(Finding::new(
            "DATE_TIME",
            span.start,
            span.end,
            0.6,
            "DateWordRecognizer",
        ));
        return;
    }
    // "the Iraq-Iran border": two places joined by a hyphen are two places.
    if let Some((x, y)) = lw(0).split_once('-') {
        if g.major_places.contains(x) && g.major_places.contains(y) {
            let mid = span.start + x.len();
            for r in [span.start..mid, mid + 1..span.end] {
                out.push(Finding::new(
                    "LOCATION",
                    r.start,
                    r.end,
                    0.7,
                    "LocationRecognizer",
                ));
            }
            return;
        }
    }
    if all_caps {
        // The country abbreviations news writes in prose ("between the US and Saudi Arabia"),
        // where the words around are not in capitals too.
        let prose = |k: Option<&Word>| {
            k.is_some_and(|w| text[w.span.clone()].chars().any(char::is_lowercase))
        };
        let code = text[span.end..]
            .trim_start_matches(' ')
            .starts_with(['=', '(', ';', '[', '{', ':']);
        if matches!(lw(0), "us" | "uk" | "usa" | "uae" | "ussr" | "drc" | "prc")
            && !code
            && (prose(words.get(a + 1)) || a > 0 && prose(words.get(a - 1)))
        {
            out.push(Finding::new(
                "LOCATION",
                span.start,
                span.end,
                0.7,
                "LocationRecognizer",
            ));
            return;
        }
        // A town written in capitals after "from" or "in" ("grew up in GUÉRET"), as forms and
        // addresses write them; otherwise acronyms and constants: "FILE", "NINO", "USA".
        if is_place && text[span.clone()].chars().count() >= 4 && cue(LOCATION_CUES) {
            out.push(Finding::new(
                "LOCATION",
                span.start,
                span.end,
                0.6,
                "LocationRecognizer",
            ));
        }
        return;
    }
    // Code, not prose: `Ok(x)`, `Config::load`, `self.Name`.
    let code = |c: Option<u8>| matches!(c, Some(b'(' | b'<' | b'_' | b'[' | b'{'));
    if code(text.as_bytes().get(span.end).copied())
        || text[span.end..].starts_with("::")
        || text[..span.start].ends_with(['.', ':', '_'])
    {
        return;
    }
    let place_cue = cue(LOCATION_CUES);
    let person_cue = cue(PERSON_CUES) || prev.is_some_and(|p| TITLES.contains(&p));
    // A country, capital or big city reads as the place unless a cue says person
    // ("Madrid, Spain", not Mr Spain).
    let major = g.major_places.contains(lw(0)) && !cue(PERSON_CUES);
    if is_place && (place_cue || !is_person || major) {
        // The dictionary lists big places too ("Beijing", "Russia"); capitalized, they are the
        // places.
        let score = match (common && !major, place_cue) {
            (false, true) => 0.85,
            (false, false) => 0.7,
            (true, true) => 0.6,
            (true, false) => 0.3,
        };
        out.push(Finding::new(
            "LOCATION",
            span.start,
            span.end,
            score,
            "LocationRecognizer",
        ));
    } else if person_cue && (is_person || !common && name_like(&text[span.clone()])) {
        out.push(Finding::new(
            "PERSON",
            span.start,
            span.end,
            0.7,
            "PersonRecognizer",
        ));
    } else if is_person {
        let score = match (common, w.sentence_start, person_cue) {
            (_, _, true) => 0.75,
            (false, false, false) => 0.65,
            (false, true, false) => 0.55,
            (true, _, false) => 0.3,
        };
        out.push(Finding::new(
            "PERSON",
            span.start,
            span.end,
            score,
            "PersonRecognizer",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        analyze(text, &mut out);
        out.into_iter()
            .filter(|f| f.score >= 0.5)
            .map(|f| (f.entity_type.to_string(), &text[f.start..f.end]))
            .collect()
    }

    /// The values of `entity` found in `text`.
    fn of_type(text: &str, entity: &str) -> Vec<String> {
        found(text)
            .into_iter()
            .filter(|(e, _)| e == entity)
            .map(|(_, v)| v.to_string())
            .collect()
    }

    #[test]
    fn people_places_orgs() {
        let f = found("Yesterday John Smith flew from Berlin to New York for Acme Corp.");
        assert!(f.contains(&("PERSON".into(), "John Smith")), "{f:?}");
        assert!(f.contains(&("LOCATION".into(), "Berlin")), "{f:?}");
        assert!(f.contains(&("LOCATION".into(), "New York")), "{f:?}");
        assert!(f.contains(&("ORGANIZATION".into(), "Acme Corp.")), "{f:?}");
        let f = found("Please ask Dr. Okonkwo about it on Friday.");
        assert!(f.contains(&("PERSON".into(), "Okonkwo")), "{f:?}");
        assert!(f.contains(&("DATE_TIME".into(), "Friday")), "{f:?}");
        assert!(f.contains(&("TITLE".into(), "Dr.")), "{f:?}");
        // A role before a name is not a form of address.
        let f = found("President Okonkwo spoke.");
        assert!(!f.iter().any(|(e, _)| e == "TITLE"), "{f:?}");
    }

    #[test]
    fn organizations_by_list_head_and_suffix() {
        let orgs = |t: &str| of_type(t, "ORGANIZATION");
        assert_eq!(orgs("Shares of Goldman Sachs rose."), ["Goldman Sachs"]);
        assert_eq!(orgs("The NATO summit opened."), ["NATO"]);
        assert_eq!(
            orgs("She studied at the University of Nairobi."),
            ["University of Nairobi"]
        );
        assert_eq!(
            orgs("The Ministry of Defence said so."),
            ["Ministry of Defence"]
        );
        assert_eq!(orgs("The Labour Party won."), ["Labour Party"]);
        assert_eq!(
            orgs("Officials of the Federal Reserve met."),
            ["Federal Reserve"]
        );
        // Dictionary words that are also brands need capitals of their own.
        assert!(orgs("Visa applications open today.").is_empty());
        assert_eq!(orgs("Shares of Zendesk Inc. fell."), ["Zendesk Inc."]);
        assert_eq!(
            orgs("He joined Tribal Group plc in May."),
            ["Tribal Group plc"]
        );
        // Legal forms with a period after each letter.
        assert_eq!(
            orgs("Based in Nanaimo, Ebusco Holding N.V. is a charity."),
            ["Ebusco Holding N.V."]
        );
        assert_eq!(
            orgs("Aptinyx Inc. and Trinseo S.A.. Fine."),
            ["Aptinyx Inc.", "Trinseo S.A."]
        );
        // An initial is not a legal form: "J. S. Bach" stays a name.
        assert!(orgs("Music by Johann S. Bach tonight.").is_empty());
    }

    #[test]
    fn places_after_a_phrase_only_a_place_follows() {
        let places = |t: &str| of_type(t, "LOCATION");
        assert_eq!(places("My friend lives in Várbalog"), ["Várbalog"]);
        assert_eq!(places("We moved here from ELVERUM"), ["ELVERUM"]);
        assert_eq!(
            places("Mrs. Dufour flew to Toi Toi on Thursday."),
            ["Toi Toi"]
        );
        assert_eq!(
            places("I'm in Bottle Lake, at the conference"),
            ["Bottle Lake"]
        );
        assert_eq!(places("a design agency based in Dutovlje."), ["Dutovlje"]);
        assert_eq!(
            places("I'm Ida Korovina, originally from WALTERSTONE, and 85."),
            ["WALTERSTONE"]
        );
        // Ordinary words, months and short acronyms after the same phrases are not places.
        for t in [
            "I'm in Marketing now.",
            "He is based in HR.",
            "They moved to Mr Smith's team.",
        ] {
            assert!(places(t).is_empty(), "{t}: {:?}", found(t));
        }
    }

    #[test]
    fn companies_in_capitals_and_joined_legal_forms() {
        let orgs = |t: &str| of_type(t, "ORGANIZATION");
        assert_eq!(
            orgs("Teake Tuininga\nKURODA PRECISION INDUSTRIES LTD.\nBrekkustíg 80"),
            ["KURODA PRECISION INDUSTRIES LTD."]
        );
        assert_eq!(
            orgs("I work for SUN-WA TECHNOS CORPORATION"),
            ["SUN-WA TECHNOS CORPORATION"]
        );
        assert_eq!(
            orgs("We'll meet at TOKYO GAS CO.,LTD. tomorrow"),
            ["TOKYO GAS CO.,LTD."]
        );
        assert_eq!(
            orgs("Shares of Tokyo Gas Co., Ltd. rose."),
            ["Tokyo Gas Co., Ltd."]
        );
        // A headline in capitals with ordinary words is no company.
        assert!(orgs("LEADERS MET AT THE GROUP").is_empty());
        // "as" after a name is the English word, and given names in a list are people.
        let f = found("I want to add Simone Nilsson as a beneficiary");
        assert_eq!(f, [("PERSON".to_string(), "Simone Nilsson")]);
        assert!(orgs("They had 6: Pista, Gary, Christopher, Dana and Derrick.").is_empty());
        // Holidays and ranks with an ordinary word are nobody's name.
        assert_eq!(
            found("on the last Sunday before Labor Day we left"),
            [("DATE_TIME".to_string(), "Sunday")]
        );
        assert!(found("The Princess Royal arrived this morning.").is_empty());
        assert_eq!(
            found("Queen Elizabeth spoke."),
            [("PERSON".to_string(), "Queen Elizabeth")]
        );
        assert_eq!(
            orgs("He sued Smith, Jones and Brown."),
            ["Smith, Jones and Brown"]
        );
        // A legal form in capitals, after a comma, or "and Company" closes the name.
        assert_eq!(orgs("according to the Sixt SE website"), ["Sixt SE"]);
        assert_eq!(orgs("IDI SCA, Dr Hoenle AG and more"), ["Dr Hoenle AG"]);
        assert_eq!(
            orgs("Sean Robinson of Broadwing, Inc. spoke"),
            ["Broadwing, Inc."]
        );
        assert_eq!(
            orgs("of Becton Dickinson and Company, New Century"),
            ["Becton Dickinson and Company"]
        );
        assert_eq!(orgs("He works at Smith & Sons now"), ["Smith & Sons"]);
    }

    #[test]
    fn acronyms_defined_after_an_organization_are_it_everywhere() {
        let f = of_type(
            "officials of the Patriotic Union of Kurdistan (PUK), which rules the north. \
             The PUK said so; PUKE is a word.",
            "ORGANIZATION",
        );
        assert_eq!(f, ["Patriotic Union of Kurdistan", "PUK", "PUK"]);
        // Parentheses after a person or with other letters define nothing.
        assert!(of_type("John Smith (JS) spoke.", "ORGANIZATION").is_empty());
        assert_eq!(
            of_type("the Red Cross (ICRC) came", "ORGANIZATION"),
            ["Red Cross"]
        );
    }

    #[test]
    fn big_places_the_dictionary_lists_and_country_abbreviations() {
        let places = |t: &str| of_type(t, "LOCATION");
        assert_eq!(places("a military attack against Baghdad."), ["Baghdad"]);
        assert_eq!(places("Beijing has withdrawn a plan"), ["Beijing"]);
        assert_eq!(places("along the Iraq-Iran border"), ["Iraq", "Iran"]);
        assert_eq!(
            places("tensions between the US and Saudi Arabia."),
            ["US", "Saudi Arabia"]
        );
        assert_eq!(places("U.S. intelligence cannot say"), ["U.S."]);
        // The months that are also towns, after a word that puts a time.
        assert_eq!(
            found("re-elected in March, then sentenced."),
            [("DATE_TIME".to_string(), "March")]
        );
        // Shouted text and code say nothing by their case.
        assert!(places("LET US KNOW").is_empty());
        assert!(places("const US = 1; ZU.S. x").is_empty());
    }

    #[test]
    fn lower_case_names_and_places_after_a_cue() {
        let f = found("hey its jake again, hi maria lopez! moving to new york from tokyo");
        assert!(f.contains(&("PERSON".into(), "maria lopez")), "{f:?}");
        assert!(f.contains(&("LOCATION".into(), "new york")), "{f:?}");
        assert!(f.contains(&("LOCATION".into(), "tokyo")), "{f:?}");
        assert!(
            !f.iter().any(|(_, v)| *v == "jake"),
            "no cue before jake: {f:?}"
        );
        let f = found("my name is kevin and i live in boston");
        assert!(f.contains(&("PERSON".into(), "kevin")), "{f:?}");
        assert!(f.contains(&("LOCATION".into(), "boston")), "{f:?}");
        // Ordinary words after the same cues stay words.
        for t in [
            "hi will, in reading the docs",
            "thanks mark, in nice weather",
            "to turkey or not",
        ] {
            assert!(found(t).is_empty(), "{t}: {:?}", found(t));
        }
    }

    #[test]
    fn headlines_in_capitals_and_countries_after_a_city() {
        let f = found("THE PRESIDENT OF FRANCE ARRIVED IN BERLIN");
        assert_eq!(
            f,
            [("LOCATION".into(), "FRANCE"), ("LOCATION".into(), "BERLIN")],
            "{f:?}"
        );
        let f = found("Ship to Madrid, Spain by Friday.");
        assert!(f.contains(&("LOCATION".into(), "Spain")), "{f:?}");
        let f = found("Our parish in Krakow meets on Sunday.");
        assert!(f.contains(&("LOCATION".into(), "Krakow")), "{f:?}");
    }

    #[test]
    fn common_words_are_not_names() {
        assert!(found("The Will of the people. May I help? Grant access to the Bill.").is_empty());
        assert_eq!(found("Mary O'Brien's car")[0].1, "Mary O'Brien");
    }
}
