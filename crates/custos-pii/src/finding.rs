//! What a recognizer reports: an entity type over a byte span of the text,
//! with a score and the recognizer's name, plus char-offset conversion for
//! APIs (Presidio's) that count Unicode scalar values.

use std::borrow::Cow;

/// One detected piece of personal data.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Presidio-compatible entity name, e.g. `EMAIL_ADDRESS`.
    pub entity_type: Cow<'static, str>,
    /// Byte offset of the first byte in the analyzed text.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// Confidence in 0..=1.
    pub score: f32,
    /// Name of the recognizer that produced it.
    pub recognizer: Cow<'static, str>,
}

impl Finding {
    pub fn new(
        entity_type: impl Into<Cow<'static, str>>,
        start: usize,
        end: usize,
        score: f32,
        recognizer: impl Into<Cow<'static, str>>,
    ) -> Self {
        Finding {
            entity_type: entity_type.into(),
            start,
            end,
            score,
            recognizer: recognizer.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn overlaps(&self, other: &Finding) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Converts byte offsets to char offsets for many sorted positions in one
/// pass, so a long text with many findings costs O(text + findings).
pub struct CharOffsets<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharOffsets<'a> {
    pub fn new(text: &'a str) -> Self {
        CharOffsets {
            text,
            byte: 0,
            chars: 0,
        }
    }

    /// Char offset of byte offset `b`. Calls with increasing `b` are linear
    /// overall; a smaller `b` restarts from the beginning.
    pub fn char_at(&mut self, b: usize) -> usize {
        let b = b.min(self.text.len());
        if b < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        let slice = &self.text.as_bytes()[self.byte..b];
        // Count bytes that start a char (not UTF-8 continuation bytes).
        self.chars += slice.iter().filter(|&&x| (x as i8) >= -0x40).count();
        self.byte = b;
        self.chars
    }
}

/// Byte offset of char offset `c` in `text` (clamped to the end).
pub fn byte_at_char(text: &str, c: usize) -> usize {
    text.char_indices().nth(c).map_or(text.len(), |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_offsets_count_scalars() {
        let t = "héllo wörld ✓ x";
        let mut c = CharOffsets::new(t);
        for (ci, (bi, _)) in t.char_indices().enumerate() {
            assert_eq!(c.char_at(bi), ci);
            assert_eq!(byte_at_char(t, ci), bi);
        }
        assert_eq!(c.char_at(t.len()), t.chars().count());
        assert_eq!(c.char_at(0), 0);
    }
}
