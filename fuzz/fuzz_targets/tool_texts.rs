//! Any JSON as a request or response body: every text slot can be rewritten without a
//! panic, tool-call arguments that were JSON stay JSON, and any arguments text is judged
//! against URL, pattern and JSON Schema constraints without a panic; any text is screened for prompt
//! injection at every position, scores stay in 0-1 and defusing keeps valid UTF-8.
#![no_main]
use custos_core::config::ToolConstraint;
use custos_gateway::texts::{request_texts, response_texts, Slot};
use custos_gateway::tools::check_constraints;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn rewrite(slots: Vec<Slot<'_>>) {
    for mut slot in slots {
        slot.each(&mut |s| {
            let hit = s.contains('a');
            if hit {
                *s = s.replace('a', "\"<A>\\");
            }
            hit
        });
    }
}

fn injection(text: &str) {
    use custos_pii::injection::{defuse, Builtin, Detector, Position};
    static D: std::sync::OnceLock<Builtin> = std::sync::OnceLock::new();
    let d = D.get_or_init(|| Builtin::new(&["ok.example".to_owned()]));
    for p in [Position::Direct, Position::Indirect, Position::Output] {
        let signals = d.detect(text, p);
        assert!(signals.iter().all(|s| (0.0..=1.0).contains(&s.score)));
        let _ = defuse(text, &signals, 0.0);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        injection(text);
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(data) else {
        if let Ok(text) = std::str::from_utf8(data) {
            let c = [
                ToolConstraint {
                    tool: "fetch".into(),
                    argument: "/u".into(),
                    required: true,
                    domains: vec!["*.example.com".into()],
                    pattern: Some("[a-z:/.]+".into()),
                    max_len: Some(64),
                    schema: None,
                    schema_file: None,
                },
                ToolConstraint {
                    tool: "fetch".into(),
                    argument: String::new(),
                    required: false,
                    domains: Vec::new(),
                    pattern: None,
                    max_len: None,
                    schema: Some(
                        serde_json::json!({"type": "object", "properties": {"u": {"type": "string", "maxLength": 40}}}),
                    ),
                    schema_file: None,
                },
            ];
            let _ = check_constraints(&c, "fetch", text);
        }
        return;
    };
    let args_before: Vec<bool> = arguments(&v);
    if let Some(o) = v.as_object_mut() {
        rewrite(request_texts(o));
    }
    rewrite(response_texts(&mut v));
    for (before, after) in args_before.iter().zip(arguments(&v)) {
        assert!(!before || after, "arguments stopped being JSON");
    }
});

/// For each chat tool call in `messages`, whether its arguments parse as JSON.
fn arguments(v: &Value) -> Vec<bool> {
    v.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .filter_map(|tc| tc.pointer("/function/arguments").and_then(Value::as_str))
        .map(|a| serde_json::from_str::<Value>(a).is_ok())
        .collect()
}
