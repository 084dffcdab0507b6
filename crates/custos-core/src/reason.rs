//! `Reason`: why a change is made — free text and a ticket id — recorded with its ledger event.

/// The longest `why` kept: a paragraph, not a document.
pub const MAX_WHY: usize = 2000;
/// The longest ticket id.
pub const MAX_TICKET: usize = 128;

/// Why a change is made. Both parts are optional here; `[audit] require_why` decides which
/// actions must carry `why`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reason {
    pub why: Option<String>,
    pub ticket: Option<String>,
}

/// A reason that cannot be recorded as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ReasonError(pub String);

impl Reason {
    /// Trims both parts (blank is absent) and refuses control characters and over-long text,
    /// which would make the evidence unreadable.
    pub fn new(why: Option<&str>, ticket: Option<&str>) -> Result<Self, ReasonError> {
        let clean = |field: &str, v: Option<&str>, max: usize, allow_newline: bool| {
            let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            if v.chars().count() > max {
                return Err(ReasonError(format!(
                    "{field} is longer than {max} characters"
                )));
            }
            if v.chars()
                .any(|c| c.is_control() && !(allow_newline && (c == '\n' || c == '\t')))
            {
                return Err(ReasonError(format!("{field} holds control characters")));
            }
            Ok(Some(v.to_owned()))
        };
        Ok(Reason {
            why: clean("why", why, MAX_WHY, true)?,
            ticket: clean("ticket", ticket, MAX_TICKET, false)?,
        })
    }

    /// A reason with only `why`, for code that has one sentence to give.
    pub fn why(text: &str) -> Self {
        Reason {
            why: Some(text.to_owned()),
            ticket: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.why.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_absent_and_text_is_trimmed() {
        let r = Reason::new(Some("  rotate leaked key "), Some(" ")).unwrap();
        assert_eq!(r.why.as_deref(), Some("rotate leaked key"));
        assert_eq!(r.ticket, None);
        assert!(Reason::new(Some("\n"), None).unwrap().is_empty());
    }

    #[test]
    fn control_characters_and_long_text_are_refused() {
        assert!(Reason::new(Some("a\u{1b}[31m"), None).is_err());
        assert!(Reason::new(None, Some("INC-1\nx")).is_err());
        assert!(Reason::new(Some("line one\nline two"), None).is_ok());
        assert!(Reason::new(Some(&"x".repeat(MAX_WHY + 1)), None).is_err());
    }
}
