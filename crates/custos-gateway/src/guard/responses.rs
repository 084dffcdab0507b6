//! The Responses API's typed stream events under the guard. Text deltas are held back and
//! redacted as chat text is; a function call is held from its `output_item.added` until its
//! `output_item.done`, then judged, redacted and sent whole (or replaced by a refusal
//! message); the `.done` events, finished items and the completed response repeat exactly
//! what the deltas said, so a client that reads either sees the same words.

use super::{call_item, drop_part_logprobs, refusal, refusal_item, StreamRedactor};
use crate::texts::{item_texts, response_texts, Slot};
use custos_core::config::ToolCalled;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Which texts of an item a key names: its content parts, or its reasoning summary parts.
const CONTENT: u64 = 0;
const SUMMARY: u64 = 1;

/// One held text stream: an output item's content or summary part.
fn key(output_index: u64, kind: u64, index: u64) -> u64 {
    (output_index << 24) | (kind << 16) | (index & 0xffff)
}

/// The text stream an event belongs to: its kind and the member naming the part.
fn text_stream(event_type: &str) -> Option<(u64, &'static str)> {
    let base = event_type
        .strip_suffix(".delta")
        .or_else(|| event_type.strip_suffix(".done"))?;
    match base {
        "response.output_text"
        | "response.refusal"
        | "response.reasoning_text"
        | "response.audio.transcript"
        | "response.output_audio_transcript" => Some((CONTENT, "content_index")),
        "response.reasoning_summary_text" => Some((SUMMARY, "summary_index")),
        _ => None,
    }
}

/// The members of a part or event that hold its finished text.
const TEXT_FIELDS: [&str; 3] = ["text", "refusal", "transcript"];

/// What a Responses stream carries between events.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// Renumbers `sequence_number`: held events leave gaps and refusals add events.
    seq: u64,
    /// Per held text: the delta event it came in, to send what is released later.
    templates: BTreeMap<u64, Map<String, Value>>,
    /// Per text: what was sent of it so far, for the `.done` events that repeat it.
    sent: BTreeMap<u64, String>,
    /// Per output index: a tool call's `output_item.added` item, held until it is done.
    calls: BTreeMap<u64, Value>,
    /// Per output index: the finished item as sent, for the completed response.
    done: BTreeMap<u64, Value>,
}

fn event(kind: &str, fields: Value) -> Map<String, Value> {
    let mut e = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    e.insert("type".into(), Value::String(kind.to_owned()));
    e
}

impl StreamRedactor {
    fn state(&mut self) -> &mut StreamState {
        self.responses.get_or_insert_with(Box::default)
    }

    /// Serializes one event as Responses streams do: named by an `event:` line.
    fn emit(&mut self, mut e: Map<String, Value>) -> Vec<u8> {
        let st = self.state();
        e.insert("sequence_number".into(), json!(st.seq));
        st.seq += 1;
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned();
        format!("event: {kind}\ndata: {}\n\n", Value::Object(e)).into_bytes()
    }

    /// Ends the stream with a Responses `error` event.
    fn fail(&mut self, message: &str, code: &str) -> Vec<u8> {
        self.broken = true;
        self.emit(event(
            "error",
            json!({"code": code, "message": message, "param": null}),
        ))
    }

    fn screens_text(&self) -> bool {
        self.guard.pii.is_some() || self.guard.exfil.is_some()
    }

