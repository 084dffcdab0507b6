//! One pass over the text that finds where pattern recognizers can match:
//! windows around digits (numbers, dates, IDs, IBANs, addresses), tokens
//! holding `@` (e-mail), `://` or `www.` (URLs) and dotted names (domains).
//! Recognizers then run only inside these small windows, so prose without
//! digits or addresses costs little more than one byte scan.

use std::ops::Range;

/// How many whitespace-separated tokens of context a digit window keeps on
/// each side, so patterns like "March 4, 1989" or "123 Main Street" fit.
const PAD_TOKENS: usize = 4;
/// Upper bound on bytes of padding, so a 100 MB line without spaces stays linear.
const PAD_BYTES: usize = 64;
/// Upper bound on one token's length considered for e-mail and URL windows.
const MAX_TOKEN: usize = 2048;

/// Candidate regions of one text.
#[derive(Debug, Default)]
pub struct Windows {
    /// Around digit runs, merged, sorted.
    pub numeric: Vec<Range<usize>>,
    /// Tokens that contain `@`.
    pub at: Vec<Range<usize>>,
    /// Tokens that contain `://` or start with `www.`, or hold a dotted name.
    pub dotted: Vec<Range<usize>>,
}

fn is_space(b: u8) -> bool {
    b.is_ascii_whitespace()
}

fn is_token_break(b: u8) -> bool {
    is_space(b)
        || matches!(
            b,
            b'<' | b'>'
                | b'"'
                | b'\''
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b','
                | b';'
                | b'|'
                | b'`'
        )
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Start of the `n`th token before `i`, within `PAD_BYTES`.
fn pad_back(b: &[u8], i: usize, n: usize) -> usize {
    let floor = i.saturating_sub(PAD_BYTES);
    let mut j = i;
    let mut seen = 0;
    // Move to the start of the current token first.
    while j > floor && !is_space(b[j - 1]) {
        j -= 1;
    }
    while seen < n && j > floor {
        while j > floor && is_space(b[j - 1]) {
            j -= 1;
        }
        while j > floor && !is_space(b[j - 1]) {
            j -= 1;
        }
        seen += 1;
    }
    j
}

/// End of the `n`th token after `i`, within `PAD_BYTES`.
fn pad_forward(b: &[u8], i: usize, n: usize) -> usize {
    let ceil = (i + PAD_BYTES).min(b.len());
    let mut j = i;
    let mut seen = 0;
    while seen < n && j < ceil {
        while j < ceil && is_space(b[j]) {
            j += 1;
        }
        while j < ceil && !is_space(b[j]) {
            j += 1;
        }
        seen += 1;
    }
    j
}

fn token_around(b: &[u8], i: usize) -> Range<usize> {
    let floor = i.saturating_sub(MAX_TOKEN);
    let ceil = (i + MAX_TOKEN).min(b.len());
    let mut s = i;
    while s > floor && !is_token_break(b[s - 1]) {
        s -= 1;
    }
    let mut e = i;
    while e < ceil && !is_token_break(b[e]) {
        e += 1;
    }
    s..e
}

fn push_merged(v: &mut Vec<Range<usize>>, r: Range<usize>) {
    if let Some(last) = v.last_mut() {
        if r.start <= last.end {
            last.end = last.end.max(r.end);
            return;
        }
    }
    v.push(r);
}

/// Scans `text` once and returns its candidate windows.
pub fn windows(text: &str) -> Windows {
    let b = text.as_bytes();
    let mut w = Windows::default();
    // Each kind of window is built once per region; the scan itself visits
    // every byte so a digit inside an e-mail still opens a numeric window.
    let (mut numeric_until, mut at_until, mut dot_until) = (0, 0, 0);
    for i in 0..b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            if i < numeric_until {
                continue;
            }
            // Extend over following tokens while digits keep appearing close by.
            let mut end = i;
            loop {
                while end < b.len() && !is_space(b[end]) {
                    end += 1;
                }
                let look = pad_forward(b, end, 2);
                match b[end..look].iter().rposition(u8::is_ascii_digit) {
                    Some(p) => end += p + 1,
                    None => break,
                }
            }
            let start = floor_boundary(text, pad_back(b, i, PAD_TOKENS));
            let stop = ceil_boundary(text, pad_forward(b, end, PAD_TOKENS));
            push_merged(&mut w.numeric, start..stop);
            numeric_until = end;
            continue;
        }
        let dotted = match c {
            b'@' if i >= at_until => {
                let r = token_around(b, i);
                at_until = r.end;
                push_merged(&mut w.at, r);
                continue;
            }
            b'.' => {
                i > 0
                    && b[i - 1].is_ascii_alphanumeric()
                    && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
            }
            b':' => b.get(i + 1) == Some(&b'/') && b.get(i + 2) == Some(&b'/'),
            _ => false,
        };
        if dotted && i >= dot_until {
            let r = token_around(b, i);
            dot_until = r.end;
            push_merged(&mut w.dotted, r);
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(t: &str) -> Vec<&str> {
        windows(t).numeric.into_iter().map(|r| &t[r]).collect()
    }

    #[test]
    fn digit_windows_keep_context() {
        assert_eq!(numeric("no digits here at all"), Vec::<&str>::new());
        let t = "Born on March 4, 1989 in a small town far from anything at all really";
        let w = numeric(t);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("March 4, 1989"));
        let t = "card 4111 1111 1111 1111 expires";
        assert!(numeric(t)[0].contains("4111 1111 1111 1111"));
    }

    #[test]
    fn email_and_url_tokens() {
        let t = "mail <jane.doe@example.com>, see https://x.org/a?b=1 or www.y.net.";
        let w = windows(t);
        assert_eq!(&t[w.at[0].clone()], "jane.doe@example.com");
        assert!(w
            .dotted
            .iter()
            .any(|r| &t[r.clone()] == "https://x.org/a?b=1"));
    }

    #[test]
    fn multibyte_text_never_splits_chars() {
        let t = "ééééééééééééééééééééééééééééééééééééééééééé1ééééééééééééééééééééééééééééééé";
        for r in windows(t).numeric {
            assert!(t.is_char_boundary(r.start) && t.is_char_boundary(r.end));
        }
    }
}
