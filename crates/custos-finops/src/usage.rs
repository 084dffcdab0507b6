//! Metered quantities of one call or job, in disjoint classes so that no token is billed
//! twice: providers report cached tokens inside the prompt count (OpenAI) or beside it
//! (Anthropic), and reasoning tokens inside the completion count; `Usage::from_provider`
//! untangles both shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What one call or job consumed. Token classes never overlap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Prompt tokens billed at the full input rate (cache reads and writes excluded).
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    /// Completion tokens other than reasoning tokens.
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub images: u64,
    /// Billed wall time (audio, video, per-second endpoints).
    pub duration_ms: u64,
    /// Billed compute time: instance time for a rate per instance-hour, GPU time for a rate
    /// per GPU-hour (already multiplied by the instance or GPU count).
    pub compute_ms: u64,
    /// GPU time: GPUs × wall-clock (16 GPU-hours for 8 GPUs over 2 h), whatever was billed.
    pub gpu_ms: u64,
    pub calls: u64,
}

fn field(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

impl Usage {
    /// Reads a provider's `usage` object, in any of the shapes the gateway meets:
    /// OpenAI Chat Completions (`prompt_tokens` including `prompt_tokens_details.cached_tokens`,
    /// `completion_tokens` including `completion_tokens_details.reasoning_tokens`), OpenAI
    /// Responses (`input_tokens` with `input_tokens_details`), and Anthropic (`input_tokens`
    /// excluding `cache_read_input_tokens` and `cache_creation_input_tokens`). Counts a call.
    pub fn from_provider(u: &Value) -> Option<Usage> {
        if !u.is_object() {
            return None;
        }
        let mut out = Usage {
            calls: 1,
            ..Usage::default()
        };
        if u.get("prompt_tokens").is_some() || u.get("completion_tokens").is_some() {
            let prompt = field(u, &["prompt_tokens"]);
            let cached = field(u, &["prompt_tokens_details", "cached_tokens"]).min(prompt);
            let completion = field(u, &["completion_tokens"]);
            let reasoning =
                field(u, &["completion_tokens_details", "reasoning_tokens"]).min(completion);
            out.input_tokens = prompt - cached;
            out.cached_input_tokens = cached;
            out.output_tokens = completion - reasoning;
            out.reasoning_tokens = reasoning;
        } else if u.get("cache_read_input_tokens").is_some()
            || u.get("cache_creation_input_tokens").is_some()
        {
            out.input_tokens = field(u, &["input_tokens"]);
            out.cached_input_tokens = field(u, &["cache_read_input_tokens"]);
            out.cache_write_tokens = field(u, &["cache_creation_input_tokens"]);
            out.output_tokens = field(u, &["output_tokens"]);
        } else if u.get("input_tokens").is_some() || u.get("output_tokens").is_some() {
            let input = field(u, &["input_tokens"]);
            let cached = field(u, &["input_tokens_details", "cached_tokens"]).min(input);
            let output = field(u, &["output_tokens"]);
            let reasoning = field(u, &["output_tokens_details", "reasoning_tokens"]).min(output);
            out.input_tokens = input - cached;
            out.cached_input_tokens = cached;
            out.output_tokens = output - reasoning;
            out.reasoning_tokens = reasoning;
        } else if u.get("total_tokens").is_some() {
            // Embeddings report only a total, which is all input.
            out.input_tokens = field(u, &["total_tokens"]);
        } else {
            return None;
        }
        Some(out)
    }

    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cached_input_tokens)
            .saturating_add(self.cache_write_tokens)
            .saturating_add(self.output_tokens)
            .saturating_add(self.reasoning_tokens)
    }

    /// All prompt-side tokens, whatever their rate.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cached_input_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    /// All completion-side tokens.
    pub fn completion_tokens(&self) -> u64 {
        self.output_tokens.saturating_add(self.reasoning_tokens)
    }
}

/// One metered unit of work: a gateway call or a job's report, attributed and priced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub id: String,
    /// Epoch milliseconds when the work ended.
    pub at_ms: i64,
    /// `gateway` or `job`.
    pub source: String,
    pub tenant: String,
    pub team: String,
    pub app: String,
    pub env: String,
    pub key_id: String,
    pub provider: String,
    pub model: String,
    pub region: String,
    pub usage: Usage,
    pub documents: u64,
    pub latency_ms: u64,
    pub cost: crate::Amount,
    pub currency: crate::Currency,
    /// False when no price was known: the cost is zero and reports say so.
    pub priced: bool,
    /// Energy in milliwatt-hours and emissions in milligrams CO2e (jobs with devices).
    pub energy_mwh: u64,
    pub co2e_mg: u64,
    pub tags: std::collections::BTreeMap<String, String>,
    /// A mandatory tag was missing and the record was accepted as untagged.
    pub untagged: bool,
    pub request_id: Option<String>,
    pub status: u16,
    /// Job facts kept for the record (GPU type, instance type, data scanned) as JSON.
    pub detail: Option<String>,
    /// The release whose alias a gateway call named.
    pub release: Option<String>,
    /// The end user the call was made for (the OpenAI `user` field); an erasure clears it.
    pub end_user: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_cached_and_reasoning_tokens_are_not_billed_twice() {
        let u = Usage::from_provider(&json!({
            "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256}
        }))
        .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.output_tokens,
                u.reasoning_tokens
            ),
            (86, 1920, 44, 256)
        );
        assert_eq!(u.total_tokens(), 2306);
    }

    #[test]
    fn anthropic_cache_counts_sit_beside_input() {
        let u = Usage::from_provider(&json!({
            "input_tokens": 21, "cache_creation_input_tokens": 188086,
            "cache_read_input_tokens": 0, "output_tokens": 393
        }))
        .unwrap();
        assert_eq!(
            (u.input_tokens, u.cache_write_tokens, u.output_tokens),
            (21, 188086, 393)
        );
    }

    #[test]
    fn responses_api_and_embeddings() {
        let u = Usage::from_provider(&json!({
            "input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5}
        }))
        .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.output_tokens,
                u.reasoning_tokens
            ),
            (60, 40, 15, 5)
        );
        let e = Usage::from_provider(&json!({"prompt_tokens": 8, "total_tokens": 8})).unwrap();
        assert_eq!(e.input_tokens, 8);
        assert!(Usage::from_provider(&json!({"other": 1})).is_none());
        assert!(Usage::from_provider(&json!(null)).is_none());
        // Inconsistent counts never underflow.
        let odd = Usage::from_provider(
            &json!({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}),
        )
        .unwrap();
        assert_eq!((odd.input_tokens, odd.cached_input_tokens), (0, 5));
    }
}
