//! Built-in pattern recognizers: a regex that finds candidates inside the
//! scanner's windows, a check that validates them (checksum, ranges, phone
//! metadata) and sets the score, and context words that raise it.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::finding::Finding;
use crate::scan::Windows;
use crate::validate;

/// Which scanner windows a recognizer searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Numeric,
    At,
    Dotted,
    /// The whole text (custom recognizers: their shape is unknown).
    Whole,
}

/// Validates a match `m` of the recognizer's regex in `text`; returns the
/// span to report (possibly trimmed) and its score, or `None` to drop it.
pub type Check = fn(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)>;

/// A regex recognizer with a validator and context words.
pub struct PatternRecognizer {
    pub name: Cow<'static, str>,
    pub entity: Cow<'static, str>,
    pub regex: Regex,
    pub source: Source,
    pub check: Option<Check>,
    /// Score when there is no check.
    pub score: f32,
    /// Lower-case words that, seen near a match, raise its score.
    pub context: Vec<Cow<'static, str>>,
}

impl PatternRecognizer {
    /// Appends this recognizer's findings in `text` to `out`.
    /// Appends this recognizer's findings inside `region` of `text` to `out`.
    pub fn analyze_region(&self, text: &str, region: Range<usize>, out: &mut Vec<Finding>) {
        let hay = &text[region.clone()];
        for m in self.regex.find_iter(hay) {
            let span = region.start + m.start()..region.start + m.end();
            let verdict = match self.check {
                Some(check) => check(text, span),
                None => Some((span, self.score)),
            };
            // Windows are merged, so no match is seen twice.
            if let Some((span, score)) = verdict.filter(|(s, _)| !s.is_empty()) {
                out.push(Finding::new(
                    self.entity.clone(),
                    span.start,
                    span.end,
                    score,
                    self.name.clone(),
                ));
            }
        }
    }
}

/// The built-in recognizers of one window kind, with a `RegexSet` of their
/// patterns: one pass over a window says which of them can match there.
pub struct SourceSet {
    pub source: Source,
    pub set: RegexSet,
    /// Index into `builtin()` of each pattern in `set`.
    pub members: Vec<usize>,
}

/// Built-in recognizers grouped by the windows they search.
pub fn builtin_sets() -> &'static [SourceSet] {
    static SETS: OnceLock<Vec<SourceSet>> = OnceLock::new();
    SETS.get_or_init(|| {
        let all = builtin();
        // Street addresses get a set of their own: their letter classes and alternations
        // multiply the states of one automaton over every numeric pattern.
        let street = |i: usize| all[i].entity == "STREET_ADDRESS";
        [
            (Source::Numeric, false),
            (Source::Numeric, true),
            (Source::At, false),
            (Source::Dotted, false),
        ]
        .into_iter()
        .map(|(source, streets)| {
            let members: Vec<usize> = (0..all.len())
                .filter(|&i| all[i].source == source && street(i) == streets)
                .collect();
            let set = RegexSetBuilder::new(members.iter().map(|&i| all[i].regex.as_str()))
                .dfa_size_limit(DFA_CACHE)
                .build()
                .unwrap_or_else(|e| panic!("built-in pattern set does not compile: {e}"));
            SourceSet {
                source,
                set,
                members,
            }
        })
        .collect()
    })
}

/// The windows of one kind.
pub fn regions(windows: &Windows, source: Source) -> &[Range<usize>] {
    match source {
        Source::Numeric => &windows.numeric,
        Source::At => &windows.at,
        Source::Dotted => &windows.dotted,
        Source::Whole => &[],
    }
}

/// True when the token goes on after `end`: a letter or digit, or one of
/// `joiners` followed by one (a sentence's closing period is not a joiner).
fn continues(text: &str, end: usize, joiners: &[u8]) -> bool {
    let b = text.as_bytes();
    match b.get(end) {
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => true,
        Some(c) if joiners.contains(c) => b.get(end + 1).is_some_and(u8::is_ascii_alphanumeric),
        _ => false,
    }
}

fn before(text: &str, i: usize) -> Option<u8> {
    i.checked_sub(1).map(|j| text.as_bytes()[j])
}

fn after(text: &str, i: usize) -> Option<u8> {
    text.as_bytes().get(i).copied()
}

/// True when the span is not glued to more letters or digits (Rust's `\b`
/// cannot express "not after a digit or a dash" for spans starting with `+`).
fn standalone(text: &str, m: &Range<usize>) -> bool {
    let glued = |b: Option<u8>| b.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
    !glued(before(text, m.start)) && !glued(after(text, m.end))
}

fn card(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    // Groups must share one separator: "4111-1111 1111.1111" is not a card.
    let seps: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w[0] != w[1]) {
        return None;
    }
    if !standalone(text, &m) {
        return None;
    }
    if validate::credit_card(s) {
        Some((m, 1.0))
    } else {
        // Below the threshold alone, a card beside "card", "cc", "maestro".
        validate::maestro_12(s).then_some((m, 0.3))
    }
}

fn ssn(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    if !standalone(text, &m) || !validate::us_ssn(s) || validate::us_itin(s) {
        return None;
    }
    let score = match s.as_bytes().get(3) {
        Some(b'-') => 0.85,
        Some(b' ') | Some(b'.') => 0.6,
        _ => 0.3,
    };
    Some((m, score))
}

fn itin(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    let score = if s.contains('-') { 0.6 } else { 0.3 };
    (standalone(text, &m) && validate::us_itin(s)).then_some((m, score))
}

fn aba(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    (standalone(text, &m) && validate::aba_routing(&text[m.clone()])).then_some((m, 0.3))
}

fn nhs(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    let score = if s.contains(' ') { 0.65 } else { 0.3 };
    (standalone(text, &m) && validate::uk_nhs(s)).then_some((m, score))
}

fn nino(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    (standalone(text, &m) && validate::uk_nino(&text[m.clone()])).then_some((m, 0.85))
}

fn iban(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    if before(text, m.start).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let len = validate::iban_prefix(&text[m.start..m.end.min(text.len())])?;
    Some((m.start..m.start + len, 1.0))
}

fn ip(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    let glued =
        |b: Option<u8>| b.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b':');
    if glued(before(text, m.start)) || continues(text, m.end, b".:") {
        return None;
    }
    let (addr, _) = s.split_once('/').unwrap_or((s, ""));
    if validate::ipv4(addr) {
        // "version 1.2.3.4" reads like an address but is not one.
        let mut from = m.start.saturating_sub(10);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        let lead = &text[from..m.start].to_ascii_lowercase();
        let score = if lead.ends_with('v') || lead.contains("version") {
            0.2
        } else {
            0.85
        };
        return Some((m, score));
    }
    if validate::ipv6(addr) {
        // Bare "::" pairs and short clock-like forms are not addresses.
        let groups = addr.split(':').filter(|g| !g.is_empty()).count();
        return (groups >= 2 || addr == "::1").then_some((m, 0.85));
    }
    None
}

fn mac(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let glued = |b: Option<u8>| {
        b.is_some_and(|c| c.is_ascii_hexdigit() || c == b':' || c == b'-' || c == b'.')
    };
    (!glued(before(text, m.start)) && !glued(after(text, m.end))).then_some((m, 0.8))
}

fn btc(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    let ok = if s.starts_with("bc1") || s.starts_with("BC1") {
        validate::btc_bech32(s)
    } else {
        validate::btc_base58(s)
    };
    (ok && standalone(text, &m)).then_some((m, 1.0))
}

