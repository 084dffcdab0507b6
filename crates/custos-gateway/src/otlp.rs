//! otlp: the protobuf encoding of an OTLP `ExportTraceServiceRequest`
//! (opentelemetry-proto `collector/trace/v1`), written by hand: the handful of messages a
//! trace needs do not justify a code generator and a protobuf runtime in the build.

/// A span's kind (`Span.SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// A span's status code (`Status.StatusCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

/// An attribute value (`AnyValue`): the kinds custos sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

pub type Attributes = Vec<(&'static str, Value)>;

/// One finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// The W3C `tracestate` the caller sent, for the span that joined its trace.
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    pub status: StatusCode,
    pub status_message: String,
    /// W3C trace flags (bit 0: sampled) and whether the parent is remote (`SpanFlags`).
    pub flags: u32,
}

/// `SpanFlags`: the low byte holds the W3C trace flags; these say whether the parent span
/// is known to be remote.
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
pub const FLAG_IS_REMOTE: u32 = 0x200;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A string field; proto3 leaves empty strings out.
fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(out, field, s.as_bytes());
    }
}

/// A nested message written by `f`, prefixed with its length.
fn message(out: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes(out, field, &inner);
}

fn any_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        // AnyValue is a oneof: an empty string is still sent, so the kind is known.
        Value::Str(s) => bytes(out, 1, s.as_bytes()),
        Value::Bool(b) => {
            tag(out, 2, VARINT);
            varint(out, u64::from(*b));
        }
        Value::Int(i) => {
            tag(out, 3, VARINT);
            varint(out, *i as u64);
        }
    }
}

fn key_values(out: &mut Vec<u8>, field: u32, attrs: &[(&str, Value)]) {
    for (k, v) in attrs {
        message(out, field, |kv| {
            string(kv, 1, k);
            message(kv, 2, |av| any_value(av, v));
        });
    }
}

fn span(out: &mut Vec<u8>, s: &Span) {
    bytes(out, 1, &s.trace_id);
    bytes(out, 2, &s.span_id);
    string(out, 3, &s.trace_state);
    if let Some(p) = &s.parent_span_id {
        bytes(out, 4, p);
    }
    string(out, 5, &s.name);
    tag(out, 6, VARINT);
    varint(out, s.kind as u64);
    tag(out, 7, FIXED64);
    out.extend_from_slice(&s.start_unix_nano.to_le_bytes());
    tag(out, 8, FIXED64);
    out.extend_from_slice(&s.end_unix_nano.to_le_bytes());
    key_values(out, 9, &s.attributes);
    if s.status != StatusCode::Unset || !s.status_message.is_empty() {
        message(out, 15, |st| {
            string(st, 2, &s.status_message);
            if s.status != StatusCode::Unset {
                tag(st, 3, VARINT);
                varint(st, s.status as u64);
            }
        });
    }
    if s.flags != 0 {
        tag(out, 16, FIXED32);
        out.extend_from_slice(&s.flags.to_le_bytes());
    }
}