    /// One typed event of a Responses stream; returns what the client gets.
    pub(super) fn responses_event(&mut self, mut obj: Map<String, Value>) -> Vec<u8> {
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let output_index = obj.get("output_index").and_then(Value::as_u64);
        if let Some(oi) = output_index {
            // Everything about a held call waits for its item to be done.
            if self.state().calls.contains_key(&oi) && kind != "response.output_item.done" {
                return Vec::new();
            }
        }
        match kind.as_str() {
            "response.output_item.added" => {
                if let (Some(oi), Some(item)) = (output_index, obj.get("item")) {
                    if call_item(item).is_some() {
                        let item = item.clone();
                        self.state().calls.insert(oi, item);
                        return Vec::new();
                    }
                }
            }
            "response.output_item.done" => return self.item_done(obj, output_index),
            "response.completed" | "response.incomplete" | "response.failed" => {
                let mut out = self.responses_flush();
                if self.broken {
                    return out;
                }
                if let Some(r) = obj.get_mut("response") {
                    if let Err(names) = self.finish_response(r) {
                        out.extend(self.fail(
                            &format!("the model called tools this app may not use: {}; the stream was ended", names.join(", ")),
                            "tool-call-refused",
                        ));
                        return out;
                    }
                }
                out.extend(self.emit(obj));
                return out;
            }
            _ => {}
        }
        if !self.screens_text() {
            return self.emit(obj);
        }
        if let Some((part_kind, index_field)) = text_stream(&kind) {
            let index = obj.get(index_field).and_then(Value::as_u64).unwrap_or(0);
            let k = key(output_index.unwrap_or(0), part_kind, index);
            if self.guard.pii.is_some() && obj.contains_key("logprobs") {
                obj.insert("logprobs".into(), json!([]));
            }
            if kind.ends_with(".delta") {
                let Some(Value::String(delta)) = obj.get_mut("delta") else {
                    return self.emit(obj);
                };
                let delta = std::mem::take(delta);
                self.held.entry(k).or_default().push_str(&delta);
                let mut template = obj.clone();
                template.remove("delta");
                template.remove("sequence_number");
                template.remove("obfuscation");
                self.state().templates.insert(k, template);
                let out = self.release(k, false);
                if out.is_empty() {
                    return Vec::new();
                }
                self.state().sent.entry(k).or_default().push_str(&out);
                obj.insert("delta".into(), Value::String(out));
                return self.emit(obj);
            }
            let mut out = self.release_text(k);
            self.repeat_sent(k, &mut obj);
            out.extend(self.emit(obj));
            return out;
        }
        if matches!(
            kind.as_str(),
            "response.content_part.done" | "response.reasoning_summary_part.done"
        ) {
            let (part_kind, index_field) = if kind == "response.content_part.done" {
                (CONTENT, "content_index")
            } else {
                (SUMMARY, "summary_index")
            };
            let index = obj.get(index_field).and_then(Value::as_u64).unwrap_or(0);
            let k = key(output_index.unwrap_or(0), part_kind, index);
            if let Some(Value::Object(part)) = obj.get_mut("part") {
                self.repeat_sent(k, part);
                if self.guard.pii.is_some() && part.contains_key("logprobs") {
                    part.insert("logprobs".into(), json!([]));
                }
            }
        }
        self.emit(obj)
    }

    /// Sends the rest of a held text (it is finished) as one more delta.
    fn release_text(&mut self, k: u64) -> Vec<u8> {
        let rest = self.release(k, true);
        self.held.remove(&k);
        let template = self.state().templates.remove(&k);
        let (Some(mut e), false) = (template, rest.is_empty()) else {
            return Vec::new();
        };
        self.state().sent.entry(k).or_default().push_str(&rest);
        e.insert("delta".into(), Value::String(rest));
        self.emit(e)
    }

    /// Puts what was sent of text `k` in `obj`'s text member; a text never streamed is
    /// screened whole.
    fn repeat_sent(&mut self, k: u64, obj: &mut Map<String, Value>) {
        let sent = self.state().sent.get(&k).cloned();
        for f in TEXT_FIELDS {
            let Some(Value::String(text)) = obj.get_mut(f) else {
                continue;
            };
            match &sent {
                Some(s) => s.clone_into(text),
                None => {
                    self.guard.clean(vec![Slot::Text(text)]);
                }
            }
        }
    }

    /// A finished output item: a held call is judged and sent whole (or refused); a
    /// message's texts are made to match what was streamed.
    fn item_done(&mut self, mut obj: Map<String, Value>, output_index: Option<u64>) -> Vec<u8> {
        let Some(mut item) = obj.remove("item") else {
            return self.emit(obj);
        };
        let oi = output_index.unwrap_or(0);
        if let Some(field) = call_item(&item) {
            let added = self.state().calls.remove(&oi);
            return self.release_call(obj, oi, item, added, field);
        }
        if self.screens_text() {
            for (member, part_kind) in [("content", CONTENT), ("summary", SUMMARY)] {
                let Some(Value::Array(parts)) = item.get_mut(member) else {
                    continue;
                };
                for (i, part) in parts.iter_mut().enumerate() {
                    if let Value::Object(p) = part {
                        self.repeat_sent(key(oi, part_kind, i as u64), p);
                    }
                }
            }
            if self.guard.pii.is_some() {
                drop_part_logprobs(&mut item);
            }
            if !matches!(
                item.get("type").and_then(Value::as_str),
                Some("message" | "reasoning")
            ) {
                self.guard.clean(item_texts(&mut item));
            }
            let st = self.state();
            st.sent.retain(|k, _| k >> 24 != oi);
            st.templates.retain(|k, _| k >> 24 != oi);
        }
        self.state().done.insert(oi, item.clone());
        obj.insert("item".into(), item);
        self.emit(obj)
    }