/// Two-letter country-code TLDs delegated by IANA.
const CC_TLDS: &str = "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo br bs bt bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg er es et eu fi fj fk fm fo fr ga gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw";

/// Generic TLDs in common use for web sites and mail.
const GENERIC_TLDS: &str = "com org net edu gov mil int info biz name pro mobi app dev io ai co xyz online site tech store shop blog cloud email live news media agency company solutions services digital network systems group global world today life space website club design art page link top museum aero coop travel jobs tel asia health bank insurance law legal finance money academy school university consulting partners ventures capital studio team works";

/// Top-level domains accepted for e-mail, URL and domain findings.
fn known_tld(tld: &str) -> bool {
    static SET: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    let set = SET.get_or_init(|| CC_TLDS.split(' ').chain(GENERIC_TLDS.split(' ')).collect());
    tld.len() <= 24 && set.contains(tld.to_ascii_lowercase().as_str())
}

fn email(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    let tld = s.rsplit('.').next()?;
    (known_tld(tld) && !s.contains("..")).then_some((m, 1.0))
}

fn trim_url_tail(text: &str, m: Range<usize>) -> Range<usize> {
    let mut end = m.end;
    while end > m.start {
        let c = text.as_bytes()[end - 1];
        let unbalanced_paren = c == b')' && !text[m.start..end].contains('(');
        if matches!(
            c,
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b'"' | b'\\'
        ) || unbalanced_paren
        {
            end -= 1;
        } else {
            break;
        }
    }
    m.start..end
}

fn url(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let m = trim_url_tail(text, m);
    let s = &text[m.clone()];
    let host = s.split_once("://").map_or(s, |(_, rest)| rest);
    let host = host.split(['/', '?', '#', ':']).next().unwrap_or("");
    if host.contains('@') {
        return None;
    }
    let tld_ok = host.rsplit('.').next().is_some_and(known_tld)
        || validate::ipv4(host)
        || host == "localhost";
    (tld_ok && host.len() > 3).then_some((m, 0.85))
}

/// File names and code member access look like domains ("main.rs",
/// "self.name", "report.ok"): a bare two-label name needs a web TLD and a
/// first label that is not a one-letter variable; calls are never domains.
fn domain(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let m = trim_url_tail(text, m);
    let s = &text[m.clone()];
    // Never inside an e-mail address or a URL (those are reported whole).
    let glued = |b: Option<u8>| {
        b.is_some_and(|c| {
            matches!(c, b'@' | b'/' | b'.' | b'_' | b'$' | b':') || c.is_ascii_alphanumeric()
        })
    };
    if glued(before(text, m.start))
        || matches!(after(text, m.end), Some(b'@' | b'(' | b'/' | b'_' | b'['))
    {
        return None;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let tld = labels.last()?.to_ascii_lowercase();
    if !known_tld(&tld) || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    const WEB: &[&str] = &[
        "com", "org", "net", "edu", "gov", "io", "co", "ai", "dev", "info", "biz", "uk", "de",
        "fr", "nl", "eu", "ca", "au", "jp", "ch", "se", "es", "us", "ru", "br", "cn", "pl", "be",
        "at", "dk", "fi", "ie", "nz", "za", "mx", "kr", "sg", "hk", "tw", "cz", "pt", "gr", "hu",
        "ro", "ua", "tr", "il", "ar", "cl", "pk", "ng", "ke", "eg", "ae", "sa", "vn", "th", "ph",
        "my", "tv", "me", "cc",
    ];
    let www = labels[0].eq_ignore_ascii_case("www");
    let lower_label = |l: &str| {
        l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let plausible = labels.len() > 2
        || WEB.contains(&tld.as_str()) && labels[0].len() >= 2 && lower_label(labels[0]);
    let score = if www || labels.len() > 2 && plausible {
        0.85
    } else if plausible {
        0.7
    } else {
        0.3
    };
    Some((m, score))
}

fn valid_date(y: Option<u32>, mo: u32, d: u32) -> bool {
    (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && y.is_none_or(|y| (1000..=2999).contains(&y) || y < 100)
}

fn numeric_date(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    if !standalone(text, &m)
        || after(text, m.end).is_some_and(|c| {
            c == b'.'
                && text
                    .as_bytes()
                    .get(m.end + 1)
                    .is_some_and(u8::is_ascii_digit)
        })
    {
        return None;
    }
    let parts: Vec<u32> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(3)
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect();
    let [a, b, c] = parts[..] else { return None };
    let first_is_year = s
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .is_some_and(|p| p.len() == 4);
    let ok = if first_is_year {
        valid_date(Some(a), b, c)
    } else {
        valid_date(Some(c), a, b) || valid_date(Some(c), b, a)
    };
    if !ok {
        return None;
    }
    let score = if first_is_year && s.as_bytes().get(4) == Some(&b'-') {
        0.85
    } else {
        0.6
    };
    Some((m, score))
}

fn text_date(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    standalone(text, &m).then_some((m, 0.8))
}

fn time(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[m.clone()];
    let mut it = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let h: u32 = it.next()?.parse().ok()?;
    let min: u32 = it.next().map_or(Some(0), |p| p.parse().ok())?;
    let has_meridiem = s.bytes().any(|b| matches!(b, b'a' | b'A' | b'p' | b'P'));
    let ok = min < 60
        && if has_meridiem {
            (1..=12).contains(&h)
        } else {
            h < 24
        };
    // "3:2" ratios and scores like "2:1" are not times.
    let shaped = has_meridiem || s.split(':').nth(1).is_some_and(|p| p.len() >= 2);
    // "10:53 pm." ends a sentence; "p.m." keeps its own period.
    let mut m = m;
    if s.ends_with("m.") && !s.ends_with(".m.") && !s.ends_with(".M.")
        || s.ends_with("M.") && !s.ends_with(".M.")
    {
        m.end -= 1;
    }
    (ok && shaped && standalone(text, &m)).then_some((m, if has_meridiem { 0.8 } else { 0.6 }))
}

/// A bare year ("in 1998"): weak alone, a date with a context word before it.
fn year(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let glued = |b: Option<u8>| {
        b.is_some_and(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b',' | b'-' | b'/' | b':' | b'$' | b'#')
        })
    };
    let money_or_math = after(text, m.end).is_some_and(|c| matches!(c, b'%' | b'x' | b'+' | b'*'));
    if glued(before(text, m.start)) || continues(text, m.end, b".,:-/") || money_or_math {
        return None;
    }
    // Only the word right before counts: "in 1998", "since 2019", "class of 2024".
    const CUES: &[&str] = &[
        "in",
        "since",
        "year",
        "born",
        "until",
        "till",
        "during",
        "circa",
        "of",
        "from",
        "by",
        "before",
        "after",
        "early",
        "late",
        "mid",
        "graduated",
        "founded",
        "established",
        "fiscal",
        "fy",
    ];
    let head = text[..m.start].trim_end();
    let prev = head
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let score = if CUES.contains(&prev.as_str()) && head.len() < m.start {
        0.7
    } else {
        0.3
    };
    Some((m, score))
}

/// A person's age, written with its cue ("42 years old", "a 42-year-old", "aged 42", "Age: 42",
/// "42 y/o", "turned 42"): the finding is the number alone, as datasets label it.
fn age(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let phrase = &text[m.clone()];
    let at = phrase.find(|c: char| c.is_ascii_digit())?;
    let len = phrase[at..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(phrase.len() - at);
    let value: u32 = phrase[at..at + len].parse().ok()?;
    // Ages of people; "a 500-year-old oak" is not one.
    if value > 125 {
        return None;
    }
    let number = m.start + at..m.start + at + len;
    // "12.5 years old" or "3,000 years": part of a larger number.
    let glued =
        |b: Option<u8>| b.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b',');
    if glued(before(text, number.start)) && at == 0 {
        return None;
    }
    if text
        .as_bytes()
        .get(number.end)
        .is_some_and(|c| matches!(c, b'.' | b','))
        && text
            .as_bytes()
            .get(number.end + 1)
            .is_some_and(u8::is_ascii_digit)
    {
        return None;
    }
    Some((number, 0.85))
}

/// An address only an address word nearby confirms (raised by the context boost).
fn weak_address(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    // A unit line or a closing postcode line makes it an address on its own.
    static LINES: OnceLock<Regex> = OnceLock::new();
    let lines = LINES.get_or_init(|| {
        Regex::new(
            r"(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat)\s*#?\d|[\n,]\s*\p{Lu}[^\n,]*\s\d{4,5}$",
        )
        .unwrap_or_else(|e| panic!("address lines regex: {e}"))
    });
    address(text, m).map(|(m, score)| {
        let strong = lines.is_match(&text[m.clone()]);
        (m, if strong { score.min(0.93) } else { 0.3 })
    })
}

fn address(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    const ABBREVIATIONS: &[&str] = &[
        "St", "Ave", "Av", "Blvd", "Rd", "Ln", "Dr", "Ct", "Pl", "Sq", "Hwy", "Pkwy", "Cir", "Ter",
        "Trl", "Expy", "Fwy", "Hts", "Plz", "Pt", "Xing", "Ext", "Sta", "Tpke", "Rte", "Byp",
        "Ctr", "Cres", "Aly", "Ste", "Apt", "Fl", "Rm",
    ];
    let mut m = m;
    if let Some(head) = text[m.clone()].strip_suffix('.') {
        let last = head.rsplit([' ', ',']).next().unwrap_or("");
        if !ABBREVIATIONS.contains(&last) {
            m.end -= 1;
        }
    }
    // A house number, a street word and a name is strong evidence, stronger than the name
    // reading of "Baker Street"; a city or postcode after a comma, stronger still.
    let score = if text[m.clone()].contains(',') {
        0.95
    } else {
        0.92
    };
    if !standalone(text, &m) {
        return None;
    }
    m.start = building_number_before(text, m.start);
    if ends_with_unit(&text[m.clone()]) {
        m.end = same_line_tail(text, m.end);
    }
    m.end = address_tail(text, m.end);
    Some((intersection(text, m), score))
}

/// A street corner names a place as an address does: "the corner of 1356 Impala St and Sara
/// Locks" is one span, from "the corner of" to the second street's word.
fn intersection(text: &str, m: Range<usize>) -> Range<usize> {
    let head = text[..m.start].trim_end_matches(' ');
    let Some(before) = strip_suffix_ci(head, "corner of") else {
        return m;
    };
    if before.ends_with(|c: char| c.is_alphanumeric()) {
        return m;
    }
    let start = strip_suffix_ci(before.trim_end_matches(' '), "the")
        .filter(|b| !b.ends_with(|c: char| c.is_alphanumeric()))
        .map_or(before.len(), str::len);
    // The second street: " and " (or " & "), up to four capitalized words, the last a street
    // word ("Sara Locks", "Paterson Pass", "Vizirov Lodge St.").
    let rest = &text[m.end..];
    let Some(after) = rest
        .strip_prefix(" and ")
        .or_else(|| rest.strip_prefix(" & "))
    else {
        return start..m.end;
    };
    let suffixes: Vec<&str> = STREET_SUFFIXES.split('|').collect();
    let mut end = None;
    let mut at = 0;
    for w in after.split(' ').take(4) {
        let word = w.trim_end_matches(['.', ',', '?', '!', ';', ':']);
        if !word.chars().next().is_some_and(char::is_uppercase) {
            break;
        }
        if at > 0 && suffixes.contains(&word) {
            end = Some(at + word.len());
        }
        at += w.len() + 1;
        if word.len() != w.len() {
            break;
        }
    }
    let end = end.map_or(m.end, |e| m.end + rest.len() - after.len() + e);
    start..end
}

/// `s` without `suffix` at its end, ignoring ASCII case.
fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(at) && s[at..].eq_ignore_ascii_case(suffix)).then(|| &s[..at])
}

