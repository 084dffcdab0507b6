//! A pass-through scanner for server-sent event streams: forwards each complete event as soon
//! as it arrives, reads the provider's `usage` object on the way (for quota settlement), and
//! can drop the usage-only event that custos asked for when the client did not.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

#[derive(Debug, Default)]
pub struct UsageScanner {
    pending: BytesMut,
    strip_usage_event: bool,
    /// Total tokens the provider reported, once seen.
    pub total_tokens: Option<u32>,
    /// The provider's usage, by token class, once seen.
    pub usage: Option<custos_finops::Usage>,
    /// Rewrites each kept event's text when the guard redacts responses.
    redactor: Option<crate::guard::StreamRedactor>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// End of the first complete event in `buf` (index just past its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = find(buf, b"\n\n").map(|i| i + 2);
    let crlf = find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl UsageScanner {
    pub fn new(strip_usage_event: bool) -> Self {
        Self {
            strip_usage_event,
            ..Default::default()
        }
    }

    /// Feeds one chunk from upstream; returns what to send to the client now.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::with_capacity(self.pending.len());
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            if self.keep(&event) {
                match &mut self.redactor {
                    Some(r) => out.extend_from_slice(&r.event(&event)),
                    None => out.extend_from_slice(&event),
                }
            }
        }
        out.freeze()
    }

    /// The stream ended: whatever is left (an unterminated event) goes out as is.
    pub fn finish(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.pending);
        let mut out = BytesMut::new();
        if let Some(r) = &mut self.redactor {
            out.extend_from_slice(&r.flush());
        }
        if !rest.is_empty() && self.keep(&rest) {
            out.extend_from_slice(&rest);
        }
        out.freeze()
    }

    /// Redacts personal data in the events' text as they pass.
    pub fn with_redactor(mut self, r: crate::guard::StreamRedactor) -> Self {
        self.redactor = Some(r);
        self
    }

    /// Reads usage from one event and decides whether the client sees it.
    fn keep(&mut self, event: &[u8]) -> bool {
        let Some(at) = find(event, b"\"usage\"") else {
            return true;
        };
        // Fast path: chunks that only say `"usage":null`.
        if event[at..].starts_with(b"\"usage\":null")
            && find(&event[at + 12..], b"\"usage\"").is_none()
        {
            return true;
        }
        let data: Vec<u8> = event
            .split(|b| *b == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .flat_map(|d| {
                d.strip_prefix(b" ")
                    .unwrap_or(d)
                    .iter()
                    .copied()
                    .chain([b'\n'])
            })
            .collect();
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            return true;
        };
        // Chat and completions chunks carry `usage` at the top; a Responses stream carries it
        // in the response of its last event (`response.completed` or `.incomplete`).
        let Some(usage) = v
            .get("usage")
            .or_else(|| v.get("response").and_then(|r| r.get("usage")))
            .filter(|u| u.is_object())
        else {
            return true;
        };
        let sum = |a: &str, b: &str| {
            Some(usage.get(a)?.as_u64()? + usage.get(b).and_then(Value::as_u64).unwrap_or(0))
        };
        let total = usage
            .get("total_tokens")
            .and_then(Value::as_u64)
            .or_else(|| sum("prompt_tokens", "completion_tokens"))
            .or_else(|| sum("input_tokens", "output_tokens"));
        if let Some(t) = total {
            self.total_tokens = Some(u32::try_from(t).unwrap_or(u32::MAX));
        }
        if let Some(u) = custos_finops::Usage::from_provider(usage) {
            self.usage = Some(u);
        }
        let usage_only = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| c.is_empty());
        !(self.strip_usage_event && usage_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n\
        data: [DONE]\n\n";

    fn run(chunks: &[&[u8]], strip: bool) -> (Vec<u8>, Option<u32>) {
        let mut s = UsageScanner::new(strip);
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.feed(c));
        }
        out.extend_from_slice(&s.finish());
        (out, s.total_tokens)
    }

    #[test]
    fn reads_usage_and_keeps_it_when_asked() {
        let (out, total) = run(&[STREAM.as_bytes()], false);
        assert_eq!(out, STREAM.as_bytes());
        assert_eq!(total, Some(7));
    }

    #[test]
    fn strips_the_usage_event_when_the_client_did_not_ask() {
        let (out, total) = run(&[STREAM.as_bytes()], true);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("total_tokens"));
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(total, Some(7));
    }

    #[test]
    fn reads_usage_from_a_responses_stream() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":9,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":3,\"total_tokens\":12}}}\n\n";
        let mut s = UsageScanner::new(false);
        let mut out = s.feed(stream.as_bytes()).to_vec();
        out.extend_from_slice(&s.finish());
        assert_eq!(out, stream.as_bytes());
        assert_eq!(s.total_tokens, Some(12));
        let u = s.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.output_tokens),
            (5, 4, 3)
        );
    }

    #[test]
    fn handles_crlf_and_unterminated_tails() {
        let (out, _) = run(&[b"data: a\r\n\r\ndata: b"], false);
        assert_eq!(out, b"data: a\r\n\r\ndata: b");
    }

    proptest! {
        /// However the upstream splits its bytes, the client gets the same bytes and the
        /// same usage.
        #[test]
        fn chunking_does_not_matter(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..10), strip in any::<bool>()) {
            let mut cuts = cuts;
            cuts.sort();
            cuts.dedup();
            let bytes = STREAM.as_bytes();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts {
                chunks.push(&bytes[last..c]);
                last = c;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(run(&chunks, strip), run(&[bytes], strip));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = run(&[&data], true);
        }
    }
}
