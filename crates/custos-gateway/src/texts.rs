//! texts: every piece of text a model reads or writes in an OpenAI-shaped body, found once so
//! that the PII guard (and any other screen) covers all of it: message content in string and
//! part-array form, tool and function call arguments, tool results, tool and function
//! descriptions and schemas, `response_format` schemas, Responses API input and output items.

use custos_pii::injection::Position;
use serde_json::{Map, Value};

/// One text in a body. Tool-call arguments are JSON carried in a string: screened value by
/// value so a rewrite keeps them valid JSON.
#[derive(Debug)]
pub enum Slot<'a> {
    Text(&'a mut String),
    Json(&'a mut String),
}

impl Slot<'_> {
    /// Runs `f` on each plain text of the slot (each string value of JSON arguments, or the
    /// whole argument string when it is not JSON); `f` says whether it changed the text, and
    /// changed arguments are written back as JSON.
    pub fn each(&mut self, f: &mut dyn FnMut(&mut String) -> bool) {
        match self {
            Slot::Text(s) => {
                f(s);
            }
            Slot::Json(s) => match serde_json::from_str::<Value>(s) {
                Ok(mut v) => {
                    let mut changed = false;
                    let mut leaves = Vec::new();
                    all_strings(&mut v, &mut leaves);
                    for leaf in leaves {
                        changed |= f(leaf);
                    }
                    if changed {
                        if let Ok(text) = serde_json::to_string(&v) {
                            **s = text;
                        }
                    }
                }
                Err(_) => {
                    f(s);
                }
            },
        }
    }
}

/// Every string value (never an object key) under `v`.
fn all_strings<'a>(v: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter_mut().for_each(|x| all_strings(x, out)),
        Value::Object(o) => o.values_mut().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