/// How far an address runs on past its street line: the city, region, country and postcode
/// parts that letters and forms put after it, on lines of their own or after commas
/// ("…Suite 187\n MARTTILA\n Finland", "…Apt. 376, TALENCE, France 87702"). A part is a
/// place-shaped phrase, a postcode, or both; the address is extended only up to a part that
/// is a known place or carries a postcode, so an unknown capitalized phrase alone never is.
fn address_tail(text: &str, end: usize) -> usize {
    let places = &crate::names::Gazetteers::get().places;
    let mut best = end;
    let mut at = end;
    for _ in 0..3 {
        let rest = &text[at..];
        let b = rest.as_bytes();
        let mut i = 0;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= b.len() || !matches!(b[i], b'\n' | b',') {
            break;
        }
        // Forms leave an empty field as a comma on its own line ("Pinellas\n, FL"); a blank
        // line (two line breaks) ends the address.
        let mut last = 0u8;
        while i < b.len() && matches!(b[i], b'\n' | b',') && b[i] != last {
            last = b[i];
            i += 1;
            while i < b.len() && matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
        }
        let len = rest[i..].find(['\n', ',']).unwrap_or(rest.len() - i);
        let line = rest[i..i + len].trim_end();
        // The longest run of the part's first words that reads as a place: the sentence may
        // go on after it ("…, France. Thanks").
        let mut cut = line.len();
        let found = loop {
            let part = line[..cut].trim_end_matches(['.', '?', '!', ';', ':', ')']);
            if let Some(known) = place_part(part, places) {
                break Some((part.len(), known));
            }
            match line[..cut].rfind(' ') {
                Some(space) if space > 0 => cut = space,
                _ => break None,
            }
        };
        let Some((len, known)) = found else {
            break;
        };
        // A number alone at the head of a line of numbers is no postcode ("9380 6377").
        if len < line.len() && !line[..len].contains(char::is_alphabetic) {
            break;
        }
        at += i + len;
        if known {
            best = at;
        }
        if len < line.len() {
            break;
        }
    }
    best
}

