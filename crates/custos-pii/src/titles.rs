//! TITLE: job titles and occupations from a shipped list (`data/titles.txt`, see its README),
//! matched as whole words in any case. Honorifics before a name ("Dr.", "Mrs.") are found with
//! the name itself, in `names`.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::finding::Finding;

struct Titles {
    automaton: AhoCorasick,
    /// Per pattern: more than one word ("data scientist", "accountant, chartered").
    phrase: Vec<bool>,
}

fn titles() -> Option<&'static Titles> {
    static T: OnceLock<Option<Titles>> = OnceLock::new();
    T.get_or_init(|| {
        let list: Vec<&str> = include_str!("../data/titles.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            // A full DFA (a few MB for ~700 titles): the contiguous NFA ran at a third the speed.
            .kind(Some(AhoCorasickKind::DFA))
            .build(&list)
            .ok()?;
        let phrase = list.iter().map(|t| t.contains([' ', ','])).collect();
        Some(Titles { automaton, phrase })
    })
    .as_ref()
}

/// Words just before a title that say it is someone's occupation ("works as a", "job:").
const CUES: &[&str] = &[
    "as",
    "a",
    "an",
    "job",
    "title",
    "occupation",
    "profession",
    "position",
    "role",
    "career",
    "employment",
    "our",
    "my",
    "his",
    "her",
    "their",
    "your",
    "senior",
    "junior",
    "lead",
    "chief",
    "head",
    "assistant",
    "former",
];

fn word_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The lower-cased word right before `at`, skipping spaces and a colon.
fn previous_word(text: &str, at: usize) -> String {
    let head = text[..at].trim_end_matches([' ', '\t', ':', '\n', '\r']);
    let start = head
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_alphanumeric())
        .map_or(0, |(i, c)| i + c.len_utf8());
    head[start..].to_lowercase()
}

/// Head nouns of occupations: a title not in the list still ends with one ("Woodworking
/// machine operator", "Press relations specialist", "Office clerk").
const HEADS: &str = "operator|technician|specialist|manager|assistant|clerk|worker|nurse|reporter|correspondent|scientist|librarian|chef|tender|repairer|collector|installer|mechanic|engineer|analyst|supervisor|director|coordinator|designer|developer|teacher|inspector|attendant|aide|therapist|counselor|counsellor|consultant|representative|administrator|accountant|officer|treasurer|secretary|paperhanger|technologist|planner|adviser|advisor|editor|producer|instructor|estimator|dispatcher|programmer|architect|surveyor|auditor|examiner|investigator|agent|personnel";

fn head_noun(word: &str) -> bool {
    static SET: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    let set = SET.get_or_init(|| HEADS.split('|').collect());
    let w = word.to_ascii_lowercase();
    set.contains(w.as_str()) || w.strip_suffix('s').is_some_and(|x| set.contains(x))
}

/// Cues before an occupation ("works as a", "Occupation:"); literal enough for the regex
/// engine's prefilter.
fn cue() -> Option<&'static regex::Regex> {
    static R: OnceLock<Option<regex::Regex>> = OnceLock::new();
    R.get_or_init(|| {
        regex::Regex::new(
            r"(?i:(?-u:\b)(?:occupation|job title|job|title|position|profession|role)[ \t]*:[ \t]*|(?-u:\b)(?:as|is|am|was|were|be) an? )",
        )
        .ok()
    })
    .as_ref()
}

/// Titles ending with an occupation's head noun, on a line of their own (a signature block,
/// a form) or within six words after a cue: (start, end) in `text`.
fn headed(text: &str) -> Vec<std::ops::Range<usize>> {
    let word = |w: &str| {
        !w.is_empty()
            && w.trim_end_matches(',')
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '\'' || c == '-')
    };
    let mut out = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let t = body.trim();
        // Short lines only: a title is a few words, and a long line is read no further.
        let words = || t.split([' ', '\t']).filter(|w| !w.is_empty());
        if t.len() <= 80
            && words().count() <= 6
            && words().all(word)
            && words().next_back().is_some_and(head_noun)
        {
            let start = at + (body.len() - body.trim_start().len());
            out.push(start..start + t.len());
        }
        at += line.len();
    }
    if let Some(re) = cue() {
        for m in re.find_iter(text) {
            // Six words at most follow the cue: look no further than 120 bytes.
            let mut cap = (m.end() + 120).min(text.len());
            while !text.is_char_boundary(cap) {
                cap -= 1;
            }
            let rest = &text[m.end()..cap];
            let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
            let mut end = None;
            let mut offset = 0;
            for w in line.split(' ').take(6) {
                let bare = w.trim_end_matches([',', '.', ';', ')']);
                if !word(bare) {
                    break;
                }
                if head_noun(bare) {
                    end = Some(m.end() + offset + bare.len());
                }
                offset += w.len() + 1;
            }
            if let Some(e) = end {
                out.push(m.end()..e);
            }
        }
    }
    out
}

/// Appends TITLE findings in `text` to `out`.
pub fn analyze(text: &str, out: &mut Vec<Finding>) {
    let headed_spans = headed(text);
    for r in &headed_spans {
        out.push(Finding::new(
            "TITLE",
            r.start,
            r.end,
            0.6,
            "TitleRecognizer",
        ));
    }
    let covered = |s: usize, e: usize| headed_spans.iter().any(|r| r.start <= s && e <= r.end);
    let Some(t) = titles() else { return };
    for m in t.automaton.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        if word_char(text[..s].chars().next_back()) {
            continue;
        }
        // A plural ("nurses") is still the occupation.
        let mut end = e;
        let rest = &text[e..];
        if rest.starts_with('s') && !word_char(rest[1..].chars().next()) {
            end += 1;
        } else if word_char(rest.chars().next()) {
            continue;
        }
        let cue = CUES.contains(&previous_word(text, s).as_str());
        // A one-word occupation in running text ("the Administrator", "Writer") is too often
        // something else: it needs a cue. A phrase from the list stands on its own.
        let score = match (t.phrase[m.pattern().as_usize()], cue) {
            (true, true) => 0.8,
            (true, false) => 0.6,
            (false, true) => 0.6,
            (false, false) => continue,
        };
        if !covered(s, end) {
            out.push(Finding::new("TITLE", s, end, score, "TitleRecognizer"));
        }
    }
}

#[cfg(test)]
mod tests {
    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        super::analyze(text, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn occupations_in_their_usual_phrasings() {
        assert_eq!(
            found("She works as a data scientist in Leeds."),
            ["data scientist"]
        );
        assert_eq!(found("Job: Software engineer"), ["Software engineer"]);
        assert_eq!(found("He is an ACTUARY."), ["ACTUARY"]);
        assert_eq!(found("my lawyer called"), ["lawyer"]);
        assert_eq!(
            found("Accountant, chartered since 2010"),
            ["Accountant, chartered"]
        );
        assert_eq!(
            found("We hired two registered nurses."),
            ["registered nurses"]
        );
        assert_eq!(
            found("Bibulat Sultygov\nWoodworking machine operator\nAcme Ltd"),
            ["Woodworking machine operator"]
        );
        assert_eq!(
            found("Occupation: Press relations specialist"),
            ["Press relations specialist"]
        );
    }

    #[test]
    fn words_that_only_look_like_occupations_are_not_titles() {
        for t in [
            "The Administrator role is set in config",
            "Writer wrote 3 bytes",
            "dataset scientist_id",
            "nursery rhymes",
            "the engineering team",
        ] {
            assert!(found(t).is_empty(), "{t}: {:?}", found(t));
        }
    }
}