/// An `ExportTraceServiceRequest` holding `spans` of one resource and one instrumentation
/// scope.
pub fn export_request(resource: &[(&str, Value)], scope: (&str, &str), spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + spans.len() * 160);
    message(&mut out, 1, |rs| {
        message(rs, 1, |r| key_values(r, 1, resource));
        message(rs, 2, |ss| {
            message(ss, 1, |sc| {
                string(sc, 1, scope.0);
                string(sc, 2, scope.1);
            });
            for s in spans {
                message(ss, 2, |o| span(o, s));
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reader of the protobuf wire format, only to check what the writer wrote.
    fn read_varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// The fields of one message: (field, wire type, raw value or payload).
    fn fields(b: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < b.len() {
            let key = read_varint(b, &mut at);
            let (field, wire) = ((key >> 3) as u32, (key & 7) as u8);
            let value = match wire {
                VARINT => read_varint(b, &mut at).to_le_bytes().to_vec(),
                FIXED64 => {
                    at += 8;
                    b[at - 8..at].to_vec()
                }
                FIXED32 => {
                    at += 4;
                    b[at - 4..at].to_vec()
                }
                LEN => {
                    let n = read_varint(b, &mut at) as usize;
                    at += n;
                    b[at - n..at].to_vec()
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, wire, value));
        }
        out
    }

    fn one(b: &[u8], field: u32) -> Vec<u8> {
        let f = fields(b);
        let mut hits = f.iter().filter(|x| x.0 == field);
        let v = hits.next().expect("field present").2.clone();
        assert!(hits.next().is_none(), "field {field} once");
        v
    }

    #[test]
    fn varints_match_the_protobuf_examples() {
        let mut v = Vec::new();
        varint(&mut v, 150);
        assert_eq!(v, [0x96, 0x01]);
        let mut v = Vec::new();
        varint(&mut v, 1);
        assert_eq!(v, [0x01]);
        // A negative int64 takes ten bytes.
        let mut v = Vec::new();
        any_value(&mut v, &Value::Int(-1));
        assert_eq!(v.len(), 11);
    }

    proptest! {
        #[test]
        fn spans_read_back_as_written(
            trace_id in any::<[u8; 16]>(),
            span_id in any::<[u8; 8]>(),
            parent in proptest::option::of(any::<[u8; 8]>()),
            name in "[a-z./ ]{0,40}",
            start in any::<u64>(),
            end in any::<u64>(),
            n in any::<i64>(),
            text in "\\PC{0,30}",
            flags in any::<u32>(),
        ) {
            let s = Span {
                trace_id, span_id, parent_span_id: parent, trace_state: String::new(),
                name: name.clone(), kind: SpanKind::Client, start_unix_nano: start,
                end_unix_nano: end,
                attributes: vec![("a.int", Value::Int(n)), ("a.str", Value::Str(text.clone())), ("a.bool", Value::Bool(true))],
                status: StatusCode::Error, status_message: "boom".into(), flags,
            };
            let req = export_request(&[("service.name", "custos".into())], ("custos", "1"), &[s]);
            let rs = one(&req, 1);
            let resource = one(&rs, 1);
            let kv = one(&resource, 1);
            prop_assert_eq!(one(&kv, 1), b"service.name".to_vec());
            let ss = one(&rs, 2);
            prop_assert_eq!(one(&one(&ss, 1), 1), b"custos".to_vec());
            let sp = one(&ss, 2);
            prop_assert_eq!(one(&sp, 1), trace_id.to_vec());
            prop_assert_eq!(one(&sp, 2), span_id.to_vec());
            match parent {
                Some(p) => prop_assert_eq!(one(&sp, 4), p.to_vec()),
                None => prop_assert!(fields(&sp).iter().all(|f| f.0 != 4)),
            }
            if name.is_empty() {
                prop_assert!(fields(&sp).iter().all(|f| f.0 != 5));
            } else {
                prop_assert_eq!(one(&sp, 5), name.into_bytes());
            }
            prop_assert_eq!(one(&sp, 6)[0], 3);
            prop_assert_eq!(one(&sp, 7), start.to_le_bytes().to_vec());
            prop_assert_eq!(one(&sp, 8), end.to_le_bytes().to_vec());
            let attrs: Vec<_> = fields(&sp).into_iter().filter(|f| f.0 == 9).collect();
            prop_assert_eq!(attrs.len(), 3);
            let int = one(&one(&attrs[0].2, 2), 3);
            prop_assert_eq!(u64::from_le_bytes(int.try_into().unwrap()) as i64, n);
            prop_assert_eq!(one(&one(&attrs[1].2, 2), 1), text.into_bytes());
            let status = one(&sp, 15);
            prop_assert_eq!(one(&status, 3)[0], 2);
            if flags != 0 {
                prop_assert_eq!(one(&sp, 16), flags.to_le_bytes().to_vec());
            }
        }
    }
}