/// Whether `part` reads as a place line: `Some(true)` when it is a known place or carries a
/// postcode ("Spain 19595", "75002 Paris", "BZ 21011"), `Some(false)` for a capitalized phrase
/// that could be a small town, `None` for anything else.
fn place_part(part: &str, places: &crate::names::Set) -> Option<bool> {
    let words: Vec<&str> = part.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() || words.len() > 6 {
        return None;
    }
    let postcode = |w: &str| (4..=5).contains(&w.len()) && w.bytes().all(|c| c.is_ascii_digit());
    let mut name = &words[..];
    let mut codes = 0;
    if let Some((first, rest)) = name.split_first() {
        if postcode(first) {
            codes += 1;
            name = rest;
        }
    }
    if let Some((last, rest)) = name.split_last() {
        if postcode(last) {
            codes += 1;
            name = rest;
        }
    }
    // Two numbers and no name is a phone number or a figure ("9380 6377"), not a postcode line.
    if codes == 2 && name.is_empty() {
        return None;
    }
    let coded = codes > 0;
    // A region's code before the postcode or after the town ("Egkomi NI", "BZ 21011").
    if let Some((last, rest)) = name.split_last() {
        if last.len() == 2
            && last.bytes().all(|c| c.is_ascii_uppercase())
            && (coded || !rest.is_empty())
        {
            name = rest;
        }
    }
    if name.len() > 4 {
        return None;
    }
    let shaped = name.iter().all(|w| {
        let mut cs = w.chars();
        cs.next().is_some_and(char::is_uppercase)
            && cs.all(|c| c.is_alphabetic() || matches!(c, '\'' | '-' | '.'))
    });
    if !shaped {
        return None;
    }
    if name.is_empty() {
        return coded.then_some(true);
    }
    // A town the lists lack followed by its country or region ("Trivières Belgium").
    let known = (1..=name.len().min(3)).any(|k| {
        let tail = &name[name.len() - k..];
        places.contains(tail.join(" ").to_lowercase().as_str())
    });
    Some(coded || known)
}

/// Where an address that opens with its street's name starts when a building or lot number
/// stands before it ("511 Rebbåsbakken 48", "312 Bécsi utca 35."): that number belongs to it.
fn building_number_before(text: &str, start: usize) -> usize {
    let head = &text[..start];
    if !text[start..].starts_with(|c: char| c.is_alphabetic()) {
        return start;
    }
    let spaced = head.trim_end_matches(' ');
    if spaced.len() == head.len() || head.len() - spaced.len() > 2 {
        return start;
    }
    let number = spaced.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = spaced.len() - number.len();
    let bounded = number
        .chars()
        .next_back()
        .is_none_or(|c| c.is_whitespace() || matches!(c, ',' | ':' | '(' | '"'));
    if (1..=6).contains(&digits) && bounded {
        number.len()
    } else {
        start
    }
}

/// A unit at the end of an address ("Apt. 538", "Suite 606"): forms write the town and
/// country after it on the same line.
fn ends_with_unit(s: &str) -> bool {
    let s = s.trim_end_matches(|c: char| c.is_ascii_alphanumeric());
    let s = s.trim_end_matches([' ', '#']);
    ["Apt.", "Apt", "Apartment", "Suite", "Ste.", "Unit", "Flat"]
        .iter()
        .any(|u| s.ends_with(u))
}

/// The town, region and country written after a unit on the same line ("Apt. 538
/// Giessenburg Zuid-Holland", "Suite 058 Akureyri Iceland"): the longest run of capitalized
/// words that ends with a known place or a postcode.
fn same_line_tail(text: &str, end: usize) -> usize {
    let places = &crate::names::Gazetteers::get().places;
    let rest = &text[end..];
    let rest = &rest[..rest.find(['\n', '\r']).unwrap_or(rest.len())];
    if !rest.starts_with(' ') {
        return end;
    }
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    for w in rest.split(' ') {
        let start = i;
        i += w.len() + 1;
        if w.is_empty() {
            if spans.is_empty() {
                continue;
            }
            break;
        }
        let word = w.trim_end_matches(['.', ',', '?', '!', ';', ':']);
        let capital = word.chars().next().is_some_and(char::is_uppercase);
        let digits = (4..=5).contains(&word.len()) && word.bytes().all(|c| c.is_ascii_digit());
        if !(capital || digits) || spans.len() == 6 {
            break;
        }
        spans.push((start, start + word.len()));
        if word.len() != w.len() {
            break;
        }
    }
    for k in (1..=spans.len()).rev() {
        let (first, last) = (spans[0].0, spans[k - 1].1);
        if place_part(&rest[first..last], places) == Some(true) {
            return end + last;
        }
    }
    end
}

fn weak(score: f32) -> Check {
    match () {
        _ if score <= 0.05 => |text, m| standalone(text, &m).then_some((m, 0.05)),
        _ if score <= 0.1 => |text, m| standalone(text, &m).then_some((m, 0.1)),
        _ if score <= 0.2 => |text, m| standalone(text, &m).then_some((m, 0.2)),
        _ => |text, m| standalone(text, &m).then_some((m, 0.3)),
    }
}

/// The plan regions tried for written national numbers outside NANP.
const PHONE_REGIONS: &[phonenumber::country::Id] = {
    use phonenumber::country::Id::*;
    &[GB, DE, FR, IN, AU]
};

/// Numbers written the way people write phone numbers ("(212) 555-0147",
/// "+1-449-956-6936", "+44 20 7946 0958") even when the plan metadata says the
/// area code is unassigned: still a phone number to a reader.
fn phone_shaped(core: &str) -> bool {
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    let re = SHAPE.get_or_init(|| {
        Regex::new(r"^(?:(?:\+|00)1[ .\-]?)?(?:\(\d{3}\) ?|\d{3}[ .\-])\d{3}[ .\-]\d{4}$|^(?:\+|00)\d{1,3}(?:[ .\-]\(?\d{1,8}\)?){1,5}$")
            .unwrap_or_else(|e| panic!("phone shape regex: {e}"))
    });
    re.is_match(core)
}

/// Written as people write phone numbers, though no numbering plan checked here assigns it
/// ("9380 6377", "(711)471-0497", "052 948 46 74", "07289025797"): too weak alone, a phone
/// number beside a context word ("call", "fax", "tel").
fn phone_plausible(core: &str) -> bool {
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    let re = SHAPE.get_or_init(|| {
        Regex::new(r"^(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?\d{2,5}(?:[ .\-]\d{2,8}){1,4}$|^(?:\+\d{1,3}[ .\-]?)?\(\d{1,5}\)[ .\-]?\d{3,8}$|^0\d{9,10}$")
            .unwrap_or_else(|e| panic!("phone plausibility regex: {e}"))
    });
    static DATE_TIME: OnceLock<Regex> = OnceLock::new();
    let date = DATE_TIME.get_or_init(|| {
        Regex::new(r"^(?:19|20)\d{2}[-./]\d{1,2}[-./]\d{1,2}")
            .unwrap_or_else(|e| panic!("date prefix regex: {e}"))
    });
    re.is_match(core) && !date.is_match(core)
}

/// Below the default threshold alone, above it with a context word.
const PHONE_PLAUSIBLE: f32 = 0.35;

fn phone_valid(candidate: &str) -> Option<f32> {
    phone_score(candidate).or_else(|| {
        let core = candidate.split(['x', 'X']).next().unwrap_or("").trim();
        let digits = core.bytes().filter(u8::is_ascii_digit).count();
        ((7..=15).contains(&digits) && !validate::ipv4(core) && phone_plausible(core))
            .then_some(PHONE_PLAUSIBLE)
    })
}