/// Message or item content: a string, or parts whose text sits in `text` (chat `text`,
/// Responses `input_text`/`output_text`) or `refusal`.
fn content<'a>(v: &'a mut Value, out: &mut Vec<Slot<'a>>) {
    match v {
        Value::String(s) => out.push(Slot::Text(s)),
        Value::Array(parts) => {
            for p in parts {
                match p {
                    Value::String(s) => out.push(Slot::Text(s)),
                    Value::Object(o) => {
                        for (k, x) in o.iter_mut() {
                            if let ("text" | "refusal", Value::String(s)) = (k.as_str(), x) {
                                out.push(Slot::Text(s));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// A chat message (any role: user, system, assistant with calls, tool results).
fn message<'a>(m: &'a mut Value, out: &mut Vec<Slot<'a>>) {
    let Value::Object(m) = m else { return };
    let mut rest = Vec::new();
    for (k, v) in m.iter_mut() {
        match k.as_str() {
            "content" => content(v, out),
            "refusal" => {
                if let Value::String(s) = v {
                    out.push(Slot::Text(s));
                }
            }
            "tool_calls" | "function_call" => rest.push((k.as_str(), v)),
            _ => {}
        }
    }
    for (k, v) in rest {
        match (k, v) {
            ("tool_calls", Value::Array(list)) => {
                for tc in list {
                    if let Some(Value::String(a)) =
                        tc.get_mut("function").and_then(|f| f.get_mut("arguments"))
                    {
                        out.push(Slot::Json(a));
                    }
                }
            }
            ("function_call", Value::Object(f)) => {
                if let Some(Value::String(a)) = f.get_mut("arguments") {
                    out.push(Slot::Json(a));
                }
            }
            _ => {}
        }
    }
}

/// A Responses API item (input or output): messages, function calls and their outputs,
/// reasoning summaries.
fn item<'a>(v: &'a mut Value, out: &mut Vec<Slot<'a>>) {
    match v {
        Value::String(s) => out.push(Slot::Text(s)),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), x) {
                    ("content" | "summary", x) => content(x, out),
                    ("text" | "output" | "refusal", Value::String(s)) => out.push(Slot::Text(s)),
                    ("output", x @ Value::Array(_)) => content(x, out),
                    ("arguments" | "input", Value::String(s)) => out.push(Slot::Json(s)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// The texts of one Responses API item (a message, a function call, a reasoning summary).
pub fn item_texts(v: &mut Value) -> Vec<Slot<'_>> {
    let mut out = Vec::new();
    item(v, &mut out);
    out
}

/// A tool or function definition: its description and every string in its parameter schema.
fn definition<'a>(v: &'a mut Value, out: &mut Vec<Slot<'a>>) {
    let Value::Object(o) = v else { return };
    for (k, x) in o.iter_mut() {
        match (k.as_str(), x) {
            ("description", Value::String(s)) => out.push(Slot::Text(s)),
            ("function", f @ Value::Object(_)) => definition(f, out),
            ("parameters" | "schema" | "input_schema", schema) => schema_strings(schema, out),
            _ => {}
        }
    }
}

fn schema_strings<'a>(v: &'a mut Value, out: &mut Vec<Slot<'a>>) {
    let mut leaves = Vec::new();
    all_strings(v, &mut leaves);
    out.extend(leaves.into_iter().map(Slot::Text));
}

/// Text parts of message or item content, read-only.
fn content_ref<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(parts) => {
            for p in parts {
                match p {
                    Value::String(s) => out.push(s),
                    Value::Object(o) => {
                        if let Some(Value::String(s)) = o.get("text") {
                            out.push(s);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// The texts of a request that can carry an injection, with where each sits: what the
/// caller's user wrote (user messages, prompts, Responses input) and what reached the model
/// from elsewhere (tool and function results). The application's own system and developer
/// messages, and the assistant's earlier turns, are not screened.
pub fn screened_texts(body: &Map<String, Value>) -> Vec<(Position, &str)> {
    let mut out = Vec::new();
    for (k, v) in body {
        match (k.as_str(), v) {
            ("messages", Value::Array(msgs)) => {
                for m in msgs {
                    let position = match m.get("role").and_then(Value::as_str) {
                        Some("user") => Position::Direct,
                        Some("tool" | "function") => Position::Indirect,
                        _ => continue,
                    };
                    if let Some(c) = m.get("content") {
                        let mut texts = Vec::new();
                        content_ref(c, &mut texts);
                        out.extend(texts.into_iter().map(|t| (position, t)));
                    }
                }
            }
            ("prompt" | "input", Value::String(s)) => out.push((Position::Direct, s.as_str())),
            ("prompt" | "input", Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) => out.push((Position::Direct, s.as_str())),
                        Value::Object(o) => {
                            let kind = o.get("type").and_then(Value::as_str);
                            let role = o.get("role").and_then(Value::as_str);
                            if kind == Some("function_call_output") {
                                if let Some(Value::String(s)) = o.get("output") {
                                    out.push((Position::Indirect, s.as_str()));
                                }
                            } else if role == Some("user") {
                                if let Some(c) = o.get("content") {
                                    let mut texts = Vec::new();
                                    content_ref(c, &mut texts);
                                    out.extend(texts.into_iter().map(|t| (Position::Direct, t)));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Every text a model reads in a request body: chat, completions, embeddings and Responses.
pub fn request_texts(body: &mut Map<String, Value>) -> Vec<Slot<'_>> {
    let mut out = Vec::new();
    for (k, v) in body.iter_mut() {
        match (k.as_str(), v) {
            ("messages", Value::Array(msgs)) => msgs.iter_mut().for_each(|m| message(m, &mut out)),
            ("prompt" | "input" | "instructions", Value::String(s)) => out.push(Slot::Text(s)),
            ("prompt" | "input", Value::Array(a)) => a.iter_mut().for_each(|x| item(x, &mut out)),
            ("tools" | "functions", Value::Array(a)) => {
                a.iter_mut().for_each(|d| definition(d, &mut out))
            }
            ("response_format" | "text", Value::Object(f)) => {
                for (k, x) in f.iter_mut() {
                    match k.as_str() {
                        "json_schema" => definition(x, &mut out),
                        "format" => definition(x, &mut out),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Every text a model wrote in a whole (non-streamed) response: chat choices, completion
/// choices, Responses API output items.
pub fn response_texts(body: &mut Value) -> Vec<Slot<'_>> {
    let mut out = Vec::new();
    let Value::Object(o) = body else { return out };
    for (k, v) in o.iter_mut() {
        match (k.as_str(), v) {
            ("choices", Value::Array(choices)) => {
                for c in choices {
                    let Value::Object(c) = c else { continue };
                    for (k, x) in c.iter_mut() {
                        match (k.as_str(), x) {
                            ("message", m) => message(m, &mut out),
                            ("text", Value::String(s)) => out.push(Slot::Text(s)),
                            _ => {}
                        }
                    }
                }
            }
            ("output", Value::Array(items)) => items.iter_mut().for_each(|i| item(i, &mut out)),
            ("output_text", Value::String(s)) => out.push(Slot::Text(s)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(slots: Vec<Slot<'_>>) -> Vec<String> {
        let mut seen = Vec::new();
        for mut s in slots {
            s.each(&mut |t| {
                seen.push(t.clone());
                false
            });
        }
        seen
    }

    #[test]
    fn requests_give_every_text_the_model_reads() {
        let mut body = json!({
            "model": "m",
            "instructions": "be brief",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "part"}, {"type": "image_url", "image_url": {"url": "u"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"who\":\"arg\",\"n\":[\"deep\"]}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "result"},
                {"role": "assistant", "function_call": {"name": "f", "arguments": "not json"}}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "desc", "parameters": {"type": "object", "properties": {"who": {"type": "string", "description": "pdesc"}}}}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"description": "sdesc"}}}
        });
        let seen = collect(request_texts(body.as_object_mut().unwrap()));
        for want in [
            "be brief", "sys", "part", "arg", "deep", "result", "not json", "desc", "pdesc",
            "sdesc",
        ] {
            assert!(
                seen.iter().any(|s| s == want),
                "{want} missing from {seen:?}"
            );
        }
        // The tool's name and ids are not prose: they are left to the tool policy.
        assert!(!seen.iter().any(|s| s == "c1" || s == "u"), "{seen:?}");
    }

    #[test]
    fn responses_api_items_are_read() {
        let mut body = json!({
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "in"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"q\":\"argq\"}"},
                {"type": "function_call_output", "call_id": "c", "output": "out"}
            ]
        });
        let seen = collect(request_texts(body.as_object_mut().unwrap()));
        for want in ["in", "argq", "out"] {
            assert!(
                seen.iter().any(|s| s == want),
                "{want} missing from {seen:?}"
            );
        }
        let mut resp = json!({"output": [
            {"type": "message", "content": [{"type": "output_text", "text": "said"}]},
            {"type": "function_call", "name": "f", "arguments": "{\"a\":\"called\"}"}
        ]});
        let seen = collect(response_texts(&mut resp));
        assert_eq!(seen, ["said", "called"]);
    }

    #[test]
    fn rewriting_arguments_keeps_them_json() {
        let mut resp = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "c",
            "tool_calls": [{"id": "x", "type": "function", "function": {"name": "f", "arguments": "{\"to\": \"a\\\"b\"}"}}]}}]});
        for mut s in response_texts(&mut resp) {
            s.each(&mut |t| {
                let hit = t.contains('"');
                if hit {
                    *t = "<X>".into();
                }
                hit
            });
        }
        let args = resp["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap(),
            json!({"to": "<X>"})
        );
    }
}