    /// Judges one finished tool call and sends it as the events of a whole call, or as a
    /// message saying it was refused (or ends the stream, under `called = "block"`).
    fn release_call(
        &mut self,
        mut done: Map<String, Value>,
        oi: u64,
        mut item: Value,
        added: Option<Value>,
        field: &'static str,
    ) -> Vec<u8> {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let refused = match &self.guard.tools {
            Some(gate) => {
                let args = item.get(field).and_then(Value::as_str).unwrap_or("");
                gate.judge(&name, Some(args)).is_err()
            }
            None => false,
        };
        if refused {
            if self.guard.state.config.tools.called == ToolCalled::Block {
                return self.fail(
                    &format!(
                        "the model called tools this app may not use: {name}; the stream was ended"
                    ),
                    "tool-call-refused",
                );
            }
            let message = refusal_item(&item, &name);
            let out = self.refusal_events(oi, &message, &refusal(&name));
            self.state().done.insert(oi, message);
            return out;
        }
        if let Some(Value::String(a)) = item.get_mut(field) {
            let slot = if field == "arguments" {
                Slot::Json(a)
            } else {
                Slot::Text(a)
            };
            self.guard.redact_all(vec![slot]);
        }
        let args = item
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let item_id = item.get("id").cloned().unwrap_or(Value::Null);
        let mut first = added.unwrap_or_else(|| item.clone());
        first[field] = Value::String(String::new());
        first["status"] = Value::String("in_progress".into());
        let (delta_kind, done_kind) = if field == "arguments" {
            (
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
            )
        } else {
            (
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
            )
        };
        let mut out = self.emit(event(
            "response.output_item.added",
            json!({"output_index": oi, "item": first}),
        ));
        out.extend(self.emit(event(
            delta_kind,
            json!({"item_id": item_id, "output_index": oi, "delta": args}),
        )));
        let mut finished = event(
            done_kind,
            json!({"item_id": item_id, "output_index": oi, "name": name}),
        );
        finished.insert(field.into(), Value::String(args));
        out.extend(self.emit(finished));
        self.state().done.insert(oi, item.clone());
        done.insert("item".into(), item);
        out.extend(self.emit(done));
        out
    }

    /// The events of a one-part message item carrying `text`, as a model's answer streams.
    fn refusal_events(&mut self, oi: u64, message: &Value, text: &str) -> Vec<u8> {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
        let at = |extra: Value| {
            let mut m = json!({"item_id": id, "output_index": oi, "content_index": 0});
            if let (Some(m), Value::Object(x)) = (m.as_object_mut(), extra) {
                m.extend(x);
            }
            m
        };
        let mut opening = message.clone();
        opening["status"] = json!("in_progress");
        opening["content"] = json!([]);
        let events = [
            event(
                "response.output_item.added",
                json!({"output_index": oi, "item": opening}),
            ),
            event("response.content_part.added", at(json!({"part": part("")}))),
            event(
                "response.output_text.delta",
                at(json!({"delta": text, "logprobs": []})),
            ),
            event(
                "response.output_text.done",
                at(json!({"text": text, "logprobs": []})),
            ),
            event(
                "response.content_part.done",
                at(json!({"part": part(text)})),
            ),
            event(
                "response.output_item.done",
                json!({"output_index": oi, "item": message}),
            ),
        ];
        let mut out = Vec::new();
        for e in events {
            out.extend(self.emit(e));
        }
        out
    }

    /// The final response object: each output item as its `output_item.done` sent it; items
    /// the stream never finished are judged and screened here. Err names refused calls under
    /// `called = "block"`.
    fn finish_response(&mut self, response: &mut Value) -> Result<(), Vec<String>> {
        let done = std::mem::take(&mut self.state().done);
        let mut unseen = Vec::new();
        if let Some(Value::Array(items)) = response.get_mut("output") {
            for (i, item) in items.iter_mut().enumerate() {
                match done.get(&(i as u64)) {
                    Some(sent) => *item = sent.clone(),
                    None => unseen.push(i),
                }
            }
            if !unseen.is_empty() {
                let mut rest: Vec<Value> = unseen.iter().map(|&i| items[i].take()).collect();
                let refused = match &self.guard.tools {
                    Some(gate) => self.guard.judge_items(gate, &mut rest),
                    None => Vec::new(),
                };
                if !refused.is_empty() && self.guard.state.config.tools.called == ToolCalled::Block
                {
                    return Err(refused);
                }
                for (&i, mut item) in unseen.iter().zip(rest) {
                    self.guard.clean(item_texts(&mut item));
                    if self.guard.pii.is_some() {
                        drop_part_logprobs(&mut item);
                    }
                    items[i] = item;
                }
            }
        }
        // Any other text member of the response (a provider's convenience `output_text`).
        if let Value::Object(r) = response {
            if r.contains_key("output_text") && self.screens_text() {
                let mut only = json!({"output_text": r.remove("output_text")});
                self.guard.clean(response_texts(&mut only));
                if let Some(t) = only.get_mut("output_text") {
                    r.insert("output_text".into(), t.take());
                }
            }
        }
        Ok(())
    }

    /// The stream is ending: held texts go out as last deltas; held calls never finished
    /// are not passed on.
    pub(super) fn responses_flush(&mut self) -> Vec<u8> {
        let keys: Vec<u64> = self.held.keys().copied().collect();
        let mut out = Vec::new();
        for k in keys {
            out.extend(self.release_text(k));
        }
        out
    }
}