fn phone_score(candidate: &str) -> Option<f32> {
    // Keep only what the parser needs: digits, a leading +, separators.
    let core = match candidate.find(['x', 'X', 'e', 'E']) {
        Some(i) => &candidate[..i],
        None => candidate,
    }
    .trim();
    let digits = core.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return None;
    }
    // Dotted quads and dates are not phone numbers, whatever a plan allows.
    static DATE_SHAPE: OnceLock<Regex> = OnceLock::new();
    let date = DATE_SHAPE.get_or_init(|| {
        Regex::new(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4})$")
            .unwrap_or_else(|e| panic!("date shape regex: {e}"))
    });
    if validate::ipv4(core) || date.is_match(core) {
        return None;
    }
    let formatted = core
        .bytes()
        .any(|b| matches!(b, b'-' | b' ' | b'.' | b'(' | b')'));
    let d = validate::digits(core);
    let international = core.starts_with('+') || core.starts_with("00");
    let national = if core.starts_with("00") {
        &d[2..]
    } else {
        &d[..]
    };
    // NANP numbers are checked here, without the plan metadata: most phone
    // numbers in English text are NANP, and libphonenumber's regex cache
    // (100 entries, one lock) thrashes when every region is tried.
    if international && national.first() == Some(&1)
        || !international && national.len() == 11 && national[0] == 1
    {
        return match validate::nanp(&national[1..]) {
            true => Some(if international { 0.85 } else { 0.75 }),
            false => phone_shaped(core).then_some(0.6),
        };
    }
    if !international && validate::nanp(national) {
        return Some(if formatted { 0.8 } else { 0.5 });
    }
    if international {
        let norm = format!(
            "+{}",
            national
                .iter()
                .map(|x| char::from(b'0' + x))
                .collect::<String>()
        );
        let valid = phonenumber::parse(None, &norm).is_ok_and(|n| phonenumber::is_valid(&n));
        return if valid {
            Some(0.85)
        } else {
            phone_shaped(core).then_some(0.6)
        };
    }
    // Other national formats: only written ones that start with the trunk
    // prefix every region tried here dials first ("020 7946 0958", "01 23 45
    // 67 89"); a bare digit run, or figures, scores and date-times in prose
    // ("2000-04-16 11", "1996 125 300"), is too likely to be some other number.
    if formatted && core.starts_with('0') {
        for region in PHONE_REGIONS {
            if phonenumber::parse(Some(*region), core).is_ok_and(|n| phonenumber::is_valid(&n)) {
                return Some(0.6);
            }
        }
    }
    phone_shaped(core).then_some(0.6)
}

fn phone(text: &str, m: Range<usize>) -> Option<(Range<usize>, f32)> {
    let glued = |b: Option<u8>| {
        b.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'+'))
    };
    if glued(before(text, m.start))
        || before(text, m.start) == Some(b'.')
            && m.start >= 2
            && text.as_bytes()[m.start - 2].is_ascii_digit()
    {
        return None;
    }
    // A candidate may have swallowed a trailing number ("555-123-4567 2
    // times"): retry without trailing groups before giving up.
    // A label joined by a hyphen ("(08) 8219 9791-Office") is no part of the number.
    let labelled = |end: usize| {
        text[end..]
            .strip_prefix('-')
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphabetic()))
    };
    let mut end = m.end;
    for _ in 0..4 {
        let span = m.start..end;
        if (!glued(after(text, end)) || labelled(end)) && !continues(text, end, b".") {
            if let Some(score) = phone_valid(&text[span.clone()]) {
                return Some((span, score));
            }
        }
        let s = &text[m.start..end];
        match s.rfind([' ', '-', '.']) {
            Some(i) if i > 0 => end = m.start + s[..i].trim_end_matches([' ', '-', '.']).len(),
            _ => break,
        }
    }
    None
}

fn words(list: &[&'static str]) -> Vec<Cow<'static, str>> {
    list.iter().map(|w| Cow::Borrowed(*w)).collect()
}

const STREET_SUFFIXES: &str = "Alley|Allee|Aly|Avenue|Ave|Av|Boulevard|Blvd|Branch|Bridge|Brook|Brooks|Burg|Burgs|Bypass|Byp|Camp|Canyon|Cape|Causeway|Center|Ctr|Circle|Cir|Circles|Cliff|Cliffs|Close|Club|Common|Corner|Corners|Course|Court|Ct|Courts|Cove|Coves|Creek|Crescent|Cres|Crest|Crossing|Xing|Crossroad|Curve|Dale|Dam|Divide|Drive|Dr|Drives|Estate|Estates|Expressway|Expy|Extension|Ext|Fall|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Forges|Fork|Forks|Fort|Freeway|Fwy|Garden|Gardens|Gateway|Glen|Glens|Green|Greens|Grove|Groves|Harbor|Harbors|Haven|Heights|Hts|Highway|Hwy|Hill|Hills|Hollow|Inlet|Island|Islands|Isle|Junction|Junctions|Key|Keys|Knoll|Knolls|Lake|Lakes|Land|Landing|Lane|Ln|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|Manors|Meadow|Meadows|Mews|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|Park|Parks|Parkway|Pkwy|Parkways|Pass|Passage|Path|Pike|Pine|Pines|Place|Pl|Plain|Plains|Plaza|Plz|Point|Pt|Points|Port|Ports|Prairie|Radial|Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Road|Rd|Roads|Route|Rte|Row|Rue|Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|Springs|Spur|Spurs|Square|Sq|Squares|Station|Sta|Stravenue|Stream|Street|St|Streets|Summit|Terrace|Ter|Throughway|Trace|Track|Trafficway|Trail|Trl|Tunnel|Turnpike|Tpke|Underpass|Union|Unions|Valley|Valleys|Via|Viaduct|View|Views|Village|Villages|Ville|Vista|Walk|Walks|Wall|Way|Ways|Well|Wells";

/// The built-in pattern recognizers, compiled once per process.
/// Lazy DFA cache per pattern and set: the address patterns' Unicode letter classes fill the
/// default 2 MB, after which the engine falls back to a several times slower one.
const DFA_CACHE: usize = 16 << 20;

/// Words that open a street's name where the house number follows it.
const INTL_STREET_WORDS: &str = "calle|carrer|rúa|avenida|avda|av|rua|travessa|largo|praça|praca|alameda|via|viale|piazza|corso|vicolo|plaza|paseo|camino|carretera|ronda|rue|avenue|boulevard|chemin|ulica|ul|strada|calea|bulevardul|straße|strasse";
/// Street words written as one word with the name ("Hauptstraße", "Kerkstraat").
/// (Not "ring", "gate", "kade" or "tie": "During 2020", "Watergate", "Blockade" end so.)
const INTL_STREET_SUFFIXES: &str = "straße|strasse|str\\.|weg|gasse|platz|allee|damm|ufer|straat|laan|gracht|plein|steeg|vej|gatan|gata|vägen|veien|vegen|bakken|stien|katu|kuja|polku|stræti|straeti|gränd|braut";
/// Street words written apart from the name ("Baker Street" is the US/UK form above; these are
/// the Dutch, German and Nordic ones a house number follows).
const INTL_STREET_SUFFIXES_SPACED: &str =
    "straße|strasse|weg|allee|platz|straat|laan|vej|gatan|gata|veg|vei|utca|út|u\\.|körút|krt\\.|terrasse|ulica|cesta|trg";
/// Lines after a street line, as forms and letters stack them: a unit ("Suite 559", "Apt.
/// 440"), then a city and a country or region ending with its postcode ("Runkelen\n Belgium
/// 65601"). Only taken whole, up to the postcode, so a greeting on the next line stays out.
const ADDRESS_LINES: &str = r"(?:(?:\s*[\n,]\s*|[ \t]+)(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat)\s*#?\d{1,5}[A-Za-z]?)?(?:(?:\s*[\n,]\s*\p{Lu}[\p{L}'\-]+(?:[ \-]\p{Lu}[\p{L}'\-]+){0,3}){1,2},?\s+(?:[A-Z]{2}\s+)?\d{4,5}\b)?";

/// A building or lot number before the house number ("40187 263 Xanthoudidou Street"), never
/// a year (1900–2099), which would take a date into the address.
const LEADING_NUMBER: &str = r"(?:\d{1,3}|\d{5,6}|[03-9]\d{3}|1[0-8]\d{2}|2[1-9]\d{2})";

/// Words inside a street's name ("Calle de Alcalá", "Rue de la Paix").
const INTL_LINKS: &str = "de|del|de la|de los|de las|da|do|das|dos|di|della|delle|dei|du|des|la|le|l'|d'|von|van|der|den";

pub fn builtin() -> &'static [PatternRecognizer] {
    static SET: OnceLock<Vec<PatternRecognizer>> = OnceLock::new();
    SET.get_or_init(|| {
        let month = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|JAN(?:UARY)?|FEB(?:RUARY)?|MAR(?:CH)?|APR(?:IL)?|MAY|JUNE?|JULY?|AUG(?:UST)?|SEP(?:T(?:EMBER)?)?|OCT(?:OBER)?|NOV(?:EMBER)?|DEC(?:EMBER)?)";
        let weekday = r"(?:(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?\.?,?\s+)?";
        let address_re = format!(
            r"\b(?:{LEADING_NUMBER}\s+)?\d{{1,6}}[A-Za-z]?(?:-\d{{1,4}})?\s+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s+)?(?:\p{{Lu}}[\p{{L}}'\-]*\.?\s+){{1,4}}(?:{STREET_SUFFIXES})\b\.?(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Floor|Fl\.?|Room|Rm\.?|#)\s*#?[A-Za-z0-9\-]+)?(?:,?\s+[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+){{0,2}},\s+[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?|,?\s+[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+)?,?\s+[A-Z]{{1,2}}\d[A-Z\d]?\s?\d[A-Z]{{2}}\b)?{ADDRESS_LINES}"
        );
        let r = |name: &'static str, entity: &'static str, source: Source, re: &str, check: Check, context: &[&'static str]| PatternRecognizer {
            name: Cow::Borrowed(name),
            entity: Cow::Borrowed(entity),
            // ASCII word boundaries and digits keep every pattern on the lazy DFA: a
            // Unicode `\b` sends non-ASCII text to the much slower backtracker.
            regex: RegexBuilder::new(&re.replace(r"\b", r"(?-u:\b)").replace(r"\d", "[0-9]"))
                .dfa_size_limit(DFA_CACHE)
                .build()
                .unwrap_or_else(|e| panic!("built-in pattern {name} does not compile: {e}")),
            source,
            check: Some(check),
            score: 0.0,
            context: words(context),
        };
        use Source::*;
        vec![
            r("CreditCardRecognizer", "CREDIT_CARD", Numeric, r"\b\d{4}(?:[ -]?\d{4}){2}(?:[ -]?\d{1,7})?\b|\b\d{4}[ -]?\d{6}[ -]?\d{4,5}\b", card,
              &["credit", "card", "visa", "mastercard", "amex", "discover", "jcb", "diners", "maestro", "cc", "payment"]),
            r("UsSsnRecognizer", "US_SSN", Numeric, r"\b\d{3}([- .]?)\d{2}[- .]?\d{4}\b", ssn,
              &["ssn", "ssns", "ssn#", "social", "security", "ss#", "ssid"]),
            r("UsItinRecognizer", "US_ITIN", Numeric, r"\b9\d{2}[- ]?\d{2}[- ]?\d{4}\b", itin,
              &["individual", "taxpayer", "itin", "tax", "payer", "taxid", "tin"]),
            r("AbaRoutingRecognizer", "ABA_ROUTING_NUMBER", Numeric, r"\b[0-9]{4}-?[0-9]{4}-?[0-9]\b", aba,
              &["aba", "routing", "abarouting", "association", "bankrouting", "transit", "rtn"]),
            r("NhsRecognizer", "UK_NHS", Numeric, r"\b\d{3}[- ]?\d{3}[- ]?\d{4}\b", nhs,
              &["national health service", "nhs", "health services authority", "health authority", "patient"]),
            r("UkNinoRecognizer", "UK_NINO", Numeric, r"\b[A-Za-z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Da-d]\b", nino,
              &["national insurance", "ni number", "nino", "insurance"]),
            r("IbanRecognizer", "IBAN_CODE", Numeric, r"\b[A-Z]{2}\d{2}[ -]?[A-Z0-9]{4}(?:[ -]?[A-Z0-9]{1,4}){1,7}", iban,
              &["iban", "bank", "transaction", "account"]),
            r("IpRecognizer", "IP_ADDRESS", Numeric, r"\b(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?\b|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}", ip,
              &["ip", "ipv4", "ipv6", "address", "host", "server"]),
            r("MacAddressRecognizer", "MAC_ADDRESS", Numeric, r"\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b|\b[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\b", mac,
              &["mac", "ethernet", "hardware", "nic", "wifi", "bluetooth"]),
            r("CryptoRecognizer", "CRYPTO", Numeric, r"\b(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|(?:bc1|BC1)[a-zA-HJ-NP-Z0-9]{8,87})\b", btc,
              &["wallet", "btc", "bitcoin", "crypto"]),
            r("DateRecognizer", "DATE_TIME", Numeric, r"\b\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b|\b\d{1,4}[/.\-]\d{1,2}[/.\-]\d{2,4}\b", numeric_date,
              &["date", "birthday", "born", "dob", "birth", "on", "since", "until", "expires", "expiry"]),
            r("DateTextRecognizer", "DATE_TIME", Numeric, &format!(r"\b{weekday}(?:{month}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{month}\.?(?:,?\s+\d{{4}})?|{month}\.?,?\s+\d{{4}})\b"), text_date,
              &["date", "birthday", "born", "dob", "birth"]),
            r("TimeRecognizer", "DATE_TIME", Numeric, r"\b\d{1,2}(?::\d{2}(?::\d{2})?)?\s?(?:[AaPp]\.?[Mm]\.?)|\b\d{1,2}:\d{2}(?::\d{2})?\b", time,
              &["time", "at", "o'clock"]),
            r("YearRecognizer", "DATE_TIME", Numeric, r"\b(?:1[89][0-9]{2}|20[0-9]{2})\b", year,
              &[]),
            r("PhoneRecognizer", "PHONE_NUMBER", Numeric, r"(?:(?:\+|\b00)\d{1,3}[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?\d{1,11}(?:[ .\-]\d{1,8}){0,5}(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?", phone,
              &["phone", "telephone", "cell", "cellphone", "mobile", "call", "tel", "fax", "contact", "whatsapp", "reach", "text", "number", "office", "ph", "landline", "dial", "ring", "sms", "desk", "hotline", "helpline", "voicemail", "answering", "registered"]),
            r("EmailRecognizer", "EMAIL_ADDRESS", At, r"[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?)*\.[A-Za-z]{2,24}\b", email,
              &["email", "e-mail", "mail"]),
            r("UrlRecognizer", "URL", Dotted, r#"(?i)\b(?:https?|ftp)://[^\s<>"'`]+|\bwww\d{0,3}\.[^\s<>"'`]+"#, url,
              &["url", "website", "link", "site"]),
            r("DomainRecognizer", "DOMAIN_NAME", Dotted, r"(?i)\b(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b", domain,
              &["domain", "website", "site", "hostname", "host"]),
            r("StreetAddressRecognizer", "STREET_ADDRESS", Numeric, &address_re, address,
              &["address", "live", "lives", "located", "street", "ship", "deliver", "mail"]),
            r("AgeRecognizer", "AGE", Numeric, r"(?i)\b\d{1,3}\s?-?\s?(?:years?|yrs?)[\s-]?(?:old\b|of\s+age\b)|\b\d{1,3}\s?(?:y/o|y\.o\.|yo\b|yrs?\s+old\b)|\b(?:aged?|turn(?:ed|s|ing)?)\s*(?::|=|is|was|of)?\s*\d{1,3}\b", age,
              &["age", "aged", "old", "years"]),
            // Street name first, house number after, as most of Europe and Latin America
            // write it ("Calle de Alcalá 48, 28014 Madrid", "Hauptstraße 5", "Rua Augusta 1500,
            // apto 42"), and the French number-first form ("15 Rue de la Paix, 75002 Paris").
            r("StreetAddressRecognizer", "STREET_ADDRESS", Numeric, &format!(
                r"(?:\b(?i:{INTL_STREET_WORDS})\.?\s+(?:(?i:{INTL_LINKS})\s+){{0,3}}\p{{Lu}}[\p{{L}}'\-]*(?:\s+(?:(?i:{INTL_LINKS})\s+)?\p{{Lu}}[\p{{L}}'\-]*){{0,3}}|\b\p{{Lu}}[\p{{Ll}}ß]+(?i:{INTL_STREET_SUFFIXES})|\b\p{{Lu}}[\p{{L}}'\-]+(?:\s+\p{{Lu}}[\p{{L}}'\-]+)?\s+(?i:{INTL_STREET_SUFFIXES_SPACED}))\s+\d{{1,5}}[A-Za-z]?(?:\s?-\s?\d{{1,4}})?\.?(?:,?\s+(?i:apto|apt|piso|ap|app|appt|bus|étage|stock|esc|puerta|dpto|depto|int)\.?\s*[0-9A-Za-zºª]{{1,5}})?(?:,?\s+(?:[A-Z]{{1,2}}-)?\d{{4,5}}(?:-\d{{3}})?\s+\p{{Lu}}[\p{{L}}'\-]+(?:\s\p{{Lu}}[\p{{L}}'\-]+)?|,\s+\p{{Lu}}[\p{{L}}'\-]+(?:\s\p{{Lu}}[\p{{L}}'\-]+)?)?{ADDRESS_LINES}|\b\d{{1,5}}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|av\.|boulevard|bd|place|allée|chemin|impasse|quai|route|cours)\s+(?:(?i:de|du|des|la|le|l'|d')\s*)*\p{{Lu}}[\p{{L}}'\-]+(?:\s+(?:(?i:de|du|des|la|le|l'|d')\s*)*\p{{Lu}}[\p{{L}}'\-]+){{0,3}}(?:\s+\d{{1,5}}\b)?(?:,?\s+\d{{5}}\s+\p{{Lu}}[\p{{L}}'\-]+(?:\s\p{{Lu}}[\p{{L}}'\-]+)?)?{ADDRESS_LINES}"
              ), address,
              &["address", "live", "lives", "located", "street", "ship", "deliver", "mail", "dirección", "adresse", "endereço", "indirizzo"]),
            // Military mail (USPS): "USS Lindqvist, FPO AE 67601", "PSC 3412, Box 5242, APO AA
            // 29282", "Unit 3848 Box 3726, DPO AE 51928".
            r("StreetAddressRecognizer", "STREET_ADDRESS", Numeric, r"\b(?:(?:USNS|USNV|USS|USCGC)\s+\p{Lu}[\p{L}\-]+|(?:PSC|Unit|CMR)\s+\d{3,5},?\s+Box\s+\d{3,5}),?\s+[AFD]PO\s+A[AEP]\s+\d{5}\b", address,
              &["address", "mail", "ship", "send"]),
            // Post-office boxes, with the town and country lines after them ("P.O. Box 178\n
            // Apt. 391\n Upernavik", "PO Box 46").
            r("StreetAddressRecognizer", "STREET_ADDRESS", Numeric, &format!(r"\b(?:P\.\s?O\.|PO|Post\s+Office)\s+Box\s+\d{{1,6}}\b{ADDRESS_LINES}"), address,
              &["address", "mail", "ship", "send"]),
            // A name between numbers ("307 Alvaro Cunqueiro 55"): a heading or a product says
            // as much ("2 Windows 10"), so only with a unit or postcode line, or beside an
            // address word.
            r("StreetAddressRecognizer", "STREET_ADDRESS", Numeric, &format!(r"\b\d{{1,5}}\s+\p{{Lu}}[\p{{L}}'\-]+(?:\s+(?:(?i:{INTL_LINKS})\s+)?\p{{Lu}}[\p{{L}}'\-]+){{0,2}}\s+\d{{1,4}}[A-Za-z]?\b{ADDRESS_LINES}"), weak_address,
              &["address", "live", "lives", "located", "street", "ship", "deliver", "mail", "send", "move", "moved", "reside", "visit", "office"]),
            r("UsPassportRecognizer", "US_PASSPORT", Numeric, r"\b[A-Z]?\d{9}\b|\b[A-Z]\d{8}\b", weak(0.1),
              &["passport", "passport#", "passportno", "travel", "document"]),
            r("UsDriverLicenseRecognizer", "US_DRIVER_LICENSE", Numeric, r"\b[A-Z]{1,2}\d{4,14}\b|\b[A-Z]\d{3}-\d{4}-\d{4}(?:-\d{1,2})?\b|\b[A-Z]\d{2}-\d{2}-\d{4}\b|\b\d{2}[A-Z]{3}\d{5}\b|\b\d{3}[A-Z]{2}\d{4}\b|\b[A-Z]\d{2}-\d{3}-\d{3}\b", weak(0.3),
              &["driver", "license", "licence", "permit", "lic", "identification", "dls", "cdls", "dl", "driving"]),
            r("UsBankRecognizer", "US_BANK_NUMBER", Numeric, r"\b\d{8,17}\b", weak(0.05),
              &["bank", "account", "acct", "checking", "saving", "savings", "debit"]),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::phone_valid;

    #[test]
    fn phone_numbers_in_their_written_forms() {
        for p in [
            "(212) 555-0147",
            "+1-449-956-6936",
            "+44 20 7946 0958",
            "020 7946 0958",
            "01 23 45 67 89",
            "030 1234567",
        ] {
            assert!(phone_valid(p).is_some(), "{p}");
        }
    }

    #[test]
    fn ages_with_their_cue_are_the_number_alone() {
        let ages = |t: &str| -> Vec<String> {
            let all = super::builtin();
            let r = all.iter().find(|r| r.entity == "AGE").unwrap();
            let mut out = Vec::new();
            r.analyze_region(t, 0..t.len(), &mut out);
            out.iter().map(|f| t[f.start..f.end].to_string()).collect()
        };
        for (t, want) in [
            ("She is 42 years old.", "42"),
            ("a 7-year-old boy", "7"),
            ("Patient aged 67 presented", "67"),
            ("Age: 35", "35"),
            ("AGE 35", "35"),
            ("he turned 30 last week", "30"),
            ("my 3 yo daughter", "3"),
            ("19 y/o male", "19"),
            ("at the age of 88", "88"),
            ("54 years of age", "54"),
        ] {
            assert_eq!(ages(t), [want], "{t}");
        }
        for t in [
            "a 500-year-old oak",
            "12.5 years old",
            "the page has 42 years of archives",
            "version 3 of the API",
            "turned 180 degrees",
            "I have 3 years of experience",
        ] {
            assert!(ages(t).is_empty(), "{t}: {:?}", ages(t));
        }
    }

    /// The street addresses the built-in patterns find in `t` that stand without an address
    /// word nearby (score 0.5 or more).
    fn streets(t: &str) -> Vec<String> {
        let mut out = Vec::new();
        for r in super::builtin()
            .iter()
            .filter(|r| r.entity == "STREET_ADDRESS")
        {
            r.analyze_region(t, 0..t.len(), &mut out);
        }
        out.iter()
            .filter(|f| f.score >= 0.5)
            .map(|f| t[f.start..f.end].to_string())
            .collect()
    }

    #[test]
    fn a_building_number_before_the_house_number_belongs_to_the_address_a_year_does_not() {
        let longest = |t: &str| streets(t).into_iter().max_by_key(String::len);
        assert_eq!(
            longest("located at 40187 263 Xanthoudidou Street Apt. 175. It serves food").as_deref(),
            Some("40187 263 Xanthoudidou Street Apt. 175")
        );
        assert_eq!(
            longest("since 2019 15 Main Street has been closed").as_deref(),
            Some("15 Main Street")
        );
        assert_eq!(
            longest("in 1987 221 Baker Street was a museum").as_deref(),
            Some("221 Baker Street")
        );
    }

    #[test]
    fn a_street_corner_is_one_address() {
        let longest = |t: &str| streets(t).into_iter().max_by_key(String::len);
        for (t, want) in [
            (
                "Meet me at the corner of 1356 Impala St and Sara Locks tonight",
                "the corner of 1356 Impala St and Sara Locks",
            ),
            (
                "I once lived on the corner of 92 Circle Way and Paterson Pass.",
                "the corner of 92 Circle Way and Paterson Pass",
            ),
            // Only a street word closes the second street; else the first stands alone.
            (
                "the corner of 15 Main Street and Friends of the Library",
                "the corner of 15 Main Street",
            ),
            ("at 15 Main Street and Bob Smith", "15 Main Street"),
        ] {
            assert_eq!(longest(t).as_deref(), Some(want), "{t}");
        }
    }

    #[test]
    fn towns_countries_and_units_after_the_street_line_belong_to_the_address() {
        let longest = |t: &str| streets(t).into_iter().max_by_key(String::len);
        for (t, want) in [
            // The town and country on lines of their own after the unit.
            (
                "Post it to 41704 Rengaskuja 57\n Suite 187\n MARTTILA\n Finland please",
                "41704 Rengaskuja 57\n Suite 187\n MARTTILA\n Finland",
            ),
            // After commas, ending with a postcode.
            (
                "ship to 44 Elm Street Apt. 376, TALENCE, France 87702? thanks",
                "44 Elm Street Apt. 376, TALENCE, France 87702",
            ),
            // On the unit's line: a town the lists lack, then its country.
            (
                "at 93141 Thingvallastraeti 36 Suite 058 Akureyri Iceland",
                "93141 Thingvallastraeti 36 Suite 058 Akureyri Iceland",
            ),
            (
                "at 810 Landsberger Allee 2 Suite 201 München Germany after the concert",
                "810 Landsberger Allee 2 Suite 201 München Germany",
            ),
            // Hungarian and Norwegian street words apart from the name.
            (
                "to 0556 Rákóczi út 41. Apt. 304",
                "0556 Rákóczi út 41. Apt. 304",
            ),
            ("on Martin Linges veg 149 today", "Martin Linges veg 149"),
            // An empty field left as a comma on its own line.
            (
                "9070 Fitjabraut 10\nPinellas\n, FL\n United States 81788 call me",
                "9070 Fitjabraut 10\nPinellas\n, FL\n United States 81788",
            ),
            (
                "to 271 Gosposka ulica 61 Apt. 469, MOSS, Norway.",
                "271 Gosposka ulica 61 Apt. 469, MOSS, Norway",
            ),
        ] {
            assert_eq!(longest(t).as_deref(), Some(want), "{t}");
        }
        // A capitalized phrase that is no known place, and a sentence that goes on, stay out.
        for (t, want) in [
            (
                "Send it to 12 Baker Street, Quality Assurance Team",
                "12 Baker Street",
            ),
            ("I live at 5 Main Street, and Paris is far", "5 Main Street"),
            (
                "5 Main Street, Springfield\n\nParis was lovely",
                "5 Main Street, Springfield",
            ),
            (
                "5 Main Street Apt 4 Tomorrow we meet",
                "5 Main Street Apt 4",
            ),
        ] {
            assert_eq!(longest(t).as_deref(), Some(want), "{t}");
        }
    }

    #[test]
    fn street_addresses_as_europe_and_latin_america_write_them() {
        let found = streets;
        for (t, want) in [
            (
                "Ship to: Calle de Alcalá 48, 28014 Madrid, Spain",
                "Calle de Alcalá 48, 28014 Madrid, Spain",
            ),
            (
                "Lieferadresse: Hauptstraße 5, 10115 Berlin",
                "Hauptstraße 5, 10115 Berlin",
            ),
            (
                "Endereço: Rua Augusta 1500, apto 42, São Paulo",
                "Rua Augusta 1500, apto 42, São Paulo",
            ),
            (
                "Lives at 15 Rue de la Paix, 75002 Paris, France.",
                "15 Rue de la Paix, 75002 Paris, France",
            ),
            (
                "Kerkstraat 12, 1017 Amsterdam",
                "Kerkstraat 12, 1017 Amsterdam",
            ),
            ("Via Roma 10, 00184 Roma", "Via Roma 10, 00184 Roma"),
            (
                "307 Alvaro Cunqueiro 55\n Apt. 440\n Sevilla\n Spain 19595",
                "307 Alvaro Cunqueiro 55\n Apt. 440\n Sevilla\n Spain 19595",
            ),
            ("Rebbåsbakken 48", "Rebbåsbakken 48"),
            (
                "0189 Rue des Buissons 386\n Suite 559\n Runkelen\n Belgium 65601",
                "0189 Rue des Buissons 386\n Suite 559\n Runkelen\n Belgium 65601",
            ),
            (
                "Send it to 221B Baker Street, London NW1 6XE.",
                "221B Baker Street, London NW1 6XE",
            ),
        ] {
            assert!(found(t).iter().any(|f| f == want), "{t}: {:?}", found(t));
        }
        for t in [
            "During 2020 sales grew",
            "Watergate 1972",
            "the Blockade 3 film",
            "Spring 2024 release",
        ] {
            assert!(found(t).is_empty(), "{t}: {:?}", found(t));
        }
    }

    #[test]
    fn figures_scores_and_date_times_are_not_phone_numbers() {
        for n in [
            "2000-04-16 11",
            "3 500 000",
            "2024-05-01",
            "192.168.10.1",
            "15 12 10 9 8",
        ] {
            assert!(phone_valid(n).is_none(), "{n}");
        }
        // Shaped like a phone number, but only one beside a context word.
        for n in ["1996 125 300", "9380 6377", "25 761546", "07289025797"] {
            assert_eq!(phone_valid(n), Some(super::PHONE_PLAUSIBLE), "{n}");
        }
    }
}
